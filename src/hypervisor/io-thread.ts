// The VM's I/O thread: serves every started virtio device's queues. It sleeps in poll() on the queues' ioeventfds
// and a wake eventfd for commands; a notified queue is served at once and the guest interrupted through the
// device's irqfd (after setting INT_VRING in the transport's shared InterruptStatus).
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { restrictThisThread } from '../sys/seccomp.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { VirtqueueError } from '../virtio/split-queue.js';
import { buildQueues, createDataPath } from '../virtio/data-paths.js';
import type { DataPath } from '../virtio/device.js';
import { INT_VRING } from '../virtio/mmio-transport.js';
import type { IoCommand, IoEvent, IoThreadInit } from './io-thread-protocol.js';

interface Running {
  readonly path: DataPath;
  readonly irqFd: number;
  readonly isr: Int32Array;
}

const init = workerData as IoThreadInit;
const events = parentPort;
if (!events) throw new Error('io-thread must run as a worker');
const post = (e: IoEvent): void => events.postMessage(e);
const mem = GuestMemory.attach(init.memory);
const ack = new Int32Array(init.ack);
const devices = new Map<number, Running>();
/** Which device and queue each armed notify fd belongs to. */
const notifyTargets = new Map<number, { device: number; queue: number }>();
/** The queues of each device whose last turn ended at the data path's budget with chains left. */
const backlog = new Map<number, Set<number>>();
/** While a snapshot is taken nothing is served: the thread waits for commands alone. */
let paused = false;

/** Runs one piece of a device's work; interrupts the guest if it asks, stops the device if it fails. */
function serve(device: number, what: string, work: (path: DataPath) => boolean): void {
  const d = devices.get(device);
  if (!d) return;
  try {
    if (!work(d.path)) return;
    Atomics.or(d.isr, 0, INT_VRING);
    libc.eventfdSignal(d.irqFd);
  } catch (e) {
    stopDevice(device);
    post({ type: e instanceof VirtqueueError ? 'failed' : 'crashed', device, why: `${what}: ${errorMessage(e)}` });
  }
}

/** Serves one turn of a queue, and remembers it for another turn if it ended at its budget. */
function serveQueue(device: number, queue: number): void {
  serve(device, `queue ${queue}`, (p) => p.process(queue));
  const left = backlog.get(device) ?? new Set<number>();
  if (devices.get(device)?.path.unfinished?.(queue)) backlog.set(device, left.add(queue));
  else if (left.delete(queue) && left.size === 0) backlog.delete(device);
}

function stopDevice(device: number): void {
  devices.get(device)?.path.close?.();
  devices.delete(device);
  backlog.delete(device);
  for (const [fd, t] of notifyTargets) if (t.device === device) notifyTargets.delete(fd);
}

/** Runs one command; false for exit. */
function run(c: IoCommand): boolean {
  switch (c.type) {
    case 'start': {
      stopDevice(c.device);
      try {
        const path = createDataPath(c.spec, mem, buildQueues(mem, c.queues), c.features, {
          connectHost: (hostPort) => post({ type: 'connect-host', device: c.device, hostPort }),
        });
        devices.set(c.device, { path, irqFd: c.irqFd, isr: new Int32Array(c.isr) });
      } catch (e) {
        post({ type: e instanceof VirtqueueError ? 'failed' : 'crashed', device: c.device, why: errorMessage(e) });
        return true;
      }
      c.notifyFds.forEach((fd, queue) => notifyTargets.set(fd, { device: c.device, queue }));
      // A notification written before the start is in the eventfd's counter; serving once more is harmless.
      c.queues.forEach((q, queue) => { if (q) serveQueue(c.device, queue); });
      return true;
    }
    case 'stop':
      stopDevice(c.device);
      return true;
    case 'host-connected': {
      const d = devices.get(c.device);
      // A device reset meanwhile takes no connection.
      if (d?.path.hostConnected) serve(c.device, 'a host connection', (p) => p.hostConnected?.(c.hostPort, c.fd) ?? false);
      else if (c.fd !== undefined) libc.close(c.fd);
      return true;
    }
    case 'pause': {
      paused = true;
      const blockers = [...devices].flatMap(([device, d]) => {
        const why = d.path.snapshotBlocker?.();
        return why === undefined ? [] : [`virtio device ${device}: ${why}`];
      });
      post({ type: 'paused', blockers });
      return true;
    }
    case 'resume':
      paused = false;
      return true;
    case 'exit':
      return false;
  }
}

function drainCommands(): boolean {
  for (let m = receiveMessageOnPort(init.commands); m; m = receiveMessageOnPort(init.commands)) {
    const c = m.message as IoCommand;
    const goOn = run(c);
    Atomics.store(ack, 0, c.seq);
    Atomics.notify(ack, 0);
    if (!goOn) return false;
  }
  return true;
}

function main(): void {
  libc.setThreadName('azote-io');
  if (init.confine) restrictThisThread(init.confine);
  for (;;) {
    // The devices' own fds (a TAP...), as each data path wants them now.
    const hostFds = new Map<number, number>();
    const writeFds = new Map<number, number>();
    if (paused) {
      libc.pollFds([init.wakeFd], [], -1);
      libc.eventfdRead(init.wakeFd);
      if (!drainCommands()) return;
      continue;
    }
    for (const [device, d] of devices) {
      for (const fd of d.path.watched?.() ?? []) hostFds.set(fd, device);
      for (const fd of d.path.watchedWritable?.() ?? []) writeFds.set(fd, device);
    }
    // Queues left with work at their budget get another turn once every ready fd had its own.
    const ready = libc.pollFds([init.wakeFd, ...notifyTargets.keys(), ...hostFds.keys()], [...writeFds.keys()],
      backlog.size > 0 ? 0 : -1);
    for (const fd of ready.write) {
      const device = writeFds.get(fd);
      if (device !== undefined) serve(device, `fd ${fd}`, (p) => p.writable?.(fd) ?? false);
    }
    for (const fd of ready.read) {
      if (fd === init.wakeFd) {
        libc.eventfdRead(fd);
        if (!drainCommands()) return;
        continue;
      }
      const t = notifyTargets.get(fd);
      if (t) {
        libc.eventfdRead(fd);
        serveQueue(t.device, t.queue);
        continue;
      }
      const device = hostFds.get(fd);
      // An earlier handler this round may have closed the fd (and the data path forgotten it).
      if (device !== undefined && (devices.get(device)?.path.watched?.() ?? []).includes(fd)) {
        serve(device, `fd ${fd}`, (p) => p.readable?.(fd) ?? false);
      }
    }
    for (const [device, queues] of [...backlog]) for (const queue of [...queues]) serveQueue(device, queue);
  }
}

main();
