// libc through koffi. Every call that can fail returns -1 and sets errno; `check` turns that into a SysError.
// ioctl is declared with fixed arities: a variadic declaration would leave garbage in the third argument.
import koffi from 'koffi';
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';
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
  mincore: lib.func('int mincore(uint64_t addr, size_t len, void *vec)'),
  memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: lib.func('int ftruncate(int fd, int64_t len)'),
  // memfd_secret has no libc wrapper in Debian 12's glibc: the raw system call, with its one argument.
  syscall1: lib.func('long syscall(long nr, unsigned long a1)'),
  lseek: lib.func('int64_t lseek(int fd, int64_t offset, int whence)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  gettid: lib.func('int gettid()'),
  getpid: lib.func('int getpid()'),
  tgkill: lib.func('int tgkill(int tgid, int tid, int sig)'),
  sigaction: lib.func('int sigaction(int sig, const void *act, void *old)'),
  dlsym: lib.func('void *dlsym(void *handle, const char *name)'),
  exit: lib.func('void _exit(int status)'),
  flock: lib.func('int flock(int fd, int op)'),
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  socketpair: lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *fds)'),
  bind: lib.func('int bind(int fd, const void *addr, unsigned int len)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
  connect: lib.func('int connect(int fd, const void *addr, unsigned int len)'),
  shutdown: lib.func('int shutdown(int fd, int how)'),
  fallocate: lib.func('int fallocate(int fd, int mode, int64_t off, int64_t len)'),
  poll: lib.func('int poll(void *fds, unsigned long n, int timeout)'),
  read: lib.func('long read(int fd, void *buf, size_t n)'),
  write: lib.func('long write(int fd, const void *buf, size_t n)'),
  getppid: lib.func('int getppid()'),
  prctl: lib.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)'),
  prctlName: lib.func('int prctl(int option, const char *name, unsigned long a3, unsigned long a4, unsigned long a5)'),
  fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
  fstatfs: lib.func('int fstatfs(int fd, void *buf)'),
  unshare: lib.func('int unshare(int flags)'),
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
export const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
/** <linux/fcntl.h>: file seals (memfd_create(2), "File sealing" in fcntl(2)). */
export const F_ADD_SEALS = 1033, F_GET_SEALS = 1034;
export const F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
/** <linux/magic.h>: the file system of memfd_secret(2)'s files. */
export const SECRETMEM_MAGIC = 0x5345434d;
export const MADV_DONTDUMP = 16;
/** <sys/prctl.h> */
export const PR_SET_PDEATHSIG = 1, PR_SET_DUMPABLE = 4, PR_SET_NAME = 15, PR_SET_NO_NEW_PRIVS = 38;
/** The longest thread name the kernel keeps (TASK_COMM_LEN less its terminating zero). */
export const THREAD_NAME_MAX = 15;
export const EFD_CLOEXEC = 0o2000000, EFD_NONBLOCK = 0o4000;
export const EPERM = 1, EINTR = 4, ENXIO = 6, E2BIG = 7, EAGAIN = 11, EINVAL = 22;

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

/**
 * ioctl(2) with an integer argument on one of libuv's pool threads, for a call that blocks until something happens
 * (KVM_RUN). `done` gets its return value; koffi does not hand back the thread's errno, so -1 says only that it
 * failed (the caller tells why from what the call leaves behind).
 */
