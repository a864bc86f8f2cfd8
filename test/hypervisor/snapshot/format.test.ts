// The snapshot file: round trips of random sparse memory and random state, only non-zero pages stored, and every
// structural problem (truncation, a run outside memory or out of order, another version, another memory size,
// bytes after the end, a digest the host did not check) refused with a named error. Files are crafted with a
// correct digest where the structural check, not the digest, must be what refuses them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { AzoteError } from '../../../src/base/errors.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { StructView } from '../../../src/base/struct.js';
import { readSnapshot, readSnapshotHeader, snapshotDigest, writeSnapshot } from '../../../src/hypervisor/snapshot/format.js';
import { nonZeroRuns } from '../../../src/hypervisor/snapshot/zero-pages.js';
import {
  SNAPSHOT_END_MAGIC, SNAPSHOT_HEADER, SNAPSHOT_MAGIC, SNAPSHOT_RUN, SNAPSHOT_TRAILER,
  snapshotCapacity,
} from '../../../src/protocols/snapshot-file.js';

const PAGE = 4096;
const dir = mkdtempSync(path.join(tmpdir(), 'azote-snapshot-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let serial = 0;
const tempFile = (): string => path.join(dir, `s${serial++}`);

function withFile<T>(file: string, flags: string, use: (fd: number) => T): T {
  const fd = openSync(file, flags);
  try {
    return use(fd);
  } finally {
    closeSync(fd);
  }
}

function write(state: unknown, memory: Uint8Array, extents?: Array<{ offset: number; length: number }>): { file: string; written: ReturnType<typeof writeSnapshot> } {
  const file = tempFile();
  const written = withFile(file, 'w', (fd) => writeSnapshot(fd, state, memory, extents));
  return { file, written };
}

function read(file: string, memory: Uint8Array, expectDigest?: Uint8Array): unknown {
  return withFile(file, 'r', (fd) => readSnapshot(fd, memory, expectDigest ? { expectDigest } : {}));
}

function refused(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof AzoteError && err.code === code && message.test(err.message) && err.fix !== undefined);
}

/** Memory of `pages` pages where the given pages hold a random non-zero byte at a random place. */
function sparseMemory(pages: number, nonZero: Iterable<[number, number, number]>): Uint8Array {
  const memory = new Uint8Array(pages * PAGE);
  for (const [page, at, value] of nonZero) memory[page * PAGE + at] = value;
  return memory;
}

function runsOf(memory: Uint8Array): { firstPage: number; pageCount: number }[] {
  return [...nonZeroRuns(memory)];
}

interface Crafted {
  version?: number;
  memorySize: number;
  state?: Uint8Array;
  runs: { first: number | bigint; count: number | bigint; bytes?: Uint8Array }[];
  end?: { first: number };
}

/** A file of the given parts with a correct digest, so only a structural check can refuse it. */
function craft(c: Crafted): string {
  const state = c.state ?? Buffer.from('{}');
  const header = StructView.alloc(SNAPSHOT_HEADER);
  header.field('magic').set(SNAPSHOT_MAGIC);
  header.set('version', c.version ?? 1).set('memorySize', c.memorySize).set('stateLength', state.length).set('pageSize', PAGE);
  const parts: Uint8Array[] = [header.bytes(), state];
  for (const r of c.runs) {
    parts.push(StructView.alloc(SNAPSHOT_RUN).set('firstPage', r.first).set('pageCount', r.count).bytes());
    parts.push(r.bytes ?? new Uint8Array(Number(r.count) * PAGE).fill(7));
  }
  parts.push(StructView.alloc(SNAPSHOT_RUN).set('firstPage', c.end?.first ?? 0).bytes());
  const body = Buffer.concat(parts);
  const trailer = StructView.alloc(SNAPSHOT_TRAILER);
  trailer.field('digest').set(createHash('sha384').update(body).digest());
  trailer.field('endMagic').set(SNAPSHOT_END_MAGIC);
  const file = tempFile();
  writeFileSync(file, Buffer.concat([body, trailer.bytes()]));
  return file;
}

test('the layout: header 36 bytes, run 16, trailer 104 with the MAC slot at 48', () => {
  assert.equal(SNAPSHOT_HEADER.size, 36);
  assert.equal(SNAPSHOT_RUN.size, 16);
  assert.deepEqual([SNAPSHOT_TRAILER.size, SNAPSHOT_TRAILER.fields.digest.offset, SNAPSHOT_TRAILER.fields.mac.offset,
    SNAPSHOT_TRAILER.fields.endMagic.offset], [104, 0, 48, 96]);
});

/** The maximal runs of non-zero pages among the pages `covered` says to look at, page by page. */
function naiveRuns(memory: Uint8Array, covered: (page: number) => boolean): { firstPage: number; pageCount: number }[] {
  const runs: { firstPage: number; pageCount: number }[] = [];
  let open = false;
  for (let p = 0; p < memory.length / PAGE; p++) {
    const data = covered(p) && memory.subarray(p * PAGE, (p + 1) * PAGE).some((b) => b !== 0);
    const last = runs.at(-1);
    if (data && open && last) last.pageCount++;
    else if (data) runs.push({ firstPage: p, pageCount: 1 });
    open = data;
  }
  return runs;
}

const marks = fc.array(fc.tuple(fc.nat(95), fc.nat(PAGE - 1), fc.integer({ min: 1, max: 255 })));

test('the zero scan finds exactly the maximal runs of non-zero pages', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 96 }), marks, (pages, m) => {
    const memory = sparseMemory(pages, m.filter(([p]) => p < pages));
    assert.deepEqual(runsOf(memory), naiveRuns(memory, () => true));
  }), { numRuns: 300 });
});

