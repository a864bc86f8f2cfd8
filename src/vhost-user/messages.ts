// vhost-user messages (QEMU's docs/interop/vhost-user.rst): a 12-byte header (request, flags, payload size) and a
// payload whose layout the request names; file descriptors travel beside them (SCM_RIGHTS). Encoding and decoding
// only: the frontend and backend that speak the protocol build on this. Every decoded field comes from the other
// process and is checked here for size; meaning is checked by whoever acts on it.
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';

/** Front-end requests (the ones Azote sends or serves; numbers from the specification). */
export const REQ = {
  GET_FEATURES: 1, SET_FEATURES: 2, SET_OWNER: 3, RESET_OWNER: 4, SET_MEM_TABLE: 5, SET_LOG_BASE: 6, SET_LOG_FD: 7,
  SET_VRING_NUM: 8, SET_VRING_ADDR: 9, SET_VRING_BASE: 10, GET_VRING_BASE: 11, SET_VRING_KICK: 12, SET_VRING_CALL: 13,
  SET_VRING_ERR: 14, GET_PROTOCOL_FEATURES: 15, SET_PROTOCOL_FEATURES: 16, GET_QUEUE_NUM: 17, SET_VRING_ENABLE: 18,
  SET_BACKEND_REQ_FD: 21, GET_CONFIG: 24, SET_CONFIG: 25, GET_INFLIGHT_FD: 31, SET_INFLIGHT_FD: 32, RESET_DEVICE: 34,
  GET_MAX_MEM_SLOTS: 36, ADD_MEM_REG: 37, REM_MEM_REG: 38, SET_STATUS: 39, GET_STATUS: 40,
} as const;

/** Header flags: the version (1) in bits 0-1, REPLY in bit 2, NEED_REPLY in bit 3. */
export const FLAG_VERSION = 0x1, FLAG_REPLY = 0x4, FLAG_NEED_REPLY = 0x8;
const VERSION_MASK = 0x3;

/** VHOST_USER_F_PROTOCOL_FEATURES: feature bit 30 says the backend speaks protocol features. */
export const F_PROTOCOL_FEATURES = 30n;
export const PROTOCOL_F = {
  MQ: 0, LOG_SHMFD: 1, RARP: 2, REPLY_ACK: 3, NET_MTU: 4, BACKEND_REQ: 5, CROSS_ENDIAN: 6, CRYPTO_SESSION: 7,
  PAGEFAULT: 8, CONFIG: 9, BACKEND_SEND_FD: 10, HOST_NOTIFIER: 11, INFLIGHT_SHMFD: 12, RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14, CONFIGURE_MEM_SLOTS: 15, STATUS: 16,
} as const;

/** In the u64 of SET_VRING_KICK/CALL/ERR: bits 0-7 the queue index, bit 8 set when no fd is passed. */
export const VRING_INDEX_MASK = 0xffn, VRING_NOFD_MASK = 0x100n;
/** Regions in one SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_MEM_REGIONS = 8;
/** The most configuration-space bytes one GET_CONFIG/SET_CONFIG carries (VHOST_USER_MAX_CONFIG_SIZE). */
export const MAX_CONFIG = 256;

export const header = defineStruct('vhost_user_header', undefined, 12, {
  request: { offset: 0, type: 'u32' }, flags: { offset: 4, type: 'u32' }, size: { offset: 8, type: 'u32' },
});
export const vringState = defineStruct('vhost_vring_state', undefined, 8, {
  index: { offset: 0, type: 'u32' }, num: { offset: 4, type: 'u32' },
});
/** Note the order the specification gives: descriptor table, used ring, available ring, log. */
export const vringAddr = defineStruct('vhost_vring_addr', undefined, 40, {
  index: { offset: 0, type: 'u32' }, flags: { offset: 4, type: 'u32' }, desc: { offset: 8, type: 'u64' },
  used: { offset: 16, type: 'u64' }, avail: { offset: 24, type: 'u64' }, log: { offset: 32, type: 'u64' },
});
export const memRegion = defineStruct('vhost_user_memory_region', undefined, 32, {
  guestAddr: { offset: 0, type: 'u64' }, size: { offset: 8, type: 'u64' }, userAddr: { offset: 16, type: 'u64' },
  mmapOffset: { offset: 24, type: 'u64' },
});
export const configHeader = defineStruct('vhost_user_config', undefined, 12, {
  offset: { offset: 0, type: 'u32' }, size: { offset: 4, type: 'u32' }, flags: { offset: 8, type: 'u32' },
});

