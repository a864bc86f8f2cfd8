// A VM's vCPU threads, as the engine runs them: one worker per vCPU (vcpu-thread.ts) that creates its vCPU, runs it,
// and hands each port or MMIO exit to the device models through `ExitHandler` on this thread (vcpu-protocol.ts says
// how), waiting for the answer. The owner decides what a vCPU's stop means for the VM; these threads only report it.
import { Worker } from 'node:worker_threads';
import * as libc from '../sys/libc.js';
import type { SyscallAllowlist } from '../sys/seccomp.js';
import type { CpuidEntry, KvmFlavour } from '../kvm/kvm.js';
import type { VcpuState } from '../kvm/vcpu-state.js';
import { kvmRun } from '../kvm/structs.js';
import type { SharedGuestMemory } from '../memory/guest-memory.js';
import type { BootPlan } from '../boot/loader.js';
import { CTL, CTL_WORDS, KIND, STATE, WAKE_SIGNAL, type VcpuMessage, type VcpuStop, type VcpuThreadInit } from './vcpu-protocol.js';

export type { VcpuStop } from './vcpu-protocol.js';

/** One guest access to a port or to MMIO that no in-kernel device took. */
export interface VcpuAccess {
  readonly pio: boolean;
  readonly write: boolean;
  readonly addr: number;
  readonly size: number;
  /** What a write writes. */
  readonly value: bigint;
}

export interface VcpuEvents {
  /** The device models' answer to an access (the value a read returns); a throw ends the VM through `failed`. */
  access(a: VcpuAccess): bigint;
  /** A device model failed on an access: the VM must end (its threads are told to stop already). */
  deviceFailed(a: VcpuAccess, error: unknown): void;
  /** A vCPU left its loop for good, and why. */
  ended(index: number, stop: VcpuStop): void;
  /** A vCPU's thread failed outside its loop. */
  threadFailed(index: number, error: Error): void;
  /** A workaround for the nested KVM was applied. */
  quirk(index: number, what: string): void;
  /** KVM refused some of the MSRs a booting vCPU is given (it stops at the first refusal). */
  msrsRefused(index: number, count: number): void;
  /** Every thread is gone: guest memory may be unmapped now. */
  allExited(): void;
}

export interface VcpuThreadsSpec {
  readonly count: number;
  readonly kvmFd: number;
  readonly vmFd: number;
  readonly memory: SharedGuestMemory;
  /** Where booting vCPUs start; undefined when they continue `restore`. */
  readonly plan: BootPlan | undefined;
  /** A snapshot's state, one per vCPU. */
  readonly restore: readonly VcpuState[] | undefined;
  readonly cpuid: CpuidEntry[];
  readonly flavour: KvmFlavour;
  /** The list each thread narrows its system calls to once its vCPU is set up. */
  readonly confine: SyscallAllowlist | undefined;
}

/** What reading a paused vCPU's state needs: its fd, run page and the MSRs it saves. */
export interface VcpuSaving {
  readonly index: number;
  readonly fd: number;
  readonly runAddress: bigint;
  readonly runSize: number;
  readonly msrs: readonly number[];
}

interface VcpuHandle {
  readonly index: number;
  readonly worker: Worker;
  readonly control: Int32Array;
  runPage?: Uint8Array;
  tid?: number;
  saving?: VcpuSaving;
  exited: boolean;
}

let wakeSignalInstalled = false;

export class VcpuThreads {
  private readonly handles: VcpuHandle[] = [];
  private readonly control: SharedArrayBuffer;
  /** vCPUs that have yet to say `paused` while the VM is being paused, and who waits for them. */
  private pausing: { readonly waiting: Set<number>; readonly done: () => void } | undefined;
  private stopping = false;
  private exits = 0;

  constructor(private readonly spec: VcpuThreadsSpec, private readonly events: VcpuEvents) {
    this.control = new SharedArrayBuffer(spec.count * CTL_WORDS * 4);
  }

  /** Port and MMIO exits served so far. */
  get ioExits(): number {
    return this.exits;
  }

  /** Every vCPU is set up: its state can be saved once paused. */
  get ready(): boolean {
    return this.handles.length === this.spec.count && this.handles.every((h) => h.saving);
  }

  get allExited(): boolean {
    return this.handles.every((h) => h.exited);
  }

  /** Each vCPU's fd and run page, for saving its state while paused. */
  saving(): VcpuSaving[] {
    return this.handles.map((h) => {
      if (!h.saving) throw new Error(`vCPU ${h.index} is not set up`);
      return h.saving;
    });
  }

