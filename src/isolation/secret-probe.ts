// What this host's KVM does with guest memory on secret memory (memfd_secret), asked of KVM itself rather than assumed:
// on hardware KVM (EPT/NPT) guest page faults resolve pages by GUP, which secret memory refuses, so a guest may not run
// on it at all; under the nested paravirtual KVM (kvm_pvm) the guest's kernel code is emulated through the
// hypervisor's mapping and runs, but its user code runs on pages KVM maps by GUP and does not (KVM_RUN: EFAULT), and
// KVM's own writes (kvmclock's page) fail too. The probe runs a 64-bit guest on secret memory set up the way every
// guest is (boot/vcpu-setup.ts), with kvmclock enabled at a page of that memory: kernel code that writes a port, then
// user code that writes memory and ends the machine; usable means both ran.
import { setupVcpu } from '../boot/vcpu-setup.js';
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, PD, PDPT, PML4, ZERO_PAGE } from '../boot/layout.js';
import { StructView } from '../base/struct.js';
import { kvmSegment } from '../kvm/structs.js';
import type { VcpuExit } from '../kvm/exit.js';
import { Kvm, type Vcpu } from '../kvm/kvm.js';
import { GuestMemory, MiB } from '../memory/guest-memory.js';
import * as libc from '../sys/libc.js';

export type MemoryProbe =
  /** Guests run on this memory; `kvmclock`: KVM fills the kvmclock page there (else guests need no-kvmclock). */
  | { readonly usable: true; readonly kvmclock: boolean }
  | { readonly usable: false; readonly why: string };

const ENTRY = 0x100000;
const PROBE_PORT = 0x10;
const PROBE_VALUE = 0x5a;
/** mov al, 0x5a; out 0x10, al; hlt: a guest that ran writes its value to the port. */
const PROBE_CODE = Uint8Array.of(0xb0, PROBE_VALUE, 0xe6, PROBE_PORT, 0xf4);
const USER_ENTRY = 0x101000;
const USER_MARK = 0x300000;
/** mov byte [0x300000], 0x5a; ud2: user code writes its value, then faults with no IDT (a triple fault: shutdown). */
const USER_CODE = Uint8Array.of(0xc6, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, PROBE_VALUE, 0x0f, 0x0b);
/** Page-table entries' user bit: the boot tables map everything for the kernel only. */
const PTE_USER = 4n;
const MSR_KVM_SYSTEM_TIME_NEW = 0x4b564d01;
const PVCLOCK_PAGE = 0x200000;
/** Entries before a probe gives up: a guest that runs reaches its port write in one or two. */
const MAX_ENTRIES = 16;

/** The probe on secret memory, or (`secret` false) on a sealed memfd, the memory guests get without it. */
export function probeGuestMemory(kvm: Kvm, secret = true): MemoryProbe {
  let mem: GuestMemory;
  try {
    mem = GuestMemory.create(4 * MiB, 'azote-memory-probe', { secret });
  } catch (e) {
    return { usable: false, why: `memfd_secret: ${e instanceof libc.SysError ? e.code : String(e)}` };
  }
  const vm = kvm.createVm();
  try {
    vm.setTssAddr(KVM_TSS_ADDR);
    vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
    vm.createIrqchip();
    mem.regions.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.gpa, r.size, mem.address + BigInt(r.offset)));
    mem.write(ENTRY, PROBE_CODE);
    mem.write(USER_ENTRY, USER_CODE);
    const vcpu = vm.createVcpu(0);
    try {
      setupVcpu(vcpu, mem, { protocol: 'linux64', entry: ENTRY, bootInfo: ZERO_PAGE, kernelEnd: USER_ENTRY + USER_CODE.length, initrd: undefined },
        kvm.supportedCpuid(), 1);
      for (const table of [PML4, PDPT]) mem.writeU64(table, mem.readU64(table) | PTE_USER);
      for (let i = 0; i < 512; i++) mem.writeU64(PD + i * 8, mem.readU64(PD + i * 8) | PTE_USER);
      vcpu.setMsrs([[MSR_KVM_SYSTEM_TIME_NEW, BigInt(PVCLOCK_PAGE) | 1n]]);
      let ran = false;
      for (let i = 0; i < MAX_ENTRIES && !ran; i++) {
        let exit: VcpuExit;
        try {
          exit = vcpu.enter();
        } catch (e) {
          return { usable: false, why: `KVM_RUN on ${secret ? 'secret memory' : 'a memfd'}: ${e instanceof libc.SysError ? e.code : String(e)}` };
        }
        if (exit.kind === 'io' && exit.port === PROBE_PORT && exit.write) {
          ran = vcpu.runBytes()[exit.dataOffset] === PROBE_VALUE;
          if (!ran) return { usable: false, why: 'the probe guest wrote another value: its memory did not read back' };
        } else if (exit.kind !== 'intr') {
          return { usable: false, why: `the probe guest stopped with a ${exit.kind} exit` };
        }
      }
      if (!ran) return { usable: false, why: `the probe guest did not run in ${MAX_ENTRIES} entries` };
      // pvclock_vcpu_time_info: version (u32) first; KVM makes it even and non-zero once it wrote the page.
      const kvmclock = mem.readU32(PVCLOCK_PAGE) !== 0;
      const user = runUserCode(vcpu, mem);
      return user === undefined ? { usable: true, kvmclock } : { usable: false, why: user };
    } finally {
      vcpu.close();
    }
  } finally {
    vm.close();
    mem.close();
  }
}

/** Runs the user code on the probe's vCPU: undefined once it wrote its value, else why not. */
function runUserCode(vcpu: Vcpu, mem: GuestMemory): string | undefined {
  const sregs = vcpu.getSregs();
  // The kernel's flat segments at privilege 3: CPL is CS's DPL.
  for (const name of ['cs', 'ss', 'ds', 'es'] as const) {
    const segment = new StructView(kvmSegment, sregs.field(name));
    segment.set('dpl', 3).set('selector', segment.get('selector') | 3);
  }
  vcpu.setSregs(sregs);
  vcpu.setRegs(vcpu.getRegs().set('rip', USER_ENTRY));
  for (let i = 0; i < MAX_ENTRIES; i++) {
    let exit: VcpuExit;
    try {
      exit = vcpu.enter();
    } catch (e) {
      return `KVM_RUN of guest user code on ${mem.secret ? 'secret memory' : 'a memfd'}: ${e instanceof libc.SysError ? e.code : String(e)} `
        + '(KVM maps the pages guest user code runs on by GUP, which secret memory refuses)';
    }
    if (exit.kind === 'intr') continue;
    if (mem.readU8(USER_MARK) === PROBE_VALUE) return undefined;
    return `the probe's user code stopped with a ${exit.kind} exit before writing its value`;
  }
  return `the probe's user code did not run in ${MAX_ENTRIES} entries`;
}

/** The probe on this host's KVM (opened for it and closed): a host whose KVM cannot be opened runs no guest at all. */
export function probeHostMemory(kvmDevice?: string): MemoryProbe {
  let kvm: Kvm;
  try {
    kvm = Kvm.open(kvmDevice);
  } catch (e) {
    return { usable: false, why: `KVM cannot be opened: ${e instanceof Error ? e.message : String(e)}` };
  }
  try {
    return probeGuestMemory(kvm);
  } finally {
    kvm.close();
  }
}
