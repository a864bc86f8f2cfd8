// Seccomp allowlists: a process (or one of its threads) keeps only the system calls its role was seen to make, and
// for the roles that need ioctl(2), only the requests seen. Everything else fails with EPERM, not death: a runtime
// that probes for a feature (libuv tries io_uring, then falls back) keeps working, and nothing is gained by an
// attacker who learns that a call is refused. Filters stack and cannot be removed: a thread that adds its role's
// filter keeps the process's too, so a call must be on both lists.
// The lists are generated from what each role really calls (tools/seccomp-profile.js records it with strace);
// MUST_FAIL names the calls that no list may hold whatever a recording saw (the test calls each under each list).
// Layouts from <linux/filter.h> and <linux/seccomp.h>; test/sys/seccomp.test.ts checks them against the headers.
import koffi from 'koffi';
import { defineStruct, StructView } from '../base/struct.js';
import { errno, SysError } from './libc.js';

const lib = koffi.load('libc.so.6');
const syscall3 = lib.func('long syscall(long nr, unsigned long a1, unsigned long a2, void *a3)');

export const sockFilter = defineStruct('sock_filter', 'struct sock_filter', 8, {
  code: { offset: 0, type: 'u16' }, jt: { offset: 2, type: 'u8' }, jf: { offset: 3, type: 'u8' }, k: { offset: 4, type: 'u32' },
});
export const sockFprog = defineStruct('sock_fprog', 'struct sock_fprog', 16, {
  len: { offset: 0, type: 'u16' }, filter: { offset: 8, type: 'u64' },
});
/** What a filter sees of a system call: its number, the calling convention's architecture and its arguments. */
export const seccompData = defineStruct('seccomp_data', 'struct seccomp_data', 64, {
  nr: { offset: 0, type: 'i32' }, arch: { offset: 4, type: 'u32' }, args: { offset: 16, type: 'u64' },
});

export const BPF_LD_W_ABS = 0x20, BPF_JMP_JEQ_K = 0x15, BPF_JMP_JGE_K = 0x35, BPF_RET_K = 0x06;
export const SECCOMP_RET_KILL_PROCESS = 0x80000000, SECCOMP_RET_ERRNO = 0x00050000, SECCOMP_RET_ALLOW = 0x7fff0000;
export const AUDIT_ARCH_X86_64 = 0xc000003e;
/** x32 system calls are x86-64 numbers with this bit: refused whole, so that none slips past the list. */
export const X32_SYSCALL_BIT = 0x40000000;
const SYS_SECCOMP = 317, SECCOMP_SET_MODE_FILTER = 1, SECCOMP_FILTER_FLAG_TSYNC = 1;
const EPERM = 1;
/** The kernel's limit on one filter's length (BPF_MAXINSNS). */
export const MAX_INSTRUCTIONS = 4096;
export const SYS_IOCTL = 16, SYS_LSEEK = 8, SYS_ACCEPT4 = 288, SYS_MINCORE = 27, SYS_MEMFD_SECRET = 447, SYS_GETDENTS64 = 217, SYS_NEWFSTATAT = 262;

/** x86-64 system calls no hypervisor or card may make, whatever a recording saw. */
export const MUST_FAIL: Readonly<Record<string, number>> = {
  // the network and programs
  socket: 41, connect: 42, accept: 43, bind: 49, listen: 50, socketpair: 53, execve: 59, accept4: 288, execveat: 322,
  // other processes
  ptrace: 101, process_vm_readv: 310, process_vm_writev: 311, kcmp: 312, pidfd_getfd: 438,
  // namespaces, mounts and roots
  unshare: 272, setns: 308, mount: 165, umount2: 166, pivot_root: 155, chroot: 161, open_tree: 428, move_mount: 429,
  fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442, name_to_handle_at: 303, open_by_handle_at: 304,
  // kernel surfaces with a history of exploits
  io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427, userfaultfd: 323, bpf: 321, perf_event_open: 298,
  add_key: 248, request_key: 249, keyctl: 250,
  // the machine itself
  init_module: 175, finit_module: 313, delete_module: 176, kexec_load: 246, kexec_file_load: 320, reboot: 169,
  swapon: 167, swapoff: 168, acct: 163, syslog: 103, quotactl: 179,
};

/**
 * Calls every list allows whatever a recording saw, because a thread cannot do without them in paths a recording
 * rarely meets: the return from a signal handler and the restart of a call it interrupted (a process-directed
 * signal may land on any thread), exit (glibc's _exit calls exit_group and exit until one works: refusing both
 * would spin), futex, getrandom (OpenSSL reseeds from the kernel after an hour, and the rng device serves from it)
 * writev (libuv writes several buffers to a pipe at once, as write does one), seccomp itself (a thread may always
 * narrow what it can do: the vCPU and I/O threads add their lists under the process's), and the harmless calls a
 * runtime makes now and then, which one recording sees and the next does not (yielding the CPU, sleeping, reading
 * the clock where the vDSO cannot).
 */
