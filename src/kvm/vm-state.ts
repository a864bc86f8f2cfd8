// The VM-wide state KVM holds: the in-kernel PICs and IOAPIC, the PIT, and kvmclock.
import { AzoteError, errorMessage } from '../base/errors.js';
import { fieldSize } from '../base/struct.js';
import type { Vm } from './kvm.js';
import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from './ioctls.js';
import { kvmIrqchip, kvmPitState2 } from './structs.js';
import { exactBytes, expectRecord, parseHex64, toBase64, toHex64 } from './state-record.js';

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

function step(piece: string, restore: () => void): void {
  try {
    restore();
  } catch (e) {
    throw new AzoteError('VmRestore', `restoring the VM's ${piece} failed: ${errorMessage(e)}`,
      'create the in-kernel irqchip and PIT before restoring, or boot cold (--cold)', { cause: e });
  }
}

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
  /** "0x…": JSON has no 64-bit integers. */
  readonly clockNs: string;
}

export function vmStateRecord(s: VmState): VmStateRecord {
  return {
    kind: KIND, version: VERSION, picMaster: toBase64(s.picMaster), picSlave: toBase64(s.picSlave),
    ioapic: toBase64(s.ioapic), pit: toBase64(s.pit), clockNs: toHex64(s.clockNs),
  };
}

/** The VmState in a record read from a snapshot; anything malformed or of another version is refused. */
export function parseVmStateRecord(value: unknown): VmState {
  const rec = expectRecord(value, KIND, VERSION, ['picMaster', 'picSlave', 'ioapic', 'pit', 'clockNs']);
  return {
    picMaster: exactBytes(rec, KIND, 'picMaster', CHIP_SIZE), picSlave: exactBytes(rec, KIND, 'picSlave', CHIP_SIZE),
    ioapic: exactBytes(rec, KIND, 'ioapic', CHIP_SIZE), pit: exactBytes(rec, KIND, 'pit', kvmPitState2.size),
    clockNs: parseHex64(rec['clockNs'], KIND, '"clockNs"'),
  };
}
