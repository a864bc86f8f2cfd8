// A VM's vCPUs, as the engine runs them: all created and set up on this thread, then each vCPU's KVM_RUN made on one
// of libuv's pool threads (koffi's asynchronous call), so that no vCPU costs an isolate (a worker's V8 heap is about
// 10 MiB) and the pool thread needs no JavaScript. Each exit comes back to this thread's event loop, where a port or
// MMIO access is answered by the device models through `VcpuEvents.access` before the vCPU enters the guest again.
// The owner decides what a vCPU's stop means for the VM; this only reports it.
//
// A vCPU blocked in KVM_RUN occupies its pool thread, so the pool must be larger than the vCPUs it runs: libuv reads
// its size (UV_THREADPOOL_SIZE) once, before this process's code runs, so whoever starts a process that runs vCPUs
// sets it (threadPoolEnv), and start() refuses vCPUs the pool cannot take while keeping threads for files and crypto.
import { AzoteError, errorMessage } from '../base/errors.js';
import { armThreadWake, wakeOtherThreads } from '../sys/thread-wake.js';
import type { CpuidEntry, Kvm, KvmFlavour, Vcpu, Vm } from '../kvm/kvm.js';
import type { VcpuExit } from '../kvm/exit.js';
import { restoreVcpuState, savableMsrs, saveVcpuState, type VcpuState } from '../kvm/vcpu-state.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { setupVcpu } from '../boot/vcpu-setup.js';
import type { BootPlan } from '../boot/loader.js';
import { applyQuirk, classify, failedInstruction, KVM_INTERNAL_ERROR_EMULATION } from './pvm-quirks.js';

/** One guest access to a port or to MMIO that no in-kernel device took. */
export interface VcpuAccess {
  readonly pio: boolean;
  readonly write: boolean;
  readonly addr: number;
  readonly size: number;
  /** What a write writes. */
  readonly value: bigint;
}

export type VcpuStop =
  | { kind: 'stopped' }
  | { kind: 'triple-fault' }
  | { kind: 'system-event'; type: number }
  | { kind: 'hlt' }
  | { kind: 'internal-error'; detail: string }
  | { kind: 'fail-entry'; detail: string }
  | { kind: 'error'; detail: string };

export interface VcpuEvents {
  /** The device models' answer to an access (the value a read returns); a throw ends the VM through `deviceFailed`. */
  access(a: VcpuAccess): bigint;
  /** A device model failed on an access: the VM must end. */
  deviceFailed(a: VcpuAccess, error: unknown): void;
  /** A vCPU left its loop for good, and why. */
  ended(index: number, stop: VcpuStop): void;
  /** A workaround for the nested KVM was applied. */
  quirk(index: number, what: string): void;
  /** KVM refused some of the MSRs a booting vCPU is given (it stops at the first refusal). */
  msrsRefused(index: number, count: number): void;
  /** Every vCPU is gone: guest memory may be unmapped now. */
  allExited(): void;
}

export interface VcpusSpec {
  readonly count: number;
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly memory: GuestMemory;
  /** Where booting vCPUs start; undefined when they continue `restore`. */
  readonly plan: BootPlan | undefined;
  /** A snapshot's state, one per vCPU. */
  readonly restore: readonly VcpuState[] | undefined;
  readonly cpuid: CpuidEntry[];
  readonly flavour: KvmFlavour;
}

/** libuv's pool size when UV_THREADPOOL_SIZE is not set. */
const DEFAULT_POOL = 4;
/** Pool threads kept for what else the process does on the pool (files, crypto, fallocate of a hibernation image). */
const POOL_RESERVE = 2;

/**
 * KVM_RUN failures in a row, without an exit between, before a vCPU gives up. One that cannot say why is expected
 * now and then: an application processor woken by INIT or SIPI returns EAGAIN, and koffi reports no errno; a real
 * fault (guest memory KVM cannot map) fails every time.
 */
const FAILURES_IN_A_ROW = 1000;

/** vCPUs of this process in their loops, across VMs: each holds a pool thread. */
let poolThreadsHeld = 0;

/** The environment a process that will run `vcpus` vCPUs must be started with. */
export function threadPoolEnv(vcpus: number): { UV_THREADPOOL_SIZE: string } {
  return { UV_THREADPOOL_SIZE: String(Math.max(DEFAULT_POOL, vcpus + POOL_RESERVE)) };
}

function poolSize(): number {
  const n = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : DEFAULT_POOL;
}

function readLe(b: Uint8Array, off: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[off + i] ?? 0);
  return v;
}

