// The boot CPU's state as KVM holds it after setupVcpu, for each entry protocol (guest/ABI.md "Entry").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StructView } from '../../src/base/struct.js';
import { PML4, PVH_START_INFO, ZERO_PAGE } from '../../src/boot/layout.js';
import type { BootPlan } from '../../src/boot/loader.js';
import { setupVcpu } from '../../src/boot/vcpu-setup.js';
import { Kvm } from '../../src/kvm/kvm.js';
import { kvmSegment } from '../../src/kvm/structs.js';
import { GuestMemory, MiB } from '../../src/memory/guest-memory.js';
import { requireKvm } from '../framework/kvm.js';

function bootCpuState(plan: BootPlan) {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const mem = GuestMemory.create(64 * MiB);
  try {
    vm.createIrqchip();
    mem.regions.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.gpa, r.size, mem.address + BigInt(r.offset)));
    const vcpu = vm.createVcpu(0);
    try {
      setupVcpu(vcpu, mem, plan, kvm.supportedCpuid(), 1);
      const s = vcpu.getSregs();
      const cs = new StructView(kvmSegment, s.field('cs'));
      const r = vcpu.getRegs();
      return {
        cr0: s.get64('cr0'), cr3: s.get64('cr3'), cr4: s.get64('cr4'), efer: s.get64('efer'),
        csSelector: cs.get('selector'), csLong: cs.get('l'), csDb: cs.get('db'),
        rip: r.get64('rip'), rsi: r.get64('rsi'), rbx: r.get64('rbx'), rflags: r.get64('rflags'),
      };
    } finally {
      vcpu.close();
    }
  } finally {
    mem.close();
    vm.close();
    kvm.close();
  }
}

test('bzImage entry: 64-bit long mode with paging, RSI = zero page', (t) => {
  if (!requireKvm(t)) return;
  const st = bootCpuState({ protocol: 'linux64', entry: 0x100200, bootInfo: ZERO_PAGE, kernelEnd: 0x200000, initrd: undefined });
  assert.equal(st.cr0, 0x80000011n, 'PE, ET and PG, nothing above bit 31');
  assert.equal(st.cr3, BigInt(PML4));
  assert.equal(st.cr4 & 0x20n, 0x20n, 'PAE');
  assert.equal(st.efer & 0x500n, 0x500n, 'LME and LMA');
  assert.deepEqual([st.csSelector, st.csLong, st.csDb], [0x10, 1, 0]);
  assert.deepEqual([st.rip, st.rsi, st.rflags], [0x100200n, BigInt(ZERO_PAGE), 2n]);
});

test('PVH entry: 32-bit protected mode without paging, EBX = start info', (t) => {
  if (!requireKvm(t)) return;
  const st = bootCpuState({ protocol: 'pvh', entry: 0x100000, bootInfo: PVH_START_INFO, kernelEnd: 0x200000, initrd: undefined });
  assert.equal(st.cr0, 0x11n);
  assert.equal(st.efer & 0x500n, 0n);
  assert.deepEqual([st.csSelector, st.csLong, st.csDb], [0x10, 0, 1]);
  assert.deepEqual([st.rip, st.rbx, st.rflags], [0x100000n, BigInt(PVH_START_INFO), 2n]);
});
