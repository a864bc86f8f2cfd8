// Why KVM_RUN returned, as a discriminated union decoded from the vCPU's kvm_run page.
import { StructView } from '../base/struct.js';
import { kvmRun } from './structs.js';

export const KVM_EXIT = {
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7, SHUTDOWN: 8,
  FAIL_ENTRY: 9, INTR: 10, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
} as const;

export const KVM_SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

export type VcpuExit =
  | { kind: 'io'; port: number; size: number; write: boolean; count: number; dataOffset: number }
  | { kind: 'mmio'; address: bigint; size: number; write: boolean }
  | { kind: 'hlt' }
  | { kind: 'shutdown' }
  | { kind: 'intr' }
  | { kind: 'fail-entry'; reason: bigint; cpu: number }
  | { kind: 'internal-error'; suberror: number; data: bigint[] }
  | { kind: 'system-event'; type: number }
  | { kind: 'other'; reason: number };

export function decodeExit(run: StructView<keyof typeof kvmRun.fields>): VcpuExit {
  const reason = run.get('exitReason');
  switch (reason) {
    case KVM_EXIT.IO:
      return {
        kind: 'io', port: run.get('ioPort'), size: run.get('ioSize'), write: run.get('ioDirection') === 1,
        count: run.get('ioCount'), dataOffset: run.get('ioDataOffset'),
      };
    case KVM_EXIT.MMIO:
      return { kind: 'mmio', address: run.get64('mmioPhysAddr'), size: run.get('mmioLen'), write: run.get('mmioIsWrite') !== 0 };
    case KVM_EXIT.HLT: return { kind: 'hlt' };
    case KVM_EXIT.SHUTDOWN: return { kind: 'shutdown' };
    case KVM_EXIT.INTR: return { kind: 'intr' };
    case KVM_EXIT.FAIL_ENTRY: return { kind: 'fail-entry', reason: run.get64('failEntryReason'), cpu: run.get('failEntryCpu') };
    case KVM_EXIT.INTERNAL_ERROR: {
      const n = Math.min(run.get('internalNdata'), 16);
      const raw = run.field('internalData');
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const data: bigint[] = [];
      for (let i = 0; i < n; i++) data.push(dv.getBigUint64(i * 8, true));
      return { kind: 'internal-error', suberror: run.get('internalSuberror'), data };
    }
    case KVM_EXIT.SYSTEM_EVENT: return { kind: 'system-event', type: run.get('systemEventType') };
    default: return { kind: 'other', reason };
  }
}