export const ALWAYS_ALLOWED: Readonly<Record<string, number>> = {
  rt_sigreturn: 15, restart_syscall: 219, exit: 60, exit_group: 231, futex: 202, getrandom: 318, writev: 20, seccomp: 317,
  sched_yield: 24, nanosleep: 35, clock_nanosleep: 230, clock_gettime: 228, gettimeofday: 96,
};

/** What one role may call: system calls by name and number, and if `ioctls` is given, only those ioctl requests. */
export interface SyscallAllowlist {
  readonly syscalls: Readonly<Record<string, number>>;
  readonly ioctls?: Readonly<Record<string, number>>;
}

/** The calls of MUST_FAIL that `list` holds other than `exceptions`: a list that holds any is refused. */
export function forbiddenIn(list: SyscallAllowlist, exceptions: readonly string[] = []): string[] {
  return Object.keys(list.syscalls).filter((name) => name in MUST_FAIL && !exceptions.includes(name));
}

type Instruction = readonly [code: number, jt: number, jf: number, k: number];

const allow: Instruction = [BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW];
const refuse: Instruction = [BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM];
// The low half of ioctl's request: the kernel takes it as an unsigned int and ignores the rest.
const IOCTL_REQUEST_OFFSET = seccompData.fields.args.offset + 8;

/**
 * The filter program: another architecture is killed, x32 refused, each listed call and ALWAYS_ALLOWED's allowed (ioctl only with a
 * listed request when the list restricts it), the rest refused with EPERM. Each test jumps over one instruction at
 * most, so the program has no jump longer than BPF's 255 whatever the list's length.
 */
export function allowProgram(list: SyscallAllowlist): Instruction[] {
  const numbers = [...new Set([...Object.values(list.syscalls), ...Object.values(ALWAYS_ALLOWED)])];
  const restricted = list.ioctls !== undefined && numbers.includes(SYS_IOCTL);
  const program: Instruction[] = [
    [BPF_LD_W_ABS, 0, 0, seccompData.fields.arch.offset],
    [BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    [BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS],
    [BPF_LD_W_ABS, 0, 0, seccompData.fields.nr.offset],
    [BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT],
    refuse,
    ...numbers.filter((nr) => !(restricted && nr === SYS_IOCTL)).flatMap((nr): Instruction[] => [[BPF_JMP_JEQ_K, 0, 1, nr], allow]),
  ];
  if (restricted) {
    program.push([BPF_JMP_JEQ_K, 1, 0, SYS_IOCTL], refuse, [BPF_LD_W_ABS, 0, 0, IOCTL_REQUEST_OFFSET],
      ...[...new Set(Object.values(list.ioctls ?? {}))].flatMap((request): Instruction[] => [[BPF_JMP_JEQ_K, 0, 1, request], allow]));
  }
  program.push(refuse);
  if (program.length > MAX_INSTRUCTIONS) throw new Error(`a seccomp program of ${program.length} instructions is longer than the kernel takes`);
  return program;
}

/**
 * Installs `list` on every thread of this process, present and future (threads started later inherit it). The
 * process must have no_new_privs (or CAP_SYS_ADMIN).
 */
export function restrictProcess(list: SyscallAllowlist): void {
  // Node makes its stdout and stderr streams on first use, asking the kernel what each descriptor is with calls no
  // list holds (getsockopt, for a socket): made now, before the filter.
  void process.stdout;
  void process.stderr;
  install(allowProgram(list), SECCOMP_FILTER_FLAG_TSYNC);
}

/** Adds `list` on the calling thread only (and threads it starts), on top of the process's filter. */
export function restrictThisThread(list: SyscallAllowlist): void {
  install(allowProgram(list), 0);
}

function install(program: readonly Instruction[], flags: number): void {
  const code = koffi.alloc('uint8_t', program.length * sockFilter.size);
  const bytes = new Uint8Array(koffi.view(code, program.length * sockFilter.size));
  program.forEach(([op, jt, jf, k], i) => {
    new StructView(sockFilter, bytes, i * sockFilter.size).set('code', op).set('jt', jt).set('jf', jf).set('k', k);
  });
  const prog = new Uint8Array(sockFprog.size);
  new StructView(sockFprog, prog).set('len', program.length).set('filter', koffi.address(code) as bigint);
  const r = Number(syscall3(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, prog));
  koffi.free(code);
  if (r < 0) throw new SysError('seccomp', errno());
  // With TSYNC, a positive answer names a thread that could not take the filter.
  if (r > 0) throw new Error(`seccomp: thread ${r} could not take the filter`);
}
