// Run by the jail benchmark in a process of its own (a filter cannot be taken off): times ioctl(-1, KVM_RUN), the
// call a vCPU makes at every exit, on a thread with no filter, then under the hypervisor's process list, which the
// pool thread that runs a jailed vCPU's KVM_RUN is under. The descriptor -1 makes the kernel answer
// EBADF at once, so what is timed is the call's entry, the filters and koffi's own cost, the same in every row.
// Prints one JSON line: nanoseconds per call, one sample per round, for each row.
import koffi from 'koffi';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { HYPERVISOR_SECCOMP } from '../src/hypervisor/seccomp-profile.js';
import * as libc from '../src/sys/libc.js';
import { restrictProcess } from '../src/sys/seccomp.js';

const SYS_IOCTL = 16, KVM_RUN = 0xae80;

function nsPerCall(calls: number, rounds: number): number[] {
  const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b)');
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) raw(SYS_IOCTL, -1, KVM_RUN);
    samples.push(Number(process.hrtime.bigint() - t0) / calls);
  }
  return samples;
}

interface Job { readonly calls: number; readonly rounds: number }

function onThread(job: Job): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job, execArgv: [] });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

if (isMainThread) {
  const calls = Number(process.argv[2] ?? 200_000), rounds = Number(process.argv[3] ?? 7);
  const none = await onThread({ calls, rounds });
  libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
  restrictProcess(HYPERVISOR_SECCOMP.process);
  const processList = await onThread({ calls, rounds });
  process.stdout.write(`${JSON.stringify({ none, processList })}\n`);
  process.exit(0);
} else {
  const job = workerData as Job;
  parentPort?.postMessage(nsPerCall(job.calls, job.rounds));
}
