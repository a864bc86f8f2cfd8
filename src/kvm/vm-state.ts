// The VM-wide state KVM holds: the in-kernel PICs and IOAPIC, the PIT, and kvmclock.
import { restoreSteps } from './restore-step.js';
import { encodeBytes, parseState, U64_MAX } from '../base/state-record.js';
import { fieldSize } from '../base/struct.js';
import type { Vm } from './kvm.js';
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from './ioctls.js';
import { kvmIrqchip, kvmPitState2 } from './structs.js';

/** Raw KVM structs: each chip's 512-byte kvm_irqchip union and struct kvm_pit_state2. */
export interface VmState {
  readonly picMaster: Uint8Array;
  readonly picSlave: Uint8Array;
  readonly ioapic: Uint8Array;
  readonly pit: Uint8Array;
  /** kvmclock when saved, in ns. */
  readonly clockNs: bigint;
}

/** Reads the state of a VM whose vCPUs are all stopped. */
export function saveVmState(vm: Vm): VmState {
  return {
    picMaster: vm.getIrqchip(KVM_IRQCHIP_PIC_MASTER), picSlave: vm.getIrqchip(KVM_IRQCHIP_PIC_SLAVE),
    ioapic: vm.getIrqchip(KVM_IRQCHIP_IOAPIC), pit: vm.getPit2(), clockNs: vm.getClock(),
  };
}

export interface VmRestoreOptions {
  /**
   * How far kvmclock moves past its saved value. 0 (the default) makes guest time stand still across the pause:
   * right for a snapshot restored minutes or days later, where a jump of that size would expire every guest timer at
   * once and can trip the soft-lockup detector; the guest's init sets wall time itself after a restore. A live update
   * that wants the guest to see its short blackout passes the elapsed ns.
   */
  readonly clockAdvanceNs?: bigint;
}

/**
 * Loads `state` into a new VM whose in-kernel irqchip and PIT2 the caller created, before any vCPU runs. The PIT's
 * counters restart from their saved counts when loaded (KVM ignores the saved load time, which is the old host's).
 */
export function restoreVmState(vm: Vm, state: VmState, options: VmRestoreOptions = {}): void {
  step('PIC master', () => vm.setIrqchip(KVM_IRQCHIP_PIC_MASTER, state.picMaster));
  step('PIC slave', () => vm.setIrqchip(KVM_IRQCHIP_PIC_SLAVE, state.picSlave));
  step('IOAPIC', () => vm.setIrqchip(KVM_IRQCHIP_IOAPIC, state.ioapic));
  // After the irqchip: the PIT's channel 0 drives IRQ 0 through it.
  step('PIT', () => vm.setPit2(state.pit));
  step('clock', () => vm.setClock(state.clockNs + (options.clockAdvanceNs ?? 0n)));
}

const step = restoreSteps('VmRestore', 'the VM\'s', 'create the in-kernel irqchip and PIT before restoring, or boot cold (--cold)');

const KIND = 'vm';
const VERSION = 1;
const CHIP_SIZE = fieldSize(kvmIrqchip.fields.chip);

export interface VmStateRecord {
  readonly kind: typeof KIND;
  readonly version: typeof VERSION;
  readonly picMaster: string;
  readonly picSlave: string;
  readonly ioapic: string;
  readonly pit: string;
  /** A decimal string: JSON has no 64-bit integers. */
  readonly clockNs: string;
}

export function vmStateRecord(s: VmState): VmStateRecord {
  return {
    kind: KIND, version: VERSION, picMaster: encodeBytes(s.picMaster), picSlave: encodeBytes(s.picSlave),
    ioapic: encodeBytes(s.ioapic), pit: encodeBytes(s.pit), clockNs: s.clockNs.toString(),
  };
}

/** The VmState in a record read from a snapshot; anything malformed or of another version is refused. */
export function parseVmStateRecord(value: unknown): VmState {
  return parseState('VM', value, KIND, VERSION, (r) => ({
    picMaster: r.bytes('picMaster', { exact: CHIP_SIZE }), picSlave: r.bytes('picSlave', { exact: CHIP_SIZE }),
    ioapic: r.bytes('ioapic', { exact: CHIP_SIZE }), pit: r.bytes('pit', { exact: kvmPitState2.size }),
    clockNs: r.bigint('clockNs', 0n, U64_MAX),
  }));
}
