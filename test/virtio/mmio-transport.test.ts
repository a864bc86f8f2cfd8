// The virtio-mmio transport and virtio-rng on plain memory: a driver's bring-up as Linux does it, refusals, and
// arbitrary register traffic from a hostile guest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { INT_CONFIG, INT_VRING, MmioTransport, REG, STATUS, VIRTIO_MMIO_MAGIC } from '../../src/virtio/mmio-transport.js';
import { VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1 } from '../../src/virtio/device.js';
import { InlineRunner } from '../../src/virtio/inline-runner.js';
import { RngDataPath, RNG_MAX_BYTES_PER_CHAIN, VIRTIO_ID_RNG, VirtioRng } from '../../src/virtio/rng.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/virtio/split-queue.js';
import { readCFacts } from '../framework/c-layout.js';
import { Driver, PlainMemory } from '../framework/virtio.js';

test('virtio-mmio registers, status bits, feature bits and device ids match the Linux headers', () => {
  const names: Array<[string, number | bigint]> = [
    ['VIRTIO_MMIO_MAGIC_VALUE', REG.MAGIC_VALUE], ['VIRTIO_MMIO_VERSION', REG.VERSION], ['VIRTIO_MMIO_DEVICE_ID', REG.DEVICE_ID],
    ['VIRTIO_MMIO_VENDOR_ID', REG.VENDOR_ID], ['VIRTIO_MMIO_DEVICE_FEATURES', REG.DEVICE_FEATURES],
    ['VIRTIO_MMIO_DEVICE_FEATURES_SEL', REG.DEVICE_FEATURES_SEL], ['VIRTIO_MMIO_DRIVER_FEATURES', REG.DRIVER_FEATURES],
    ['VIRTIO_MMIO_DRIVER_FEATURES_SEL', REG.DRIVER_FEATURES_SEL], ['VIRTIO_MMIO_QUEUE_SEL', REG.QUEUE_SEL],
    ['VIRTIO_MMIO_QUEUE_NUM_MAX', REG.QUEUE_NUM_MAX], ['VIRTIO_MMIO_QUEUE_NUM', REG.QUEUE_NUM],
    ['VIRTIO_MMIO_QUEUE_READY', REG.QUEUE_READY], ['VIRTIO_MMIO_QUEUE_NOTIFY', REG.QUEUE_NOTIFY],
    ['VIRTIO_MMIO_INTERRUPT_STATUS', REG.INTERRUPT_STATUS], ['VIRTIO_MMIO_INTERRUPT_ACK', REG.INTERRUPT_ACK],
    ['VIRTIO_MMIO_STATUS', REG.STATUS], ['VIRTIO_MMIO_QUEUE_DESC_LOW', REG.QUEUE_DESC_LOW],
    ['VIRTIO_MMIO_QUEUE_DESC_HIGH', REG.QUEUE_DESC_HIGH], ['VIRTIO_MMIO_QUEUE_AVAIL_LOW', REG.QUEUE_AVAIL_LOW],
    ['VIRTIO_MMIO_QUEUE_AVAIL_HIGH', REG.QUEUE_AVAIL_HIGH], ['VIRTIO_MMIO_QUEUE_USED_LOW', REG.QUEUE_USED_LOW],
    ['VIRTIO_MMIO_QUEUE_USED_HIGH', REG.QUEUE_USED_HIGH], ['VIRTIO_MMIO_CONFIG_GENERATION', REG.CONFIG_GENERATION],
    ['VIRTIO_MMIO_INT_VRING', INT_VRING], ['VIRTIO_MMIO_INT_CONFIG', INT_CONFIG],
    ['VIRTIO_CONFIG_S_ACKNOWLEDGE', STATUS.ACKNOWLEDGE], ['VIRTIO_CONFIG_S_DRIVER', STATUS.DRIVER],
    ['VIRTIO_CONFIG_S_DRIVER_OK', STATUS.DRIVER_OK], ['VIRTIO_CONFIG_S_FEATURES_OK', STATUS.FEATURES_OK],
    ['VIRTIO_CONFIG_S_NEEDS_RESET', STATUS.NEEDS_RESET], ['VIRTIO_CONFIG_S_FAILED', STATUS.FAILED],
    ['VIRTIO_F_VERSION_1', VIRTIO_F_VERSION_1], ['VIRTIO_RING_F_INDIRECT_DESC', VIRTIO_F_RING_INDIRECT_DESC],
    ['VIRTIO_RING_F_EVENT_IDX', VIRTIO_F_RING_EVENT_IDX], ['VIRTIO_ID_RNG', VIRTIO_ID_RNG],
  ];
  const facts = readCFacts(['linux/virtio_mmio.h', 'linux/virtio_config.h', 'linux/virtio_ring.h', 'linux/virtio_ids.h'], [],
    names.map(([n]) => n)).constants;
  for (const [name, ours] of names) assert.equal(facts.get(name), BigInt(ours), name);
});

