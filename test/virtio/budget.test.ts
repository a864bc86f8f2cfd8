// Per-turn budgets of the data paths, on rings in plain memory: a driver that keeps adding chains (between turns, or
// from inside the device's own handling of one) gets at most QUEUE_BUDGET of them served per turn; the queue says it
// has work left, and another queue is served between its turns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import * as libc from '../../src/sys/libc.js';
import { Backlog, QUEUE_BUDGET } from '../../src/virtio/budget.js';
import { BlockDataPath } from '../../src/virtio/blk.js';
import type { DataPath } from '../../src/virtio/device.js';
import { NetDataPath, RX_QUEUE, TX_QUEUE, type FrameBackend } from '../../src/virtio/net.js';
import { closeDisk, openDisk, RawFileBackend } from '../../src/virtio/raw-file.js';
import { RngDataPath } from '../../src/virtio/rng.js';
import { SplitQueue, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../src/virtio/split-queue.js';
import { TX_QUEUE as VSOCK_TX, VsockDataPath } from '../../src/virtio/vsock.js';
import { Driver, PlainMemory } from '../framework/virtio.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-budget-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const SIZE = 256;
const queueAt = (base: number): QueueConfig => ({
  size: SIZE, descAddr: base, availAddr: base + 0x1000, usedAddr: base + 0x2000, indirect: false, eventIdx: false,
});
const Q0 = queueAt(0x10000), Q1 = queueAt(0x20000);
const BUF = 0x30000;

test('Backlog: whatever the driver adds between and during turns, a turn serves at most the budget, in order, nothing lost', () => {
  fc.assert(fc.property(
    fc.array(fc.record({ before: fc.integer({ min: 0, max: SIZE }), during: fc.integer({ min: 0, max: 3 }) }), { minLength: 1, maxLength: 12 }),
    (turns) => {
      const mem = new PlainMemory(0x40000);
      const q = new SplitQueue(mem, Q0);
      const d = new Driver(mem, Q0);
      for (let i = 0; i < SIZE; i++) d.desc(Q0.descAddr, i, BigInt(BUF), 16, VIRTQ_DESC_F_WRITE);
      let offered = 0, served = 0;
      // The driver never has more than the ring's size outstanding.
      const offer = (n: number): void => {
        for (let i = 0; i < n && offered - served < SIZE; i++) d.offer(offered++ % SIZE);
      };
      const backlog = new Backlog();
      for (const t of turns) {
        offer(t.before);
        let thisTurn = 0;
        backlog.serve(0, q, (chain) => {
          assert.equal(chain.head, served % SIZE, 'chains are served in the order they were offered');
          served++;
          thisTurn++;
          offer(t.during);
          return 0;
        });
        assert.ok(thisTurn <= QUEUE_BUDGET, `${thisTurn} chains in one turn`);
        assert.equal(backlog.has(0), q.pending() > 0, 'unfinished exactly when chains are left');
        if (backlog.has(0)) assert.equal(thisTurn, QUEUE_BUDGET);
        assert.equal(offered - served, q.pending(), 'nothing lost, nothing served twice');
      }
    }), { numRuns: 2000, seed: 0xb0d6e7 });
});

/** A backend whose guest keeps transmitting: each frame sent makes the driver add another (up to `limit`). */
class Flood implements FrameBackend {
  readonly fd = undefined;
  sent = 0;
  readonly inbox: Uint8Array[] = [];
  constructor(private readonly again: () => void, private readonly limit: number) {}
  receive(into: Uint8Array): number {
    const f = this.inbox.shift();
    if (!f) return 0;
    into.set(f);
    return f.length;
  }
  send(): boolean {
    if (++this.sent < this.limit) this.again();
    return true;
  }
}

test('virtio-net: a transmit ring whose avail.idx keeps advancing yields after the budget; receiving is served between its turns', () => {
  const mem = new PlainMemory(0x40000);
  const rx = new Driver(mem, Q0), tx = new Driver(mem, Q1);
  tx.desc(Q1.descAddr, 0, BigInt(BUF), 12 + 60, 0);
  // Far more than any budget: without one, a single turn would send them all.
  const flood = new Flood(() => tx.offer(0), 100_000);
  const p = new NetDataPath(mem, [new SplitQueue(mem, Q0), new SplitQueue(mem, Q1)], flood);
  tx.offer(0);
  p.process(TX_QUEUE);
  assert.equal(flood.sent, QUEUE_BUDGET);
  assert.equal(p.unfinished(TX_QUEUE), true);
  // Another queue's turn comes between: a frame for the guest is delivered.
  flood.inbox.push(new Uint8Array(60).fill(7));
  rx.desc(Q0.descAddr, 0, BigInt(BUF + 0x1000), 1526, VIRTQ_DESC_F_WRITE);
  rx.offer(0);
  p.process(RX_QUEUE);
  assert.equal(p.counters.rxFrames, 1);
  assert.equal(p.unfinished(RX_QUEUE), false);
  p.process(TX_QUEUE);
  assert.equal(flood.sent, 2 * QUEUE_BUDGET);
  assert.equal(p.unfinished(TX_QUEUE), true);
});

/** Offers `n` copies of the chain at descriptor 0 on `q`, serves turns until done; the chains each turn took. */
function turns(p: DataPath, index: number, d: Driver, n: number): number[] {
  for (let i = 0; i < n; i++) d.offer(0);
  const taken: number[] = [];
  let before = 0;
  do {
    p.process(index);
    const used = d.mem.readU16(d.c.usedAddr + 2);
    taken.push(used - before);
    before = used;
  } while (p.unfinished?.(index));
  return taken;
}

const SPLIT = [QUEUE_BUDGET, QUEUE_BUDGET, QUEUE_BUDGET, 200 - 3 * QUEUE_BUDGET];

test('virtio-blk, virtio-rng and virtio-vsock: 200 chains at once are served a budget per turn', () => {
  const file = path.join(dir, 'disk.img');
  writeFileSync(file, new Uint8Array(64 * 512));
  const disk = openDisk(file, false);
  const sock = path.join(dir, 'vsock');
  const listenFd = libc.listenUnix(sock);
  try {
    // A read of no sectors: a zero header, then the status byte.
    const blkMem = new PlainMemory(0x40000);
    const blk = new Driver(blkMem, Q0);
    blk.desc(Q0.descAddr, 0, BigInt(BUF), 16, VIRTQ_DESC_F_NEXT, 1);
    blk.desc(Q0.descAddr, 1, BigInt(BUF + 16), 1, VIRTQ_DESC_F_WRITE);
    const blkPath = new BlockDataPath(blkMem, [new SplitQueue(blkMem, Q0)], 0n, new RawFileBackend(disk.fd, disk.sectors, false), 'b');
    assert.deepEqual(turns(blkPath, 0, blk, 200), SPLIT, 'virtio-blk');
    assert.equal(blkPath.counters.requests, 200);

    const rngMem = new PlainMemory(0x40000);
    const rng = new Driver(rngMem, Q0);
    rng.desc(Q0.descAddr, 0, BigInt(BUF), 16, VIRTQ_DESC_F_WRITE);
    assert.deepEqual(turns(new RngDataPath(rngMem, new SplitQueue(rngMem, Q0)), 0, rng, 200), SPLIT, 'virtio-rng');

    // A packet from another CID than the guest's: dropped, and its chain returned.
    const vsMem = new PlainMemory(0x40000);
    const vs = new Driver(vsMem, Q1);
    vs.desc(Q1.descAddr, 0, BigInt(BUF), 44, 0);
    const vsPath = new VsockDataPath(vsMem, [new SplitQueue(vsMem, Q0), new SplitQueue(vsMem, Q1), undefined], 3, listenFd, () => undefined);
    assert.deepEqual(turns(vsPath, VSOCK_TX, vs, 200), SPLIT, 'virtio-vsock');
    vsPath.close();
  } finally {
    libc.close(listenFd);
    closeDisk(disk);
  }
});
