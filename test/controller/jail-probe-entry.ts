// Run inside a real jail by jail-probe.test.ts: tries what a compromised hypervisor would (widen its cores, leave a
// SysV segment behind, look for other processes, then under the hypervisor's seccomp lists the calls each of its
// thread roles must not make), checks what the hypervisor itself needs (its /proc, pulling a pool thread out of a
// blocking call as a vCPU's KVM_RUN is when the VM stops), prints what it got as one JSON line, then waits for its
// stdin to close so the test can look at it from outside.
import koffi from 'koffi';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { wakeOtherThreads } from '../../src/sys/thread-wake.js';
import { probeHypervisorRoles } from '../framework/seccomp-probe.js';

const libc = koffi.load('libc.so.6');
const getaffinity = libc.func('int sched_getaffinity(int pid, size_t size, _Out_ uint8_t *mask)');
const setaffinity = libc.func('int sched_setaffinity(int pid, size_t size, const uint8_t *mask)');
const shmget = libc.func('int shmget(int key, size_t size, int flags)');
const kill = libc.func('int kill(int pid, int sig)');
const poll = libc.func('int poll(void *fds, unsigned long n, int timeout)');

const MASK_BYTES = 128;
const IPC_CREAT = 0o1000;

function cores(): number[] {
  const mask = Buffer.alloc(MASK_BYTES);
  if (getaffinity(0, MASK_BYTES, mask) !== 0) return [];
  return [...Array(MASK_BYTES * 8).keys()].filter((c) => ((mask[c >> 3] ?? 0) >> (c & 7)) & 1);
}

/**
 * A pool thread blocked in poll() with no timeout (which, like KVM_RUN, returns EINTR on a handled signal), woken as
 * the vCPUs are; signalled again until it returns, since the first signal may come before the call blocks.
 */
async function wakeBlockedPoolThread(): Promise<string> {
  const returned = new Promise<number>((resolve) => {
    poll.async(null, 0, -1, (error: unknown, rc: number) => resolve(error ? -2 : rc));
  });
  for (let round = 0; round < 100; round++) {
    wakeOtherThreads();
    const rc = await Promise.race([returned, sleep(50).then(() => undefined)]);
    if (rc !== undefined) return rc === -1 ? 'woken' : `poll returned ${rc}`;
  }
  return 'still blocked after 5 s';
}

// Made before the seccomp list, which refuses what Node asks of a socket it makes a stream of (getsockname).
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));

const before = cores();
const widened = setaffinity(0, MASK_BYTES, Buffer.alloc(MASK_BYTES, 0xff)) as number;
const report = {
  pid: process.pid,
  coresBefore: before,
  setAffinityAll: widened === 0 ? 'ok' : `errno ${koffi.errno()}`,
  coresAfter: cores(),
  shmid: shmget(0, 4096, IPC_CREAT | 0o666) as number,
  killHostInit: kill(1, 0) === 0 && process.pid !== 1 ? 'reached' : 'not reached',
  seccomp: await probeHypervisorRoles(),
  proc: readdirSync('/proc').sort(),
  threads: readdirSync('/proc/self/task').length,
  wake: await wakeBlockedPoolThread(),
};
process.stdout.write(`${JSON.stringify(report)}\n`);
