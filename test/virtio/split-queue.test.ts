// The split virtqueue's data path on rings built in plain memory, every malformed case by name, and a fuzz run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  SplitQueue, VirtqueueError, vringAvail, vringDesc, vringUsed, vringUsedElem, VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig, type VirtqueueErrorCode,
} from '../../src/virtio/split-queue.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';
import { Driver, PlainMemory } from '../framework/virtio.js';

test('vring layouts match <linux/virtio_ring.h>', () => {
  const layouts = [vringDesc, vringUsedElem];
  assert.deepEqual(layoutMismatches(layouts, readCFacts(['linux/virtio_ring.h'], layouts)), []);
  // The ring headers end in flexible arrays: check the header fields and sizes only.
  const headers = [vringAvail, vringUsed].map((l) => ({ ...l, fields: { flags: l.fields.flags, idx: l.fields.idx, ring: l.fields.ring } }));
  assert.deepEqual(layoutMismatches(headers, readCFacts(['linux/virtio_ring.h'], headers)), []);
  const flags = readCFacts(['linux/virtio_ring.h'], [], ['VRING_DESC_F_NEXT', 'VRING_DESC_F_WRITE', 'VRING_DESC_F_INDIRECT',
    'VRING_AVAIL_F_NO_INTERRUPT']).constants;
  assert.deepEqual([...flags.values()].map(Number), [VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT,
    VIRTQ_AVAIL_F_NO_INTERRUPT]);
});

const SIZE = 8;
const cfg = (o: Partial<QueueConfig> = {}): QueueConfig => ({
  size: SIZE, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000, indirect: true, eventIdx: false, ...o,
});

function setup(o: Partial<QueueConfig> = {}): { mem: PlainMemory; q: SplitQueue; d: Driver } {
  const mem = new PlainMemory(0x10000);
  const c = cfg(o);
  return { mem, q: new SplitQueue(mem, c), d: new Driver(mem, c) };
}

