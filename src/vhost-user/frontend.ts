// The frontend side of vhost-user, for the hypervisor: a connection to a card's socket and one call per request.
// Calls are synchronous (a reply, or an acknowledgement where REPLY_ACK was agreed, is waited for with a time
// limit): they happen while the guest sets its device up or resets it, never on the data path.
import * as libc from '../sys/libc.js';
import { recvWithFds, sendWithFds } from '../sys/fd-passing.js';
import {
  decodeHeader, decodePayload, encode, F_PROTOCOL_FEATURES, FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, header,
  PROTOCOL_F, ProtocolError, REQ, VRING_NOFD_MASK, type MemRegion, type Payload, type VringAddr,
} from './messages.js';

/** How long a backend may take to answer before it is declared gone. */
const REPLY_TIMEOUT_MS = 5000;
/** The protocol features this frontend uses when the backend offers them. */
const WANTED_PROTOCOL_FEATURES = (1n << BigInt(PROTOCOL_F.REPLY_ACK)) | (1n << BigInt(PROTOCOL_F.CONFIG));

export class VhostUserFrontend {
  private protocolFeatures = 0n;
  /** The backend's device features (VIRTIO_F_* and device bits; the vhost-user bit taken out). */
  readonly deviceFeatures: bigint;
  private readonly protocol: boolean;

  private constructor(private readonly sock: number) {
    const features = this.getU64(REQ.GET_FEATURES);
    this.protocol = (features >> F_PROTOCOL_FEATURES & 1n) === 1n;
    this.deviceFeatures = features & ~(1n << F_PROTOCOL_FEATURES);
    if (this.protocol) {
      this.protocolFeatures = this.getU64(REQ.GET_PROTOCOL_FEATURES) & WANTED_PROTOCOL_FEATURES;
      this.send(REQ.SET_PROTOCOL_FEATURES, { kind: 'u64', value: this.protocolFeatures });
    }
    this.send(REQ.SET_OWNER, { kind: 'none' });
  }

  /** Connects to a backend's socket and agrees on protocol features and ownership. */
  static connect(path: string): VhostUserFrontend {
    let sock: number;
    try {
      sock = libc.connectUnix(path);
    } catch (e) {
      throw new ProtocolError(`cannot connect to ${path}: ${(e as Error).message} (is the card running?)`);
    }
    return VhostUserFrontend.over(sock);
  }

  /** Takes a connection to a backend made by someone else (the controller) and agrees on features and ownership. */
  static over(sock: number): VhostUserFrontend {
    try {
      return new VhostUserFrontend(sock);
    } catch (e) {
      libc.close(sock);
      throw e;
    }
  }

  get hasConfig(): boolean {
    return (this.protocolFeatures >> BigInt(PROTOCOL_F.CONFIG) & 1n) === 1n;
  }

  private get acks(): boolean {
    return (this.protocolFeatures >> BigInt(PROTOCOL_F.REPLY_ACK) & 1n) === 1n;
  }

  private write(request: number, flags: number, payload: Payload, fds: readonly number[]): void {
    let sent: boolean;
    try {
      sent = sendWithFds(this.sock, encode({ request, flags, payload }), fds);
    } catch (e) {
      throw new ProtocolError(`the backend closed the connection (${(e as Error).message})`);
    }
    if (!sent) throw new ProtocolError(`the backend does not take request ${request} (its socket is full)`);
  }