/** The largest payload accepted: a full memory table, or a config header with the most config bytes. */
export const MAX_PAYLOAD = Math.max(8 + MAX_MEM_REGIONS * memRegion.size, configHeader.size + MAX_CONFIG);

export interface MemRegion {
  readonly guestAddr: bigint;
  readonly size: bigint;
  /** The region's address in the frontend's own process (vring addresses are given in these). */
  readonly userAddr: bigint;
  readonly mmapOffset: bigint;
}

export interface VringAddr {
  readonly index: number;
  readonly flags: number;
  readonly desc: bigint;
  readonly used: bigint;
  readonly avail: bigint;
  readonly log: bigint;
}

export type Payload =
  | { readonly kind: 'none' }
  | { readonly kind: 'u64'; readonly value: bigint }
  | { readonly kind: 'vring-state'; readonly index: number; readonly num: number }
  | { readonly kind: 'vring-addr'; readonly addr: VringAddr }
  | { readonly kind: 'mem-table'; readonly regions: readonly MemRegion[] }
  | { readonly kind: 'mem-region'; readonly region: MemRegion }
  | { readonly kind: 'config'; readonly offset: number; readonly flags: number; readonly data: Uint8Array };

export interface Message {
  readonly request: number;
  readonly flags: number;
  readonly payload: Payload;
}

export class ProtocolError extends AzoteError {
  constructor(detail: string, code = 'VhostUserProtocol', fix?: string) {
    super(code, `vhost-user: ${detail}`, fix);
    this.name = 'ProtocolError';
  }
}

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

function regionBytes(r: MemRegion): Uint8Array {
  return StructView.alloc(memRegion).set('guestAddr', r.guestAddr).set('size', r.size).set('userAddr', r.userAddr)
    .set('mmapOffset', r.mmapOffset).bytes();
}

function payloadBytes(p: Payload): Uint8Array {
  switch (p.kind) {
    case 'none': return new Uint8Array(0);
    case 'u64': return u64(p.value);
    case 'vring-state': return StructView.alloc(vringState).set('index', p.index).set('num', p.num).bytes();
    case 'vring-addr': {
      const a = p.addr;
      return StructView.alloc(vringAddr).set('index', a.index).set('flags', a.flags).set('desc', a.desc).set('used', a.used)
        .set('avail', a.avail).set('log', a.log).bytes();
    }
    case 'mem-table': {
      if (p.regions.length > MAX_MEM_REGIONS) throw new ProtocolError(`${p.regions.length} memory regions; at most ${MAX_MEM_REGIONS}`);
      const b = new Uint8Array(8 + memRegion.size * p.regions.length);
      new DataView(b.buffer).setUint32(0, p.regions.length, true);
      p.regions.forEach((r, i) => b.set(regionBytes(r), 8 + memRegion.size * i));
      return b;
    }
    case 'mem-region': {
      const b = new Uint8Array(8 + memRegion.size);
      b.set(regionBytes(p.region), 8);
      return b;
    }
    case 'config': {
      if (p.data.length > MAX_CONFIG) throw new ProtocolError(`${p.data.length} config bytes; at most ${MAX_CONFIG}`);
      const b = new Uint8Array(configHeader.size + p.data.length);
      new StructView(configHeader, b, 0).set('offset', p.offset).set('size', p.data.length).set('flags', p.flags);
      b.set(p.data, configHeader.size);
      return b;
    }
  }
}

/** The bytes of a message (header and payload); its fds are sent beside them. */
export function encode(m: Message): Uint8Array {
  const body = payloadBytes(m.payload);
  const out = new Uint8Array(header.size + body.length);
  new StructView(header, out, 0).set('request', m.request).set('flags', m.flags).set('size', body.length);
  out.set(body, header.size);
  return out;
}