test('split queue: a request chain (readable, then writable) is taken and returned through the used ring', () => {
  const { mem, q, d } = setup();
  d.desc(0x1000, 3, 0x8000n, 16, VIRTQ_DESC_F_NEXT, 5);
  d.desc(0x1000, 5, 0x9000n, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
  d.desc(0x1000, 1, 0x9200n, 1, VIRTQ_DESC_F_WRITE);
  d.offer(3);
  assert.equal(q.pending(), 1);
  assert.deepEqual(q.pop(), {
    head: 3, readable: [{ addr: 0x8000, len: 16 }], writable: [{ addr: 0x9000, len: 512 }, { addr: 0x9200, len: 1 }],
    readableBytes: 16, writableBytes: 513,
  });
  assert.equal(q.pop(), undefined);
  assert.equal(q.push(3, 513), true, 'the driver did not suppress interrupts');
  assert.equal(mem.readU16(0x3000 + 2), 1, 'used idx');
  assert.deepEqual([mem.readU32(0x3000 + 4), mem.readU32(0x3000 + 8)], [3, 513]);
});

test('split queue: an indirect table is followed, and both indices wrap at 65536', () => {
  const { q, d, mem } = setup();
  d.desc(0x4000, 0, 0x8000n, 8, VIRTQ_DESC_F_NEXT, 1);
  d.desc(0x4000, 1, 0x8100n, 8, VIRTQ_DESC_F_WRITE);
  d.desc(0x1000, 0, 0x4000n, 32, VIRTQ_DESC_F_INDIRECT);
  for (let i = 0; i < 0x10002; i++) {
    d.offer(0);
    const c = q.pop();
    assert.ok(c);
    if (i >= 0xfffe) {
      assert.deepEqual(c.readable, [{ addr: 0x8000, len: 8 }]);
      assert.deepEqual(c.writable, [{ addr: 0x8100, len: 8 }]);
    }
    q.push(c.head, 8);
  }
  assert.equal(mem.readU16(0x2000 + 2), 2, 'avail idx wrapped');
  assert.equal(mem.readU16(0x3000 + 2), 2, 'used idx wrapped');
  assert.equal(q.pop(), undefined);
});

test('split queue: interrupt suppression, with and without EVENT_IDX', () => {
  const plain = setup();
  plain.d.desc(0x1000, 0, 0x8000n, 4, 0);
  plain.d.offer(0);
  plain.mem.writeU16(0x2000, VIRTQ_AVAIL_F_NO_INTERRUPT);
  plain.q.pop();
  assert.equal(plain.q.push(0, 0), false, 'NO_INTERRUPT honoured');

  const ev = setup({ eventIdx: true });
  ev.d.desc(0x1000, 0, 0x8000n, 4, 0);
  for (let i = 0; i < 3; i++) ev.d.offer(0);
  ev.mem.writeU16(0x2000 + 4 + 2 * SIZE, 1); // used_event: interrupt once the used index passes 1
  const notes: boolean[] = [];
  for (let i = 0; i < 3; i++) {
    ev.q.pop();
    notes.push(ev.q.push(0, 0));
  }
  assert.deepEqual(notes, [false, true, false]);
  assert.equal(ev.mem.readU16(0x3000 + 4 + 8 * SIZE), 3, 'avail_event tells the driver where the device is');
});

/** Each malformed case, with the error it must give. */
const malformed: Array<[VirtqueueErrorCode, (s: { d: Driver; mem: PlainMemory }) => void, Partial<QueueConfig>?]> = [
  ['DescriptorIndexOutOfRange', ({ d }) => d.offer(SIZE)],
  ['DescriptorIndexOutOfRange', ({ d }) => { d.desc(0x1000, 0, 0x8000n, 4, VIRTQ_DESC_F_NEXT, SIZE); d.offer(0); }],
  ['BufferOutsideMemory', ({ d }) => { d.desc(0x1000, 0, 0xfff0n, 0x20, 0); d.offer(0); }],
  ['BufferOutsideMemory', ({ d }) => { d.desc(0x1000, 0, 0xffffffffffffff00n, 0x200, 0); d.offer(0); }],
  ['ChainTooLong', ({ d }) => { d.desc(0x1000, 0, 0x8000n, 4, VIRTQ_DESC_F_NEXT, 1); d.desc(0x1000, 1, 0x8000n, 4, VIRTQ_DESC_F_NEXT, 0); d.offer(0); }],
  ['ReadableAfterWritable', ({ d }) => { d.desc(0x1000, 0, 0x8000n, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1); d.desc(0x1000, 1, 0x8000n, 4, 0); d.offer(0); }],
  ['IndirectNotNegotiated', ({ d }) => { d.desc(0x1000, 0, 0x4000n, 16, VIRTQ_DESC_F_INDIRECT); d.offer(0); }, { indirect: false }],
  ['IndirectWithNext', ({ d }) => { d.desc(0x1000, 0, 0x4000n, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1); d.offer(0); }],
  ['IndirectNotAtHead', ({ d }) => { d.desc(0x1000, 0, 0x8000n, 4, VIRTQ_DESC_F_NEXT, 1); d.desc(0x1000, 1, 0x4000n, 16, VIRTQ_DESC_F_INDIRECT); d.offer(0); }],
  ['NestedIndirect', ({ d }) => { d.desc(0x4000, 0, 0x5000n, 16, VIRTQ_DESC_F_INDIRECT); d.desc(0x1000, 0, 0x4000n, 16, VIRTQ_DESC_F_INDIRECT); d.offer(0); }],
  ['IndirectTableBadLength', ({ d }) => { d.desc(0x1000, 0, 0x4000n, 24, VIRTQ_DESC_F_INDIRECT); d.offer(0); }],
  ['IndirectTableBadLength', ({ d }) => { d.desc(0x1000, 0, 0x4000n, 0, VIRTQ_DESC_F_INDIRECT); d.offer(0); }],
  ['ChainTooLong', ({ d }) => { d.desc(0x4000, 0, 0x8000n, 4, VIRTQ_DESC_F_NEXT, 0); d.desc(0x1000, 0, 0x4000n, 16, VIRTQ_DESC_F_INDIRECT); d.offer(0); }],
  ['AvailIndexJump', ({ mem }) => mem.writeU16(0x2000 + 2, SIZE + 1)],
];

test('split queue: every malformed chain is refused with its own error, never outside memory', () => {
  for (const [code, make, o] of malformed) {
    const s = setup(o);
    make(s);
    assert.throws(() => s.q.pop(), (e: unknown) => e instanceof VirtqueueError && e.reason === code, code);
    assert.equal(s.mem.outside, 0, code);
  }
  assert.throws(() => setup({ size: 6 }), (e: unknown) => e instanceof VirtqueueError && e.reason === 'BadQueueSize');
  assert.throws(() => setup({ descAddr: 0x1008 }), (e: unknown) => e instanceof VirtqueueError && e.reason === 'RingMisaligned');
  assert.throws(() => setup({ usedAddr: 0xfffc }), (e: unknown) => e instanceof VirtqueueError && e.reason === 'RingOutsideMemory');
  const { q } = setup();
  assert.throws(() => q.push(SIZE, 0), (e: unknown) => e instanceof VirtqueueError && e.reason === 'UsedIdOutOfRange');
});

test('split queue: 100,000 generated rings and descriptor tables: a valid chain or a VirtqueueError, nothing else', () => {
  const MEM = 0x4000;
  // Descriptors aimed near the rings and memory's end, with all flag combinations and small indices, so that
  // every path (chains, indirect tables, loops, overflows) is reached, not only "outside memory".
  const desc = fc.record({
    addr: fc.oneof(fc.bigInt({ min: 0n, max: BigInt(MEM) }), fc.constantFrom(0x400n, 0x3ff0n, 0xffffffffffffffffn, BigInt(MEM - 16))),
    len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(16, 32, 0x1000, 0xffffffff)),
    flags: fc.integer({ min: 0, max: 7 }),
    next: fc.integer({ min: 0, max: 9 }),
  });
  const scenario = fc.record({
    size: fc.constantFrom(1, 2, 4, 8),
    indirect: fc.boolean(),
    eventIdx: fc.boolean(),
    table: fc.array(desc, { minLength: 8, maxLength: 8 }),
    indirectTable: fc.array(desc, { minLength: 4, maxLength: 4 }),
    heads: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 8 }),
    availIdx: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 0xffff })),
  });
  let chains = 0, refused = 0;
  fc.assert(fc.property(scenario, (s) => {
    const mem = new PlainMemory(MEM);
    const c: QueueConfig = { size: s.size, descAddr: 0x100, availAddr: 0x200, usedAddr: 0x300, indirect: s.indirect, eventIdx: s.eventIdx };
    const d = new Driver(mem, c);
    s.table.slice(0, s.size).forEach((x, i) => d.desc(0x100, i, x.addr, x.len, x.flags, x.next));
    s.indirectTable.forEach((x, i) => d.desc(0x400, i, x.addr, x.len, x.flags, x.next));
    s.heads.slice(0, s.size).forEach((h, i) => mem.writeU16(0x204 + 2 * i, h));
    mem.writeU16(0x202, s.availIdx);
    const q = new SplitQueue(mem, c);
    try {
      for (let chain = q.pop(); chain; chain = q.pop()) {
        chains++;
        for (const b of [...chain.readable, ...chain.writable]) assert.ok(mem.contains(b.addr, b.len));
        assert.equal(chain.readableBytes, chain.readable.reduce((n, b) => n + b.len, 0));
        q.push(chain.head, chain.writableBytes);
      }
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      refused++;
    }
    assert.equal(mem.outside, 0, 'no access outside guest memory');
  }), { numRuns: 100_000, seed: 0xa20e });
  assert.ok(chains > 1000 && refused > 1000, `both outcomes are exercised: ${chains} chains, ${refused} refusals`);
});
