// One network card, three attachments: a guest whose transmit ring never empties (a driver on another thread makes a
// frame available again as fast as the card sends them) does not stop another guest's frame from reaching a third.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../src/images/paths.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { QUEUE_BUDGET } from '../../src/virtio/budget.js';
import { RX_QUEUE, TX_QUEUE } from '../../src/virtio/net.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../src/virtio/split-queue.js';
import { backend } from '../framework/backend.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { RingFlood } from '../framework/ring-flood.js';
import { SharedGuest } from '../framework/shared-guest.js';

useOwnNetworkNamespace();

const dir = mkdtempSync(path.join(tmpdir(), 'azote-net-fair-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const MEM = 1 << 20;
const RXQ: QueueConfig = { size: 256, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000, indirect: false, eventIdx: false };
const TXQ: QueueConfig = { size: 256, descAddr: 0x4000, availAddr: 0x5000, usedAddr: 0x6000, indirect: false, eventIdx: false };
/** The flooding guest's transmit ring: as long as QEMU makes them (1024), so that the card never sees it empty. */
const FLOOD_TXQ: QueueConfig = { size: 1024, descAddr: 0x40000, availAddr: 0x60000, usedAddr: 0x70000, indirect: false, eventIdx: false };
const TX_FRAME = 0x10000, RX_BUFFERS = 0x20000, RX_BUFFER = 0x800;
const NET_HDR = 12;

/**
 * A frame from `g` to `to`, placed as the transmit chain from descriptor 0: a zero virtio-net header, then the frame
 * in `pieces` buffers (scatter-gather, as a driver may send it).
 */
function transmit(g: SharedGuest, to: Uint8Array, payload: string, length = 60, pieces = 1): Uint8Array {
  // IPv4 from the guest's own address to the one `to` names (the card passes nothing else from a VM), protocol 253
  // (for experiments), the payload after the header.
  const frame = new Uint8Array(length);
  const mac = g.f.getConfig(6);
  frame.set(to, 0);
  frame.set(mac, 6);
  frame.set([0x08, 0x00], 12);
  const ip = new DataView(frame.buffer, 14);
  ip.setUint8(0, 0x45);
  ip.setUint16(2, length - 14);
  ip.setUint8(8, 64);
  ip.setUint8(9, 253);
  frame.set(mac.subarray(2, 6), 14 + 12);
  frame.set(to.subarray(2, 6), 14 + 16);
  frame.set(new TextEncoder().encode(payload), 14 + 20);
  g.mem.write(TX_FRAME, new Uint8Array(NET_HDR));
  g.mem.write(TX_FRAME + NET_HDR, frame);
  const d = g.drivers[TX_QUEUE];
  assert.ok(d);
  d.desc(d.c.descAddr, 0, BigInt(TX_FRAME), NET_HDR, VIRTQ_DESC_F_NEXT, 1);
  const piece = frame.length / pieces;
  for (let i = 0; i < pieces; i++) {
    d.desc(d.c.descAddr, i + 1, BigInt(TX_FRAME + NET_HDR + i * piece), piece, i < pieces - 1 ? VIRTQ_DESC_F_NEXT : 0, i + 2);
  }
  return frame;
}

test('network card: a guest that keeps its transmit ring full does not stop another guest\'s frame', { timeout: 120_000 }, async () => {
  const socket = path.join(dir, 'card.sock');
  const card = await backend(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'net', '--socket', socket,
    '--subnet', '10.64.0.0/24'], socket);
  const guests: SharedGuest[] = [];
  let flood: RingFlood | undefined;
  try {
    const [noisy, sender, receiver] = [FLOOD_TXQ, TXQ, TXQ].map((txq) => {
      const g = new SharedGuest(VhostUserFrontend.connect(socket), MEM, [RXQ, txq]);
      guests.push(g);
      return g;
    }) as [SharedGuest, SharedGuest, SharedGuest];
    for (const g of guests) g.start();
    // The receiver has buffers; the noisy guest floods the sender, which takes none (its port drops them).
    for (let i = 0; i < 8; i++) {
      receiver.drivers[RX_QUEUE]?.desc(RXQ.descAddr, i, BigInt(RX_BUFFERS + i * RX_BUFFER), RX_BUFFER, VIRTQ_DESC_F_WRITE);
      receiver.offer(RX_QUEUE, i);
    }
    // Each frame in 250 pieces takes the card a while: the other thread always has the next one ready.
    transmit(noisy, sender.f.getConfig(6), 'flood', 1500, 250);
    flood = new RingFlood(noisy, TX_QUEUE);
    await flood.reaches(20 * QUEUE_BUDGET);

    const sent = transmit(sender, receiver.f.getConfig(6), 'hello through the flood');
    sender.offer(TX_QUEUE, 0);
    for (let i = 0; i < 600 && receiver.used(RX_QUEUE) === 0; i++) await sleep(100);
    assert.equal(receiver.used(RX_QUEUE), 1, 'the receiver got one frame');
    assert.equal(receiver.mem.readU32(RXQ.usedAddr + 8), NET_HDR + sent.length);
    assert.deepEqual(receiver.mem.bytes.slice(RX_BUFFERS + NET_HDR, RX_BUFFERS + NET_HDR + sent.length), sent);
    await flood.reaches(flood.returned + 10 * QUEUE_BUDGET);
  } finally {
    await flood?.stop();
    for (const g of guests) g.close();
    card.stop();
  }
});
