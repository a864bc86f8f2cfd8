// virtio-blk's data path on rings in plain memory and a real file: every request type, refusals, locking, and a fuzz
// run of generated requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import {
  BLK_F, BLK_ID_BYTES, BLK_S, BLK_T, BlockDataPath, VIRTIO_ID_BLOCK, VirtioBlock, virtioBlkConfig,
  virtioBlkDiscardWriteZeroes, virtioBlkOuthdr,
} from '../../src/virtio/blk.js';
import { closeDisk, openDisk, RawFileBackend } from '../../src/virtio/raw-file.js';
import {
  SplitQueue, VirtqueueError, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig,
} from '../../src/virtio/split-queue.js';
import { AzoteError } from '../../src/base/errors.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';
import { Driver, PlainMemory } from '../framework/virtio.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-blk-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('virtio-blk layouts, request types, status codes and feature bits match <linux/virtio_blk.h>', () => {
  const layouts = [virtioBlkConfig, virtioBlkOuthdr, virtioBlkDiscardWriteZeroes];
  assert.deepEqual(layoutMismatches(layouts, readCFacts(['linux/virtio_blk.h'], layouts)), []);
  const ours: Array<[string, number]> = [
    ['VIRTIO_ID_BLOCK', VIRTIO_ID_BLOCK], ['VIRTIO_BLK_T_IN', BLK_T.IN], ['VIRTIO_BLK_T_OUT', BLK_T.OUT],
    ['VIRTIO_BLK_T_FLUSH', BLK_T.FLUSH], ['VIRTIO_BLK_T_GET_ID', BLK_T.GET_ID], ['VIRTIO_BLK_T_DISCARD', BLK_T.DISCARD],
    ['VIRTIO_BLK_T_WRITE_ZEROES', BLK_T.WRITE_ZEROES], ['VIRTIO_BLK_S_OK', BLK_S.OK], ['VIRTIO_BLK_S_IOERR', BLK_S.IOERR],
    ['VIRTIO_BLK_S_UNSUPP', BLK_S.UNSUPP], ['VIRTIO_BLK_F_SEG_MAX', BLK_F.SEG_MAX], ['VIRTIO_BLK_F_RO', BLK_F.RO],
    ['VIRTIO_BLK_F_BLK_SIZE', BLK_F.BLK_SIZE], ['VIRTIO_BLK_F_FLUSH', BLK_F.FLUSH], ['VIRTIO_BLK_F_DISCARD', BLK_F.DISCARD],
    ['VIRTIO_BLK_F_WRITE_ZEROES', BLK_F.WRITE_ZEROES], ['VIRTIO_BLK_ID_BYTES', BLK_ID_BYTES],
  ];
  const facts = readCFacts(['linux/virtio_ids.h', 'linux/virtio_blk.h'], [], ours.map(([n]) => n)).constants;
  for (const [name, value] of ours) assert.equal(facts.get(name), BigInt(value), name);
});

const MEM = 0x40000;
const Q: QueueConfig = { size: 16, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000, indirect: true, eventIdx: false };
const HDR = 0x4000, DATA = 0x8000, STATUS_AT = 0x7000;

function disk(name: string, sectors: number, readOnly = false): { file: string; info: ReturnType<typeof openDisk> } {
  const file = path.join(dir, name);
  writeFileSync(file, new Uint8Array(sectors * 512));
  return { file, info: openDisk(file, readOnly) };
}

function rig(sectors = 64, readOnly = false): {
  mem: PlainMemory; d: Driver; q: SplitQueue; path: BlockDataPath; file: string; close(): void;
} {
  const { file, info } = disk(`d${Math.random().toString(16).slice(2)}.img`, sectors, readOnly);
  const mem = new PlainMemory(MEM);
  const q = new SplitQueue(mem, Q);
  const p = new BlockDataPath(mem, [q], 0n, new RawFileBackend(info.fd, info.sectors, readOnly), 'azote-test-disk');
  return { mem, d: new Driver(mem, Q), q, path: p, file, close: () => closeDisk(info) };
}

