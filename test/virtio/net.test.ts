// virtio-net's data path on rings in plain memory with an in-memory frame backend, the TAP helpers' layouts, and a
// fuzz run of generated transmit and receive chains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_FRAME, NET_F, NET_S_LINK_UP, NetDataPath, RX_QUEUE, TX_QUEUE, VIRTIO_ID_NET, VirtioNet, virtioNetConfig,
  virtioNetHdr, type FrameBackend,
} from '../../src/virtio/net.js';
import {
  SplitQueue, VirtqueueError, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig,
} from '../../src/virtio/split-queue.js';
import {
  ARPHRD_ETHER, IFF_NO_PI, IFF_TAP, IFF_UP, ifreq, SIOCGIFFLAGS, SIOCSIFADDR, SIOCSIFFLAGS, SIOCSIFHWADDR, SIOCSIFNETMASK,
  sockaddrIn, TUNSETIFF,
} from '../../src/sys/tap.js';
import { tapAddresses } from '../../src/hypervisor/tap.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';
import { Driver, PlainMemory } from '../framework/virtio.js';

test('virtio-net and TAP layouts and constants match <linux/virtio_net.h>, <net/if.h>, <linux/if_tun.h>', () => {
  const net = [virtioNetConfig, virtioNetHdr];
  assert.deepEqual(layoutMismatches(net, readCFacts(['linux/virtio_net.h'], net)), []);
  const tap = [ifreq, sockaddrIn];
  assert.deepEqual(layoutMismatches(tap, readCFacts(['net/if.h', 'netinet/in.h'], tap)), []);
  const ours: Array<[string, number]> = [
    ['VIRTIO_ID_NET', VIRTIO_ID_NET], ['VIRTIO_NET_F_MAC', NET_F.MAC], ['VIRTIO_NET_F_STATUS', NET_F.STATUS],
    ['VIRTIO_NET_S_LINK_UP', NET_S_LINK_UP], ['TUNSETIFF', TUNSETIFF], ['IFF_TAP', IFF_TAP], ['IFF_NO_PI', IFF_NO_PI],
    ['IFF_UP', IFF_UP], ['SIOCGIFFLAGS', SIOCGIFFLAGS], ['SIOCSIFFLAGS', SIOCSIFFLAGS], ['SIOCSIFADDR', SIOCSIFADDR],
    ['SIOCSIFNETMASK', SIOCSIFNETMASK], ['SIOCSIFHWADDR', SIOCSIFHWADDR], ['ARPHRD_ETHER', ARPHRD_ETHER],
  ];
  const facts = readCFacts(['linux/virtio_ids.h', 'linux/virtio_net.h', 'sys/ioctl.h', 'net/if.h', 'net/if_arp.h', 'linux/if_tun.h'], [],
    ours.map(([n]) => n)).constants;
  for (const [name, value] of ours) assert.equal(facts.get(name), BigInt(value), name);
});

test('TAP addresses: a /30 per TAP index, host .1 and guest .2', () => {
  assert.deepEqual(tapAddresses(0), { host: [172, 29, 0, 1], guest: [172, 29, 0, 2], mask: [255, 255, 255, 252] });
  assert.deepEqual(tapAddresses(70), { host: [172, 29, 1, 25], guest: [172, 29, 1, 26], mask: [255, 255, 255, 252] });
  assert.throws(() => tapAddresses(16384), RangeError);
});

class Frames implements FrameBackend {
  readonly fd = undefined;
  readonly inbox: Uint8Array[] = [];
  readonly sent: Uint8Array[] = [];
  receive(into: Uint8Array): number {
    const f = this.inbox.shift();
    if (!f) return 0;
    const n = Math.min(f.length, into.length); // as a read(2) of a TAP: the rest of a longer frame is lost
    into.set(f.subarray(0, n));
    return n;
  }
  send(frame: Uint8Array): boolean {
    this.sent.push(frame);
    return true;
  }
}

const RXQ: QueueConfig = { size: 8, descAddr: 0x1000, availAddr: 0x1800, usedAddr: 0x1c00, indirect: true, eventIdx: false };
const TXQ: QueueConfig = { size: 8, descAddr: 0x2000, availAddr: 0x2800, usedAddr: 0x2c00, indirect: true, eventIdx: false };

function rig(): { mem: PlainMemory; rx: Driver; tx: Driver; frames: Frames; path: NetDataPath } {
  const mem = new PlainMemory(0x20000);
  const frames = new Frames();
  const path = new NetDataPath(mem, [new SplitQueue(mem, RXQ), new SplitQueue(mem, TXQ)], frames);
  return { mem, rx: new Driver(mem, RXQ), tx: new Driver(mem, TXQ), frames, path };
}

const frame = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

test('virtio-net: a transmitted frame loses its header and reaches the backend whole', () => {
  const r = rig();
  const f = frame(98, 1);
  r.mem.write(0x4000, new Uint8Array(12));
  r.mem.write(0x4100, f.subarray(0, 40));
  r.mem.write(0x4200, f.subarray(40));
  r.tx.desc(TXQ.descAddr, 0, 0x4000n, 12, VIRTQ_DESC_F_NEXT, 1);
  r.tx.desc(TXQ.descAddr, 1, 0x4100n, 40, VIRTQ_DESC_F_NEXT, 2);
  r.tx.desc(TXQ.descAddr, 2, 0x4200n, 58, 0);
  r.tx.offer(0);
  assert.equal(r.path.process(TX_QUEUE), true);
  assert.deepEqual(r.frames.sent, [f]);
  assert.equal(r.mem.readU16(TXQ.usedAddr + 2), 1);
});