  /** Starts every vCPU's thread. */
  start(): void {
    if (!wakeSignalInstalled) {
      libc.installWakeSignal(WAKE_SIGNAL);
      wakeSignalInstalled = true;
    }
    const startGate = new SharedArrayBuffer(4);
    const { spec } = this;
    for (let index = 0; index < spec.count; index++) {
      const init: VcpuThreadInit = {
        index, vcpus: spec.count, kvmFd: spec.kvmFd, vmFd: spec.vmFd, memory: spec.memory, plan: spec.plan,
        restore: spec.restore?.[index], cpuid: spec.cpuid, control: this.control, startGate, flavour: spec.flavour, confine: spec.confine,
      };
      const worker = new Worker(new URL('./vcpu-thread.js', import.meta.url), { workerData: init });
      const handle: VcpuHandle = { index, worker, control: new Int32Array(this.control, index * CTL_WORDS * 4, CTL_WORDS), exited: false };
      this.handles.push(handle);
      worker.on('message', (m: VcpuMessage) => this.onMessage(handle, m));
      worker.on('error', (e) => this.events.threadFailed(index, e));
      worker.on('exit', () => {
        handle.exited = true;
        if (this.allExited) this.events.allExited();
      });
    }
  }

  /** Holds every vCPU outside KVM_RUN with its last I/O completed; resolves once all say so (or they stop). */
  pause(): Promise<void> {
    return new Promise((resolve) => {
      this.pausing = { waiting: new Set(this.handles.map((h) => h.index)), done: resolve };
      for (const h of this.handles) {
        // immediate_exit first: a thread that sees PAUSE clears it once its I/O is completed, and must not find it
        // set again afterwards (KVM_RUN would return at once forever).
        if (h.runPage) h.runPage[kvmRun.fields.immediateExit.offset] = 1;
        Atomics.store(h.control, CTL.PAUSE, 1);
        this.interrupt(h);
      }
    });
  }

  resume(): void {
    this.pausing = undefined;
    for (const h of this.handles) {
      Atomics.store(h.control, CTL.PAUSE, 0);
      Atomics.notify(h.control, CTL.PAUSE);
    }
  }

  /** Tells every vCPU to leave its loop (those in KVM_RUN are pulled out); a pause waiting for them ends too. */
  stop(): void {
    this.stopping = true;
    for (const h of this.handles) this.kick(h);
    this.pausing?.done();
  }

  /** Threads still alive, for a caller that gave up waiting. */
  get pending(): number {
    return this.handles.filter((h) => !h.exited).length;
  }

  private onMessage(h: VcpuHandle, m: VcpuMessage): void {
    switch (m.type) {
      case 'ready':
        h.tid = m.tid;
        h.saving = { index: m.index, fd: m.vcpuFd, runAddress: m.runAddress, runSize: m.runSize, msrs: m.msrs };
        // Once stopping, the thread may already have unmapped its run page (it closes once told STOP).
        if (!this.stopping) h.runPage = new Uint8Array(libc.viewAt(m.runAddress, m.runSize));
        if (m.msrsRefused > 0) this.events.msrsRefused(m.index, m.msrsRefused);
        if (this.stopping) this.kick(h);
        return;
      case 'io':
        this.serve(h);
        return;
      case 'paused':
        this.pausing?.waiting.delete(m.index);
        if (this.pausing?.waiting.size === 0) this.pausing.done();
        return;
      case 'quirk':
        this.events.quirk(m.index, m.what);
        return;
      case 'ended':
        this.events.ended(m.index, m.stop);
        return;
    }
  }

  private serve(h: VcpuHandle): void {
    const c = h.control;
    if (Atomics.load(c, CTL.STATE) !== STATE.REQUEST) return;
    this.exits++;
    const access: VcpuAccess = {
      pio: c[CTL.KIND] === KIND.PIO,
      write: c[CTL.WRITE] === 1,
      addr: ((c[CTL.ADDR_HI] ?? 0) >>> 0) * 0x100000000 + ((c[CTL.ADDR_LO] ?? 0) >>> 0),
      size: c[CTL.SIZE] ?? 0,
      value: (BigInt((c[CTL.VAL_HI] ?? 0) >>> 0) << 32n) | BigInt((c[CTL.VAL_LO] ?? 0) >>> 0),
    };
    let result = 0n;
    try {
      result = this.events.access(access);
    } catch (e) {
      this.events.deviceFailed(access, e);
    }
    c[CTL.VAL_LO] = Number(result & 0xffffffffn) | 0;
    c[CTL.VAL_HI] = Number((result >> 32n) & 0xffffffffn) | 0;
    // The access may have ended the VM (stop() ran meanwhile); then the vCPU is told to stop instead.
    if (Atomics.compareExchange(c, CTL.STATE, STATE.REQUEST, this.stopping ? STATE.STOP : STATE.DONE) === STATE.REQUEST) {
      Atomics.notify(c, CTL.STATE);
    }
  }

  /** Pulls a vCPU thread out of KVM_RUN. */
  private interrupt(h: VcpuHandle): void {
    if (h.tid === undefined || h.exited) return;
    try {
      libc.tgkill(libc.getpid(), h.tid, WAKE_SIGNAL);
    } catch {
      // The thread already left; nothing to interrupt.
    }
  }

  private kick(h: VcpuHandle): void {
    if (h.runPage) h.runPage[kvmRun.fields.immediateExit.offset] = 1;
    this.interrupt(h);
    Atomics.store(h.control, CTL.STATE, STATE.STOP);
    Atomics.notify(h.control, CTL.STATE);
    Atomics.notify(h.control, CTL.PAUSE);
  }
}