/** Places a request the way Linux does (header, data buffers, status) and returns the status the device wrote. */
function request(r: ReturnType<typeof rig>, type: number, sector: bigint, data: { len: number; write: boolean } | undefined,
  payload?: Uint8Array): { status: number; used: number } {
  r.mem.writeU32(HDR, type);
  r.mem.writeU32(HDR + 4, 0);
  r.mem.writeU64(HDR + 8, sector);
  if (payload) r.mem.write(DATA, payload);
  r.mem.bytes[STATUS_AT] = 0xff;
  r.d.desc(Q.descAddr, 0, BigInt(HDR), 16, VIRTQ_DESC_F_NEXT, 1);
  if (data) {
    r.d.desc(Q.descAddr, 1, BigInt(DATA), data.len, VIRTQ_DESC_F_NEXT | (data.write ? VIRTQ_DESC_F_WRITE : 0), 2);
    r.d.desc(Q.descAddr, 2, BigInt(STATUS_AT), 1, VIRTQ_DESC_F_WRITE);
  } else {
    r.d.desc(Q.descAddr, 1, BigInt(STATUS_AT), 1, VIRTQ_DESC_F_WRITE);
  }
  r.d.offer(0);
  assert.equal(r.path.process(0), true);
  const usedIdx = r.mem.readU16(Q.usedAddr + 2);
  return { status: r.mem.bytes[STATUS_AT] ?? -1, used: r.mem.readU32(Q.usedAddr + 4 + 8 * ((usedIdx - 1) % Q.size) + 4) };
}

const pattern = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

test('virtio-blk: a write reaches the file at its sector, a read brings it back, flush and GET_ID answer', () => {
  const r = rig();
  const data = pattern(1024, 7);
  assert.deepEqual(request(r, BLK_T.OUT, 3n, { len: 1024, write: false }, data), { status: BLK_S.OK, used: 1 });
  assert.deepEqual(readFileSync(r.file).subarray(3 * 512, 5 * 512), Buffer.from(data));
  r.mem.bytes.fill(0, DATA, DATA + 1024);
  assert.deepEqual(request(r, BLK_T.IN, 3n, { len: 1024, write: true }), { status: BLK_S.OK, used: 1025 });
  assert.deepEqual(r.mem.bytes.subarray(DATA, DATA + 1024), data);
  assert.equal(request(r, BLK_T.FLUSH, 0n, undefined).status, BLK_S.OK);
  assert.deepEqual(request(r, BLK_T.GET_ID, 0n, { len: 20, write: true }), { status: BLK_S.OK, used: 21 });
  assert.equal(Buffer.from(r.mem.bytes.subarray(DATA, DATA + 15)).toString(), 'azote-test-disk');
  r.close();
});

test('virtio-blk: a header and data split across descriptors in an unaligned indirect table work', () => {
  const r = rig();
  const data = pattern(512, 9);
  r.mem.write(DATA, data);
  r.mem.writeU32(HDR, BLK_T.OUT);
  r.mem.writeU64(HDR + 8, 10n);
  const table = 0x5008; // 8-byte aligned, as SLOB's kmalloc gives Linux
  r.d.desc(table, 0, BigInt(HDR), 6, VIRTQ_DESC_F_NEXT, 1);
  r.d.desc(table, 1, BigInt(HDR + 6), 10, VIRTQ_DESC_F_NEXT, 2);
  r.d.desc(table, 2, BigInt(DATA), 100, VIRTQ_DESC_F_NEXT, 3);
  r.d.desc(table, 3, BigInt(DATA + 100), 412, VIRTQ_DESC_F_NEXT, 4);
  r.d.desc(table, 4, BigInt(STATUS_AT), 1, VIRTQ_DESC_F_WRITE);
  r.d.desc(Q.descAddr, 5, BigInt(table), 5 * 16, VIRTQ_DESC_F_INDIRECT);
  r.d.offer(5);
  r.path.process(0);
  assert.equal(r.mem.bytes[STATUS_AT], BLK_S.OK);
  assert.deepEqual(readFileSync(r.file).subarray(10 * 512, 11 * 512), Buffer.from(data));
  r.close();
});

