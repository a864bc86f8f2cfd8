// virtio-vsock (virtio 1.2, section 5.10), stream sockets only, with the host side on Unix sockets in Firecracker's
// "hybrid" form so that tools written for it work:
//   host -> guest: a program connects to the VM's socket path and writes "CONNECT <port>\n"; once the guest accepts,
//                  it reads "OK <host port>\n" and the connection carries the stream.
//   guest -> host: a guest connection to CID 2, port P, is connected to the Unix socket "<path>_<P>" by whoever runs
//                  the device (a jailed hypervisor can connect nowhere: its parent makes the connection): the data
//                  path asks with `connectHost` and is answered, in order, through `hostConnected`.
// Queue 0 takes packets to the guest, queue 1 brings the guest's, queue 2 (events) is never used. Every packet
// carries the sender's buffer space and bytes consumed; neither side sends more than the other has room for.
import { defineStruct, StructView } from '../base/struct.js';
import * as libc from '../sys/libc.js';
import { VirtqueueError, type DescriptorChain, type SplitQueue } from './split-queue.js';
import { gather, scatter } from './guest-buffers.js';
import { Backlog, QUEUE_BUDGET } from './budget.js';
import {
  RING_FEATURES, readConfigBytes, type DataPath, type DataPathSpec, type DeviceMemory, type VirtioDevice,
} from './device.js';

export const VIRTIO_ID_VSOCK = 19;
export const VSOCK_QUEUE_SIZE = 256;
export const RX_QUEUE = 0, TX_QUEUE = 1, EVENT_QUEUE = 2;
export const HOST_CID = 2;
export const VSOCK_TYPE_STREAM = 1;
export const OP = { REQUEST: 1, RESPONSE: 2, RST: 3, SHUTDOWN: 4, RW: 5, CREDIT_UPDATE: 6, CREDIT_REQUEST: 7 } as const;
export const SHUTDOWN_RCV = 1, SHUTDOWN_SEND = 2;
/** What the host side buffers for each connection: the guest never has more than this in flight to it. */
export const HOST_BUF_ALLOC = 256 * 1024;
/** Host ports of host-initiated connections start here (as Firecracker's do). */
const FIRST_HOST_PORT = 1 << 30;
const CONNECT_LINE_MAX = 32;
/** Guest connections to the host waiting for their answer at once; more are refused (a guest cannot flood the asker). */
const MAX_PENDING_CONNECTS = 64;

// Layouts from section 5.10.4 and 5.10.6; test/virtio/vsock.test.ts checks them against <linux/virtio_vsock.h>.
export const virtioVsockConfig = defineStruct('virtio_vsock_config', 'struct virtio_vsock_config', 8, {
  guestCid: { offset: 0, type: 'u64', c: 'guest_cid' },
});

export const virtioVsockHdr = defineStruct('virtio_vsock_hdr', 'struct virtio_vsock_hdr', 44, {
  srcCid: { offset: 0, type: 'u64', c: 'src_cid' }, dstCid: { offset: 8, type: 'u64', c: 'dst_cid' },
  srcPort: { offset: 16, type: 'u32', c: 'src_port' }, dstPort: { offset: 20, type: 'u32', c: 'dst_port' },
  len: { offset: 24, type: 'u32' }, type: { offset: 28, type: 'u16' }, op: { offset: 30, type: 'u16' },
  flags: { offset: 32, type: 'u32' }, bufAlloc: { offset: 36, type: 'u32', c: 'buf_alloc' },
  fwdCnt: { offset: 40, type: 'u32', c: 'fwd_cnt' },
});
const HDR = virtioVsockHdr.size;

export class VirtioVsock implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_VSOCK;
  readonly features = RING_FEATURES;
  readonly queueSizes = [VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE];
  private readonly config = StructView.alloc(virtioVsockConfig);

  constructor(guestCid: number, readonly dataPath: DataPathSpec) {
    this.config.set('guestCid', guestCid);
  }

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.config.bytes(), offset, size);
  }

  writeConfig(): void {}
}

