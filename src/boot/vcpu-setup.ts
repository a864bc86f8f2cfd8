// The architectural state a vCPU starts in: CPUID, MSRs, FPU, local APIC, and for the boot CPU the registers and
// page tables its entry protocol asks for. Application processors wait for the guest's INIT/SIPI.
import { StructView } from '../base/struct.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { CpuidEntry, Vcpu } from '../kvm/kvm.js';
import { kvmDtable, kvmFpu } from '../kvm/structs.js';
import type { BootPlan } from './loader.js';
import { bootGdt, CODE32, CODE64, gdtBytes, segmentFromEntry, SEL_CODE, SEL_DATA, SEL_TSS } from './gdt.js';
import { BOOT_GDT, BOOT_IDT, BOOT_STACK, PD, PDPT, PML4 } from './layout.js';

const CR0_PE = 0x1, CR0_ET = 0x10, CR0_PG = 0x80000000;
const CR4_PAE = 0x20;
const EFER_LME = 0x100, EFER_LMA = 0x400;

/** The host's supported CPUID, adjusted so each vCPU sees its own APIC id and the CPU count. */
export function vcpuCpuid(supported: CpuidEntry[], apicId: number, vcpus: number): CpuidEntry[] {
  return supported.map((e) => {
    const out = { ...e };
    switch (e.function) {
      case 1:
        out.ebx = ((e.ebx & 0x0000ffff) | ((vcpus & 0xff) << 16) | (apicId << 24)) >>> 0;
        out.ecx = (e.ecx | (1 << 31)) >>> 0; // running under a hypervisor
        out.edx = vcpus > 1 ? (e.edx | (1 << 28)) >>> 0 : e.edx;
        break;
      case 0xb:
      case 0x1f:
        out.edx = apicId;
        break;
    }
    return out;
  });
}

const MSR = {
  SYSENTER_CS: 0x174, SYSENTER_ESP: 0x175, SYSENTER_EIP: 0x176, STAR: 0xc0000081, LSTAR: 0xc0000082,
  CSTAR: 0xc0000083, SYSCALL_MASK: 0xc0000084, KERNEL_GS_BASE: 0xc0000102, MISC_ENABLE: 0x1a0, MTRR_DEF_TYPE: 0x2ff,
};

/** MSRs Linux expects a boot loader to have set: syscall MSRs cleared, fast strings on, memory write-back. */
export const bootMsrs: Array<[number, bigint]> = [
  [MSR.SYSENTER_CS, 0n], [MSR.SYSENTER_ESP, 0n], [MSR.SYSENTER_EIP, 0n], [MSR.STAR, 0n], [MSR.CSTAR, 0n],
  [MSR.KERNEL_GS_BASE, 0n], [MSR.SYSCALL_MASK, 0n], [MSR.LSTAR, 0n], [MSR.MISC_ENABLE, 1n],
  [MSR.MTRR_DEF_TYPE, (1n << 11n) | 6n],
];

const APIC_LVT0 = 0x350, APIC_LVT1 = 0x360;
const DELIVERY_EXTINT = 7, DELIVERY_NMI = 4;

function setDeliveryMode(regs: Uint8Array, offset: number, mode: number): void {
  const dv = new DataView(regs.buffer, regs.byteOffset);
  dv.setUint32(offset, ((dv.getUint32(offset, true) & ~0x700) | (mode << 8)) >>> 0, true);
}

/** Identity-maps the first 1 GiB with 2 MiB pages, as the 64-bit boot protocol requires. */
export function writeIdentityPageTables(mem: GuestMemory): void {
  mem.fill(PML4, 3 * 4096, 0);
  mem.writeU64(PML4, BigInt(PDPT | 0x3));
  mem.writeU64(PDPT, BigInt(PD | 0x3));
  for (let i = 0; i < 512; i++) mem.writeU64(PD + i * 8, (BigInt(i) << 21n) | 0x83n);
}

export interface VcpuSetupResult {
  /** MSRs KVM refused (it stops at the first refusal). */
  readonly msrsRefused: number;
}

export function setupVcpu(vcpu: Vcpu, mem: GuestMemory, plan: BootPlan, supportedCpuid: CpuidEntry[],
  vcpus: number): VcpuSetupResult {
  vcpu.setCpuid(vcpuCpuid(supportedCpuid, vcpu.id, vcpus));
  const accepted = vcpu.setMsrs(bootMsrs);
  const fpu = StructView.alloc(kvmFpu).set('fcw', 0x37f).set('mxcsr', 0x1f80);
  vcpu.setFpu(fpu);
  const lapic = vcpu.getLapic();
  setDeliveryMode(lapic, APIC_LVT0, DELIVERY_EXTINT);
  setDeliveryMode(lapic, APIC_LVT1, DELIVERY_NMI);
  vcpu.setLapic(lapic);
  if (vcpu.id === 0) setupBootCpu(vcpu, mem, plan);
  return { msrsRefused: bootMsrs.length - accepted };
}

function setupBootCpu(vcpu: Vcpu, mem: GuestMemory, plan: BootPlan): void {
  const long = plan.protocol === 'linux64';
  const gdt = bootGdt(long ? CODE64 : CODE32);
  mem.write(BOOT_GDT, gdtBytes(gdt));
  mem.writeU64(BOOT_IDT, 0n);
  const sregs = vcpu.getSregs();
  const code = segmentFromEntry(SEL_CODE, gdt[2] ?? 0n);
  const data = segmentFromEntry(SEL_DATA, gdt[3] ?? 0n);
  sregs.field('cs').set(code);
  for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs.field(s).set(data);
  sregs.field('tr').set(segmentFromEntry(SEL_TSS, gdt[4] ?? 0n));
  new StructView(kvmDtable, sregs.field('gdt')).set('base', BOOT_GDT).set('limit', gdt.length * 8 - 1);
  new StructView(kvmDtable, sregs.field('idt')).set('base', BOOT_IDT).set('limit', 7);
  if (long) {
    writeIdentityPageTables(mem);
    sregs.set('cr3', PML4);
    sregs.set('cr4', sregs.get('cr4') | CR4_PAE);
    sregs.set('cr0', (CR0_PE | CR0_ET | CR0_PG) >>> 0);
    sregs.set('efer', sregs.get('efer') | EFER_LME | EFER_LMA);
  } else {
    sregs.set('cr0', CR0_PE | CR0_ET).set('cr4', 0).set('cr3', 0).set('efer', 0);
  }
  vcpu.setSregs(sregs);

  const regs = vcpu.getRegs();
  for (const r of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp'] as const) regs.set(r, 0);
  regs.set('rflags', 2).set('rip', plan.entry);
  if (long) regs.set('rsi', plan.bootInfo).set('rsp', BOOT_STACK).set('rbp', BOOT_STACK);
  else regs.set('rbx', plan.bootInfo);
  vcpu.setRegs(regs);
}
