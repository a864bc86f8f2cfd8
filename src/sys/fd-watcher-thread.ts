// The thread behind fd-watcher.ts: sleeps in poll() on the armed descriptors and a wake eventfd; a descriptor that
// becomes readable (or hung up, or failed) is reported once by its watch's id and disarmed until armed again.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import * as libc from './libc.js';

export type WatcherCommand =
  | { readonly type: 'arm'; readonly id: number; readonly fd: number }
  | { readonly type: 'forget'; readonly id: number };

export interface WatcherInit {
  readonly wake: number;
  readonly commands: MessagePort;
  /** Set to 1 by the process when it exits: the thread returns at once so that the exit is not held up. */
  readonly exiting: SharedArrayBuffer;
}

if (parentPort) {
  const init = workerData as WatcherInit;
  const events = parentPort;
  const exiting = new Int32Array(init.exiting);
  const armed = new Map<number, number>();
  libc.setThreadName('azote-watcher');
  for (;;) {
    for (let m = receiveMessageOnPort(init.commands); m; m = receiveMessageOnPort(init.commands)) {
      const c = m.message as WatcherCommand;
      if (c.type === 'arm') armed.set(c.id, c.fd);
      else armed.delete(c.id);
    }
    if (Atomics.load(exiting, 0) === 1) break;
    const ready = new Set(libc.pollFds([init.wake, ...armed.values()], [], -1).read);
    if (ready.has(init.wake)) libc.eventfdRead(init.wake);
    for (const [id, fd] of armed) {
      if (!ready.has(fd)) continue;
      armed.delete(id);
      events.postMessage(id);
    }
  }
}