interface Connection {
  readonly fd: number;
  readonly hostPort: number;
  readonly guestPort: number;
  /** Host-initiated and waiting for the guest's RESPONSE. */
  connecting: boolean;
  /** The guest's receive space and what it has consumed of what we sent. */
  peerBufAlloc: number;
  peerFwdCnt: number;
  /** Bytes sent to the guest. */
  txCnt: number;
  /** Bytes of the guest's that reached the Unix socket, and the figure last told to the guest. */
  fwdCnt: number;
  advertisedFwdCnt: number;
  /** Bytes for the socket not taken yet: the guest's, after `ownBytes` of our own ("OK <port>\n"). */
  toSocket: Uint8Array[];
  toSocketBytes: number;
  ownBytes: number;
  /** The guest will send no more: shut the socket's write side once toSocket is empty. */
  guestDoneSending: boolean;
  /** The socket said end of file: nothing more to read. */
  hostDoneSending: boolean;
}

/** A guest's connection to a host port, waiting for its answer. */
interface PendingConnect {
  readonly hostPort: number;
  readonly guestPort: number;
  readonly bufAlloc: number;
  readonly fwdCnt: number;
  /** The guest reset it meanwhile: the connection that comes is closed. */
  abandoned: boolean;
}

interface Packet {
  readonly hdr: Uint8Array;
  readonly payload?: Uint8Array;
}

/** The host side of a VM's vsock device: its listening socket and every connection through it. */
export class VsockDataPath implements DataPath {
  readonly counters = { toGuestBytes: 0, toHostBytes: 0, resets: 0, connections: 0 };
  private readonly conns = new Map<string, Connection>();
  private readonly byFd = new Map<number, Connection>();
  /** Host clients that have not finished their CONNECT line yet. */
  private readonly handshakes = new Map<number, string>();
  /** Packets for the guest that found no receive buffer; sent first when buffers come. */
  private readonly control: Packet[] = [];
  private rxStarved = false;
  private nextHostPort = FIRST_HOST_PORT;
  private readonly backlog = new Backlog();
  private readonly scratch = new Uint8Array(64 * 1024);
  /** Guest connections to the host asked for with connectHost, in the order they were asked. */
  private readonly pending: PendingConnect[] = [];

  constructor(
    private readonly mem: DeviceMemory,
    private readonly queues: readonly (SplitQueue | undefined)[],
    private readonly guestCid: number,
    private readonly listenFd: number,
    /** Asks for a connection to the host program at `hostPort`; the answer comes through hostConnected. */
    private readonly connectHost: (hostPort: number) => void,
  ) {}

  watched(): readonly number[] {
    const fds = [this.listenFd, ...this.handshakes.keys()];
    if (!this.rxStarved) {
      for (const c of this.conns.values()) if (!c.connecting && !c.hostDoneSending && this.credit(c) > 0) fds.push(c.fd);
    }
    return fds;
  }

  watchedWritable(): readonly number[] {
    return [...this.conns.values()].filter((c) => c.toSocketBytes > 0).map((c) => c.fd);
  }

  process(index: number): boolean {
    if (index === TX_QUEUE) return this.fromGuest();
    if (index === RX_QUEUE) {
      this.rxStarved = false;
      return this.flushControl();
    }
    return false; // event queue: the device has no events to give
  }

  unfinished(index: number): boolean {
    return this.backlog.has(index);
  }

  readable(fd: number): boolean {
    if (fd === this.listenFd) {
      for (let c = libc.acceptNonBlocking(fd); c >= 0; c = libc.acceptNonBlocking(fd)) this.handshakes.set(c, '');
      return false;
    }
    if (this.handshakes.has(fd)) return this.handshake(fd);
    const c = this.byFd.get(fd);
    return c ? this.fromSocket(c) : false;
  }

  writable(fd: number): boolean {
    const c = this.byFd.get(fd);
    return c ? this.toSocket(c) : false;
  }

  /** The guest's room for more of our bytes on `c`. */
  private credit(c: Connection): number {
    return c.peerBufAlloc - ((c.txCnt - c.peerFwdCnt) >>> 0);
  }

  private key(hostPort: number, guestPort: number): string {
    return `${hostPort}:${guestPort}`;
  }