const Q = { desc: 0x1000, avail: 0x2000, used: 0x3000, size: 8 };

function rig(): { mem: PlainMemory; t: MmioTransport; served: () => number; irqs: () => number } {
  const mem = new PlainMemory(0x10000);
  const rng = new VirtioRng();
  const runner = new InlineRunner(mem, rng.dataPath);
  let irqs = 0;
  const t = new MmioTransport(mem, rng, runner, () => { irqs++; });
  return { mem, t, served: () => (runner.path instanceof RngDataPath ? runner.path.served : 0), irqs: () => irqs };
}

/** What Linux's virtio_mmio driver does to bring a device up, with the given features. */
function bringUp(t: MmioTransport, features: bigint): number {
  t.write(REG.STATUS, 4, 0);
  t.write(REG.STATUS, 4, STATUS.ACKNOWLEDGE);
  t.write(REG.STATUS, 4, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  t.write(REG.DRIVER_FEATURES_SEL, 4, 0);
  t.write(REG.DRIVER_FEATURES, 4, Number(features & 0xffffffffn));
  t.write(REG.DRIVER_FEATURES_SEL, 4, 1);
  t.write(REG.DRIVER_FEATURES, 4, Number(features >> 32n));
  t.write(REG.STATUS, 4, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
  if (!(t.read(REG.STATUS, 4) & STATUS.FEATURES_OK)) return t.read(REG.STATUS, 4);
  t.write(REG.QUEUE_SEL, 4, 0);
  t.write(REG.QUEUE_NUM, 4, Q.size);
  t.write(REG.QUEUE_DESC_LOW, 4, Q.desc);
  t.write(REG.QUEUE_DESC_HIGH, 4, 0);
  t.write(REG.QUEUE_AVAIL_LOW, 4, Q.avail);
  t.write(REG.QUEUE_AVAIL_HIGH, 4, 0);
  t.write(REG.QUEUE_USED_LOW, 4, Q.used);
  t.write(REG.QUEUE_USED_HIGH, 4, 0);
  t.write(REG.QUEUE_READY, 4, 1);
  t.write(REG.STATUS, 4, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  return t.read(REG.STATUS, 4);
}

const driverFor = (mem: PlainMemory): Driver =>
  new Driver(mem, { size: Q.size, descAddr: Q.desc, availAddr: Q.avail, usedAddr: Q.used, indirect: true, eventIdx: false });

test('virtio-mmio + rng: identification, feature negotiation, a request filled with random bytes, interrupt and ack', () => {
  const { mem, t, served, irqs } = rig();
  assert.equal(t.read(REG.MAGIC_VALUE, 4), VIRTIO_MMIO_MAGIC);
  assert.equal(t.read(REG.VERSION, 4), 2);
  assert.equal(t.read(REG.DEVICE_ID, 4), VIRTIO_ID_RNG);
  t.write(REG.DEVICE_FEATURES_SEL, 4, 1);
  assert.equal(t.read(REG.DEVICE_FEATURES, 4), 1, 'VERSION_1 is bit 0 of the high word');
  t.write(REG.DEVICE_FEATURES_SEL, 4, 0);
  assert.equal(t.read(REG.DEVICE_FEATURES, 4), (1 << 28 | 1 << 29) >>> 0);
  t.write(REG.QUEUE_SEL, 4, 0);
  assert.equal(t.read(REG.QUEUE_NUM_MAX, 4), 256);
  t.write(REG.QUEUE_SEL, 4, 1);
  assert.equal(t.read(REG.QUEUE_NUM_MAX, 4), 0, 'no second queue');

  assert.equal(bringUp(t, 1n << VIRTIO_F_VERSION_1), STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  const d = driverFor(mem);
  d.desc(Q.desc, 2, 0x8000n, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
  d.desc(Q.desc, 4, 0x9000n, 32, VIRTQ_DESC_F_WRITE);
  d.offer(2);
  t.write(REG.QUEUE_NOTIFY, 4, 0);
  assert.deepEqual([mem.readU16(Q.used + 2), mem.readU32(Q.used + 4), mem.readU32(Q.used + 8)], [1, 2, 64]);
  assert.ok(mem.bytes.subarray(0x8000, 0x8020).some((b) => b !== 0) && mem.bytes.subarray(0x9000, 0x9020).some((b) => b !== 0));
  assert.equal(served(), 64);
  assert.equal(irqs(), 1);
  assert.equal(t.read(REG.INTERRUPT_STATUS, 4), INT_VRING);
  t.write(REG.INTERRUPT_ACK, 4, INT_VRING);
  assert.equal(t.read(REG.INTERRUPT_STATUS, 4), 0);
});

test('virtio-mmio: FEATURES_OK is refused for unknown features or without VERSION_1', () => {
  for (const features of [0n, (1n << VIRTIO_F_VERSION_1) | (1n << 5n)]) {
    const { t } = rig();
    assert.equal(bringUp(t, features) & STATUS.FEATURES_OK, 0);
  }
});

test('virtio-rng: a huge buffer gets at most 64 KiB; a malformed chain puts the device in NEEDS_RESET until reset', () => {
  const { mem, t, irqs } = rig();
  bringUp(t, 1n << VIRTIO_F_VERSION_1);
  const d = driverFor(mem);
  d.desc(Q.desc, 0, 0x4000n, 0xc000, VIRTQ_DESC_F_WRITE);
  d.offer(0);
  t.write(REG.QUEUE_NOTIFY, 4, 0);
  assert.equal(mem.readU32(Q.used + 8), Math.min(0xc000, RNG_MAX_BYTES_PER_CHAIN));

  d.desc(Q.desc, 1, 0xfff0n, 0x100, VIRTQ_DESC_F_WRITE); // runs past the end of memory
  d.offer(1);
  const before = irqs();
  t.write(REG.QUEUE_NOTIFY, 4, 0);
  assert.ok(t.read(REG.STATUS, 4) & STATUS.NEEDS_RESET);
  assert.equal(t.read(REG.INTERRUPT_STATUS, 4) & INT_CONFIG, INT_CONFIG, 'the driver is told');
  assert.equal(irqs(), before + 1);
  assert.match(t.failure ?? '', /BufferOutsideMemory|outside guest memory/);
  assert.equal(mem.readU16(Q.used + 2), 1, 'the bad chain was not completed');
  t.write(REG.STATUS, 4, 0);
  assert.equal(t.read(REG.STATUS, 4), 0);
  assert.equal(bringUp(t, 1n << VIRTIO_F_VERSION_1) & STATUS.NEEDS_RESET, 0, 'a reset device comes up again');
});

test('virtio-mmio + rng: 100,000 random register accesses and ring contents never throw or reach outside memory', () => {
  const reg = fc.oneof(
    fc.constantFrom(...Object.values(REG)),
    fc.integer({ min: 0, max: 0x1ff }),
  );
  const op = fc.oneof(
    fc.record({ kind: fc.constant('read' as const), offset: reg, size: fc.constantFrom(1, 2, 4, 4, 4) }),
    fc.record({ kind: fc.constant('write' as const), offset: reg, size: fc.constantFrom(1, 2, 4, 4, 4),
      value: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.constantFrom(Q.desc, Q.avail, Q.used, 0xf000, 0xffffffff), fc.nat()) }),
    fc.record({ kind: fc.constant('ring' as const), at: fc.integer({ min: 0x1000, max: 0x3080 }), value: fc.integer({ min: 0, max: 0xffff }) }),
  );
  let ops = 0;
  fc.assert(fc.property(fc.boolean(), fc.array(op, { minLength: 40, maxLength: 80 }), (start, script) => {
    const { mem, t } = rig();
    if (start) bringUp(t, (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_F_RING_EVENT_IDX) | (1n << VIRTIO_F_RING_INDIRECT_DESC));
    for (const o of script) {
      ops++;
      if (o.kind === 'read') {
        const v = t.read(o.offset, o.size);
        assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
      } else if (o.kind === 'write') {
        t.write(o.offset, o.size, o.value);
      } else {
        mem.writeU16(o.at & ~1, o.value);
      }
    }
    assert.equal(mem.outside, 0);
  }), { numRuns: 2000, seed: 0x7a5 });
  assert.ok(ops >= 100_000, `${ops} operations`);
});
