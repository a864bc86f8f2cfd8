// The backend side of vhost-user, for cards: one session per connected frontend. It answers the frontend's
// messages (features, memory table, rings, configuration space) and, once a ring has its memory, addresses and
// kick fd, serves it with the device's own data path from virtio/: the same code that runs on the hypervisor's
// I/O thread. The frontend's kick eventfds wake the card; its call eventfds interrupt the guest.
import { errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import { recvWithFds, sendWithFds } from '../sys/fd-passing.js';
import type { DataPath, DeviceMemory, DeviceModel } from '../virtio/device.js';
import { VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1 } from '../virtio/device.js';
import { buildQueues } from '../virtio/data-paths.js';
import { VirtqueueError, type QueueConfig, type SplitQueue } from '../virtio/split-queue.js';
import { MappedMemory } from './mapped-memory.js';
import {
  decodeHeader, decodePayload, encode, F_PROTOCOL_FEATURES, FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, header,
  PROTOCOL_F, ProtocolError, REQ, VRING_INDEX_MASK, VRING_NOFD_MASK, type Payload,
} from './messages.js';

/** The protocol features a card speaks: acknowledged replies and the device's configuration space. */
export const BACKEND_PROTOCOL_FEATURES = (1n << BigInt(PROTOCOL_F.REPLY_ACK)) | (1n << BigInt(PROTOCOL_F.CONFIG));

/**
 * What a card's device is to a session: the model the frontend negotiates with, and how to build the data path over
 * the rings once they run (from the device's DataPathSpec, or the card's own, such as a switch port).
 */
export interface CardDevice {
  readonly model: DeviceModel;
  dataPath(mem: DeviceMemory, queues: readonly (SplitQueue | undefined)[], features: bigint): DataPath;
  /** A frontend's SET_CONFIG; throws to refuse it (the frontend is told, the session goes on). */
  setConfig?(offset: number, data: Uint8Array): void;
}

interface Ring {
  num: number;
  desc: bigint;
  avail: bigint;
  used: bigint;
  base: number;
  kick: number | undefined;
  call: number | undefined;
  enabled: boolean;
  /** Where the ring stopped serving (GET_VRING_BASE answers it). */
  next: number | undefined;
}

export class BackendSession {
  private pending = new Uint8Array(0);
  /** Stream offset of pending[0]. */
  private pendingAt = 0;
  /**
   * Descriptors received, each set with the stream offset of the last byte of the recvmsg that brought it: Linux
   * hands a message's fds to the read that takes the end of the data sent with them (earlier messages' bytes may
   * come in the same read), so they belong to the message holding that byte.
   */
  private pendingFds: Array<{ at: number; fds: number[] }> = [];
  private features = 0n;
  private protocolFeatures = 0n;
  private memory: MappedMemory | undefined;
  private readonly rings: Ring[];
  private path: DataPath | undefined;
  private queues: ReturnType<typeof buildQueues> = [];
  /** Rings whose last turn ended at the data path's budget with chains left. */
  private readonly backlog = new Set<number>();
  closed = false;

  constructor(readonly sock: number, private readonly device: CardDevice, private readonly log: Logger) {
    this.rings = device.model.queueSizes.map(() => ({
      num: 0, desc: 0n, avail: 0n, used: 0n, base: 0, kick: undefined, call: undefined, enabled: false, next: undefined,
    }));
  }

  private get offered(): bigint {
    return this.device.model.features | (1n << VIRTIO_F_VERSION_1) | (1n << F_PROTOCOL_FEATURES);
  }

  /** The fds this session waits on: its socket, live rings' kick fds and the data path's own. */
  watched(): number[] {
    if (this.closed) return [];
    const kicks = this.path ? this.rings.flatMap((r, i) => (this.queues[i] && r.kick !== undefined ? [r.kick] : [])) : [];
    return [this.sock, ...kicks, ...(this.path?.watched?.() ?? [])];
  }

  watchedWritable(): readonly number[] {
    return this.path?.watchedWritable?.() ?? [];
  }

  readable(fd: number): void {
    this.guarded(() => {
      if (fd === this.sock) {
        this.receive();
        return;
      }
      const index = this.rings.findIndex((r) => r.kick === fd);
      if (index >= 0) {
        libc.eventfdRead(fd);
        this.serve(index, () => this.path?.process(index) ?? false);
        return;
      }
      this.serve(-1, () => this.path?.readable?.(fd) ?? false);
    });
  }

  writable(fd: number): void {
    this.guarded(() => this.serve(-1, () => this.path?.writable?.(fd) ?? false));
  }

  /** Serves ring `index` now (work for it arrived from elsewhere in the card, not from the guest's kick). */
  serveRing(index: number): void {
    this.guarded(() => this.serve(index, () => this.path?.process(index) ?? false));
  }

  /** Whether rings wait for another turn: the card's loop then polls without sleeping and calls serveBacklog. */
  get hasBacklog(): boolean {
    return !this.closed && this.backlog.size > 0;
  }

  /** Gives each ring whose last turn ended at its budget one more turn (after the card served what else was ready). */
  serveBacklog(): void {
    for (const index of [...this.backlog]) if (!this.closed) this.serveRing(index);
  }

  /**
   * Whatever a frontend sends (a descriptor that is not an eventfd, a ring it unmapped...) ends at most its own
   * session: a card serves other volumes too.
   */
  private guarded(work: () => void): void {
    try {
      work();
    } catch (e) {
      this.close(`the session failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Runs data-path work and interrupts the guest through the call fds if it asks. */
  private serve(index: number, work: () => boolean): void {
    try {
      const interrupt = work();
      if (index >= 0 && this.path?.unfinished?.(index)) this.backlog.add(index);
      else this.backlog.delete(index);
      if (!interrupt) return;
      for (const [i, r] of this.rings.entries()) if (r.call !== undefined && (index < 0 || i === index)) libc.eventfdSignal(r.call);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      // The guest broke the ring: stop serving it (the frontend sees no more completions on it).
      this.log.warn('vhost-user: a ring is malformed; it is no longer served', { ring: index, why: e.message });
      this.stopRings();
    }
  }

  private receive(): void {
    let got;
    try {
      got = recvWithFds(this.sock, 4096);
    } catch (e) {
      this.close(`the connection failed: ${(e as Error).message}`);
      return;
    }
    if (!got) return;
    if (got.data.length === 0) {
      for (const fd of got.fds) libc.close(fd);
      this.close('the frontend went away');
      return;
    }
    const all = new Uint8Array(this.pending.length + got.data.length);
    all.set(this.pending);
    all.set(got.data, this.pending.length);
    this.pending = all;
    if (got.fds.length > 0) this.pendingFds.push({ at: this.pendingAt + all.length - 1, fds: got.fds });
    try {
      while (this.pending.length >= header.size) {
        const h = decodeHeader(this.pending);
        const length = header.size + h.size;
        if (this.pending.length < length) break;
        const body = this.pending.slice(header.size, length);
        const end = this.pendingAt + length;
        this.pending = this.pending.slice(length);
        this.pendingAt = end;
        const fds = this.pendingFds.filter((f) => f.at < end).flatMap((f) => f.fds);
        this.pendingFds = this.pendingFds.filter((f) => f.at >= end);
        this.handle(h.request, h.flags, decodePayload(h.request, false, body), fds);
      }
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.close(errorMessage(e));
    }
  }


  private reply(request: number, payload: Payload): void {
    if (!sendWithFds(this.sock, encode({ request, flags: FLAG_VERSION | FLAG_REPLY, payload }))) {
      throw new ProtocolError('the frontend does not read its replies');
    }
  }

  private handle(request: number, flags: number, p: Payload, fds: number[]): void {
    const ring = (i: number): Ring => {
      const r = this.rings[i];
      if (!r) throw new ProtocolError(`ring ${i} does not exist (the device has ${this.rings.length})`);
      return r;
    };
    const takeFd = (): number | undefined => {
      const fd = fds.shift();
      for (const extra of fds.splice(0)) libc.close(extra);
      return fd;
    };
    let answered = false;
    switch (request) {
      case REQ.GET_FEATURES:
        this.reply(request, { kind: 'u64', value: this.offered });
        answered = true;
        break;
      case REQ.SET_FEATURES:
        if (p.kind === 'u64') {
          if (p.value & ~this.offered) throw new ProtocolError(`features 0x${p.value.toString(16)} were not offered`);
          this.features = p.value;
        }
        break;
      case REQ.GET_PROTOCOL_FEATURES:
        this.reply(request, { kind: 'u64', value: BACKEND_PROTOCOL_FEATURES });
        answered = true;
        break;
      case REQ.SET_PROTOCOL_FEATURES:
        if (p.kind === 'u64') this.protocolFeatures = p.value & BACKEND_PROTOCOL_FEATURES;
        break;
      case REQ.SET_OWNER: case REQ.RESET_OWNER:
        break;
      case REQ.GET_QUEUE_NUM:
        this.reply(request, { kind: 'u64', value: BigInt(this.rings.length) });
        answered = true;
        break;
      case REQ.SET_MEM_TABLE:
        if (p.kind === 'mem-table') {
          const next = MappedMemory.map(p.regions, fds.splice(0));
          this.stopRings();
          this.memory?.close();
          this.memory = next;
          this.startRings();
        }
        break;
      case REQ.SET_VRING_NUM:
        if (p.kind === 'vring-state') ring(p.index).num = p.num;
        break;
      case REQ.SET_VRING_ADDR:
        if (p.kind === 'vring-addr') Object.assign(ring(p.addr.index), { desc: p.addr.desc, used: p.addr.used, avail: p.addr.avail });
        break;
      case REQ.SET_VRING_BASE:
        if (p.kind === 'vring-state') ring(p.index).base = p.num & 0xffff;
        break;
      case REQ.GET_VRING_BASE: {
        if (p.kind !== 'vring-state') break;
        const r = ring(p.index);
        const q = this.queues[p.index];
        r.next = q ? q.nextAvail : r.base;
        // The ring stops: the frontend may now hand it to another backend, or take it back.
        this.stopRings();
        if (r.kick !== undefined) libc.close(r.kick);
        r.kick = undefined;
        r.base = r.next;
        this.startRings();
        this.reply(request, { kind: 'vring-state', index: p.index, num: r.next });
        answered = true;
        break;
      }
      case REQ.SET_VRING_KICK: case REQ.SET_VRING_CALL: case REQ.SET_VRING_ERR: {
        if (p.kind !== 'u64') break;
        const r = ring(Number(p.value & VRING_INDEX_MASK));
        const fd = p.value & VRING_NOFD_MASK ? undefined : takeFd();
        if (request === REQ.SET_VRING_ERR) {
          if (fd !== undefined) libc.close(fd);
          break;
        }
        const key = request === REQ.SET_VRING_KICK ? 'kick' : 'call';
        const old = r[key];
        if (old !== undefined) libc.close(old);
        r[key] = fd;
        // Without protocol features a ring starts with its kick; with them, SET_VRING_ENABLE starts it.
        if (key === 'kick' && !(this.features & (1n << F_PROTOCOL_FEATURES))) r.enabled = true;
        this.stopRings();
        this.startRings();
        break;
      }
      case REQ.SET_VRING_ENABLE:
        if (p.kind === 'vring-state') {
          ring(p.index).enabled = p.num === 1;
          this.stopRings();
          this.startRings();
        }
        break;
      case REQ.GET_CONFIG: {
        if (p.kind !== 'config') break;
        const data = Uint8Array.from({ length: p.data.length }, (_, i) => this.device.model.readConfig(p.offset + i, 1));
        this.reply(request, { kind: 'config', offset: p.offset, flags: 0, data });
        answered = true;
        break;
      }
      case REQ.SET_CONFIG: {
        if (p.kind !== 'config') break;
        try {
          if (!this.device.setConfig) throw new Error('nothing in this device\'s configuration is writable');
          this.device.setConfig(p.offset, p.data);
        } catch (e) {
          this.log.warn('vhost-user: a configuration write was refused', { offset: p.offset, why: (e as Error).message });
          if (flags & FLAG_NEED_REPLY && this.protocolFeatures & (1n << BigInt(PROTOCOL_F.REPLY_ACK))) {
            this.reply(request, { kind: 'u64', value: 1n });
          }
          answered = true;
        }
        break;
      }
      default:
        for (const fd of fds) libc.close(fd);
        throw new ProtocolError(`request ${request} is not supported by this backend`);
    }
    for (const fd of fds) libc.close(fd);
    if (!answered && flags & FLAG_NEED_REPLY && this.protocolFeatures & (1n << BigInt(PROTOCOL_F.REPLY_ACK))) {
      this.reply(request, { kind: 'u64', value: 0n });
    }
  }

  /** Builds the queues of every ring that is ready (memory, addresses, kick fd, enabled) and the data path over them. */
  private startRings(): void {
    const mem = this.memory;
    if (!mem) return;
    const configs: Array<QueueConfig | undefined> = this.rings.map((r) => {
      if (!r.enabled || r.kick === undefined || r.num === 0) return undefined;
      const desc = mem.guestAddress(r.desc, 16 * r.num);
      const avail = mem.guestAddress(r.avail, 6 + 2 * r.num);
      const used = mem.guestAddress(r.used, 6 + 8 * r.num);
      if (desc === undefined || avail === undefined || used === undefined) return undefined;
      return {
        size: r.num, descAddr: desc, availAddr: avail, usedAddr: used, startIndex: r.base,
        indirect: (this.features >> VIRTIO_F_RING_INDIRECT_DESC & 1n) === 1n,
        eventIdx: (this.features >> VIRTIO_F_RING_EVENT_IDX & 1n) === 1n,
      };
    });
    if (configs.every((c) => c === undefined)) return;
    try {
      this.queues = buildQueues(mem, configs);
      this.path = this.device.dataPath(mem, this.queues, this.features);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.log.warn('vhost-user: the frontend described an unusable ring', { why: e.message });
      return;
    }
    // Chains made available before the start are served now.
    this.queues.forEach((q, i) => { if (q) this.serve(i, () => this.path?.process(i) ?? false); });
  }

  /** Remembers where each live ring stopped, and drops the data path. */
  private stopRings(): void {
    this.queues.forEach((q, i) => {
      const r = this.rings[i];
      if (q && r) r.base = q.nextAvail;
    });
    this.path?.close?.();
    this.path = undefined;
    this.queues = [];
    this.backlog.clear();
  }

  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.log.info('vhost-user frontend disconnected', { why });
    this.stopRings();
    for (const r of this.rings) {
      for (const fd of [r.kick, r.call]) if (fd !== undefined) libc.close(fd);
      r.kick = r.call = undefined;
    }
    for (const fd of this.pendingFds.flatMap((f) => f.fds)) libc.close(fd);
    this.memory?.close();
    this.memory = undefined;
    libc.close(this.sock);
  }
}
