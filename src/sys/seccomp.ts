// A seccomp filter that takes the network, program execution and the kernel's administrative surface away from a
// process for good: socket(2), connect(2), bind(2), listen(2), accept(2), socketpair(2), execve(2) and their kin, and
// the calls a compromised hypervisor would reach for next (namespaces and mounts, keyrings, BPF, perf, userfaultfd,
// other processes' memory and descriptors, modules and kexec) fail with EPERM in every thread, present and future
// (SECCOMP_FILTER_FLAG_TSYNC). The kernel then enforces what the hypervisor's design promises: it uses only the
// descriptors it was given, opens no connection and waits for none, and starts no program.
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
/** What a filter sees of a system call: its number and the calling convention's architecture. */
export const seccompData = defineStruct('seccomp_data', 'struct seccomp_data', 64, {
  nr: { offset: 0, type: 'i32' }, arch: { offset: 4, type: 'u32' },
});

export const BPF_LD_W_ABS = 0x20, BPF_JMP_JEQ_K = 0x15, BPF_JMP_JGE_K = 0x35, BPF_RET_K = 0x06;
export const SECCOMP_RET_KILL_PROCESS = 0x80000000, SECCOMP_RET_ERRNO = 0x00050000, SECCOMP_RET_ALLOW = 0x7fff0000;
export const AUDIT_ARCH_X86_64 = 0xc000003e;
/** x32 system calls are x86-64 numbers with this bit: refused whole, so that none slips past the list. */
export const X32_SYSCALL_BIT = 0x40000000;
const SYS_SECCOMP = 317, SECCOMP_SET_MODE_FILTER = 1, SECCOMP_FILTER_FLAG_TSYNC = 1;
const EPERM = 1;

/** x86-64 system call numbers the passive hypervisor has no use for. */
export const DENIED_SYSCALLS: Readonly<Record<string, number>> = {
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

type Instruction = readonly [code: number, jt: number, jf: number, k: number];

/** The filter program: another architecture is killed, x32 and the denied calls get EPERM, the rest passes. */
export function denyProgram(numbers: readonly number[]): Instruction[] {
  const n = numbers.length;
  return [
    [BPF_LD_W_ABS, 0, 0, seccompData.fields.arch.offset],
    [BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    [BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS],
    [BPF_LD_W_ABS, 0, 0, seccompData.fields.nr.offset],
    [BPF_JMP_JGE_K, n + 1, 0, X32_SYSCALL_BIT],
    ...numbers.map((nr, i): Instruction => [BPF_JMP_JEQ_K, n - i, 0, nr]),
    [BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW],
    [BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM],
  ];
}

/**
 * Installs the filter on every thread of this process. The process must have no_new_privs (or CAP_SYS_ADMIN);
 * a filter cannot be removed, only made stricter.
 */
export function denyNetworkAndExec(): void {
  install(denyProgram(Object.values(DENIED_SYSCALLS)));
}

/**
 * A card's filter: the hypervisor's, but accept4(2), with which a card takes its frontends' connections on the
 * listening socket the controller made and handed to it. It needs no other call of the list: it opens no socket,
 * binds, listens or connects nowhere, and starts no program.
 */
export function denyForCards(): void {
  install(denyProgram(Object.entries(DENIED_SYSCALLS).filter(([name]) => name !== 'accept4').map(([, nr]) => nr)));
}

/**
 * A hypervisor with a vsock device (`azote run --vsock`): the hypervisor's filter, but accept4(2), with which it
 * takes host programs' connections on the listening socket its parent made and handed to it. Its connections to host
 * programs are made by its parent too: it still opens no socket and connects nowhere.
 */
export function denyForVsock(): void {
  install(denyProgram(Object.entries(DENIED_SYSCALLS).filter(([name]) => name !== 'accept4').map(([, nr]) => nr)));
}

function install(program: readonly Instruction[]): void {
  const code = koffi.alloc('uint8_t', program.length * sockFilter.size);
  const bytes = new Uint8Array(koffi.view(code, program.length * sockFilter.size));
  program.forEach(([op, jt, jf, k], i) => {
    new StructView(sockFilter, bytes, i * sockFilter.size).set('code', op).set('jt', jt).set('jf', jf).set('k', k);
  });
  const prog = new Uint8Array(sockFprog.size);
  new StructView(sockFprog, prog).set('len', program.length).set('filter', koffi.address(code) as bigint);
  const r = Number(syscall3(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog));
  koffi.free(code);
  if (r < 0) throw new SysError('seccomp', errno());
  // With TSYNC, a positive answer names a thread that could not take the filter.
  if (r > 0) throw new Error(`seccomp: thread ${r} could not take the filter`);
}