export function ioctlAsync(fd: number, req: number, arg: number, done: (rc: number) => void): void {
  c.ioctlArg.async(fd, req, arg, (error: unknown, rc: number) => done(error ? -1 : rc));
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

/**
 * Which pages of [address, address+length) are resident (mincore(2)): one byte per 4 KiB page, bit 0 set for a page
 * in memory. For a shared file mapping it tells the file's pages present, whoever faulted them in.
 */
export function residentPages(address: bigint, length: number): Uint8Array {
  const vec = Buffer.alloc(Math.ceil(length / 4096));
  check('mincore', c.mincore(address, length, vec) as number);
  return vec;
}

/** A view of memory mapped by another thread of this process, from its address. */
export function viewAt(address: bigint, length: number): ArrayBuffer {
  return mappedAt(address, length).buffer;
}

/** A mapping another thread of this process made, seen from here; that thread unmaps it. */
export function mappedAt(address: bigint, length: number): Mapping {
  const cell = Buffer.alloc(8);
  cell.writeBigUInt64LE(address);
  const ptr = koffi.decode(cell, 'void *') as Pointer;
  return { ptr, address, length, buffer: koffi.view(ptr, length) };
}

/** A new memfd (close-on-exec); `flags` may add MFD_ALLOW_SEALING. */
export function memfdCreate(name: string, flags = 0): number {
  return check('memfd_create', c.memfdCreate(name, flags | MFD_CLOEXEC) as number);
}

const SYS_MEMFD_SECRET = 447;

/**
 * A new secret memory file (memfd_secret(2), close-on-exec): its pages leave the kernel's direct map and can be read
 * only through a mapping of the file, never by another process through /proc/PID/mem or process_vm_readv. Size it
 * once with ftruncate; it takes no seals. Throws SysError ENOSYS where the kernel has no CONFIG_SECRETMEM (or the
 * secretmem.enable=0 boot option turned it off).
 */
export function memfdSecret(): number {
  return check('memfd_secret', Number(c.syscall1(SYS_MEMFD_SECRET, O_CLOEXEC) as number | bigint));
}

/** Adds F_SEAL_* seals to a memfd created with MFD_ALLOW_SEALING. */
export function addSeals(fd: number, seals: number): void {
  check('fcntl(F_ADD_SEALS)', c.fcntl(fd, F_ADD_SEALS, seals) as number);
}

/** The F_SEAL_* seals of `fd`; undefined for a file that cannot carry seals (not shared memory: EINVAL). */
export function fileSeals(fd: number): number | undefined {
  const seals = c.fcntl(fd, F_GET_SEALS, 0) as number;
  if (seals >= 0) return seals;
  if (errno() === EINVAL) return undefined;
  return check('fcntl(F_GET_SEALS)', seals);
}

/** struct statfs (x86-64); test/sys/memfd.test.ts checks it against <sys/vfs.h>. */
export const statfsLayout = defineStruct('statfs', 'struct statfs', 120, {
  type: { offset: 0, type: 'u64', c: 'f_type' },
});

/** The magic number of the file system `fd`'s file lives on (statfs's f_type). */
export function fileSystemMagic(fd: number): number {
  const buf = StructView.alloc(statfsLayout);
  check('fstatfs', c.fstatfs(fd, buf.bytes()) as number);
  return Number(buf.get64('type'));
}

export function ftruncate(fd: number, length: number): void {
  check('ftruncate', c.ftruncate(fd, length) as number);
}

export const SEEK_DATA = 3, SEEK_HOLE = 4;

/**
 * lseek with SEEK_DATA or SEEK_HOLE: the first offset at or after `from` that holds data (or is a hole); undefined
 * where there is none before the end (ENXIO).
 */
export function seekExtent(fd: number, from: number, whence: typeof SEEK_DATA | typeof SEEK_HOLE): number | undefined {
  const at = Number(c.lseek(fd, from, whence) as number | bigint);
  if (at >= 0) return at;
  if (errno() === ENXIO) return undefined;
  throw new SysError('lseek', errno());
}

export function eventfd(initval: number, flags: number): number {
  return check('eventfd', c.eventfd(initval, flags | EFD_CLOEXEC) as number);
}

export const AF_UNIX = 1, AF_INET = 2, SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;

export function socket(domain: number, type: number, protocol = 0): number {
  return check('socket', c.socket(domain, type | SOCK_CLOEXEC, protocol) as number);
}

/** A connected pair of Unix sockets (close-on-exec), stream unless `type` says otherwise. */
export function socketpair(type = SOCK_STREAM): [number, number] {
  const fds = [0, 0];
  check('socketpair', c.socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) as number);
  return [fds[0] ?? -1, fds[1] ?? -1];
}

export const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;
export const EWOULDBLOCK = EAGAIN, EOPNOTSUPP = 95;
export const FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;
export const POLLIN = 1;

/** flock(2); false when LOCK_NB was given and another open file holds a conflicting lock. */
export function flock(fd: number, op: number): boolean {
  if ((c.flock(fd, op) as number) === 0) return true;
  if (errno() === EWOULDBLOCK && op & LOCK_NB) return false;
  throw new SysError('flock', errno());
}

/** fallocate(2); false when the file system does not support `mode`. */
export function fallocate(fd: number, mode: number, offset: number, length: number): boolean {
  if ((c.fallocate(fd, mode, offset, length) as number) === 0) return true;
  if (errno() === EOPNOTSUPP) return false;
  throw new SysError('fallocate', errno());
}

