// virtio-vsock's data path on rings in plain memory, with real Unix sockets on the host side: both directions of
// the hybrid protocol, credit accounting, refusals, and a fuzz run of generated packets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import * as libc from '../../src/sys/libc.js';
import {
  HOST_BUF_ALLOC, HOST_CID, OP, SHUTDOWN_RCV, SHUTDOWN_SEND, TX_QUEUE, VIRTIO_ID_VSOCK, VSOCK_TYPE_STREAM,
  VsockDataPath, virtioVsockConfig, virtioVsockHdr,
} from '../../src/virtio/vsock.js';
import { SplitQueue, VirtqueueError, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../src/virtio/split-queue.js';
import { StructView } from '../../src/base/struct.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';
import { Driver, PlainMemory } from '../framework/virtio.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-vsock-unit-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const GUEST_CID = 3;

test('virtio-vsock layouts and constants match <linux/virtio_vsock.h>, sockaddr_un matches <sys/un.h>', () => {
  const layouts = [virtioVsockConfig, virtioVsockHdr];
  assert.deepEqual(layoutMismatches(layouts, readCFacts(['linux/virtio_vsock.h'], layouts, [], '')), []);
  assert.deepEqual(layoutMismatches([libc.sockaddrUn], readCFacts(['sys/un.h'], [libc.sockaddrUn])), []);
  const ours: Array<[string, number]> = [
    ['VIRTIO_ID_VSOCK', VIRTIO_ID_VSOCK], ['VIRTIO_VSOCK_TYPE_STREAM', VSOCK_TYPE_STREAM],
    ['VIRTIO_VSOCK_OP_REQUEST', OP.REQUEST], ['VIRTIO_VSOCK_OP_RESPONSE', OP.RESPONSE], ['VIRTIO_VSOCK_OP_RST', OP.RST],
    ['VIRTIO_VSOCK_OP_SHUTDOWN', OP.SHUTDOWN], ['VIRTIO_VSOCK_OP_RW', OP.RW], ['VIRTIO_VSOCK_OP_CREDIT_UPDATE', OP.CREDIT_UPDATE],
    ['VIRTIO_VSOCK_OP_CREDIT_REQUEST', OP.CREDIT_REQUEST], ['VIRTIO_VSOCK_SHUTDOWN_RCV', SHUTDOWN_RCV],
    ['VIRTIO_VSOCK_SHUTDOWN_SEND', SHUTDOWN_SEND], ['VMADDR_CID_HOST', HOST_CID],
  ];
  const facts = readCFacts(['sys/socket.h', 'linux/virtio_ids.h', 'linux/virtio_vsock.h', 'linux/vm_sockets.h'], [],
    ours.map(([n]) => n)).constants;
  for (const [name, value] of ours) assert.equal(facts.get(name), BigInt(value), name);
});

const RXQ: QueueConfig = { size: 16, descAddr: 0x1000, availAddr: 0x1800, usedAddr: 0x1c00, indirect: true, eventIdx: false };
const TXQ: QueueConfig = { size: 16, descAddr: 0x2000, availAddr: 0x2800, usedAddr: 0x2c00, indirect: true, eventIdx: false };
const RX_BUF = 0x10000, TX_BUF = 0x20000;

interface Rig {
  mem: PlainMemory; path: VsockDataPath; rx: Driver; tx: Driver; listenFd: number; sock: string; rxTaken: number;
  /** Host ports the guest asked to connect to, not answered yet; answered after each send() unless `hold`. */
  asks: number[];
  hold: boolean;
}

function rig(name: string): Rig {
  const mem = new PlainMemory(0x40000);
  const sock = path.join(dir, name);
  const listenFd = libc.listenUnix(sock);
  const asks: number[] = [];
  const p = new VsockDataPath(mem, [new SplitQueue(mem, RXQ), new SplitQueue(mem, TXQ), undefined], GUEST_CID, listenFd, (port) => asks.push(port));
  const r: Rig = { mem, path: p, rx: new Driver(mem, RXQ), tx: new Driver(mem, TXQ), listenFd, sock, rxTaken: 0, asks, hold: false };
  // Receive buffers as Linux posts them: a header buffer and a 4 KiB payload buffer.
  for (let i = 0; i < 4; i++) offerRx(r, i);
  return r;
}

function offerRx(r: Rig, i: number): void {
  const slot = (i % 8) * 2;
  r.rx.desc(RXQ.descAddr, slot, BigInt(RX_BUF + i % 8 * 0x2000), 44, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, slot + 1);
  r.rx.desc(RXQ.descAddr, slot + 1, BigInt(RX_BUF + i % 8 * 0x2000 + 0x100), 4096, VIRTQ_DESC_F_WRITE);
  r.rx.offer(slot);
}

function hdr(o: { op: number; src: number; dst: number; len?: number; flags?: number; srcCid?: number; bufAlloc?: number; fwdCnt?: number }): Uint8Array {
  return new StructView(virtioVsockHdr, new Uint8Array(44)).set('srcCid', o.srcCid ?? GUEST_CID).set('dstCid', HOST_CID)
    .set('srcPort', o.src).set('dstPort', o.dst).set('len', o.len ?? 0).set('type', VSOCK_TYPE_STREAM).set('op', o.op)
    .set('flags', o.flags ?? 0).set('bufAlloc', o.bufAlloc ?? 65536).set('fwdCnt', o.fwdCnt ?? 0).bytes();
}

let txSlot = 0;
/** The guest sends a packet; returns whether the device asked for an interrupt. */
function send(r: Rig, h: Uint8Array, payload?: Uint8Array): boolean {
  const slot = (txSlot++ % 8) * 2;
  r.mem.write(TX_BUF + slot * 0x1000, h);
  if (payload) {
    r.mem.write(TX_BUF + slot * 0x1000 + 0x100, payload);
    r.tx.desc(TXQ.descAddr, slot, BigInt(TX_BUF + slot * 0x1000), 44, VIRTQ_DESC_F_NEXT, slot + 1);
    r.tx.desc(TXQ.descAddr, slot + 1, BigInt(TX_BUF + slot * 0x1000 + 0x100), payload.length, 0);
  } else {
    r.tx.desc(TXQ.descAddr, slot, BigInt(TX_BUF + slot * 0x1000), 44, 0);
  }
  r.tx.offer(slot);
  let interrupt = r.path.process(TX_QUEUE);
  if (r.hold) return interrupt;
  // The runner's part: each connection the guest asked for, made as `azote run` makes it (PATH_PORT), in order.
  for (const port of r.asks.splice(0)) {
    let fd: number | undefined;
    try {
      fd = libc.connectUnix(`${r.sock}_${port}`);
    } catch {
      fd = undefined;
    }
    interrupt = r.path.hostConnected(port, fd) || interrupt;
  }
  return interrupt;
}

/** Packets the device placed in receive buffers since the last call, refilling each buffer it used. */
function received(r: Rig): Array<{ op: number; src: number; dst: number; len: number; flags: number; fwdCnt: number; payload: string }> {
  const out = [];
  const used = r.mem.readU16(RXQ.usedAddr + 2);
  for (; r.rxTaken !== used; r.rxTaken = (r.rxTaken + 1) & 0xffff) {
    const elem = RXQ.usedAddr + 4 + 8 * (r.rxTaken % RXQ.size);
    const head = r.mem.readU32(elem);
    const len = r.mem.readU32(elem + 4);
    const base = RX_BUF + (head / 2) * 0x2000;
    if (len >= 44) {
      const h = new StructView(virtioVsockHdr, r.mem.bytes.slice(base, base + 44));
      out.push({
        op: h.get('op'), src: h.get('srcPort'), dst: h.get('dstPort'), len: h.get('len'), flags: h.get('flags'),
        fwdCnt: h.get('fwdCnt'), payload: Buffer.from(r.mem.bytes.subarray(base + 0x100, base + 0x100 + h.get('len'))).toString(),
      });
    }
    offerRx(r, head / 2);
  }
  return out;
}

function readAll(fd: number): string {
  const b = new Uint8Array(4096);
  const n = libc.readSome(fd, b);
  return n > 0 ? Buffer.from(b.subarray(0, n)).toString() : '';
}

test('vsock: a guest connection reaches PATH_PORT; data flows both ways; the host side counts what it forwarded', () => {
  const r = rig('g.sock');
  const server = libc.listenUnix(`${r.sock}_6000`);
  send(r, hdr({ op: OP.REQUEST, src: 1234, dst: 6000 }));
  assert.deepEqual(received(r).map((p) => [p.op, p.src, p.dst]), [[OP.RESPONSE, 6000, 1234]]);
  const host = libc.acceptNonBlocking(server);
  assert.ok(host >= 0, 'the host program was connected');
  send(r, hdr({ op: OP.RW, src: 1234, dst: 6000, len: 5 }), new TextEncoder().encode('hello'));
  assert.equal(readAll(host), 'hello');
  const credit = received(r);
  assert.ok(credit.every((p) => p.op === OP.CREDIT_UPDATE && p.fwdCnt === 5), 'the freed room is told to the guest');
  libc.writeSome(host, new TextEncoder().encode('world'));
  const conn = r.path.watched().filter((fd) => fd !== r.listenFd);
  assert.equal(conn.length, 1);
  r.path.readable(conn[0] ?? -1);
  assert.deepEqual(received(r).map((p) => [p.op, p.payload]), [[OP.RW, 'world']]);
  send(r, hdr({ op: OP.SHUTDOWN, src: 1234, dst: 6000, flags: SHUTDOWN_SEND | SHUTDOWN_RCV }));
  assert.deepEqual(received(r).map((p) => p.op), [OP.RST], 'a full shutdown is answered with a reset');
  assert.equal(libc.readSome(host, new Uint8Array(8)), 0, 'the host program sees the end');
  libc.close(host);
  libc.close(server);
  libc.close(r.listenFd);
});

test('vsock: a guest connection waits for its runner\'s answer; one the guest reset meanwhile is closed; at most 64 wait', () => {
  const r = rig('p.sock');
  r.hold = true;
  send(r, hdr({ op: OP.REQUEST, src: 1, dst: 6000 }));
  assert.deepEqual(r.asks, [6000], 'the runner is asked for the connection');
  assert.deepEqual(received(r), [], 'the guest waits for the answer');
  const [ours, theirs] = libc.socketpair();
  r.path.hostConnected(6000, theirs);
  assert.deepEqual(received(r).map((p) => [p.op, p.src, p.dst]), [[OP.RESPONSE, 6000, 1]]);
  // Reset before the answer: the socket that comes is closed, the guest hears nothing more.
  send(r, hdr({ op: OP.REQUEST, src: 2, dst: 6000 }));
  send(r, hdr({ op: OP.RST, src: 2, dst: 6000 }));
  const [ours2, theirs2] = libc.socketpair();
  r.path.hostConnected(6000, theirs2);
  assert.deepEqual(received(r), []);
  assert.equal(libc.readSome(ours2, new Uint8Array(8)), 0, 'the abandoned connection was closed');
  // Nobody listens: a reset.
  send(r, hdr({ op: OP.REQUEST, src: 3, dst: 7000 }));
  r.path.hostConnected(7000, undefined);
  assert.deepEqual(received(r).map((p) => p.op), [OP.RST]);
  // A guest cannot queue requests without bound: past 64 waiting, the next is refused at once.
  r.asks.length = 0;
  for (let i = 0; i < 65; i++) send(r, hdr({ op: OP.REQUEST, src: 100 + i, dst: 6000 }));
  assert.equal(r.asks.length, 64);
  assert.deepEqual(received(r).map((p) => [p.op, p.src, p.dst]), [[OP.RST, 6000, 164]]);
  for (const fd of [ours, ours2]) libc.close(fd);
  r.path.close();
  libc.close(r.listenFd);
});

test('vsock: CONNECT <port> from a host program becomes a REQUEST; the guest\'s RESPONSE answers OK <host port>', () => {
  const r = rig('h.sock');
  const client = libc.connectUnix(r.sock);
  libc.writeSome(client, new TextEncoder().encode('CONNECT 5000\nearly'));
  r.path.readable(r.listenFd);
  for (const fd of r.path.watched()) if (fd !== r.listenFd) r.path.readable(fd);
  const [req] = received(r);
  assert.deepEqual([req?.op, req?.dst], [OP.REQUEST, 5000]);
  const hostPort = req?.src ?? 0;
  assert.ok(hostPort >= 1 << 30);
  send(r, hdr({ op: OP.RESPONSE, src: 5000, dst: hostPort }));
  assert.equal(readAll(client), `OK ${hostPort}\n`);
  // What followed the CONNECT line is the stream's first bytes.
  for (const fd of r.path.watched()) if (fd !== r.listenFd) r.path.readable(fd);
  assert.deepEqual(received(r).map((p) => [p.op, p.payload]), [[OP.RW, 'early']]);
  send(r, hdr({ op: OP.RW, src: 5000, dst: hostPort, len: 3 }), new TextEncoder().encode('ack'));
  const credit = received(r).find((p) => p.op === OP.CREDIT_UPDATE);
  assert.equal(credit?.fwdCnt, 3, 'the OK line is not counted as the guest\'s bytes');
  assert.equal(readAll(client), 'ack');
  libc.close(client);
  r.path.close();
  libc.close(r.listenFd);
});

test('vsock: no listener, a bad CONNECT line, a foreign CID and a short packet', () => {
  const r = rig('e.sock');
  send(r, hdr({ op: OP.REQUEST, src: 1, dst: 7777 }));
  assert.deepEqual(received(r).map((p) => p.op), [OP.RST], 'nobody at PATH_7777: reset');
  send(r, hdr({ op: OP.REQUEST, src: 1, dst: 6000, srcCid: 9 }));
  assert.deepEqual(received(r), [], 'a packet claiming another CID is dropped');
  const client = libc.connectUnix(r.sock);
  libc.writeSome(client, new TextEncoder().encode('HELLO 5\n'));
  r.path.readable(r.listenFd);
  for (const fd of r.path.watched()) if (fd !== r.listenFd) r.path.readable(fd);
  assert.equal(libc.readSome(client, new Uint8Array(8)), 0, 'a client that does not say CONNECT is closed');
  libc.close(client);
  assert.throws(() => send(r, hdr({ op: OP.RW, src: 1, dst: 2, len: 100 }), new Uint8Array(10)),
    (e: unknown) => e instanceof VirtqueueError && e.reason === 'MalformedRequest');
  libc.close(r.listenFd);
});

test('vsock: the guest never gets more than its advertised room', () => {
  const r = rig('c.sock');
  const server = libc.listenUnix(`${r.sock}_6001`);
  send(r, hdr({ op: OP.REQUEST, src: 42, dst: 6001, bufAlloc: 6000 }));
  received(r);
  const host = libc.acceptNonBlocking(server);
  libc.writeSome(host, new Uint8Array(10000));
  for (let i = 0; i < 4; i++) for (const fd of r.path.watched()) if (fd !== r.listenFd) r.path.readable(fd);
  const got = received(r).filter((p) => p.op === OP.RW).reduce((n, p) => n + p.len, 0);
  assert.equal(got, 6000, 'no more than buf_alloc before the guest reports progress');
  assert.equal(r.path.watched().length, 1, 'the connection is not read while the guest has no room');
  send(r, hdr({ op: OP.CREDIT_UPDATE, src: 42, dst: 6001, bufAlloc: 6000, fwdCnt: 6000 }));
  for (let i = 0; i < 4; i++) for (const fd of r.path.watched()) if (fd !== r.listenFd) r.path.readable(fd);
  assert.equal(received(r).filter((p) => p.op === OP.RW).reduce((n, p) => n + p.len, 0), 4000);
  assert.ok(HOST_BUF_ALLOC >= 64 * 1024);
  libc.close(host);
  libc.close(server);
  r.path.close();
  libc.close(r.listenFd);
});

test('vsock: 100,000 generated packets: served, answered or refused, never outside memory', () => {
  const r = rig('f.sock');
  const server = libc.listenUnix(`${r.sock}_6000`);
  const packet = fc.record({
    op: fc.oneof(fc.constantFrom(...Object.values(OP)), fc.nat(12)),
    src: fc.integer({ min: 0, max: 3 }),
    dst: fc.constantFrom(6000, 6001, 1 << 30),
    srcCid: fc.constantFrom(GUEST_CID, GUEST_CID, 2, 7),
    len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(4096, 0xffffffff)),
    payload: fc.integer({ min: 0, max: 64 }),
    flags: fc.nat(3),
    split: fc.boolean(),
  });
  let packets = 0, refused = 0;
  fc.assert(fc.property(fc.array(packet, { minLength: 1, maxLength: 4 }), (ps) => {
    for (const p of ps) {
      packets++;
      const h = hdr({ op: p.op, src: p.src, dst: p.dst, len: p.len, flags: p.flags, srcCid: p.srcCid });
      try {
        send(r, p.split ? h.subarray(0, 30) : h, p.payload > 0 ? new Uint8Array(p.payload) : undefined);
      } catch (e) {
        if (!(e instanceof VirtqueueError)) throw e;
        refused++;
      }
      received(r);
      for (let c = libc.acceptNonBlocking(server); c >= 0; c = libc.acceptNonBlocking(server)) libc.close(c);
    }
    assert.equal(r.mem.outside, 0);
  }), { numRuns: 42_000, seed: 0x750c });
  assert.ok(packets >= 100_000, `${packets} packets`);
  assert.ok(refused > 1000, `${refused} refused`);
  r.path.close();
  libc.close(server);
  libc.close(r.listenFd);
});