test('given the memfd\'s data extents, the zero scan reads only pages inside them', () => {
  const extent = fc.record({ offset: fc.nat(100 * PAGE), length: fc.nat(20 * PAGE) });
  fc.assert(fc.property(fc.integer({ min: 1, max: 96 }), marks, fc.array(extent, { maxLength: 6 }), (pages, m, extents) => {
    const memory = sparseMemory(pages, m.filter(([p]) => p < pages));
    const covered = (p: number): boolean => extents.some((e) => e.offset < (p + 1) * PAGE && p * PAGE < e.offset + e.length);
    assert.deepEqual([...nonZeroRuns(memory, extents)], naiveRuns(memory, covered));
  }), { numRuns: 300 });
  const memory = sparseMemory(8, [[1, 0, 1], [6, 0, 2]]);
  const { file, written } = write({}, memory);
  const fd = openSync(tempFile(), 'w');
  try {
    assert.equal(writeSnapshot(fd, {}, memory, [{ offset: 6 * PAGE, length: 10 }]).pages, 1);
  } finally {
    closeSync(fd);
  }
  assert.equal(written.pages, 2);
  rmSync(file);
});

test('round trip: random sparse memory and random state come back identical; only non-zero pages are stored', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 160 }),
    fc.array(fc.tuple(fc.nat(159), fc.nat(PAGE - 1), fc.integer({ min: 1, max: 255 })), { maxLength: 200 }),
    fc.boolean(), fc.jsonValue(),
    (pages, marks, denseRun, state) => {
      const memory = sparseMemory(pages, marks.filter(([p]) => p < pages));
      // A run longer than the staging threshold goes between file and memory directly: cover that path too.
      if (denseRun && pages > 80) memory.fill(0x5a, 8 * PAGE, 80 * PAGE);
      const { file, written } = write(state, memory);
      const runs = runsOf(memory);
      const stored = runs.reduce((n, r) => n + r.pageCount, 0);
      assert.equal(written.pages, stored);
      const stateBytes = Buffer.byteLength(JSON.stringify(state));
      assert.equal(written.bytes, 36 + stateBytes + runs.length * 16 + stored * PAGE + 16 + 104);
      assert.equal(readFileSync(file).length, written.bytes);
      assert.ok(written.bytes <= snapshotCapacity(memory.length, stateBytes), 'within the capacity a hibernation preallocates');
      const restored = new Uint8Array(memory.length);
      assert.deepEqual(read(file, restored), JSON.parse(JSON.stringify(state)));
      assert.ok(Buffer.from(restored).equals(Buffer.from(memory)));
      withFile(file, 'r', (fd) => {
        assert.equal(snapshotDigest(fd).toString('hex'), written.digest);
        assert.deepEqual(readSnapshotHeader(fd).header, { version: 1, flags: 0, memorySize: memory.length, stateLength: stateBytes, pageSize: PAGE });
      });
      rmSync(file);
    }), { numRuns: 60 });
});