/**
 * fallocate(2) on one of libuv's threads, for a large allocation that would hold the event loop (shmem zeroes each
 * page: about a second per GiB here). koffi does not hand back the thread's errno: a failure says only that it failed.
 */
export function fallocateAsync(fd: number, mode: number, offset: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => {
    c.fallocate.async(fd, mode, offset, length, (error: unknown, rc: number) => {
      if (error) reject(error instanceof Error ? error : new Error(String(error)));
      else if (rc !== 0) {
        reject(new AzoteError('AllocationFailed', `fallocate of ${length} bytes failed (the thread's errno is not reported: most likely no memory or space)`,
          'free memory on the host, or make the allocation smaller'));
      }
      else resolve();
    });
  });
}

export const POLLOUT = 4;

/**
 * Waits until one of `readFds` is readable or one of `writeFds` writable, or `timeoutMs` passes (-1: forever).
 * Returns the fds that are ready (errors and hang-ups count as ready: the handler's read or write then says what
 * happened). Blocks the calling thread: for I/O threads, never the main thread.
 */
export function pollFds(readFds: readonly number[], writeFds: readonly number[], timeoutMs: number): { read: number[]; write: number[] } {
  const all = [...readFds.map((fd) => [fd, POLLIN] as const), ...writeFds.map((fd) => [fd, POLLOUT] as const)];
  const buf = new Uint8Array(8 * all.length);
  const dv = new DataView(buf.buffer);
  all.forEach(([fd, events], i) => {
    dv.setInt32(8 * i, fd, true);
    dv.setInt16(8 * i + 4, events, true);
  });
  for (;;) {
    const n = c.poll(buf, all.length, timeoutMs) as number;
    if (n >= 0) break;
    if (errno() !== EINTR) check('poll', -1);
  }
  const ready = all.filter((_, i) => dv.getInt16(8 * i + 6, true) !== 0);
  return { read: ready.filter(([, e]) => e === POLLIN).map(([fd]) => fd), write: ready.filter(([, e]) => e === POLLOUT).map(([fd]) => fd) };
}

const SUN_PATH_MAX = 108;
/** struct sockaddr_un; test/sys/libc.test.ts checks it against <sys/un.h>. */
export const sockaddrUn = defineStruct('sockaddr_un', 'struct sockaddr_un', 2 + SUN_PATH_MAX, {
  family: { offset: 0, type: 'u16', c: 'sun_family' }, path: { offset: 2, type: { bytes: SUN_PATH_MAX }, c: 'sun_path' },
});

/** struct sockaddr_un for `path` (the path NUL-terminated). */
function unixAddress(path: string): Uint8Array {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length >= SUN_PATH_MAX) {
    throw new AzoteError('SocketPathTooLong', `the socket path ${path} is ${bytes.length} bytes; at most ${SUN_PATH_MAX - 1} fit`,
      'use a shorter path (a relative one, or one under /tmp)');
  }
  const a = StructView.alloc(sockaddrUn).set('family', AF_UNIX);
  a.bytes().set(bytes, sockaddrUn.fields.path.offset);
  return a.bytes();
}

/** A non-blocking Unix stream socket listening at `path`. */
export function listenUnix(path: string, backlog = 64): number {
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    const a = unixAddress(path);
    check(`bind ${path}`, c.bind(fd, a, a.length) as number);
    check('listen', c.listen(fd, backlog) as number);
    return fd;
  } catch (e) {
    close(fd);
    throw e;
  }
}

/** A non-blocking Unix stream socket connected to `path`; throws SysError (ENOENT, ECONNREFUSED, EAGAIN...) when not. */
export function connectUnix(path: string): number {
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    const a = unixAddress(path);
    check(`connect ${path}`, c.connect(fd, a, a.length) as number);
    return fd;
  } catch (e) {
    close(fd);
    throw e;
  }
}

/** The next connection waiting on a listening socket (non-blocking, close-on-exec), or -1 when none is. */
export function acceptNonBlocking(fd: number): number {
  for (;;) {
    const n = c.accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC) as number;
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) throw new SysError('accept4', e);
  }
}

export const SHUT_WR = 1, SHUT_RDWR = 2;

