// What this host's KVM does with guest memory on secret memory (memfd_secret), asked of KVM itself rather than assumed:
// on hardware KVM (EPT/NPT) guest page faults resolve pages by GUP, which secret memory refuses, so a guest may not run
// on it at all; under emulation (this machine's kvm_pvm) it runs, but KVM's own writes into guest memory through
// GUP still fail, and kvmclock's page stays empty. The probe boots a one-page 64-bit guest on secret memory the way
// every guest is set up (boot/vcpu-setup.ts), with kvmclock enabled at a page of that memory, and reports both.
import { setupVcpu } from '../boot/vcpu-setup.js';
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, ZERO_PAGE } from '../boot/layout.js';
import type { VcpuExit } from '../kvm/exit.js';
import type { Kvm } from '../kvm/kvm.js';
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
    const vcpu = vm.createVcpu(0);
    try {
      setupVcpu(vcpu, mem, { protocol: 'linux64', entry: ENTRY, bootInfo: ZERO_PAGE, kernelEnd: ENTRY + PROBE_CODE.length, initrd: undefined },
        kvm.supportedCpuid(), 1);
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
      return { usable: true, kvmclock: mem.readU32(PVCLOCK_PAGE) !== 0 };
    } finally {
      vcpu.close();
    }
  } finally {
    vm.close();
    mem.close();
  }
}