  private header(c: { hostPort: number; guestPort: number; fwdCnt?: number }, op: number, len = 0, flags = 0): Uint8Array {
    return new StructView(virtioVsockHdr, new Uint8Array(HDR))
      .set('srcCid', HOST_CID).set('dstCid', this.guestCid).set('srcPort', c.hostPort).set('dstPort', c.guestPort)
      .set('len', len).set('type', VSOCK_TYPE_STREAM).set('op', op).set('flags', flags)
      .set('bufAlloc', HOST_BUF_ALLOC).set('fwdCnt', (c.fwdCnt ?? 0) >>> 0).bytes();
  }

  /** Queues a packet without payload (or a short one) for the guest. */
  private queue(p: Packet, c?: Connection): void {
    if (c) c.advertisedFwdCnt = c.fwdCnt;
    this.control.push(p);
  }

  private reset(hostPort: number, guestPort: number): void {
    this.counters.resets++;
    this.queue({ hdr: this.header({ hostPort, guestPort }, OP.RST) });
  }

  private drop(c: Connection): void {
    this.conns.delete(this.key(c.hostPort, c.guestPort));
    this.byFd.delete(c.fd);
    libc.close(c.fd);
  }

  private add(fd: number, hostPort: number, guestPort: number, connecting: boolean, peerBufAlloc = 0, peerFwdCnt = 0): Connection {
    const c: Connection = {
      fd, hostPort, guestPort, connecting, peerBufAlloc, peerFwdCnt, txCnt: 0, fwdCnt: 0, advertisedFwdCnt: 0,
      toSocket: [], toSocketBytes: 0, ownBytes: 0, guestDoneSending: false, hostDoneSending: false,
    };
    this.conns.set(this.key(hostPort, guestPort), c);
    this.byFd.set(fd, c);
    this.counters.connections++;
    return c;
  }

  /** Reads a host client's "CONNECT <port>\n" and asks the guest for the connection. */
  private handshake(fd: number): boolean {
    let line = this.handshakes.get(fd) ?? '';
    const one = new Uint8Array(1);
    // Byte by byte: whatever follows the line is the stream's, and stays in the socket.
    for (;;) {
      const n = libc.readSome(fd, one);
      if (n < 0) {
        this.handshakes.set(fd, line);
        return false;
      }
      if (n === 0 || line.length >= CONNECT_LINE_MAX) break;
      const ch = String.fromCharCode(one[0] ?? 0);
      if (ch !== '\n') {
        line += ch;
        continue;
      }
      this.handshakes.delete(fd);
      const m = /^CONNECT (\d{1,10})$/.exec(line.trim());
      const port = m ? Number(m[1]) : NaN;
      if (!(port >= 0 && port <= 0xffffffff)) break;
      const hostPort = this.nextHostPort++;
      const c = this.add(fd, hostPort, port, true);
      this.queue({ hdr: this.header(c, OP.REQUEST) }, c);
      return this.flushControl();
    }
    this.handshakes.delete(fd);
    libc.close(fd);
    return false;
  }

  /** Packets the guest sent. */
  private fromGuest(): boolean {
    const queue = this.queues[TX_QUEUE];
    if (!queue) return false;
    const interrupt = this.backlog.serve(TX_QUEUE, queue, (chain) => {
      this.packet(chain);
      return 0;
    });
    return this.flushControl() || interrupt;
  }