function writeLe(b: Uint8Array, off: number, size: number, v: bigint): void {
  for (let i = 0; i < size; i++) { b[off + i] = Number(v & 0xffn); v >>= 8n; }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

interface RunningVcpu {
  readonly index: number;
  readonly vcpu: Vcpu;
  /** The MSRs its state saves (probed before the guest ran). */
  readonly msrs: readonly number[];
  readonly page: Uint8Array;
  readonly mmioData: Uint8Array;
  inGuest: boolean;
  failures: number;
  paused: boolean;
  ended: boolean;
}

export class Vcpus {
  private readonly vcpus: RunningVcpu[] = [];
  /** Resolves the pause being taken, once every live vCPU is held outside KVM_RUN. */
  private pausing: (() => void) | undefined;
  private stopping = false;
  private exits = 0;

  constructor(private readonly spec: VcpusSpec, private readonly events: VcpuEvents) {}

  /** Port and MMIO exits served so far. */
  get ioExits(): number {
    return this.exits;
  }

  get allExited(): boolean {
    return this.vcpus.every((v) => v.ended);
  }

  /** vCPUs still in their loops, for a caller that gave up waiting. */
  get pending(): number {
    return this.vcpus.filter((v) => !v.ended).length;
  }

  /**
   * Creates and sets up every vCPU, then lets them all run. All exist before any runs: a guest's INIT/SIPI to a vCPU
   * that KVM has not created yet is lost, and that AP never starts. Throws, with nothing left behind, when the pool
   * cannot take them or a vCPU cannot be set up.
   */
  start(): void {
    const { spec } = this;
    const free = poolSize() - POOL_RESERVE - poolThreadsHeld;
    if (spec.count > free) {
      throw new AzoteError('ThreadPoolTooSmall',
        `${spec.count} vCPUs need as many of libuv's pool threads, and ${Math.max(free, 0)} of its ${poolSize()} are free (${POOL_RESERVE} are kept for files and crypto)`,
        `start this process with UV_THREADPOOL_SIZE=${poolThreadsHeld + spec.count + POOL_RESERVE} or more`);
    }
    armThreadWake();
    try {
      for (let index = 0; index < spec.count; index++) this.vcpus.push(this.create(index));
    } catch (e) {
      for (const v of this.vcpus.splice(0)) v.vcpu.close();
      throw e;
    }
    poolThreadsHeld += spec.count;
    for (const v of this.vcpus) this.enter(v);
  }

  private create(index: number): RunningVcpu {
    const { spec } = this;
    const vcpu = spec.vm.createVcpu(index);
    try {
      let msrs: number[];
      const restore = spec.restore?.[index];
      if (restore) {
        vcpu.setCpuid(spec.cpuid);
        // Probed before the restore: the probe writes back what it read.
        msrs = savableMsrs(spec.kvm, vcpu);
        restoreVcpuState(vcpu, restore);
      } else {
        if (!spec.plan) throw new Error('a vCPU needs a boot plan or a state to restore');
        const { msrsRefused } = setupVcpu(vcpu, spec.memory, spec.plan, spec.cpuid, spec.count);
        if (msrsRefused > 0) this.events.msrsRefused(index, msrsRefused);
        msrs = savableMsrs(spec.kvm, vcpu);
      }
      return { index, vcpu, msrs, page: vcpu.runBytes(), mmioData: vcpu.run.field('mmioData'), inGuest: false, failures: 0, paused: false, ended: false };
    } catch (e) {
      vcpu.close();
      throw e;
    }
  }

  /** Each vCPU's state; every vCPU must be paused. */
  saveStates(): VcpuState[] {
    if (this.vcpus.length !== this.spec.count || this.vcpus.some((v) => !v.paused)) {
      throw new AzoteError('VcpusNotPaused', 'a vCPU\'s state is read only while every vCPU is paused', 'pause the VM first');
    }
    return this.vcpus.map((v) => saveVcpuState(v.vcpu, v.msrs));
  }

  /** Holds every vCPU outside KVM_RUN with its last I/O completed; resolves once all are (or they stop). */
  pause(): Promise<void> {
    return new Promise((resolve) => {
      this.pausing = resolve;
      this.interrupt();
      this.checkPaused();
    });
  }

  resume(): void {
    this.pausing = undefined;
    for (const v of this.vcpus) {
      if (!v.paused) continue;
      v.paused = false;
      this.enter(v);
    }
  }

  /** Tells every vCPU to leave its loop (those in KVM_RUN are pulled out); a pause waiting for them ends too. */
  stop(): void {
    this.stopping = true;
    for (const v of this.vcpus) if (v.paused) this.end(v, { kind: 'stopped' });
    this.interrupt();
    const paused = this.pausing;
    this.pausing = undefined;
    paused?.();
  }

  /** immediate_exit first: a vCPU about to enter then returns at once; one inside is pulled out by the signal. */
  private interrupt(): void {
    const inside = this.vcpus.filter((v) => v.inGuest);
    for (const v of inside) v.vcpu.run.set('immediateExit', 1);
    if (inside.length > 0) wakeOtherThreads();
  }

  private checkPaused(): void {
    if (this.pausing && this.vcpus.every((v) => v.paused || v.ended)) {
      const done = this.pausing;
      this.pausing = undefined;
      done();
    }
  }

  /** The vCPU's next turn in the guest, unless the VM stops or pauses first. */
  private enter(v: RunningVcpu): void {
    if (this.stopping) {
      this.end(v, { kind: 'stopped' });
      return;
    }
    if (this.pausing) {
      // Completes the I/O it exited on (so its registers say what the guest will see next); clears immediate_exit.
      v.vcpu.completePendingIo();
      v.paused = true;
      this.checkPaused();
      return;
    }
    v.inGuest = true;
    v.vcpu.enterAsync((exit) => {
      v.inGuest = false;
      let stop: VcpuStop | undefined;
      try {
        if (exit instanceof Error) {
          if (++v.failures >= FAILURES_IN_A_ROW) stop = { kind: 'error', detail: `${exit.message}, ${v.failures} times in a row` };
        } else {
          v.failures = 0;
          stop = this.handle(v, exit);
        }
      } catch (e) {
        stop = { kind: 'error', detail: errorMessage(e) };
      }
      if (stop) this.end(v, stop);
      else this.enter(v);
    });
  }

  /** What an exit means: undefined to go on, else why the vCPU stops. */
  private handle(v: RunningVcpu, exit: VcpuExit): VcpuStop | undefined {
    switch (exit.kind) {
      case 'intr':
        if (!this.stopping && !this.pausing) v.vcpu.run.set('immediateExit', 0);
        return undefined;
      case 'io': {
        // String instructions (rep ins/outs) carry `count` items back to back.
        for (let i = 0; i < exit.count; i++) {
          const off = exit.dataOffset + i * exit.size;
          if (off + exit.size > v.page.length) return { kind: 'error', detail: 'I/O data outside the run page' };
          if (exit.write) this.serve({ pio: true, write: true, addr: exit.port, size: exit.size, value: readLe(v.page, off, exit.size) });
          else writeLe(v.page, off, exit.size, this.serve({ pio: true, write: false, addr: exit.port, size: exit.size, value: 0n }));
        }
        return undefined;
      }
      case 'mmio': {
        const size = Math.min(exit.size, 8);
        const addr = Number(exit.address);
        if (exit.write) this.serve({ pio: false, write: true, addr, size, value: readLe(v.mmioData, 0, size) });
        else writeLe(v.mmioData, 0, size, this.serve({ pio: false, write: false, addr, size, value: 0n }));
        return undefined;
      }
      case 'hlt':
        return { kind: 'hlt' };
      case 'shutdown':
        return { kind: 'triple-fault' };
      case 'system-event':
        return { kind: 'system-event', type: exit.type };
      case 'fail-entry':
        return { kind: 'fail-entry', detail: `hardware entry failure reason 0x${exit.reason.toString(16)}` };
      case 'internal-error': {
        const insn = exit.suberror === KVM_INTERNAL_ERROR_EMULATION ? failedInstruction(exit.data) : undefined;
        if (this.spec.flavour === 'nested-pvm' && insn) {
          const q = classify(insn);
          if (q) {
            applyQuirk(v.vcpu, q);
            this.events.quirk(v.index, q.action === 'skip' ? q.name : 'int3');
            return undefined;
          }
        }
        const rip = v.vcpu.getRegs().get64('rip');
        return {
          kind: 'internal-error',
          detail: `KVM internal error ${exit.suberror} at rip 0x${rip.toString(16)}${insn ? ` (instruction ${hex(insn)})` : ''}`,
        };
      }
      case 'other':
        return { kind: 'error', detail: `unexpected KVM exit reason ${exit.reason}` };
    }
  }

  /** One access answered by the device models; a model's failure ends the VM, and the guest reads 0 meanwhile. */
  private serve(a: VcpuAccess): bigint {
    this.exits++;
    try {
      return this.events.access(a);
    } catch (e) {
      this.events.deviceFailed(a, e);
      return 0n;
    }
  }

  private end(v: RunningVcpu, stop: VcpuStop): void {
    if (v.ended) return;
    v.ended = true;
    v.paused = false;
    poolThreadsHeld--;
    v.vcpu.close();
    this.events.ended(v.index, stop);
    this.checkPaused();
    if (this.allExited) this.events.allExited();
  }
}
