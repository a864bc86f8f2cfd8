// Readability of a descriptor, told on the main thread's event loop. Node reports readiness only for the sockets it
// reads itself, and a socket whose messages carry descriptors (SCM_RIGHTS) must be read with recvmsg: so one thread
// per process (fd-watcher-thread.ts) sleeps in poll() and tells the event loop which watched descriptor is ready;
// the owner reads it without blocking, as much as it wants, and arms the watch again. Nothing is read on the thread:
// what a peer sends waits in the kernel's socket buffer until its reader asks, so a fast peer cannot flood memory.
import { MessageChannel, Worker } from 'node:worker_threads';
import * as libc from './libc.js';
import type { WatcherCommand, WatcherInit } from './fd-watcher-thread.js';

export interface FdWatch {
  /** Asks for one more report when the descriptor is readable (at once if it is now). */
  arm(): void;
  /** No more reports; the descriptor itself stays its owner's to close (after this). */
  close(): void;
}

class Watcher {
  private readonly wake = libc.eventfd(0, libc.EFD_NONBLOCK);
  private readonly exiting = new Int32Array(new SharedArrayBuffer(4));
  private readonly commands = new MessageChannel();
  private readonly worker: Worker;
  private readonly watches = new Map<number, () => void>();
  private nextId = 1;

  constructor() {
    const init: WatcherInit = { wake: this.wake, commands: this.commands.port2, exiting: this.exiting.buffer as SharedArrayBuffer };
    this.worker = new Worker(new URL('./fd-watcher-thread.js', import.meta.url), { workerData: init, transferList: [this.commands.port2] });
    this.worker.on('message', (id: number) => this.watches.get(id)?.());
    this.worker.unref();
    // A thread asleep in poll() would hold the process's exit up for ever: it is woken and told to return.
    process.once('exit', () => {
      Atomics.store(this.exiting, 0, 1);
      libc.eventfdSignal(this.wake);
    });
  }

  watch(fd: number, onReadable: () => void): FdWatch {
    const id = this.nextId++;
    this.watches.set(id, onReadable);
    // The thread keeps the process alive while something is watched, as a socket Node reads would.
    if (this.watches.size === 1) this.worker.ref();
    const send = (c: WatcherCommand): void => {
      this.commands.port1.postMessage(c);
      libc.eventfdSignal(this.wake);
    };
    send({ type: 'arm', id, fd });
    return {
      arm: () => {
        if (this.watches.has(id)) send({ type: 'arm', id, fd });
      },
      close: () => {
        if (!this.watches.delete(id)) return;
        send({ type: 'forget', id });
        if (this.watches.size === 0) this.worker.unref();
      },
    };
  }
}

let watcher: Watcher | undefined;

/** Calls `onReadable` once when `fd` is readable, hung up or failed; arm() asks for the next time. */
export function watchReadable(fd: number, onReadable: () => void): FdWatch {
  watcher ??= new Watcher();
  return watcher.watch(fd, onReadable);
}