test('virtio-blk: out-of-range and partial-sector requests get IOERR, unknown types UNSUPP; nothing is written', () => {
  const r = rig(8);
  assert.equal(request(r, BLK_T.OUT, 7n, { len: 1024, write: false }, pattern(1024, 1)).status, BLK_S.IOERR);
  assert.equal(request(r, BLK_T.IN, 2n ** 60n, { len: 512, write: true }).status, BLK_S.IOERR);
  assert.equal(request(r, BLK_T.OUT, 0n, { len: 100, write: false }, pattern(100, 1)).status, BLK_S.IOERR);
  assert.equal(request(r, 99, 0n, undefined).status, BLK_S.UNSUPP);
  assert.ok(readFileSync(r.file).every((b) => b === 0));
  r.close();
});

test('virtio-blk: a read-only disk offers VIRTIO_BLK_F_RO, reads, and refuses writes with IOERR', () => {
  const r = rig(8, true);
  const model = new VirtioBlock({ fd: -1, sectors: 8, readOnly: true, serial: 'x' });
  assert.equal((model.features >> BigInt(BLK_F.RO)) & 1n, 1n);
  assert.equal((model.features >> BigInt(BLK_F.DISCARD)) & 1n, 0n);
  assert.equal(model.readConfig(0, 4), 8, 'capacity in sectors');
  assert.equal(request(r, BLK_T.OUT, 0n, { len: 512, write: false }, pattern(512, 3)).status, BLK_S.IOERR);
  assert.equal(request(r, BLK_T.IN, 0n, { len: 512, write: true }).status, BLK_S.OK);
  assert.ok(readFileSync(r.file).every((b) => b === 0));
  r.close();
});

test('virtio-blk: discard and write-zeroes clear their ranges', () => {
  const r = rig(16);
  request(r, BLK_T.OUT, 0n, { len: 16 * 512, write: false }, pattern(16 * 512, 5));
  const seg = (sector: bigint, sectors: number, flags: number): Uint8Array => {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, sector, true);
    v.setUint32(8, sectors, true);
    v.setUint32(12, flags, true);
    return b;
  };
  assert.equal(request(r, BLK_T.WRITE_ZEROES, 0n, { len: 32, write: false }, Buffer.concat([seg(2n, 2, 0), seg(8n, 1, 1)])).status, BLK_S.OK);
  assert.equal(request(r, BLK_T.DISCARD, 0n, { len: 16, write: false }, seg(12n, 4, 0)).status, BLK_S.OK);
  const f = readFileSync(r.file);
  const zero = (from: number, n: number): boolean => f.subarray(from * 512, (from + n) * 512).every((b) => b === 0);
  assert.ok(zero(2, 2) && zero(8, 1), 'write-zeroes ranges read as zero');
  assert.ok(!zero(0, 1) && !zero(4, 1), 'other sectors keep their data');
  assert.equal(statSync(r.file).size, 16 * 512, 'the file keeps its size');
  assert.equal(request(r, BLK_T.DISCARD, 0n, { len: 16, write: false }, seg(15n, 2, 0)).status, BLK_S.IOERR, 'past the end');
  r.close();
});

test('virtio-blk: a request without a header or a status byte is a malformed-request VirtqueueError', () => {
  const r = rig();
  r.d.desc(Q.descAddr, 0, BigInt(HDR), 8, VIRTQ_DESC_F_NEXT, 1);
  r.d.desc(Q.descAddr, 1, BigInt(STATUS_AT), 1, VIRTQ_DESC_F_WRITE);
  r.d.offer(0);
  assert.throws(() => r.path.process(0), (e: unknown) => e instanceof VirtqueueError && e.reason === 'MalformedRequest');
  const s = rig();
  s.d.desc(Q.descAddr, 0, BigInt(HDR), 16, 0);
  s.d.offer(0);
  assert.throws(() => s.path.process(0), (e: unknown) => e instanceof VirtqueueError && e.reason === 'MalformedRequest');
  r.close();
  s.close();
});

