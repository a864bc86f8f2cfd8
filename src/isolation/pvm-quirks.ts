// Workarounds for the nested paravirtual KVM ("kvm_pvm"), used only when that flavour is detected: a few
// instructions come back as emulation failures (KVM_EXIT_INTERNAL_ERROR, suberror 1) with their bytes.
// int3 is delivered as the #BP it should have raised; fwait and ldmxcsr are skipped. And KVM hypercalls never
// complete there, so the paravirtual features a guest would use through them are not offered (withoutPvHypercalls).
import type { CpuidEntry, Vcpu } from '../kvm/kvm.js';

export const KVM_INTERNAL_ERROR_EMULATION = 1;
const FLAG_INSTRUCTION_BYTES = 1n;
const BP_VECTOR = 3;

/** The instruction bytes carried by an emulation-failure exit (struct kvm_run.emulation_failure). */
export function failedInstruction(data: bigint[]): Uint8Array | undefined {
  if (data.length < 2 || ((data[0] ?? 0n) & FLAG_INSTRUCTION_BYTES) === 0n) return undefined;
  const raw = new Uint8Array(8 * (data.length - 1));
  const dv = new DataView(raw.buffer);
  data.slice(1).forEach((w, i) => dv.setBigUint64(i * 8, w, true));
  const size = Math.min(raw[0] ?? 0, 15, raw.length - 1);
  return raw.subarray(1, 1 + size);
}

export type QuirkAction = { action: 'inject-bp'; length: 1 } | { action: 'skip'; length: number; name: string };

/** Decides what to do with a failed instruction, or undefined when it is not one we know how to handle. */
export function classify(insn: Uint8Array): QuirkAction | undefined {
  let i = 0;
  // Operand-size, REP and REX prefixes may precede ldmxcsr.
  while (i < insn.length && ((insn[i] ?? 0) === 0x66 || (insn[i] ?? 0) === 0xf2 || (insn[i] ?? 0) === 0xf3 ||
    ((insn[i] ?? 0) & 0xf0) === 0x40)) i++;
  const op = insn[i];
  if (i === 0 && op === 0xcc) return { action: 'inject-bp', length: 1 };
  if (i === 0 && op === 0x9b) return { action: 'skip', length: 1, name: 'fwait' };
  if (op === 0x0f && insn[i + 1] === 0xae) {
    const modrm = insn[i + 2];
    if (modrm === undefined || ((modrm >> 3) & 7) !== 2 || (modrm >> 6) === 3) return undefined;
    const length = i + 3 + modrmExtra(modrm, insn[i + 3]);
    return length <= insn.length ? { action: 'skip', length, name: 'ldmxcsr' } : undefined;
  }
  return undefined;
}

/** Bytes after a ModRM byte (SIB and displacement) for a memory operand in 64-bit mode. */
function modrmExtra(modrm: number, sib: number | undefined): number {
  const mod = modrm >> 6, rm = modrm & 7;
  let n = 0;
  if (rm === 4) {
    n += 1;
    if (mod === 0 && sib !== undefined && (sib & 7) === 5) n += 4;
  }
  if (mod === 0 && rm === 5) n += 4;
  if (mod === 1) n += 1;
  if (mod === 2) n += 4;
  return n;
}

/** Applies the action to the vCPU. */
export function applyQuirk(vcpu: Vcpu, q: QuirkAction): void {
  const regs = vcpu.getRegs();
  regs.set('rip', regs.get64('rip') + BigInt(q.length));
  vcpu.setRegs(regs);
  if (q.action === 'inject-bp') {
    // Start from the current events so pending interrupts and NMI state are kept; flags = 0 leaves SIPI and SMM.
    const ev = vcpu.getEvents();
    ev.set('exceptionInjected', 1).set('exceptionNr', BP_VECTOR).set('exceptionHasErrorCode', 0)
      .set('exceptionPending', 0).set('flags', 0);
    vcpu.setEvents(ev);
  }
}

/** KVM's paravirtual feature leaf (KVM_CPUID_FEATURES); EAX holds the KVM_FEATURE_* bits. */
const KVM_CPUID_FEATURES = 0x40000001;
/** Features the guest drives through hypercalls: KVM_HC_KICK_CPU, KVM_HC_SEND_IPI, KVM_HC_SCHED_YIELD. */
const KVM_FEATURE_PV_UNHALT = 7, KVM_FEATURE_PV_SEND_IPI = 11, KVM_FEATURE_PV_SCHED_YIELD = 13;
const HYPERCALL_FEATURES = (1 << KVM_FEATURE_PV_UNHALT) | (1 << KVM_FEATURE_PV_SEND_IPI) | (1 << KVM_FEATURE_PV_SCHED_YIELD);

/**
 * The CPUID without the KVM features that make a guest issue hypercalls. Under kvm_pvm a vmcall/vmmcall never
 * completes: the vCPU stays on the instruction (KVM_RUN returns only for signals). kvm_pvm still offers
 * PV_SEND_IPI, so Linux with 2 or more vCPUs sends its IPIs with KVM_HC_SEND_IPI; the first AP hung in that
 * hypercall during SMP bring-up, holding a lock the BSP then spun on, right after "x86: Booting SMP configuration:".
 * Without these bits Linux writes the in-kernel local APIC's ICR (which works: INIT/SIPI start the APs) and does not
 * yield or kick through the hypervisor. With one vCPU Linux uses none of the three, so nothing changes there.
 */
export function withoutPvHypercalls(cpuid: readonly CpuidEntry[]): CpuidEntry[] {
  return cpuid.map((e) => e.function === KVM_CPUID_FEATURES ? { ...e, eax: (e.eax & ~HYPERCALL_FEATURES) >>> 0 } : e);
}