  /** Reads one whole reply to `request` (replies carry no fds for the requests Azote makes). */
  private readReply(request: number): Payload {
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    let got = new Uint8Array(0);
    for (;;) {
      if (got.length >= header.size) {
        const h = decodeHeader(got);
        if (got.length >= header.size + h.size) {
          if (h.request !== request || !(h.flags & FLAG_REPLY)) {
            throw new ProtocolError(`expected the reply to request ${request}, got request ${h.request}`);
          }
          return decodePayload(request, true, got.subarray(header.size, header.size + h.size));
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || libc.pollFds([this.sock], [], left).read.length === 0) {
        throw new ProtocolError(`the backend did not answer request ${request} within ${REPLY_TIMEOUT_MS} ms`);
      }
      let r;
      try {
        r = recvWithFds(this.sock, 4096);
      } catch (e) {
        throw new ProtocolError(`the backend closed the connection (${(e as Error).message})`);
      }
      if (!r) continue;
      for (const fd of r.fds) libc.close(fd);
      if (r.data.length === 0) throw new ProtocolError('the backend closed the connection');
      const all = new Uint8Array(got.length + r.data.length);
      all.set(got);
      all.set(r.data, got.length);
      got = all;
    }
  }

  private getU64(request: number): bigint {
    this.write(request, FLAG_VERSION, { kind: 'none' }, []);
    const p = this.readReply(request);
    if (p.kind !== 'u64') throw new ProtocolError(`request ${request}: no value in the reply`);
    return p.value;
  }

  /** A request that changes the backend; acknowledged when REPLY_ACK was agreed (a non-zero answer is a refusal). */
  private send(request: number, payload: Payload, fds: readonly number[] = []): void {
    const ack = this.acks;
    this.write(request, FLAG_VERSION | (ack ? FLAG_NEED_REPLY : 0), payload, fds);
    if (!ack) return;
    const p = this.readReply(request);
    if (p.kind === 'u64' && p.value !== 0n) throw new ProtocolError(`the backend refused request ${request} (status ${p.value})`);
  }

  setFeatures(features: bigint): void {
    this.send(REQ.SET_FEATURES, { kind: 'u64', value: features | (this.protocol ? 1n << F_PROTOCOL_FEATURES : 0n) });
  }

  getConfig(size: number): Uint8Array {
    this.write(REQ.GET_CONFIG, FLAG_VERSION, { kind: 'config', offset: 0, flags: 0, data: new Uint8Array(size) }, []);
    const p = this.readReply(REQ.GET_CONFIG);
    if (p.kind !== 'config' || p.data.length !== size) throw new ProtocolError('GET_CONFIG: a reply of the wrong size');
    return p.data;
  }

  /** Writes configuration-space bytes; needs the CONFIG protocol feature (a refusal throws). */
  setConfig(offset: number, data: Uint8Array): void {
    this.send(REQ.SET_CONFIG, { kind: 'config', offset, flags: 0, data });
  }

  setMemTable(regions: readonly MemRegion[], fds: readonly number[]): void {
    this.send(REQ.SET_MEM_TABLE, { kind: 'mem-table', regions }, fds);
  }

  setVringNum(index: number, num: number): void {
    this.send(REQ.SET_VRING_NUM, { kind: 'vring-state', index, num });
  }

  setVringAddr(addr: VringAddr): void {
    this.send(REQ.SET_VRING_ADDR, { kind: 'vring-addr', addr });
  }

  setVringBase(index: number, base: number): void {
    this.send(REQ.SET_VRING_BASE, { kind: 'vring-state', index, num: base });
  }

  /** Stops ring `index` in the backend; returns where it stopped in the available ring. */
  getVringBase(index: number): number {
    this.write(REQ.GET_VRING_BASE, FLAG_VERSION, { kind: 'vring-state', index, num: 0 }, []);
    const p = this.readReply(REQ.GET_VRING_BASE);
    if (p.kind !== 'vring-state') throw new ProtocolError('GET_VRING_BASE: no ring state in the reply');
    return p.num;
  }

  setVringKick(index: number, fd: number): void {
    this.send(REQ.SET_VRING_KICK, { kind: 'u64', value: BigInt(index) }, [fd]);
  }

  setVringCall(index: number, fd: number | undefined): void {
    this.send(REQ.SET_VRING_CALL, { kind: 'u64', value: BigInt(index) | (fd === undefined ? VRING_NOFD_MASK : 0n) }, fd === undefined ? [] : [fd]);
  }

  setVringEnable(index: number, enable: boolean): void {
    if (this.protocol) this.send(REQ.SET_VRING_ENABLE, { kind: 'vring-state', index, num: enable ? 1 : 0 });
  }

  /** Whether the backend has gone (its end of the socket closed); never blocks. */
  backendGone(): boolean {
    if (libc.pollFds([this.sock], [], 0).read.length === 0) return false;
    try {
      const r = recvWithFds(this.sock, 1);
      if (!r) return false;
      for (const fd of r.fds) libc.close(fd);
      return r.data.length === 0; // a backend says nothing unasked in what Azote agrees to
    } catch {
      return true;
    }
  }

  close(): void {
    libc.close(this.sock);
  }
}
