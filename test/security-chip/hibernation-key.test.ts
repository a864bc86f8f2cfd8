// The hibernation key: made by `host init` (and on first use on an older host), 32 bytes, readable by its owner
// only, kept in the chip directory and stable; a damaged one is refused with a named error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AzoteError } from '../../src/base/errors.js';
import { SecurityChip } from '../../src/security-chip/chip.js';
import { hibernationKey, hibernationKeyPath } from '../../src/security-chip/hibernation-key.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-hibernation-key-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('host init makes the key (32 bytes, 0600); it is stable, made again if missing, refused if damaged', () => {
  const hostDir = path.join(dir, 'host');
  const { chip } = SecurityChip.init(hostDir);
  const file = hibernationKeyPath(hostDir);
  assert.ok(existsSync(file));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const key = chip.hibernationKey();
  assert.equal(key.length, 32);
  assert.ok(hibernationKey(hostDir).equals(key));
  rmSync(file);
  assert.ok(!chip.hibernationKey().equals(key), 'a new key where it was missing');
  writeFileSync(file, Buffer.alloc(5));
  assert.throws(() => chip.hibernationKey(), (e: unknown) => e instanceof AzoteError && e.code === 'HostKeyDamaged');
});