test('disks: a missing file, an empty one, and a disk another VM writes are one-line errors', () => {
  assert.throws(() => openDisk(path.join(dir, 'nope.img'), false), (e: unknown) => e instanceof AzoteError && e.code === 'DiskNotFound');
  writeFileSync(path.join(dir, 'empty.img'), '');
  assert.throws(() => openDisk(path.join(dir, 'empty.img'), false), (e: unknown) => e instanceof AzoteError && e.code === 'DiskEmpty');
  const { file, info } = disk('locked.img', 4);
  assert.throws(() => openDisk(file, false), (e: unknown) => e instanceof AzoteError && e.code === 'DiskLocked');
  assert.throws(() => openDisk(file, true), (e: unknown) => e instanceof AzoteError && e.code === 'DiskLocked');
  closeDisk(info);
  const a = openDisk(file, true);
  const b = openDisk(file, true);
  assert.throws(() => openDisk(file, false), (e: unknown) => e instanceof AzoteError && e.code === 'DiskLocked');
  closeDisk(a);
  closeDisk(b);
});

test('virtio-blk: 100,000 generated requests and chains: completed with a status or refused, never outside memory', () => {
  const SECTORS = 16;
  const { file, info } = disk('fuzz.img', SECTORS);
  const backend = new RawFileBackend(info.fd, info.sectors, false);
  const mem = new PlainMemory(0x10000);
  const buffer = fc.record({
    addr: fc.oneof(fc.integer({ min: 0x4000, max: 0x10000 }), fc.constantFrom(0xfff0, 0x4000, 0x10000 - 512)),
    len: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constantFrom(1, 16, 512, 1024, 0x2000)),
    write: fc.boolean(),
  });
  const req = fc.record({
    type: fc.oneof(fc.constantFrom(...Object.values(BLK_T)), fc.nat()),
    sector: fc.oneof(fc.bigInt({ min: 0n, max: BigInt(SECTORS + 2) }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    buffers: fc.array(buffer, { minLength: 0, maxLength: 5 }),
    indirect: fc.boolean(),
    segment: fc.record({ sector: fc.bigInt({ min: 0n, max: 20n }), sectors: fc.nat(40), flags: fc.nat(3) }),
  });
  let completed = 0, refused = 0, requests = 0;
  fc.assert(fc.property(fc.array(req, { minLength: 1, maxLength: 4 }), (reqs) => {
    const q = new SplitQueue(mem, Q);
    mem.bytes.fill(0, 0x1000, 0x4000);
    const d = new Driver(mem, Q);
    const p = new BlockDataPath(mem, [q], 0n, backend, 'fuzz');
    reqs.forEach((r, n) => {
      requests++;
      const hdr = 0x4000 + n * 32;
      mem.writeU32(hdr, r.type);
      mem.writeU64(hdr + 8, r.sector);
      mem.writeU64(hdr + 16, r.segment.sector);
      mem.writeU32(hdr + 24, r.segment.sectors);
      mem.writeU32(hdr + 28, r.segment.flags);
      const chain = [{ addr: hdr, len: 16, write: false }, ...r.buffers];
      const table = r.indirect ? 0x3800 + n * 0x80 : Q.descAddr;
      const base = r.indirect ? 0 : n * 6;
      chain.forEach((b, i) => d.desc(table, base + i, BigInt(b.addr), b.len,
        (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i < chain.length - 1 ? VIRTQ_DESC_F_NEXT : 0), base + i + 1));
      if (r.indirect) d.desc(Q.descAddr, n * 6, BigInt(table), chain.length * 16, VIRTQ_DESC_F_INDIRECT);
      d.offer(n * 6);
    });
    try {
      p.process(0);
      completed += reqs.length;
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      refused++;
    }
    assert.equal(mem.outside, 0, 'no access outside guest memory');
  }), { numRuns: 45_000, seed: 0xb1c });
  assert.equal(statSync(file).size, SECTORS * 512, 'the disk never grows');
  assert.ok(requests >= 100_000, `${requests} requests`);
  assert.ok(completed > 1000 && refused > 1000, `both outcomes: ${completed} completed, ${refused} refused`);
  closeDisk(info);
});
