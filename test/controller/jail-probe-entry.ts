// Run inside a real jail by jail-probe.test.ts: tries what a compromised hypervisor would (widen its cores, leave a
// SysV segment behind, look for other processes, then under the hypervisor's seccomp lists the calls each of its
// thread roles must not make), prints what it got as one JSON line, then waits for its stdin to close so the test
// can look at it from outside.
import koffi from 'koffi';
import { probeHypervisorRoles } from '../framework/seccomp-probe.js';

const libc = koffi.load('libc.so.6');
const getaffinity = libc.func('int sched_getaffinity(int pid, size_t size, _Out_ uint8_t *mask)');
const setaffinity = libc.func('int sched_setaffinity(int pid, size_t size, const uint8_t *mask)');
const shmget = libc.func('int shmget(int key, size_t size, int flags)');
const kill = libc.func('int kill(int pid, int sig)');

const MASK_BYTES = 128;
const IPC_CREAT = 0o1000;

function cores(): number[] {
  const mask = Buffer.alloc(MASK_BYTES);
  if (getaffinity(0, MASK_BYTES, mask) !== 0) return [];
  return [...Array(MASK_BYTES * 8).keys()].filter((c) => ((mask[c >> 3] ?? 0) >> (c & 7)) & 1);
}

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
};
process.stdout.write(`${JSON.stringify(report)}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
