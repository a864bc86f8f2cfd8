// The state store's durability: a change the API acknowledged survives a power loss (WAL with synchronous=FULL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