test('the capacity holds the worst memories: every other page (the most runs), and every page', () => {
  for (const pages of [1, 2, 7, 64]) {
    const alternate = sparseMemory(pages, Array.from({ length: Math.ceil(pages / 2) }, (_, i): [number, number, number] => [2 * i, 0, 1]));
    const full = new Uint8Array(pages * PAGE).fill(1);
    const capacity = snapshotCapacity(pages * PAGE, 2);
    const sizes = [alternate, full].map((m) => write({}, m).written.bytes);
    assert.ok(sizes.every((n) => n <= capacity), `${sizes.join(', ')} within ${capacity}`);
    // Loose by at most a run header per page pair: a guest's image never costs much more than its memory.
    assert.ok(capacity - Math.max(...sizes) <= 8 * pages + 16, `${pages} pages: ${capacity} for at most ${Math.max(...sizes)}`);
  }
});

test('a 64 MiB memory with three non-zero pages makes a file of three pages and their headers', () => {
  const memory = sparseMemory(16384, [[0, 0, 1], [5000, 4095, 2], [16383, 17, 3]]);
  const { file, written } = write({ kind: 'vm' }, memory);
  assert.equal(written.pages, 3);
  assert.equal(written.bytes, 36 + 13 + 3 * (16 + PAGE) + 16 + 104);
  const restored = new Uint8Array(memory.length);
  read(file, restored);
  assert.ok(Buffer.from(restored).equals(Buffer.from(memory)));
});

test('guest memory on a memfd (GuestMemory) is written from and loaded into its mapping in place', () => {
  const from = GuestMemory.create(4 * 1024 * 1024);
  const into = GuestMemory.create(4 * 1024 * 1024);
  try {
    from.bytes.fill(3, 100 * PAGE, 300 * PAGE);
    from.bytes[1000 * PAGE + 5] = 9;
    const { file, written } = write({ kind: 'vm' }, from.bytes);
    assert.equal(written.pages, 201);
    assert.deepEqual(read(file, into.bytes), { kind: 'vm' });
    assert.ok(Buffer.from(into.bytes).equals(Buffer.from(from.bytes)));
  } finally {
    from.close();
    into.close();
  }
});

test('saving guest memory by its data extents leaves the pages it never wrote uncommitted', () => {
  const from = GuestMemory.create(256 * 1024 * 1024);
  try {
    from.bytes.fill(5, 10 * PAGE, 12 * PAGE);
    const committed = (): number => fstatSync(from.fd).blocks * 512;
    const { written } = write({}, from.bytes, from.dataExtents());
    assert.equal(written.pages, 2);
    assert.ok(committed() <= 16 * PAGE, `${committed()} bytes of the memfd committed after the save`);
  } finally {
    from.close();
  }
});

test('the same file written over a longer one is cut to its own length', () => {
  const file = tempFile();
  writeFileSync(file, Buffer.alloc(100_000, 1));
  const memory = sparseMemory(4, [[1, 0, 9]]);
  const written = withFile(file, 'r+', (fd) => writeSnapshot(fd, null, memory));
  assert.equal(readFileSync(file).length, written.bytes);
  assert.equal(read(file, new Uint8Array(memory.length)), null);
});

test('truncation anywhere is refused as SnapshotCorrupt, naming the byte', () => {
  const memory = sparseMemory(96, [[0, 1, 1], [3, 0, 2], [40, 9, 3]]);
  memory.fill(1, 10 * PAGE, 90 * PAGE);
  const { file, written } = write({ vcpus: [1, 2] }, memory);
  const whole = readFileSync(file);
  fc.assert(fc.property(fc.nat(written.bytes - 1), (cut) => {
    const cutFile = tempFile();
    writeFileSync(cutFile, whole.subarray(0, cut));
    refused(() => read(cutFile, new Uint8Array(memory.length)), 'SnapshotCorrupt', new RegExp(`truncated at byte ${cut}$`));
    rmSync(cutFile);
  }), { numRuns: 150, examples: [[0], [35], [36], [written.bytes - 104], [written.bytes - 1]] });
});