test('virtio-net: a frame waits for a receive buffer, then arrives behind a header with num_buffers 1', () => {
  const r = rig();
  const f = frame(60, 3);
  r.frames.inbox.push(f);
  assert.equal(r.path.readable(), false, 'no buffer yet');
  assert.deepEqual(r.path.watched(), [], 'the held frame stops the backend being watched');
  r.rx.desc(RXQ.descAddr, 0, 0x8000n, 1526, VIRTQ_DESC_F_WRITE);
  r.rx.offer(0);
  assert.equal(r.path.process(RX_QUEUE), true);
  assert.deepEqual([r.mem.readU32(RXQ.usedAddr + 4), r.mem.readU32(RXQ.usedAddr + 8)], [0, 12 + 60]);
  assert.equal(r.mem.readU16(0x8000 + 10), 1, 'num_buffers');
  assert.deepEqual(r.mem.bytes.subarray(0x8000 + 12, 0x8000 + 72), f);
  assert.equal(r.path.counters.rxFrames, 1);
});

test('virtio-net: a too-small receive buffer is returned empty; chains with the wrong direction are malformed', () => {
  const r = rig();
  r.frames.inbox.push(frame(MAX_FRAME, 5));
  r.rx.desc(RXQ.descAddr, 0, 0x8000n, 100, VIRTQ_DESC_F_WRITE);
  r.rx.offer(0);
  r.path.process(RX_QUEUE);
  assert.deepEqual([r.mem.readU32(RXQ.usedAddr + 8), r.path.counters.rxTruncated], [0, 1]);
  r.tx.desc(TXQ.descAddr, 0, 0x4000n, 64, VIRTQ_DESC_F_WRITE);
  r.tx.offer(0);
  assert.throws(() => r.path.process(TX_QUEUE), (e: unknown) => e instanceof VirtqueueError && e.reason === 'MalformedRequest');
  const s = rig();
  s.tx.desc(TXQ.descAddr, 0, 0x4000n, 8, 0);
  s.tx.offer(0);
  assert.throws(() => s.path.process(TX_QUEUE), (e: unknown) => e instanceof VirtqueueError && e.reason === 'MalformedRequest');
});

test('virtio-net: the model offers MAC and link status and shows the MAC in its configuration', () => {
  const n = new VirtioNet(Uint8Array.of(2, 0x41, 0x5a, 0, 0, 9), { kind: 'net', tapFd: -1 });
  assert.equal((n.features >> BigInt(NET_F.MAC)) & 1n, 1n);
  assert.equal(n.readConfig(0, 4), 0x005a4102);
  assert.equal(n.readConfig(4, 2), 0x0900);
  assert.equal(n.readConfig(6, 2), NET_S_LINK_UP);
});

test('virtio-net: 100,000 generated transmit and receive chains: served or refused, never outside memory', () => {
  const buffer = fc.record({
    addr: fc.oneof(fc.integer({ min: 0x4000, max: 0x8000 }), fc.constantFrom(0x7ff0, 0x4000)),
    len: fc.oneof(fc.integer({ min: 0, max: 80 }), fc.constantFrom(12, 1526, 0x4000, 0xffffffff)),
    write: fc.boolean(),
  });
  const chain = fc.array(buffer, { minLength: 1, maxLength: 4 });
  let ops = 0, refused = 0;
  fc.assert(fc.property(fc.array(chain, { minLength: 1, maxLength: 3 }), fc.array(chain, { minLength: 1, maxLength: 3 }),
    fc.array(fc.integer({ min: 0, max: 2000 }), { maxLength: 3 }), (txs, rxs, inbox) => {
      const mem = new PlainMemory(0x8000);
      const frames = new Frames();
      inbox.forEach((n, i) => frames.inbox.push(frame(n, i)));
      const path = new NetDataPath(mem, [new SplitQueue(mem, RXQ), new SplitQueue(mem, TXQ)], frames);
      for (const [chains, q] of [[txs, TXQ], [rxs, RXQ]] as const) {
        const d = new Driver(mem, q);
        chains.forEach((c, n) => {
          c.forEach((b, i) => d.desc(q.descAddr, n * 2 + i, BigInt(b.addr), b.len,
            (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i < c.length - 1 ? VIRTQ_DESC_F_NEXT : 0), n * 2 + i + 1));
          d.offer(n * 2);
          ops++;
        });
      }
      for (const q of [TX_QUEUE, RX_QUEUE]) {
        try {
          path.process(q);
        } catch (e) {
          if (!(e instanceof VirtqueueError)) throw e;
          refused++;
        }
      }
      assert.equal(mem.outside, 0);
    }), { numRuns: 26_000, seed: 0x4e7 });
  assert.ok(ops >= 100_000, `${ops} chains`);
  assert.ok(refused > 1000, `${refused} refusals`);
});
