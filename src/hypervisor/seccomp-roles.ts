// The seccomp allowlists a hypervisor process takes, by thread role (the process's, and its I/O thread's): the generated lists (seccomp-profile.ts), and
// where its parent hands it a vsock's listening socket, accept4 besides for the process and the I/O thread, which
// takes the host programs' connections on it (the guest's connections to the host are made by the parent).
// The process may also lseek: a snapshot finds the guest memfd's data extents with SEEK_DATA/SEEK_HOLE, so that it
// reads only pages the guest wrote (the tests the profile is recorded from take no snapshot), or on secret memory, which
// has no holes to seek, asks which pages are resident (mincore); and it may make secret memory for the guest
// (memfd_secret: the profile is recorded on a memfd). It lists its threads (glibc's opendir: newfstatat, then
// getdents64 on /proc/self/task) to pull a vCPU out of KVM_RUN when the VM pauses or stops, which the recorded tests
// may not do.
import { SYS_ACCEPT4, SYS_GETDENTS64, SYS_LSEEK, SYS_MEMFD_SECRET, SYS_MINCORE, SYS_NEWFSTATAT, type SyscallAllowlist } from '../sys/seccomp.js';
import { HYPERVISOR_SECCOMP } from './seccomp-profile.js';

export interface HypervisorAllowlists {
  readonly process: SyscallAllowlist;
  readonly io: SyscallAllowlist;
}

export function hypervisorAllowlists(o: { readonly vsock: boolean }): HypervisorAllowlists {
  const accept = (list: SyscallAllowlist): SyscallAllowlist =>
    (o.vsock ? { ...list, syscalls: { ...list.syscalls, accept4: SYS_ACCEPT4 } } : list);
  const process = { ...HYPERVISOR_SECCOMP.process, syscalls: {
    ...HYPERVISOR_SECCOMP.process.syscalls, lseek: SYS_LSEEK, mincore: SYS_MINCORE, memfd_secret: SYS_MEMFD_SECRET, getdents64: SYS_GETDENTS64,
    newfstatat: SYS_NEWFSTATAT,
  } };
  return { process: accept(process), io: accept(HYPERVISOR_SECCOMP.io) };
}