test('a run outside memory, out of order or overlapping is refused before it is read', () => {
  const memorySize = 8 * PAGE;
  refused(() => read(craft({ memorySize, runs: [{ first: 7, count: 2 }] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /the run at byte 38 \(pages 7\+2\) goes past the end of guest memory \(8 pages\)/);
  refused(() => read(craft({ memorySize, runs: [{ first: 2n ** 63n, count: 1 }] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /goes past the end of guest memory/);
  refused(() => read(craft({ memorySize, runs: [{ first: 1, count: 2n ** 64n - 1n, bytes: new Uint8Array(PAGE) }] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /goes past the end of guest memory/);
  refused(() => read(craft({ memorySize, runs: [{ first: 4, count: 2 }, { first: 1, count: 1 }] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /starts at page 1, before the previous run's end \(page 6\)/);
  refused(() => read(craft({ memorySize, runs: [{ first: 4, count: 2 }, { first: 5, count: 1 }] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /starts at page 5, before the previous run's end/);
  refused(() => read(craft({ memorySize, runs: [], end: { first: 3 } }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /the end run at byte 38 names page 3/);
  // Adjacent runs are well-formed, and a crafted file with a correct digest loads.
  const memory = new Uint8Array(memorySize);
  assert.deepEqual(read(craft({ memorySize, runs: [{ first: 1, count: 1 }, { first: 2, count: 1 }] }), memory), {});
  assert.equal(memory[PAGE], 7);
});

test('another format version, unknown flags, another page size or memory size are refused with their names', () => {
  const memorySize = 4 * PAGE;
  refused(() => read(craft({ version: 2, memorySize, runs: [] }), new Uint8Array(memorySize)),
    'SnapshotVersion', /^the snapshot was made by format version 2; this Azote reads 1$/);
  const flagged = craft({ memorySize, runs: [] });
  const bytes = readFileSync(flagged);
  bytes[12] = 4;
  writeFileSync(flagged, bytes);
  refused(() => read(flagged, new Uint8Array(memorySize)), 'SnapshotVersion', /uses features this Azote does not know \(flags 0x4\)/);
  bytes[12] = 0;
  bytes.writeUInt32LE(8192, 32);
  writeFileSync(flagged, bytes);
  refused(() => read(flagged, new Uint8Array(memorySize)), 'SnapshotCorrupt', /its page size is 8192/);
  refused(() => read(craft({ memorySize, runs: [] }), new Uint8Array(2 * memorySize)), 'SnapshotMismatch',
    /holds 16384 bytes of guest memory; this VM has 32768/);
  refused(() => read(craft({ memorySize: 100, runs: [] }), new Uint8Array(100)), 'SnapshotCorrupt', /not a whole number of pages/);
  const notSnapshot = tempFile();
  writeFileSync(notSnapshot, Buffer.alloc(4096, 0x41));
  refused(() => read(notSnapshot, new Uint8Array(memorySize)), 'SnapshotCorrupt', /not an Azote snapshot/);
});

test('a state that is not UTF-8 JSON, a huge state length, bytes after the end and an unexpected digest are refused', () => {
  const memorySize = 4 * PAGE;
  refused(() => read(craft({ memorySize, state: Buffer.from('{"a":'), runs: [] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /its machine state is not UTF-8 JSON/);
  refused(() => read(craft({ memorySize, state: Buffer.from([0x22, 0xff, 0x22]), runs: [] }), new Uint8Array(memorySize)),
    'SnapshotCorrupt', /its machine state is not UTF-8 JSON/);
  const huge = craft({ memorySize, runs: [] });
  const bytes = readFileSync(huge);
  bytes.writeBigUInt64LE(2n ** 62n, 24);
  writeFileSync(huge, bytes);
  refused(() => read(huge, new Uint8Array(memorySize)), 'SnapshotCorrupt', /its state section claims 4611686018427387904 bytes/);
  const { file, written } = write([1], sparseMemory(4, [[2, 2, 2]]));
  writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.from('x')]));
  refused(() => read(file, new Uint8Array(memorySize)), 'SnapshotCorrupt', new RegExp(`goes on after its end at byte ${written.bytes}`));
  const other = write([1], sparseMemory(4, [[2, 2, 2]]));
  const otherDigest = Buffer.from(other.written.digest, 'hex');
  otherDigest[0] = (otherDigest[0] ?? 0) ^ 1;
  refused(() => read(other.file, new Uint8Array(memorySize), otherDigest), 'SnapshotCorrupt', /not the one the host checked/);
  assert.deepEqual(read(other.file, new Uint8Array(memorySize), Buffer.from(other.written.digest, 'hex')), [1]);
});

test('a state that cannot be JSON and memory that is not whole pages are refused when writing', () => {
  const fd = openSync(tempFile(), 'w');
  try {
    refused(() => writeSnapshot(fd, undefined, new Uint8Array(PAGE)), 'SnapshotStateInvalid', /not a JSON value/);
    refused(() => writeSnapshot(fd, { n: 1n }, new Uint8Array(PAGE)), 'SnapshotStateInvalid', /cannot be saved as JSON/);
    assert.throws(() => writeSnapshot(fd, {}, new Uint8Array(PAGE + 1)), (e: unknown) => e instanceof AzoteError && e.code === 'SnapshotMemoryShape');
  } finally {
    closeSync(fd);
  }
});
