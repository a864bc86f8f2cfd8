// Snapshots bound to their host: the security chip seals a snapshot the hypervisor wrote and refuses one sealed by
// another host, one never sealed, and one altered anywhere; with the hypervisor's digest check during the load,
// every single-byte change to a file is refused with a named error and never another exception.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { AzoteError } from '../../src/base/errors.js';
import { readSnapshot, writeSnapshot } from '../../src/hypervisor/snapshot/format.js';
import { SecurityChip } from '../../src/security-chip/chip.js';
import { snapshotMacKeyPath } from '../../src/security-chip/snapshot-mac.js';

const PAGE = 4096;
const PAGES = 128;
const dir = mkdtempSync(path.join(tmpdir(), 'azote-snapshot-mac-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const host = (name: string): SecurityChip => SecurityChip.init(path.join(dir, name)).chip;

/** Memory with a run longer than the staging threshold and scattered pages, and a state with several records. */
function sample(): { memory: Uint8Array; state: unknown } {
  const memory = new Uint8Array(PAGES * PAGE);
  memory.fill(0xa5, 10 * PAGE, 90 * PAGE);
  for (const p of [0, 3, 95, 127]) memory[p * PAGE + p] = p + 1;
  return { memory, state: { records: [{ kind: 'uart', version: 1, lcr: 3 }, { kind: 'rtc', version: 1, index: 11 }] } };
}

function written(chip: SecurityChip): { file: string; memory: Uint8Array; state: unknown } {
  const { memory, state } = sample();
  const file = path.join(dir, `snap-${Math.random().toString(16).slice(2)}`);
  const fd = openSync(file, 'w');
  try {
    writeSnapshot(fd, state, memory);
  } finally {
    closeSync(fd);
  }
  chip.sealSnapshot(file);
  return { file, memory, state };
}

/** The restore path: the host checks the MAC, then the hypervisor loads against the digest the host verified. */
function restore(chip: SecurityChip, file: string): { state: unknown; memory: Uint8Array } {
  const fd = openSync(file, 'r');
  try {
    const { digest } = chip.checkSnapshot(fd);
    const memory = new Uint8Array(PAGES * PAGE);
    return { state: readSnapshot(fd, memory, { expectDigest: digest }), memory };
  } finally {
    closeSync(fd);
  }
}

test('a snapshot sealed on this host restores; the MAC key is 32 bytes, 0600, in the chip directory', () => {
  const chip = host('a');
  const key = snapshotMacKeyPath(chip.hostDir);
  assert.equal(readFileSync(key).length, 32);
  assert.equal(statSync(key).mode & 0o777, 0o600);
  assert.equal(path.dirname(key), path.join(chip.hostDir, 'chip'));
  const { file, memory, state } = written(chip);
  const back = restore(chip, file);
  assert.deepEqual(back.state, state);
  assert.ok(Buffer.from(back.memory).equals(Buffer.from(memory)));
});

test('a snapshot sealed by another host, or never sealed, is refused as SnapshotForeign, naming the file', () => {
  const a = host('foreign-a');
  const b = host('foreign-b');
  const { file } = written(a);
  assert.throws(() => b.checkSnapshot(file), (e: unknown) => e instanceof AzoteError && e.code === 'SnapshotForeign' &&
    e.message === `the snapshot ${file} was not made on this host (or was altered): its MAC does not verify` && e.fix !== undefined);
  const unsealed = path.join(dir, 'unsealed');
  const fd = openSync(unsealed, 'w');
  try {
    writeSnapshot(fd, {}, new Uint8Array(PAGE));
  } finally {
    closeSync(fd);
  }
  assert.throws(() => a.checkSnapshot(unsealed), /SnapshotForeign|MAC does not verify/);
  a.sealSnapshot(unsealed);
  a.checkSnapshot(unsealed);
});

test('a host initialised before snapshots gets its key on first use; snapshots from another key stay refused', () => {
  const chip = host('older');
  const { file } = written(chip);
  rmSync(snapshotMacKeyPath(chip.hostDir));
  const reopened = SecurityChip.open(chip.hostDir);
  assert.throws(() => reopened.checkSnapshot(file), /MAC does not verify/);
  assert.ok(existsSync(snapshotMacKeyPath(chip.hostDir)));
  reopened.sealSnapshot(file);
  reopened.checkSnapshot(file);
  writeFileSync(snapshotMacKeyPath(chip.hostDir), Buffer.alloc(5));
  assert.throws(() => reopened.checkSnapshot(file), (e: unknown) => e instanceof AzoteError && e.code === 'HostKeyDamaged');
});

test('every single-byte change anywhere in a sealed snapshot is refused with a named error', () => {
  const chip = host('flips');
  const { file } = written(chip);
  const whole = readFileSync(file);
  const size = whole.length;
  const stateEnd = 36 + whole.readUInt32LE(24);
  // Every byte of the header, state, first run header, the end run and the trailer; samples of the pages.
  const everywhere = [...Array.from({ length: stateEnd + 16 }, (_, i) => i), ...Array.from({ length: 120 }, (_, i) => size - 1 - i)];
  const flipped = path.join(dir, 'flipped');
  const check = (at: number, xor: number): void => {
    const bytes = Buffer.from(whole);
    bytes[at] = (bytes[at] ?? 0) ^ xor;
    writeFileSync(flipped, bytes);
    assert.throws(() => restore(chip, flipped), (e: unknown) => {
      if (!(e instanceof AzoteError) || !['SnapshotCorrupt', 'SnapshotVersion', 'SnapshotForeign', 'SnapshotMismatch'].includes(e.code)) {
        assert.fail(`byte ${at} ^ ${xor}: ${String(e)}`);
      }
      return true;
    }, `byte ${at} ^ ${xor} was accepted`);
  };
  for (const at of everywhere) check(at, 0x01);
  fc.assert(fc.property(fc.nat(size - 1), fc.integer({ min: 1, max: 255 }), (at, xor) => { check(at, xor); }), { numRuns: 300 });
  // A changed page byte passes the host's MAC (it reads no pages) and is caught by the load's digest.
  const bytes = Buffer.from(whole);
  bytes.writeUInt8(bytes.readUInt8(stateEnd + 16 + 5) ^ 0x80, stateEnd + 16 + 5);
  writeFileSync(flipped, bytes);
  assert.throws(() => restore(chip, flipped), /its digest does not match \(a byte was changed\)/);
  // A cut file: the host, reading only the header and the end, already refuses it.
  fc.assert(fc.property(fc.nat(size - 1), (cut) => {
    writeFileSync(flipped, whole.subarray(0, cut));
    assert.throws(() => chip.checkSnapshot(flipped), (e: unknown) => e instanceof AzoteError && e.code === 'SnapshotCorrupt' &&
      /truncated at byte|does not end with the end magic/.test(e.message));
  }), { numRuns: 100, examples: [[0], [36], [size - 104], [size - 1]] });
});
