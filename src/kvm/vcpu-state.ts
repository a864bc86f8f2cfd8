// Everything KVM holds for one vCPU, saved from a stopped vCPU and restored into a vCPU of a NEW VM (KVM lets only
// the creating process use a VM, so a snapshot never goes back into the VM it came from).
import { AzoteError } from '../base/errors.js';
import { restoreSteps } from './restore-step.js';
import { encodeBytes, parseState, U64_MAX, type StateReader } from '../base/state-record.js';
import { StructView } from '../base/struct.js';
import type { Kvm, Vcpu } from './kvm.js';
import { KVM_XSAVE_LEGACY_SIZE } from './ioctls.js';
import {
  kvmDebugregs, kvmFpu, kvmLapicState, kvmRegs, kvmSregs, kvmVcpuEvents, kvmXcrs,
} from './structs.js';

/** One vCPU's state; the byte fields are the raw KVM structs (structs.ts), the XSAVE area as long as the VM's. */
export interface VcpuState {
  readonly regs: Uint8Array;
  readonly sregs: Uint8Array;
  readonly fpu: Uint8Array;
  readonly xsave: Uint8Array;
  readonly xcrs: Uint8Array;
  readonly debugregs: Uint8Array;
  readonly lapic: Uint8Array;
  readonly events: Uint8Array;
  /** KVM_MP_STATE_*: RUNNABLE, HALTED, or an AP's INIT/SIPI wait. */
  readonly mpState: number;
  /** The guest TSC's frequency; the TSC's value travels as MSR_IA32_TSC in `msrs`. */
  readonly tscKhz: number;
  readonly msrs: ReadonlyArray<readonly [index: number, value: bigint]>;
}

/**
 * The MSRs of KVM_GET_MSR_INDEX_LIST that this vCPU both reads and accepts back. KVM_GET_MSRS and KVM_SET_MSRS stop
 * at the first MSR they refuse, and which ones they refuse depends on the CPUID (set it first) and on the host, so
 * the list is probed one MSR at a time. Call it on a vCPU that has not run yet: it writes each value back. The
 * result holds for every VM of the same CPUID on this host.
 */
export function savableMsrs(kvm: Kvm, vcpu: Vcpu): number[] {
  return kvm.msrIndexList().filter((index) => {
    const read = vcpu.getMsrs([index]);
    return read.length === 1 && vcpu.setMsrs(read) === 1;
  });
}

/**
 * Reads the state of a vCPU that is stopped (not in KVM_RUN) and whose last I/O exit was completed
 * (Vcpu.completePendingIo). The order follows Firecracker's save_state.
 */
export function saveVcpuState(vcpu: Vcpu, msrIndices: readonly number[]): VcpuState {
  // First: KVM_GET_MP_STATE delivers the LAPIC's pending INIT/SIPI (kvm_apic_accept_events), which changes the
  // registers and LAPIC read after it.
  const mpState = vcpu.getMpState();
  const regs = vcpu.getRegs().bytes();
  const sregs = vcpu.getSregs().bytes();
  const fpu = vcpu.getFpu().bytes();
  const xsave = vcpu.getXsave();
  const xcrs = vcpu.getXcrs();
  const debugregs = vcpu.getDebugregs();
  const lapic = vcpu.getLapic();
  const msrs = vcpu.getMsrs(msrIndices);
  if (msrs.length !== msrIndices.length) {
    const index = msrIndices[msrs.length] ?? 0;
    throw new AzoteError('VcpuSave', `KVM refused to read MSR 0x${index.toString(16)}`, 'compute the MSR list with savableMsrs for this VM\'s CPUID');
  }
  const events = vcpu.getEvents().bytes();
  return { regs, sregs, fpu, xsave, xcrs, debugregs, lapic, events, mpState, tscKhz: vcpu.getTscKhz(), msrs };
}

/**
 * Loads `state` into a vCPU of a new VM that has its CPUID set (CPUID decides which MSRs and XSAVE features KVM
 * accepts) and has not run. Each step's error names the piece KVM refused.
 */
export function restoreVcpuState(vcpu: Vcpu, state: VcpuState): void {
  // The TSC frequency before MSR_IA32_TSC: KVM computes the TSC offset at the vCPU's frequency. On the host that
  // made the snapshot it is already equal; elsewhere setting it needs TSC scaling.
  step('TSC frequency', () => {
    if (vcpu.getTscKhz() !== state.tscKhz) vcpu.setTscKhz(state.tscKhz);
  });
  step('registers', () => vcpu.setRegs(new StructView(kvmRegs, state.regs)));
  // SREGS carry the APIC base MSR, which switches the LAPIC between xAPIC and x2APIC: before SET_LAPIC.
  step('special registers', () => vcpu.setSregs(new StructView(kvmSregs, state.sregs)));
  // XSAVE after FPU: it holds the x87/SSE state too, and its header says which parts are live; KVM_SET_FPU leaves
  // that header alone, so x87/SSE state set only through it would be dropped at the next entry.
  step('FPU', () => vcpu.setFpu(new StructView(kvmFpu, state.fpu)));
  step('XSAVE area', () => vcpu.setXsave(state.xsave));
  step('XCRs', () => vcpu.setXcrs(state.xcrs));
  step('debug registers', () => vcpu.setDebugregs(state.debugregs));
  // Before MSRs: KVM drops MSR_IA32_TSC_DEADLINE unless the LAPIC timer is already in TSC-deadline mode.
  step('local APIC', () => vcpu.setLapic(state.lapic));
  step('MSRs', () => {
    const accepted = vcpu.setMsrs(state.msrs);
    if (accepted !== state.msrs.length) {
      const index = state.msrs[accepted]?.[0] ?? 0;
      throw new Error(`KVM refused MSR 0x${index.toString(16)}`);
    }
  });
  // After REGS and SREGS, which clear a pending exception: the events carry the pending exception, NMI,
  // interrupt shadow and SMM/latched INIT.
  step('vCPU events', () => vcpu.setEvents(new StructView(kvmVcpuEvents, state.events)));
  // Last, as QEMU does: KVM refuses INIT_RECEIVED/SIPI_RECEIVED while an INIT is latched, which the events restore.
  step('MP state', () => vcpu.setMpState(state.mpState));
}

