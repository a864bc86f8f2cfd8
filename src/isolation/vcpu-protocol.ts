// What the VM's main thread and its vCPU threads say to each other.
// Device emulation runs on the main thread; a vCPU thread that exits on a port or MMIO access writes the request
// into its control words (a SharedArrayBuffer), wakes the main thread, and waits for the answer.
import type { SyscallAllowlist } from '../sys/seccomp.js';
import type { CpuidEntry, KvmFlavour } from '../kvm/kvm.js';
import type { SharedGuestMemory } from '../memory/guest-memory.js';
import type { BootPlan } from '../boot/loader.js';
import type { VcpuState } from '../kvm/vcpu-state.js';

/**
 * Int32 slots of one vCPU's control block. PAUSE is 1 while the main thread wants the vCPU held outside KVM_RUN (a
 * snapshot is being taken): the thread completes its pending I/O, says `paused` and waits for 0 (or STOP).
 */
export const CTL = { STATE: 0, KIND: 1, ADDR_LO: 2, ADDR_HI: 3, SIZE: 4, WRITE: 5, VAL_LO: 6, VAL_HI: 7, PAUSE: 8 } as const;
export const CTL_WORDS = 9;
export const STATE = { IDLE: 0, REQUEST: 1, DONE: 2, STOP: 3 } as const;
export const KIND = { PIO: 0, MMIO: 1 } as const;

/** A real-time signal with a do-nothing handler: delivering it pulls a vCPU thread out of KVM_RUN. */
export const WAKE_SIGNAL = 41;

export interface VcpuThreadInit {
  readonly index: number;
  readonly vcpus: number;
  readonly kvmFd: number;
  readonly vmFd: number;
  readonly memory: SharedGuestMemory;
  /** Where a booting vCPU starts; unused when it continues from `restore`. */
  readonly plan: BootPlan | undefined;
  /** A snapshot's state for this vCPU, instead of the boot state. */
  readonly restore: VcpuState | undefined;
  readonly cpuid: CpuidEntry[];
  readonly control: SharedArrayBuffer;
  /** One Int32 counting the vCPUs created and set up: none runs before all exist (see vcpu-thread.ts). */
  readonly startGate: SharedArrayBuffer;
  readonly flavour: KvmFlavour;
  /** The list the thread narrows its system calls to (the vCPU role's) once its vCPU is set up, if any. */
  readonly confine: SyscallAllowlist | undefined;
}

export type VcpuStop =
  | { kind: 'stopped' }
  | { kind: 'triple-fault' }
  | { kind: 'system-event'; type: number }
  | { kind: 'hlt' }
  | { kind: 'internal-error'; detail: string }
  | { kind: 'fail-entry'; detail: string }
  | { kind: 'error'; detail: string };

export type VcpuMessage =
  /** Set up; `vcpuFd` and `msrs` (the MSRs it saves) let the main thread save its state while it is paused. */
  | { type: 'ready'; index: number; tid: number; runAddress: bigint; runSize: number; msrsRefused: number; vcpuFd: number; msrs: number[] }
  /** Held outside KVM_RUN with its last I/O completed (PAUSE): its state may be read. */
  | { type: 'paused'; index: number }
  | { type: 'io'; index: number }
  | { type: 'quirk'; index: number; what: string }
  | { type: 'ended'; index: number; stop: VcpuStop };