/** The header of a message, checked: version 1 and a payload size this side accepts. */
export function decodeHeader(bytes: Uint8Array): { request: number; flags: number; size: number } {
  if (bytes.length < header.size) throw new ProtocolError(`a header of ${bytes.length} bytes`);
  const h = new StructView(header, bytes, 0);
  const flags = h.get('flags');
  if ((flags & VERSION_MASK) !== FLAG_VERSION) throw new ProtocolError(`message version ${flags & VERSION_MASK}, expected 1`);
  const size = h.get('size');
  if (size > MAX_PAYLOAD) throw new ProtocolError(`a payload of ${size} bytes (at most ${MAX_PAYLOAD})`);
  return { request: h.get('request'), flags, size };
}

/** What payload a request carries, in either direction (`reply`: the backend's answer, or its acknowledgement). */
export function payloadKind(request: number, reply: boolean): Payload['kind'] {
  if (reply) {
    switch (request) {
      case REQ.GET_VRING_BASE: return 'vring-state';
      case REQ.GET_CONFIG: return 'config';
      default: return 'u64'; // a value (GET_FEATURES...) or the REPLY_ACK status
    }
  }
  switch (request) {
    case REQ.SET_FEATURES: case REQ.SET_PROTOCOL_FEATURES: case REQ.SET_VRING_KICK: case REQ.SET_VRING_CALL:
    case REQ.SET_VRING_ERR: case REQ.SET_STATUS: case REQ.SET_LOG_BASE:
      return 'u64';
    case REQ.SET_VRING_NUM: case REQ.SET_VRING_BASE: case REQ.SET_VRING_ENABLE: case REQ.GET_VRING_BASE:
      return 'vring-state';
    case REQ.SET_VRING_ADDR: return 'vring-addr';
    case REQ.SET_MEM_TABLE: return 'mem-table';
    case REQ.ADD_MEM_REG: case REQ.REM_MEM_REG: return 'mem-region';
    case REQ.GET_CONFIG: case REQ.SET_CONFIG: return 'config';
    default: return 'none';
  }
}

function region(b: Uint8Array, at: number): MemRegion {
  const r = new StructView(memRegion, b, at);
  return { guestAddr: r.get64('guestAddr'), size: r.get64('size'), userAddr: r.get64('userAddr'), mmapOffset: r.get64('mmapOffset') };
}

/** The payload of a `request` message of `body.length` bytes, checked against the size its kind needs. */
export function decodePayload(request: number, reply: boolean, body: Uint8Array): Payload {
  const kind = payloadKind(request, reply);
  const need = (n: number): void => {
    if (body.length !== n) throw new ProtocolError(`request ${request}: a ${kind} payload of ${body.length} bytes, expected ${n}`);
  };
  const dv = new DataView(body.buffer, body.byteOffset, body.length);
  switch (kind) {
    case 'none':
      need(0);
      return { kind };
    case 'u64':
      need(8);
      return { kind, value: dv.getBigUint64(0, true) };
    case 'vring-state': {
      need(vringState.size);
      return { kind, index: dv.getUint32(0, true), num: dv.getUint32(4, true) };
    }
    case 'vring-addr': {
      need(vringAddr.size);
      const a = new StructView(vringAddr, body, 0);
      return {
        kind, addr: { index: a.get('index'), flags: a.get('flags'), desc: a.get64('desc'), used: a.get64('used'),
          avail: a.get64('avail'), log: a.get64('log') },
      };
    }
    case 'mem-table': {
      if (body.length < 8) need(8);
      const n = dv.getUint32(0, true);
      if (n > MAX_MEM_REGIONS) throw new ProtocolError(`a memory table of ${n} regions (at most ${MAX_MEM_REGIONS})`);
      need(8 + memRegion.size * n);
      return { kind, regions: Array.from({ length: n }, (_, i) => region(body, 8 + memRegion.size * i)) };
    }
    case 'mem-region':
      need(8 + memRegion.size);
      return { kind, region: region(body, 8) };
    case 'config': {
      if (body.length < configHeader.size) need(configHeader.size);
      const c = new StructView(configHeader, body, 0);
      need(configHeader.size + c.get('size'));
      return { kind, offset: c.get('offset'), flags: c.get('flags'), data: body.slice(configHeader.size) };
    }
  }
}
