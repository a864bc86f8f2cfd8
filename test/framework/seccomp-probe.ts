// Probes the hypervisor's seccomp lists from inside a process, as a compromised hypervisor would try them: the
// process takes its list (as instance-main.ts does), then a thread per role takes its own on top (as the vCPU and
// I/O threads do), and each tries the calls that must fail and a few that its role needs. Each call is made with
// arguments that make it fail harmlessly where it is let through (a null pointer, descriptor -1), so the errno
// tells a refusal (EPERM) from a call the kernel ran. The process must have no_new_privs already.
import koffi from 'koffi';
import { constants } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { hypervisorAllowlists, type HypervisorAllowlists } from '../../src/hypervisor/seccomp-roles.js';
import { MUST_FAIL, restrictProcess, restrictThisThread } from '../../src/sys/seccomp.js';

export type Role = keyof HypervisorAllowlists;

/** The lists as instance-main.ts takes them (a hypervisor without vsock). */
const LISTS = hypervisorAllowlists({ vsock: false });

export interface RoleReport {
  /** The calls of MUST_FAIL that did not fail with EPERM. */
  readonly notRefused: string[];
  /** Each probe's errno name ('ok' where the call succeeded). */
  readonly calls: Record<string, string>;
}

const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b, long c)');
const errnoNames = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));
const errnoOf = (nr: number, a = 0, b = 0, c = 0): string => (Number(raw(nr, a, b, c)) < 0 ? errnoNames.get(koffi.errno()) ?? `errno ${koffi.errno()}` : 'ok');
const EPERM = constants.errno.EPERM;

/** x86-64 numbers of the calls probed besides MUST_FAIL's (sys/syscall.h; the seccomp test checks the lists'). */
const SYS = { ioctl: 16, openat: 257, memfd_create: 319, clone3: 435, futex: 202 } as const;
const KVM_RUN = 0xae80, TCGETS = 0x5401, FUTEX_WAKE = 1;

function probe(): RoleReport {
  return {
    notRefused: Object.entries(MUST_FAIL).filter(([, nr]) => (Number(raw(nr, 0, 0, 0)) < 0 ? koffi.errno() : 0) !== EPERM).map(([name]) => name),
    calls: {
      memfd_create: errnoOf(SYS.memfd_create),
      openat: errnoOf(SYS.openat, -1),
      clone3: errnoOf(SYS.clone3),
      'ioctl KVM_RUN': errnoOf(SYS.ioctl, -1, KVM_RUN),
      'ioctl TCGETS': errnoOf(SYS.ioctl, -1, TCGETS),
      futex: errnoOf(SYS.futex, 0, FUTEX_WAKE),
    },
  };
}

/** Takes the hypervisor's process list, then probes the process and a thread of each role. */
export async function probeHypervisorRoles(): Promise<Record<Role, RoleReport>> {
  restrictProcess(LISTS.process);
  const roles = Object.keys(LISTS).filter((r): r is Exclude<Role, 'process'> => r !== 'process');
  const threads = await Promise.all(roles.map((role) => new Promise<[Role, RoleReport]>((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { role }, execArgv: [] });
    worker.once('message', (r: RoleReport) => resolve([role, r]));
    worker.once('error', reject);
  })));
  return { process: probe(), ...Object.fromEntries(threads) } as Record<Role, RoleReport>;
}

if (!isMainThread && parentPort && (workerData as { role?: Role }).role !== undefined) {
  restrictThisThread(LISTS[(workerData as { role: Role }).role]);
  parentPort.postMessage(probe());
}

/**
 * What the probe must find: every MUST_FAIL call refused in every role; memory files, opening files, new threads and
 * ioctl only for the process (vCPUs run KVM_RUN on its pool threads; the I/O thread is set up by then); futex
 * everywhere (threads wait on each other).
 */
export const EXPECTED_HYPERVISOR_ROLES: Record<Role, RoleReport> = {
  process: { notRefused: [], calls: { memfd_create: 'EFAULT', openat: 'EFAULT', clone3: 'EINVAL', 'ioctl KVM_RUN': 'EBADF', 'ioctl TCGETS': 'EBADF', futex: 'EFAULT' } },
  io: { notRefused: [], calls: { memfd_create: 'EPERM', openat: 'EPERM', clone3: 'EPERM', 'ioctl KVM_RUN': 'EPERM', 'ioctl TCGETS': 'EPERM', futex: 'EFAULT' } },
};
