// Messages with file descriptors on Unix stream sockets (SCM_RIGHTS), which Node's `net` cannot do: sendmsg and
// recvmsg through koffi, on a native block that holds the msghdr, one iovec, the control buffer and the data.
// vhost-user passes guest memory and eventfds this way.
import koffi from 'koffi';
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';
import { EAGAIN, EINTR, SysError, close, errno } from './libc.js';

const lib = koffi.load('libc.so.6');
const sendmsg = lib.func('long sendmsg(int fd, void *msg, int flags)');
const recvmsg = lib.func('long recvmsg(int fd, void *msg, int flags)');

// <sys/socket.h>, <sys/uio.h> on x86-64; test/sys/fd-passing.test.ts checks them against the headers.
export const msghdr = defineStruct('msghdr', 'struct msghdr', 56, {
  name: { offset: 0, type: 'u64', c: 'msg_name' }, namelen: { offset: 8, type: 'u32', c: 'msg_namelen' },
  iov: { offset: 16, type: 'u64', c: 'msg_iov' }, iovlen: { offset: 24, type: 'u64', c: 'msg_iovlen' },
  control: { offset: 32, type: 'u64', c: 'msg_control' }, controllen: { offset: 40, type: 'u64', c: 'msg_controllen' },
  flags: { offset: 48, type: 'i32', c: 'msg_flags' },
});
export const iovec = defineStruct('iovec', 'struct iovec', 16, {
  base: { offset: 0, type: 'u64', c: 'iov_base' }, len: { offset: 8, type: 'u64', c: 'iov_len' },
});
export const cmsghdr = defineStruct('cmsghdr', 'struct cmsghdr', 16, {
  len: { offset: 0, type: 'u64', c: 'cmsg_len' }, level: { offset: 8, type: 'i32', c: 'cmsg_level' },
  type: { offset: 12, type: 'i32', c: 'cmsg_type' },
});
export const SOL_SOCKET = 1, SCM_RIGHTS = 1, MSG_CTRUNC = 0x8, MSG_TRUNC = 0x20, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
/** The most descriptors one message carries (vhost-user's limit: one per memory region). */
export const MAX_FDS = 8;

const align8 = (n: number): number => (n + 7) & ~7;
const CONTROL_SPACE = cmsghdr.size + align8(4 * MAX_FDS);

/** A native block laid out as msghdr | iovec | control | data, freed after each call. */
class NativeMessage {
  private readonly ptr: unknown;
  private readonly base: bigint;
  readonly bytes: Uint8Array;
  readonly dataOffset = msghdr.size + iovec.size + CONTROL_SPACE;

  constructor(dataLength: number, controlLength: number) {
    const size = this.dataOffset + Math.max(dataLength, 1);
    this.ptr = koffi.alloc('uint8_t', size);
    this.base = koffi.address(this.ptr) as bigint;
    this.bytes = new Uint8Array(koffi.view(this.ptr, size));
    const iovAt = msghdr.size, controlAt = msghdr.size + iovec.size;
    new StructView(msghdr, this.bytes, 0).set('iov', this.base + BigInt(iovAt)).set('iovlen', 1)
      .set('control', controlLength > 0 ? this.base + BigInt(controlAt) : 0n).set('controllen', controlLength);
    new StructView(iovec, this.bytes, iovAt).set('base', this.base + BigInt(this.dataOffset)).set('len', dataLength);
  }

  get pointer(): unknown {
    return this.ptr;
  }

  get control(): Uint8Array {
    return this.bytes.subarray(msghdr.size + iovec.size, msghdr.size + iovec.size + CONTROL_SPACE);
  }

  header(): StructView<keyof typeof msghdr.fields> {
    return new StructView(msghdr, this.bytes, 0);
  }

  free(): void {
    koffi.free(this.ptr);
  }
}

/**
 * Sends `data` with `fds` attached (SCM_RIGHTS) in one sendmsg. Blocks until the socket takes it all (a vhost-user
 * message is small); returns false when a non-blocking socket has no room right now and nothing was sent.
 */
export function sendWithFds(sock: number, data: Uint8Array, fds: readonly number[] = []): boolean {
  if (fds.length > MAX_FDS) throw new AzoteError('TooManyFds', `${fds.length} descriptors in one message; at most ${MAX_FDS}`);
  const controlLength = fds.length > 0 ? cmsghdr.size + align8(4 * fds.length) : 0;
  const m = new NativeMessage(data.length, controlLength);
  try {
    m.bytes.set(data, m.dataOffset);
    if (fds.length > 0) {
      const c = new StructView(cmsghdr, m.control, 0).set('len', cmsghdr.size + 4 * fds.length).set('level', SOL_SOCKET)
        .set('type', SCM_RIGHTS);
      const dv = new DataView(c.bytes().buffer, c.bytes().byteOffset + cmsghdr.size);
      fds.forEach((fd, i) => dv.setInt32(4 * i, fd, true));
    }
    for (;;) {
      const n = sendmsg(sock, m.pointer, MSG_NOSIGNAL) as number;
      if (n === data.length) return true;
      if (n >= 0) throw new AzoteError('ShortSend', `sendmsg took ${n} of ${data.length} bytes`);
      const e = errno();
      if (e === EAGAIN) return false;
      if (e !== EINTR) throw new SysError('sendmsg', e);
    }
  } finally {
    m.free();
  }
}

export interface Received {
  /** The bytes read: fewer than asked at end of stream (0) or when less was there. */
  readonly data: Uint8Array;
  /** Descriptors that came with them (close-on-exec), in order. */
  readonly fds: number[];
  /** The message was longer than `length` (datagram and seqpacket sockets): its rest was dropped by the kernel. */
  readonly truncated: boolean;
}

/** One recvmsg of at most `length` bytes; undefined when a non-blocking socket has nothing (EAGAIN). */
export function recvWithFds(sock: number, length: number): Received | undefined {
  const m = new NativeMessage(length, CONTROL_SPACE);
  try {
    let n: number;
    for (;;) {
      n = recvmsg(sock, m.pointer, MSG_CMSG_CLOEXEC) as number;
      if (n >= 0) break;
      const e = errno();
      if (e === EAGAIN) return undefined;
      if (e !== EINTR) throw new SysError('recvmsg', e);
    }
    const fds: number[] = [];
    const h = m.header();
    const controlLength = Number(h.get64('controllen'));
    for (let at = 0; at + cmsghdr.size <= controlLength;) {
      const c = new StructView(cmsghdr, m.control, at);
      const len = Number(c.get64('len'));
      if (len < cmsghdr.size) break;
      if (c.get('level') === SOL_SOCKET && c.get('type') === SCM_RIGHTS) {
        const dv = new DataView(m.control.buffer, m.control.byteOffset + at + cmsghdr.size);
        for (let i = 0; i < (len - cmsghdr.size) / 4; i++) fds.push(dv.getInt32(4 * i, true));
      }
      at += align8(len);
    }
    if (h.get('flags') & MSG_CTRUNC) {
      for (const fd of fds) close(fd);
      throw new AzoteError('TooManyFds', `a message came with more descriptors than ${MAX_FDS}; they were dropped by the kernel`);
    }
    return { data: m.bytes.slice(m.dataOffset, m.dataOffset + n), fds, truncated: (h.get('flags') & MSG_TRUNC) !== 0 };
  } finally {
    m.free();
  }
}
