// Saved state of the virtio-mmio transport: a random driver history on A, saved through JSON with the data path's
// positions and restored into a fresh B, then the same random continuation gives the same reads, interrupts and
// runner calls; a restored started device continues its rings where it was. Records the registers would have
// refused, foreign versions and random mutations are refused with BadSnapshotState and change nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MmioTransport, REG, STATUS, type MmioTransportState } from '../../src/virtio/mmio-transport.js';
import { VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1, type QueueRunner, type RunnerEvents } from '../../src/virtio/device.js';
import { InlineRunner } from '../../src/virtio/inline-runner.js';
import { VirtioRng } from '../../src/virtio/rng.js';
import { SplitQueue, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../src/virtio/split-queue.js';
import { Driver, PlainMemory } from '../framework/virtio.js';
import { assertRefused, mutation, takenOrRefused, viaJson, type Saves } from '../framework/saved-state.js';

const Q = { desc: 0x1000, avail: 0x2000, used: 0x3000, size: 8 };
const FEATURES = (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_F_RING_EVENT_IDX);

/** A runner that only records what the transport asks of it; `events` lets the test play the data path's side. */
class RecordingRunner implements QueueRunner {
  readonly calls: unknown[] = [];
  events: RunnerEvents | undefined;
  start(queues: readonly (QueueConfig | undefined)[], features: bigint, events: RunnerEvents): void {
    this.calls.push(['start', queues, features]);
    this.events = events;
  }
  notify(index: number): void { this.calls.push(['notify', index]); }
  stop(): void { this.calls.push(['stop']); this.events = undefined; }
}

function rig(): { t: MmioTransport; runner: RecordingRunner; log: unknown[] } {
  const runner = new RecordingRunner();
  const log: unknown[] = [];
  const t = new MmioTransport(new PlainMemory(0x10000), new VirtioRng(), runner, () => log.push('irq'), undefined, (why) => log.push(['reset', why]));
  return { t, runner, log };
}

function bringUp(t: MmioTransport): void {
  for (const [reg, v] of [
    [REG.STATUS, 0], [REG.STATUS, 1], [REG.STATUS, 3], [REG.DRIVER_FEATURES_SEL, 0], [REG.DRIVER_FEATURES, Number(FEATURES & 0xffffffffn)],
    [REG.DRIVER_FEATURES_SEL, 1], [REG.DRIVER_FEATURES, Number(FEATURES >> 32n)], [REG.STATUS, 11], [REG.QUEUE_SEL, 0],
    [REG.QUEUE_NUM, Q.size], [REG.QUEUE_DESC_LOW, Q.desc], [REG.QUEUE_DESC_HIGH, 0], [REG.QUEUE_AVAIL_LOW, Q.avail],
    [REG.QUEUE_AVAIL_HIGH, 0], [REG.QUEUE_USED_LOW, Q.used], [REG.QUEUE_USED_HIGH, 0], [REG.QUEUE_READY, 1], [REG.STATUS, 15],
  ] as const) t.write(reg, 4, v);
}

const reg = fc.oneof(fc.constantFrom(...Object.values(REG)), fc.integer({ min: 0, max: 0x10f }));
const op = fc.oneof(
  fc.record({ kind: fc.constant('read' as const), offset: reg, size: fc.constantFrom(1, 4, 4) }),
  fc.record({ kind: fc.constant('write' as const), offset: reg, size: fc.constantFrom(2, 4, 4, 4),
    value: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.constantFrom(Q.desc, Q.avail, Q.used, 0xf000, 0xffffffff, 15, 11), fc.nat()) }),
  fc.record({ kind: fc.constant('used' as const) }),
  fc.record({ kind: fc.constant('failed' as const), why: fc.constantFrom('queue 0: bad', 'gone') }),
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function run(r: ReturnType<typeof rig>, ops: readonly Op[]): void {
  for (const o of ops) {
    if (o.kind === 'read') r.log.push(['read', o.offset, o.size, r.t.read(o.offset, o.size)]);
    else if (o.kind === 'write') r.t.write(o.offset, o.size, o.value);
    else if (o.kind === 'used') r.runner.events?.usedBuffers();
    else r.runner.events?.failed(o.why);
  }
}

const position = fc.record({ nextAvail: fc.integer({ min: 0, max: 0xffff }), nextUsed: fc.integer({ min: 0, max: 0xffff }) });

test('virtio-mmio: saved and restored between any two steps, the continuation is the same', () => {
  let started = 0;
  fc.assert(fc.property(fc.boolean(), fc.array(op, { maxLength: 60 }), position, fc.array(op, { maxLength: 60 }), (up, before, pos, after) => {
    const a = rig();
    if (up) bringUp(a.t);
    run(a, before);
    const saved = viaJson(a.t.saveState([pos])) as MmioTransportState;
    const b = rig();
    b.t.restoreState(saved);
    assert.deepEqual(b.log, [], 'restoring raises no interrupt');
    const aStart = [...a.runner.calls].reverse().find((c) => (c as unknown[])[0] === 'start') as [string, (QueueConfig | undefined)[], bigint] | undefined;
    const running = (saved.status & STATUS.DRIVER_OK) !== 0 && (saved.status & STATUS.NEEDS_RESET) === 0;
    if (running) {
      started++;
      // B's runner starts where A's data path was, on the queues A's runner serves.
      const [what, queues, features] = b.runner.calls[0] as [string, (QueueConfig | undefined)[], bigint];
      assert.equal(what, 'start');
      assert.equal(features, aStart?.[2]);
      const expected = aStart?.[1].map((q, i) => (q && saved.queues[i]?.ready ? { ...q, startIndex: pos.nextAvail, startUsed: pos.nextUsed } : undefined));
      assert.deepEqual(queues, expected);
      assert.equal(b.runner.calls.length, 1);
    } else {
      assert.deepEqual(b.runner.calls, []);
    }
    assert.deepEqual(b.t.saveState([pos]), saved);
    a.log.length = 0;
    a.runner.calls.length = 0;
    b.runner.calls.length = 0;
    run(a, after);
    run(b, after);
    assert.deepEqual(b.log, a.log);
    assert.deepEqual(b.runner.calls, a.runner.calls);
    assert.deepEqual(b.t.saveState([pos]), a.t.saveState([pos]));
  }), { numRuns: 1500, seed: 0x3a7e });
  assert.ok(started > 100, `${started} runs restored a started device`);
});

test('virtio-mmio + rng: a restored device continues its ring where the saved one was', () => {
  const mem = new PlainMemory(0x10000);
  const a = new MmioTransport(mem, new VirtioRng(), new InlineRunner(mem, { kind: 'rng' }), () => undefined);
  bringUp(a);
  const d = new Driver(mem, { size: Q.size, descAddr: Q.desc, availAddr: Q.avail, usedAddr: Q.used, indirect: false, eventIdx: true });
  for (let i = 0; i < 3; i++) {
    d.desc(Q.desc, i, BigInt(0x8000 + 0x100 * i), 16, VIRTQ_DESC_F_WRITE);
    d.offer(i);
    a.write(REG.QUEUE_NOTIFY, 4, 0);
  }
  assert.equal(mem.readU16(Q.used + 2), 3);
  // Quiescent: the data path took and completed everything the driver offered.
  const saved = viaJson(a.saveState([{ nextAvail: 3, nextUsed: 3 }]));
  const copy = new PlainMemory(mem.bytes.slice());
  const b = new MmioTransport(copy, new VirtioRng(), new InlineRunner(copy, { kind: 'rng' }), () => undefined);
  b.restoreState(saved);
  const d2 = new Driver(copy, d.c);
  d2.availIdx = d.availIdx;
  d2.desc(Q.desc, 3, 0x9000n, 16, VIRTQ_DESC_F_WRITE);
  d2.offer(3);
  b.write(REG.QUEUE_NOTIFY, 4, 0);
  assert.equal(copy.readU16(Q.used + 2), 4, 'the used index continues');
  assert.deepEqual([copy.readU32(Q.used + 4 + 8 * 3), copy.readU32(Q.used + 4 + 8 * 3 + 4)], [3, 16], 'the fourth chain completed in the fourth slot');
  assert.deepEqual([copy.readU32(Q.used + 4), copy.readU32(Q.used + 8)], [0, 16], 'the first slot still holds the first chain');
  assert.equal(b.read(REG.STATUS, 4) & STATUS.NEEDS_RESET, 0);
});

test('split queue: its position is where it pops and pushes next, and a queue built there continues from it', () => {
  const mem = new PlainMemory(0x10000);
  const cfg: QueueConfig = { size: Q.size, descAddr: Q.desc, availAddr: Q.avail, usedAddr: Q.used, indirect: false, eventIdx: false };
  const q = new SplitQueue(mem, cfg);
  const d = new Driver(mem, cfg);
  for (let i = 0; i < 3; i++) {
    d.desc(Q.desc, i, 0x8000n, 16, VIRTQ_DESC_F_WRITE);
    d.offer(i);
  }
  const chains = [q.pop(), q.pop()];
  q.push(chains[0]?.head ?? 0, 1);
  assert.deepEqual(q.position, { nextAvail: 2, nextUsed: 1 });
  const again = new SplitQueue(mem, { ...cfg, startIndex: 2, startUsed: 1 });
  assert.deepEqual(again.position, { nextAvail: 2, nextUsed: 1 });
  assert.equal(again.pop()?.head, 2);
  again.push(1, 1);
  assert.equal(mem.readU16(Q.used + 2), 2);
  assert.deepEqual(new SplitQueue(mem, { ...cfg, startIndex: 5 }).position, { nextAvail: 5, nextUsed: 5 }, 'vhost-user\'s base alone sets both');
});

test('virtio-mmio: records the registers would refuse, other versions and mutations are refused and change nothing', () => {
  const a = rig();
  bringUp(a.t);
  const good = viaJson(a.t.saveState([{ nextAvail: 4, nextUsed: 4 }])) as Record<string, unknown> & MmioTransportState;
  const target = rig();
  bringUp(target.t);
  target.t.write(REG.QUEUE_SEL, 4, 7);
  const callsBefore = target.runner.calls.length;
  const saves = (t: MmioTransport): Saves => ({ saveState: () => t.saveState([{ nextAvail: 4, nextUsed: 4 }]), restoreState: (r) => t.restoreState(r) });
  const queue = (q: Record<string, unknown>): unknown => ({ ...good, queues: [{ ...good.queues[0], ...q }] });
  const cases: Array<[unknown, RegExp]> = [
    [{ ...good, version: 2 }, /version/], [{ ...good, kind: 'uart16550' }, /kind/],
    [queue({ num: 0 }), /size 0 is not 1 to 256/], [queue({ num: 512 }), /size 512/], [queue({ num: 6 }), /power of two/],
    [queue({ desc: String(Q.desc + 8) }), /aligned/], [queue({ used: '65535' }), /aligned|outside/], [queue({ avail: '65534' }), /outside guest memory/],
    [queue({ desc: '18446744073709551616' }), /desc/], [queue({ desc: '9007199254740993' }), /not an address/], [queue({ desc: 4096 }), /desc/],
    [queue({ nextAvail: 65536 }), /nextAvail/], [queue({ ready: 'yes' }), /ready/], [queue({ extra: 0 }), /queues\[0\]\.extra/],
    [{ ...good, queues: [] }, /queues/], [{ ...good, queues: [good.queues[0], good.queues[0]] }, /queues/],
    [{ ...good, driverFeatures: String(FEATURES | (1n << 5n)) }, /does not offer/], [{ ...good, driverFeatures: '0' }, /VERSION_1/],
    [{ ...good, driverFeatures: '0x1' }, /driverFeatures/], [{ ...good, driverFeatures: Number(FEATURES) }, /driverFeatures/],
    [{ ...good, status: STATUS.DRIVER_OK | STATUS.ACKNOWLEDGE }, /FEATURES_OK/], [{ ...good, status: 256 }, /status/],
    [{ ...good, interruptStatus: 4 }, /interruptStatus/], [{ ...good, failure: 7 }, /failure/], [{ ...good, configGeneration: -1 }, /configGeneration/],
    [{ ...good, queues: [{ ...good.queues[0], ready: false }] }, /position/],
  ];
  for (const [record, why] of cases) assertRefused(saves(target.t), record, why);
  assert.equal(target.runner.calls.length, callsBefore, 'a refused record leaves the runner alone');
  fc.assert(fc.property(mutation(), (m) => {
    const fresh = rig();
    takenOrRefused(saves(fresh.t), m(good));
  }), { numRuns: 3000, seed: 0xdead });
});

test('virtio-mmio: saving a running device without its data path\'s position is a caller error, not a silent zero', () => {
  const { t } = rig();
  bringUp(t);
  assert.throws(() => t.saveState([]), /position in queue 0/);
});

test('virtio-mmio: a driver cannot clear status bits: the features stay those accepted and the device starts once', () => {
  const r = rig();
  bringUp(r.t);
  r.t.write(REG.STATUS, 4, STATUS.ACKNOWLEDGE | STATUS.DRIVER); // clears FEATURES_OK and DRIVER_OK: not allowed
  r.t.write(REG.DRIVER_FEATURES_SEL, 4, 0);
  r.t.write(REG.DRIVER_FEATURES, 4, 0);
  r.t.write(REG.STATUS, 4, 15);
  assert.equal(r.t.read(REG.STATUS, 4), 15);
  assert.equal(r.runner.calls.filter((c) => (c as unknown[])[0] === 'start').length, 1, 'started once, with the features accepted');
  assert.equal(r.t.saveState([{ nextAvail: 0, nextUsed: 0 }]).driverFeatures, String(FEATURES));
});