const step = restoreSteps('VcpuRestore', 'the vCPU\'s', 'restore the snapshot on the host and Azote version that made it, or boot cold (--cold)');

const KIND = 'vcpu';
const VERSION = 1;
/** Larger than any XSAVE layout (AMX makes it about 11 KiB); bounds what a damaged record can make us allocate. */
const MAX_XSAVE = 64 * 1024;
/** The KVM_MP_STATE_* an x86 vCPU reports: RUNNABLE, UNINITIALIZED, INIT_RECEIVED, HALTED, SIPI_RECEIVED. */
const MAX_MP_STATE = 4;
/** KVM_GET_MSRS and KVM_SET_MSRS take fewer than 256 MSRs (MAX_IO_MSRS), and one call saves or restores them all. */
const MAX_MSRS = 255;
const U32_MAX = 0xffffffff;

export interface VcpuStateRecord {
  readonly kind: typeof KIND;
  readonly version: typeof VERSION;
  readonly regs: string;
  readonly sregs: string;
  readonly fpu: string;
  readonly xsave: string;
  readonly xcrs: string;
  readonly debugregs: string;
  readonly lapic: string;
  readonly events: string;
  readonly mpState: number;
  readonly tscKhz: number;
  /** Each value as a decimal string: JSON has no 64-bit integers. */
  readonly msrs: ReadonlyArray<{ readonly index: number; readonly value: string }>;
}

const BYTE_FIELDS = {
  regs: kvmRegs.size, sregs: kvmSregs.size, fpu: kvmFpu.size, xcrs: kvmXcrs.size, debugregs: kvmDebugregs.size,
  lapic: kvmLapicState.size, events: kvmVcpuEvents.size,
} as const;

export function vcpuStateRecord(s: VcpuState): VcpuStateRecord {
  return {
    kind: KIND, version: VERSION,
    regs: encodeBytes(s.regs), sregs: encodeBytes(s.sregs), fpu: encodeBytes(s.fpu), xsave: encodeBytes(s.xsave),
    xcrs: encodeBytes(s.xcrs), debugregs: encodeBytes(s.debugregs), lapic: encodeBytes(s.lapic),
    events: encodeBytes(s.events), mpState: s.mpState, tscKhz: s.tscKhz,
    msrs: s.msrs.map(([index, value]) => ({ index, value: value.toString() })),
  };
}

/** The VcpuState in a record read from a snapshot; anything malformed or of another version is refused. */
export function parseVcpuStateRecord(value: unknown): VcpuState {
  return parseState('vCPU', value, KIND, VERSION, (r) => {
    const bytes = (key: keyof typeof BYTE_FIELDS): Uint8Array => r.bytes(key, { exact: BYTE_FIELDS[key] });
    // The exact XSAVE size is the restoring VM's (Vcpu.setXsave checks it); here: at least the legacy area, whole u32s.
    const xsave = r.bytes('xsave', { max: MAX_XSAVE });
    if (xsave.length < KVM_XSAVE_LEGACY_SIZE || xsave.length % 4 !== 0) {
      r.fail(`xsave holds ${xsave.length} bytes, not a multiple of 4 from ${KVM_XSAVE_LEGACY_SIZE} to ${MAX_XSAVE}`);
    }
    return {
      regs: bytes('regs'), sregs: bytes('sregs'), fpu: bytes('fpu'), xsave, xcrs: bytes('xcrs'),
      debugregs: bytes('debugregs'), lapic: bytes('lapic'), events: bytes('events'),
      mpState: r.int('mpState', 0, MAX_MP_STATE), tscKhz: r.int('tscKhz', 1, U32_MAX), msrs: readMsrs(r),
    };
  });
}

function readMsrs(r: StateReader): Array<readonly [number, bigint]> {
  const seen = new Set<number>();
  return r.list('msrs', 0, MAX_MSRS, (m, i) => {
    const index = m.int('index', 0, U32_MAX);
    if (seen.has(index)) m.fail(`msrs[${i}] lists MSR 0x${index.toString(16)} twice`);
    seen.add(index);
    return [index, m.bigint('value', 0n, U64_MAX)] as const;
  });
}
