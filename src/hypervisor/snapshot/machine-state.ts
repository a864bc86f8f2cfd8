// The state section of a snapshot (docs/snapshot-format.md): one record for the whole machine, holding the VM's and
// each vCPU's KVM state and every device's record, with the shape they fit: a restore goes only into a VM of the same
// vCPUs, memory, virtio devices (names in slot order) and CPUID, made the way the snapshot's was.
import { createHash } from 'node:crypto';
import { parseState } from '../../base/state-record.js';
import type { CpuidEntry } from '../../kvm/kvm.js';
import { parseVcpuStateRecord, vcpuStateRecord, type VcpuState, type VcpuStateRecord } from '../../kvm/vcpu-state.js';
import { parseVmStateRecord, vmStateRecord, type VmState, type VmStateRecord } from '../../kvm/vm-state.js';
import type { DevicesState } from '../device-manager.js';
import type { GuestMemoryKind } from '../../isolation/memory-protection.js';

const KIND = 'machine';
const VERSION = 1;
const MAX_DEVICES = 64;

/** What a VM must be for a snapshot to go into it. */
export interface MachineShape {
  readonly vcpus: number;
  readonly memoryMiB: number;
  /**
   * What guest memory was: a guest booted on a memfd may use kvmclock, whose page KVM cannot keep on secret memory.
   * Records from before memory had kinds were all on memfds.
   */
  readonly memory: GuestMemoryKind;
  /** The virtio devices' names in slot order. */
  readonly devices: readonly string[];
  /** cpuidDigest of the CPUID its vCPUs get. */
  readonly cpuid: string;
}

export interface MachineState {
  readonly shape: MachineShape;
  readonly vm: VmState;
  readonly vcpus: readonly VcpuState[];
  readonly devices: DevicesState;
}

interface MachineRecord extends MachineShape {
  readonly kind: typeof KIND;
  readonly version: typeof VERSION;
  readonly vm: VmStateRecord;
  readonly cpus: readonly VcpuStateRecord[];
  readonly uart: unknown;
  readonly rtc: unknown;
  readonly i8042: unknown;
  readonly azote: unknown;
  readonly virtio: readonly unknown[];
}

/**
 * A short name for a CPUID table: a guest restored under other CPU features than it booted with may crash. The APIC
 * ids KVM reports are those of the host CPU that asked (leaf 1 EBX[31:24], leaves 0xB and 0x1F EDX) and each vCPU
 * gets its own anyway: they are not features.
 */
export function cpuidDigest(entries: readonly CpuidEntry[]): string {
  const features = entries.map((e) => ({
    ...e,
    ebx: e.function === 1 ? e.ebx & 0x00ffffff : e.ebx,
    edx: e.function === 0xb || e.function === 0x1f ? 0 : e.edx,
  }));
  const sorted = features.sort((a, b) => a.function - b.function || a.index - b.index);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
}

export function machineRecord(s: MachineState): MachineRecord {
  return {
    kind: KIND, version: VERSION, ...s.shape, devices: [...s.shape.devices],
    vm: vmStateRecord(s.vm), cpus: s.vcpus.map(vcpuStateRecord), ...s.devices,
  };
}

/**
 * Reads a snapshot's state section for a VM of shape `expected`; a record of another shape is refused with what
 * differs (BadSnapshotState). KVM records are parsed here; device records are checked by their models on restore.
 */
export function parseMachineRecord(value: unknown, expected: MachineShape): MachineState {
  const device = 'the machine';
  return parseState(device, value, KIND, VERSION, (r) => {
    const memoryKind = (v: string): GuestMemoryKind => (v === 'memfd' || v === 'secret' ? v : r.fail(`guest memory of kind ${v} is not known`));
    const shape: MachineShape = {
      vcpus: r.int('vcpus', 1, 1024), memoryMiB: r.int('memoryMiB', 1, 2 ** 31), memory: memoryKind(r.optionalString('memory', 16) ?? 'memfd'),
      devices: r.strings('devices', 0, MAX_DEVICES, 64), cpuid: r.optionalString('cpuid', 64) ?? r.fail('cpuid is missing'),
    };
    if (shape.vcpus !== expected.vcpus) r.fail(`the snapshot has ${shape.vcpus} vCPUs, this VM ${expected.vcpus}`);
    if (shape.memoryMiB !== expected.memoryMiB) r.fail(`the snapshot has ${shape.memoryMiB} MiB of memory, this VM ${expected.memoryMiB}`);
    if (shape.memory !== expected.memory) r.fail(`the snapshot's guest memory was ${shape.memory}, this VM's is ${expected.memory}`);
    if (shape.devices.join(',') !== expected.devices.join(',')) {
      r.fail(`the snapshot's devices are [${shape.devices.join(', ')}], this VM's [${expected.devices.join(', ')}]`);
    }
    if (shape.cpuid !== expected.cpuid) r.fail('the host\'s CPU features changed since the snapshot was made');
    const vm = parseVmStateRecord(r.record('vm'));
    const vcpus = r.records('cpus', shape.vcpus, shape.vcpus).map(parseVcpuStateRecord);
    const devices: DevicesState = {
      uart: r.record('uart'), rtc: r.record('rtc'), i8042: r.record('i8042'), azote: r.record('azote'),
      virtio: r.records('virtio', shape.devices.length, shape.devices.length),
    };
    return { shape, vm, vcpus, devices };
  });
}
