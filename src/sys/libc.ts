// libc through koffi. Every call that can fail returns -1 and sets errno; `check` turns that into a SysError.
// ioctl is declared with fixed arities: a variadic declaration would leave garbage in the third argument.
import koffi from 'koffi';
import { AzoteError } from '../base/errors.js';
import { constants as osConstants } from 'node:os';

const lib = koffi.load('libc.so.6');

export type Pointer = unknown;

const c = {
  open: lib.func('int open(const char *path, int flags, int mode)'),
  close: lib.func('int close(int fd)'),
  ioctlArg: lib.func('int ioctl(int fd, unsigned long req, unsigned long arg)'),
  ioctlPtr: lib.func('int ioctl(int fd, unsigned long req, void *arg)'),
  mmap: lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: lib.func('int munmap(void *addr, size_t len)'),
  madvise: lib.func('int madvise(void *addr, size_t len, int advice)'),
  memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: lib.func('int ftruncate(int fd, int64_t len)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  gettid: lib.func('int gettid()'),
  getpid: lib.func('int getpid()'),
  tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
  sigaction: lib.func('int sigaction(int sig, const void *act, void *old)'),
  dlsym: lib.func('void *dlsym(void *handle, const char *name)'),
  exit: lib.func('void _exit(int status)'),
  prctl: lib.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)'),
};

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, num]) => [num, name]),
);

export class SysError extends AzoteError {
  readonly errno: number;
  constructor(call: string, errno: number, fix?: string) {
    super(errnoNames.get(errno) ?? `E${errno}`, `${call} failed: ${errnoNames.get(errno) ?? 'errno ' + errno}`, fix);
    this.name = 'SysError';
    this.errno = errno;
  }
}

export function errno(): number {
  return koffi.errno();
}

function check(call: string, rc: number): number {
  if (rc < 0) throw new SysError(call, koffi.errno());
  return rc;
}

export const O_RDONLY = 0, O_RDWR = 2, O_CLOEXEC = 0o2000000;
export const PROT_READ = 1, PROT_WRITE = 2;
export const MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
export const MFD_CLOEXEC = 1;
export const MADV_DONTDUMP = 16;
export const EFD_CLOEXEC = 0o2000000, EFD_NONBLOCK = 0o4000;
export const EINTR = 4, EAGAIN = 11;

export function open(path: string, flags: number, mode = 0): number {
  return check(`open(${path})`, c.open(path, flags | O_CLOEXEC, mode) as number);
}

export function close(fd: number): void {
  check('close', c.close(fd) as number);
}

/** ioctl with an integer argument (or none). Returns the non-negative result. */
export function ioctl(fd: number, req: number, arg: number | bigint = 0): number {
  return check(`ioctl(0x${req.toString(16)})`, c.ioctlArg(fd, req, arg) as number);
}

/** ioctl with a pointer to a buffer the kernel reads and/or writes. */
export function ioctlBuf(fd: number, req: number, buf: Uint8Array): number {
  return check(`ioctl(0x${req.toString(16)})`, c.ioctlPtr(fd, req, buf) as number);
}

/** ioctl returning -errno instead of throwing, for hot paths that expect EINTR. */
export function ioctlRaw(fd: number, req: number, arg: number): number {
  const rc = c.ioctlArg(fd, req, arg) as number;
  return rc < 0 ? -koffi.errno() : rc;
}

export interface Mapping {
  readonly ptr: Pointer;
  readonly address: bigint;
  readonly length: number;
  readonly buffer: ArrayBuffer;
}

export function mmap(length: number, prot: number, flags: number, fd: number, offset = 0): Mapping {
  const ptr = c.mmap(null, length, prot, flags, fd, offset);
  const address = koffi.address(ptr);
  // A failed mmap returns MAP_FAILED, (void *)-1, not NULL.
  if (address === 0xffffffffffffffffn) throw new SysError('mmap', koffi.errno());
  return { ptr, address, length, buffer: koffi.view(ptr, length) };
}

export function munmap(m: Mapping): void {
  check('munmap', c.munmap(m.ptr, m.length) as number);
}

export function madvise(m: Mapping, advice: number): void {
  check('madvise', c.madvise(m.ptr, m.length, advice) as number);
}

/** A view of memory mapped by another thread of this process, from its address. */
export function viewAt(address: bigint, length: number): ArrayBuffer {
  const cell = Buffer.alloc(8);
  cell.writeBigUInt64LE(address);
  return koffi.view(koffi.decode(cell, 'void *'), length);
}

export function memfdCreate(name: string): number {
  return check('memfd_create', c.memfdCreate(name, MFD_CLOEXEC) as number);
}

export function ftruncate(fd: number, length: number): void {
  check('ftruncate', c.ftruncate(fd, length) as number);
}

export function eventfd(initval: number, flags: number): number {
  return check('eventfd', c.eventfd(initval, flags | EFD_CLOEXEC) as number);
}

export function gettid(): number {
  return c.gettid() as number;
}

export function getpid(): number {
  return c.getpid() as number;
}

export function tgkill(pid: number, tid: number, sig: number): void {
  check('tgkill', c.tgkill(pid, tid, sig) as number);
}

export function prctl(option: number, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
  return check('prctl', c.prctl(option, a2, a3, a4, a5) as number);
}

/** Terminate the process now, without waiting for threads blocked in system calls. */
export function exitNow(status: number): never {
  c.exit(status);
  throw new Error('unreachable');
}

// struct sigaction (x86-64 glibc): handler @0, sa_mask @8 (128 bytes), sa_flags @136, sa_restorer @144; 152 bytes.
const SIGACTION_SIZE = 152;
const SIGACTION_FLAGS = 136;

/**
 * Give `sig` a handler that does nothing, so that delivering it to a thread interrupts a blocking system
 * call with EINTR (how a vCPU thread is pulled out of KVM_RUN). No SA_RESTART. The handler must be
 * async-signal-safe native code, so it is libc's getpid, which ignores its argument.
 */
export function installWakeSignal(sig: number): void {
  const handler = c.dlsym(null, 'getpid');
  const act = new Uint8Array(SIGACTION_SIZE);
  const dv = new DataView(act.buffer);
  dv.setBigUint64(0, koffi.address(handler), true);
  dv.setInt32(SIGACTION_FLAGS, 0, true);
  check('sigaction', c.sigaction(sig, act, new Uint8Array(SIGACTION_SIZE)) as number);
}