  private packet(chain: DescriptorChain): void {
    if (chain.readableBytes < HDR) throw new VirtqueueError('MalformedRequest', `vsock packet ${chain.head} has no header`);
    const h = new StructView(virtioVsockHdr, gather(this.mem, chain.readable, 0, HDR));
    const len = h.get('len');
    if (len > chain.readableBytes - HDR) {
      throw new VirtqueueError('MalformedRequest', `vsock packet ${chain.head} says ${len} bytes but carries ${chain.readableBytes - HDR}`);
    }
    const guestPort = h.get('srcPort');
    const hostPort = h.get('dstPort');
    // A guest may only speak as itself, to the host, in streams; anything else is answered with a reset.
    if (h.get64('srcCid') !== BigInt(this.guestCid) || h.get64('dstCid') !== BigInt(HOST_CID)) return;
    if (h.get('type') !== VSOCK_TYPE_STREAM) {
      this.reset(hostPort, guestPort);
      return;
    }
    const op = h.get('op');
    const c = this.conns.get(this.key(hostPort, guestPort));
    if (c) {
      c.peerBufAlloc = h.get('bufAlloc');
      c.peerFwdCnt = h.get('fwdCnt');
    }
    switch (op) {
      case OP.REQUEST:
        if (c) {
          this.reset(hostPort, guestPort);
          return;
        }
        this.guestConnects(hostPort, guestPort, h.get('bufAlloc'), h.get('fwdCnt'));
        return;
      case OP.RESPONSE:
        if (!c?.connecting) {
          this.reset(hostPort, guestPort);
          return;
        }
        c.connecting = false;
        {
          const ok = new TextEncoder().encode(`OK ${c.hostPort}\n`);
          c.ownBytes += ok.length; // not the guest's: the guest's credit must not count them
          this.toClient(c, ok);
        }
        return;
      case OP.RW:
        if (!c || c.connecting) {
          this.reset(hostPort, guestPort);
          return;
        }
        if (len > 0 && c.toSocketBytes + len <= HOST_BUF_ALLOC) {
          this.toClient(c, gather(this.mem, chain.readable, HDR, len));
          this.counters.toHostBytes += len;
        } else if (len > 0) {
          this.reset(hostPort, guestPort); // the guest overran the room it was given
          this.drop(c);
        }
        return;
      case OP.CREDIT_REQUEST:
        if (c) this.queue({ hdr: this.header(c, OP.CREDIT_UPDATE) }, c);
        return;
      case OP.CREDIT_UPDATE:
        return; // the credit fields were taken above
      case OP.SHUTDOWN:
        if (!c) return;
        if (h.get('flags') & SHUTDOWN_SEND) c.guestDoneSending = true;
        if ((h.get('flags') & (SHUTDOWN_SEND | SHUTDOWN_RCV)) === (SHUTDOWN_SEND | SHUTDOWN_RCV)) {
          // Both ways done: the peer expects a reset to finish the close.
          this.queue({ hdr: this.header(c, OP.RST) });
          this.toSocket(c);
          this.drop(c);
          return;
        }
        this.toSocket(c);
        return;
      case OP.RST:
        if (c) this.drop(c);
        for (const p of this.pending) if (p.hostPort === hostPort && p.guestPort === guestPort) p.abandoned = true;
        return;
      default:
        this.reset(hostPort, guestPort);
    }
  }

  private guestConnects(hostPort: number, guestPort: number, bufAlloc: number, fwdCnt: number): void {
    if (this.pending.length >= MAX_PENDING_CONNECTS) {
      this.reset(hostPort, guestPort);
      return;
    }
    this.pending.push({ hostPort, guestPort, bufAlloc, fwdCnt, abandoned: false });
    this.connectHost(hostPort);
  }

  /**
   * The answer to the oldest connectHost(hostPort): a connected socket (now the data path's), or undefined when
   * nobody listens there (the guest's connect() fails with ECONNRESET). Returns whether to interrupt the guest.
   */
  hostConnected(hostPort: number, fd: number | undefined): boolean {
    const i = this.pending.findIndex((p) => p.hostPort === hostPort);
    const p = this.pending[i];
    if (!p || p.abandoned || this.conns.has(this.key(p.hostPort, p.guestPort))) {
      if (i >= 0) this.pending.splice(i, 1);
      if (fd !== undefined) libc.close(fd);
      return false;
    }
    this.pending.splice(i, 1);
    if (fd === undefined) {
      this.reset(p.hostPort, p.guestPort);
    } else {
      const c = this.add(fd, p.hostPort, p.guestPort, false, p.bufAlloc, p.fwdCnt);
      this.queue({ hdr: this.header(c, OP.RESPONSE) }, c);
    }
    return this.flushControl();
  }

  /** Guest bytes for the Unix socket: written now as far as it takes them, the rest when it is writable. */
  private toClient(c: Connection, data: Uint8Array): void {
    c.toSocket.push(data);
    c.toSocketBytes += data.length;
    this.toSocket(c);
  }

