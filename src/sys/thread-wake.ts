// Pulls a thread of this process out of a blocking system call when its identity is unknown: koffi's asynchronous
// calls (a vCPU's KVM_RUN) run on whichever of libuv's pool threads is free, and a process-directed signal goes to
// any thread that does not block it (Node's own threads take it as readily), so every other thread is signalled.
// The signal's handler does nothing and has SA_RESTART, so only calls that never restart (KVM_RUN, poll) return
// EINTR; the rest carry on. Threads are listed in /proc/self/task: a jail mounts a /proc showing its own processes.
import { readdirSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import * as libc from './libc.js';

/** A real-time signal nothing else in the process uses. */
export const WAKE_SIGNAL = 41;

let armed = false;

/** Gives the wake signal its do-nothing handler (once per process); before any thread may be woken. */
export function armThreadWake(): void {
  if (armed) return;
  libc.installWakeSignal(WAKE_SIGNAL);
  armed = true;
}

/** Signals every thread of this process but the calling one. */
export function wakeOtherThreads(): void {
  armThreadWake();
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch (e) {
    throw new AzoteError('NoProcTasks', `this process cannot list its threads in /proc/self/task (${(e as Error).message}), so it cannot pull one out of a blocking call`,
      'run it with /proc mounted (a jail mounts one with subset=pid)', { cause: e });
  }
  const pid = libc.getpid();
  const self = libc.gettid();
  for (const task of tasks) {
    const tid = Number(task);
    if (tid === self) continue;
    try {
      libc.tgkill(pid, tid, WAKE_SIGNAL);
    } catch {
      // The thread ended meanwhile.
    }
  }
}
