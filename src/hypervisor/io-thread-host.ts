// The main thread's side of the VM's I/O thread: starts it, hands it devices to serve, and is told of failures.
// Each virtio device gets a ThreadedRunner whose queue notifications are bound to eventfds with KVM_IOEVENTFD and
// whose interrupt is bound to an eventfd with KVM_IRQFD at creation.
import type { SyscallAllowlist } from '../sys/seccomp.js';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import type { DeviceSlots } from '../isolation/machine.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { DataPathSpec, QueueRunner, RunnerEvents } from '../virtio/device.js';
import type { QueueConfig } from '../virtio/split-queue.js';
import { REG } from '../virtio/mmio-transport.js';
import type { IoCommand, IoEvent, IoThreadInit } from './io-thread-protocol.js';

/** How long a reset waits for the I/O thread to let go of a device's queues (it may be inside a slow write). */
const STOP_WAIT_MS = 5000;

export class IoThread {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly wakeFd: number;
  private readonly ack = new Int32Array(new SharedArrayBuffer(4));
  private seq = 0;
  private readonly listeners = new Map<number, RunnerEvents>();
  private exited = false;
  private readonly exitWaiters: Array<() => void> = [];
  private pauseWaiters: Array<(blockers: readonly string[]) => void> = [];

  /**
   * `confine`: the list the thread narrows its system calls to (the I/O role's), if any. `connectHost` is asked for a connection
   * to the host program at a vsock device's `hostPort`; its answer goes to hostConnected.
   */
  constructor(mem: GuestMemory, private readonly log: Logger, confine: SyscallAllowlist | undefined, onCrash: (why: string) => void,
    connectHost: (device: number, hostPort: number) => void) {
    this.wakeFd = libc.eventfd(0, libc.EFD_NONBLOCK);
    const channel = new MessageChannel();
    this.port = channel.port1;
    const init: IoThreadInit = {
      memory: mem.share(), wakeFd: this.wakeFd, ack: this.ack.buffer as SharedArrayBuffer,
      commands: channel.port2, confine,
    };
    this.worker = new Worker(new URL('./io-thread.js', import.meta.url), { workerData: init, transferList: [channel.port2] });
    this.worker.on('message', (e: IoEvent) => {
      if (e.type === 'failed') this.listeners.get(e.device)?.failed(e.why);
      else if (e.type === 'connect-host') connectHost(e.device, e.hostPort);
      else if (e.type === 'paused') for (const w of this.pauseWaiters.splice(0)) w(e.blockers);
      else onCrash(`virtio device ${e.device}: ${e.why}`);
    });
    this.worker.on('error', (e) => onCrash(`I/O thread failed: ${e.message}`));
    this.worker.on('exit', () => {
      this.exited = true;
      for (const w of this.exitWaiters.splice(0)) w();
      for (const w of this.pauseWaiters.splice(0)) w(['the I/O thread has ended']);
    });
  }

  /** Posts a command and waits until the thread has carried it out (or `waitMs` passed). */
  private command(c: Omit<IoCommand, 'seq'> & { type: IoCommand['type'] }, waitMs: number): void {
    if (this.exited) return;
    const seq = ++this.seq;
    this.port.postMessage({ ...c, seq });
    libc.eventfdSignal(this.wakeFd);
    const deadline = Date.now() + waitMs;
    while (Atomics.load(this.ack, 0) < seq && !this.exited) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.log.warn('the I/O thread did not answer in time', { command: c.type, waitMs });
        return;
      }
      Atomics.wait(this.ack, 0, Atomics.load(this.ack, 0), Math.min(left, 100));
    }
  }

  start(device: number, spec: DataPathSpec, queues: readonly (QueueConfig | undefined)[], features: bigint,
    notifyFds: readonly number[], irqFd: number, isr: Int32Array, events: RunnerEvents): void {
    this.listeners.set(device, events);
    this.command({ type: 'start', device, spec, queues, features, notifyFds, irqFd, isr: isr.buffer as SharedArrayBuffer } as IoCommand, STOP_WAIT_MS);
  }

  stop(device: number): void {
    this.listeners.delete(device);
    this.command({ type: 'stop', device } as IoCommand, STOP_WAIT_MS);
  }

  /** Gives the thread the answer to a device's connect-host: a connected socket (the thread's from now on) or none. */
  hostConnected(device: number, hostPort: number, fd: number | undefined): void {
    if (this.exited) {
      if (fd !== undefined) libc.close(fd);
      return;
    }
    this.command({ type: 'host-connected', device, hostPort, fd } as IoCommand, STOP_WAIT_MS);
  }

  /**
   * Stops serving every device until resume(): once this resolves the thread touches no guest memory. Resolves with
   * why some devices' state cannot be saved now, if any.
   */
  pause(): Promise<readonly string[]> {
    if (this.exited) return Promise.resolve(['the I/O thread has ended']);
    const paused = new Promise<readonly string[]>((resolve) => this.pauseWaiters.push(resolve));
    this.command({ type: 'pause' } as IoCommand, STOP_WAIT_MS);
    return paused;
  }

  resume(): void {
    this.command({ type: 'resume' } as IoCommand, STOP_WAIT_MS);
  }

  /** Ends the thread; resolves once it is gone (guest memory may be unmapped after that). */
  close(): Promise<void> {
    if (this.exited) return Promise.resolve();
    const gone = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    this.port.postMessage({ type: 'exit', seq: ++this.seq });
    libc.eventfdSignal(this.wakeFd);
    const timer = setTimeout(() => void this.worker.terminate(), STOP_WAIT_MS);
    timer.unref();
    return gone.then(() => {
      clearTimeout(timer);
      libc.close(this.wakeFd);
    });
  }
}

/** Runs one device's data path on the VM's I/O thread, with KVM signalling its queues and raising its interrupt. */
export class ThreadedRunner implements QueueRunner {
  private readonly notifyFds: number[];
  private readonly irqFd: number;
  private started = false;

  constructor(
    slots: DeviceSlots,
    private readonly io: IoThread,
    private readonly device: number,
    private readonly spec: DataPathSpec,
    queueCount: number,
    mmioBase: number,
    irq: number,
    private readonly isr: Int32Array,
  ) {
    ({ notifyFds: this.notifyFds, irqFd: this.irqFd } = slots.bindDevice(device, mmioBase + REG.QUEUE_NOTIFY, queueCount, irq));
  }

  start(queues: readonly (QueueConfig | undefined)[], features: bigint, events: RunnerEvents): void {
    this.started = true;
    this.io.start(this.device, this.spec, queues, features, this.notifyFds, this.irqFd, this.isr, events);
  }

  notify(index: number): void {
    // Only reached for a queue index without an ioeventfd (KVM takes the others): nothing to serve.
    const fd = this.notifyFds[index];
    if (fd !== undefined) libc.eventfdSignal(fd);
  }

  stop(): void {
    if (!this.started) return;
    this.started = false;
    this.io.stop(this.device);
  }

  /** Closes the eventfds; call after the VM and the I/O thread are gone. */
  close(): void {
    for (const fd of this.notifyFds) libc.close(fd);
    libc.close(this.irqFd);
  }
}