  private toSocket(c: Connection): boolean {
    try {
      while (c.toSocket.length > 0) {
        const first = c.toSocket[0] as Uint8Array;
        const n = libc.writeSome(c.fd, first);
        if (n < 0) break;
        c.toSocketBytes -= n;
        const own = Math.min(n, c.ownBytes);
        c.ownBytes -= own;
        c.fwdCnt = (c.fwdCnt + n - own) >>> 0;
        if (n === first.length) c.toSocket.shift();
        else c.toSocket[0] = first.subarray(n);
      }
    } catch {
      // The host program went away: tell the guest.
      this.reset(c.hostPort, c.guestPort);
      this.drop(c);
      return this.flushControl();
    }
    if (c.toSocketBytes === 0 && c.guestDoneSending) libc.shutdown(c.fd, libc.SHUT_WR);
    // Tell the guest about the room it has again once a good part of its window is free, or all of it.
    const freed = (c.fwdCnt - c.advertisedFwdCnt) >>> 0;
    if (!c.connecting && freed > 0 && (freed >= HOST_BUF_ALLOC / 4 || c.toSocketBytes === 0)) {
      this.queue({ hdr: this.header(c, OP.CREDIT_UPDATE) }, c);
    }
    return this.flushControl();
  }

  /** Bytes from a host program for the guest, as far as the guest has room and receive buffers. */
  private fromSocket(c: Connection): boolean {
    const queue = this.queues[RX_QUEUE];
    if (!queue) return false;
    let interrupt = this.flushControl();
    // At most a budget of chains per turn: the socket stays readable, so the rest comes at the next one.
    for (let n = 0; n < QUEUE_BUDGET && !this.rxStarved && this.credit(c) > 0 && !c.hostDoneSending; n++) {
      const chain = queue.pop();
      if (!chain) {
        this.rxStarved = true;
        break;
      }
      const room = Math.min(chain.writableBytes - HDR, this.credit(c), this.scratch.length);
      if (room <= 0) {
        interrupt = queue.push(chain.head, 0) || interrupt;
        continue;
      }
      let n: number;
      try {
        n = libc.readSome(c.fd, this.scratch.subarray(0, room));
      } catch {
        n = 0;
      }
      if (n < 0) {
        // Nothing to read after all: the buffer goes back empty, which Linux's driver drops and refills.
        interrupt = queue.push(chain.head, 0) || interrupt;
        break;
      }
      if (n === 0) {
        // End of file from the host program: it sends no more, but may still read (a half-close).
        c.hostDoneSending = true;
        this.write(chain, this.header(c, OP.SHUTDOWN, 0, SHUTDOWN_SEND), undefined);
        c.advertisedFwdCnt = c.fwdCnt;
        interrupt = queue.push(chain.head, HDR) || interrupt;
        break;
      }
      this.write(chain, this.header(c, OP.RW, n), this.scratch.subarray(0, n));
      c.advertisedFwdCnt = c.fwdCnt;
      c.txCnt = (c.txCnt + n) >>> 0;
      this.counters.toGuestBytes += n;
      interrupt = queue.push(chain.head, HDR + n) || interrupt;
    }
    return interrupt;
  }

  /** Queued packets for the guest, into its receive buffers. */
  private flushControl(): boolean {
    const queue = this.queues[RX_QUEUE];
    if (!queue) return false;
    let interrupt = false;
    while (this.control.length > 0) {
      const chain = queue.pop();
      if (!chain) {
        this.rxStarved = true;
        break;
      }
      const p = this.control.shift() as Packet;
      const size = HDR + (p.payload?.length ?? 0);
      if (chain.writableBytes < size) {
        interrupt = queue.push(chain.head, 0) || interrupt;
        this.control.unshift(p);
        continue;
      }
      this.write(chain, p.hdr, p.payload);
      interrupt = queue.push(chain.head, size) || interrupt;
    }
    return interrupt;
  }

  private write(chain: DescriptorChain, hdr: Uint8Array, payload: Uint8Array | undefined): void {
    scatter(this.mem, chain.writable, 0, hdr);
    if (payload) scatter(this.mem, chain.writable, HDR, payload);
  }

  snapshotBlocker(): string | undefined {
    const open = this.conns.size + this.handshakes.size + this.pending.length + this.control.length;
    return open === 0 ? undefined : `the vsock device has ${open} open connections or packets in flight (a snapshot cannot carry host connections)`;
  }

  /** Closes every connection and pending client (the device was reset or the VM ends). */
  close(): void {
    this.pending.length = 0;
    for (const c of [...this.conns.values()]) this.drop(c);
    for (const fd of this.handshakes.keys()) libc.close(fd);
    this.handshakes.clear();
  }
}