export function shutdown(fd: number, how: number): void {
  c.shutdown(fd, how); // a socket the peer already closed has nothing left to shut
}

/** Reads and clears an eventfd's counter; 0 when it was not signalled (non-blocking fd). */
export function eventfdRead(fd: number): bigint {
  const b = new BigUint64Array(1);
  const n = c.read(fd, b, 8) as number;
  if (n === 8) return b[0] ?? 0n;
  if (errno() === EAGAIN) return 0n;
  return BigInt(check('eventfd read', -1));
}

/** read(2) on a non-blocking fd: the bytes read, 0 at end of file, -1 when nothing is there now (EAGAIN). */
export function readSome(fd: number, into: Uint8Array): number {
  for (;;) {
    const n = c.read(fd, into, into.length) as number;
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) throw new SysError('read', e);
  }
}

/** write(2) on a non-blocking fd: the bytes written, -1 when it would block (EAGAIN). */
export function writeSome(fd: number, from: Uint8Array): number {
  for (;;) {
    const n = c.write(fd, from, from.length) as number;
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) throw new SysError('write', e);
  }
}

/** Adds 1 to an eventfd's counter (wakes its reader, or fires the interrupt an irqfd binds to it). */
export function eventfdSignal(fd: number): void {
  const n = c.write(fd, BigUint64Array.of(1n), 8) as number;
  if (n !== 8) check('eventfd write', -1);
}

export function gettid(): number {
  return c.gettid() as number;
}

export function getpid(): number {
  return c.getpid() as number;
}

/** The parent's pid now (Node's process.ppid is the one at start). */
export function getppid(): number {
  return c.getppid() as number;
}

export function tgkill(pid: number, tid: number, sig: number): void {
  check('tgkill', c.tgkill(pid, tid, sig) as number);
}

export const F_DUPFD_CLOEXEC = 1030;

/** A new descriptor (close-on-exec, the lowest free from 3) for the same open file as `fd`. */
export function dup(fd: number): number {
  return check('fcntl(F_DUPFD_CLOEXEC)', c.fcntl(fd, F_DUPFD_CLOEXEC, 3) as number);
}

export function prctl(option: number, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
  return check('prctl', c.prctl(option, a2, a3, a4, a5) as number);
}

/** Names the calling thread (its /proc/PID/task/TID/comm): tools and people tell the hypervisor's threads apart by it. */
export function setThreadName(name: string): void {
  if (name.length > THREAD_NAME_MAX) throw new Error(`thread name ${name} is longer than ${THREAD_NAME_MAX} characters`);
  check('prctl(PR_SET_NAME)', c.prctlName(PR_SET_NAME, name, 0, 0, 0) as number);
}

/** <sched.h> */
export const CLONE_NEWNET = 0x40000000;

/**
 * unshare(2) for the calling thread. In a multi-threaded process (every Node process) only the calling thread moves,
 * so call it from the main thread before starting workers or children: both inherit the main thread's namespaces.
 */
export function unshare(flags: number): void {
  check('unshare', c.unshare(flags) as number);
}

/** Terminate the process now, without waiting for threads blocked in system calls. */
export function exitNow(status: number): never {
  c.exit(status);
  throw new Error('unreachable');
}

// struct sigaction (x86-64 glibc): handler @0, sa_mask @8 (128 bytes), sa_flags @136, sa_restorer @144; 152 bytes.
const SIGACTION_SIZE = 152;
const SIGACTION_FLAGS = 136;

const SA_RESTART = 0x10000000;

/**
 * Give `sig` a handler that does nothing, so that delivering it to a thread pulls it out of KVM_RUN (which returns
 * EINTR whatever the flags). With SA_RESTART: the signal goes to every thread of the process (the one in KVM_RUN is
 * one of libuv's, which has no name), and the others' calls carry on. The handler must be async-signal-safe native
 * code, so it is libc's getpid, which ignores its argument.
 */
export function installWakeSignal(sig: number): void {
  const handler = c.dlsym(null, 'getpid');
  const act = new Uint8Array(SIGACTION_SIZE);
  const dv = new DataView(act.buffer);
  dv.setBigUint64(0, koffi.address(handler), true);
  dv.setInt32(SIGACTION_FLAGS, SA_RESTART, true);
  check('sigaction', c.sigaction(sig, act, new Uint8Array(SIGACTION_SIZE)) as number);
}
