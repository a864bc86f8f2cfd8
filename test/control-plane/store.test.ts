// The state store's durability: a change the API acknowledged survives a power loss (WAL with synchronous=FULL); and
// data directories from before a column existed gain it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Store } from '../../src/control-plane/store.js';

test('the store commits durably: WAL journal with synchronous=FULL', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-store-'));
  const store = new Store(dir);
  try {
    assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(store.db.pragma('synchronous', { simple: true }), 2);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a data directory from before hibernation: its instances gain hibernation_configured, not configured', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-store-'));
  try {
    // The instances table as it was before core placement, termination times and hibernation, with one instance.
    const old = new Database(path.join(dir, 'state.sqlite'));
    old.exec(`CREATE TABLE instances (id TEXT PRIMARY KEY, account TEXT NOT NULL, reservation TEXT NOT NULL, image_id TEXT NOT NULL,
      instance_type TEXT NOT NULL, vcpus INTEGER NOT NULL, memory_mib INTEGER NOT NULL, root_gib INTEGER NOT NULL, state TEXT NOT NULL,
      transition_reason TEXT NOT NULL DEFAULT '', state_reason_code TEXT, state_reason_message TEXT, key_name TEXT, user_data TEXT,
      launch_index INTEGER NOT NULL, launch_time TEXT NOT NULL, client_token TEXT, private_ip TEXT, mac TEXT, seq INTEGER NOT NULL)`);
    old.prepare(`INSERT INTO instances (id, account, reservation, image_id, instance_type, vcpus, memory_mib, root_gib, state, launch_index,
      launch_time, seq) VALUES ('i-0123456789abcdef0', 'a', 'r-1', 'ami-1', 't3.nano', 1, 512, 1, 'stopped', 0, '2026-01-01T00:00:00Z', 1)`).run();
    old.close();
    const store = new Store(dir);
    try {
      assert.equal(store.instanceById('i-0123456789abcdef0')?.hibernation_configured, 0);
    } finally {
      store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
