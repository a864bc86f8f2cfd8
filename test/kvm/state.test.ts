// A running guest saved from one VM continues in a new VM: the vCPU and VM state round trip through KVM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StructView } from '../../src/base/struct.js';
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, ZERO_PAGE } from '../../src/boot/layout.js';
import { setupVcpu, vcpuCpuid } from '../../src/boot/vcpu-setup.js';
import {
  KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_VCPUEVENT_VALID_SHADOW, KVM_X86_SHADOW_INT_MOV_SS,
} from '../../src/kvm/ioctls.js';
import { Kvm, MP_STATE, type Vcpu, type Vm } from '../../src/kvm/kvm.js';
import { kvmDebugregs, kvmPitChannelState, kvmPitState2, kvmVcpuEvents } from '../../src/kvm/structs.js';
import {
  parseVcpuStateRecord, restoreVcpuState, savableMsrs, saveVcpuState, vcpuStateRecord, type VcpuState,
} from '../../src/kvm/vcpu-state.js';
import { parseVmStateRecord, restoreVmState, saveVmState, vmStateRecord, type VmState } from '../../src/kvm/vm-state.js';
import { GuestMemory, MiB } from '../../src/memory/guest-memory.js';
import { requireKvm } from '../framework/kvm.js';

const ENTRY = 0x100000;
const IN_PORT = 0x501, OUT_PORT = 0x500;
const PIT_COUNT = 0x1000;
// 64-bit code: program PIT channel 0 (mode 2, count 0x1000), then forever: ebx += in(0x501); out(0x500, ebx).
const GUEST = Uint8Array.from([
  0xb0, 0x34, 0xe6, 0x43, // mov al, 0x34; out 0x43, al  (channel 0, lo/hi, mode 2)
  0xb0, PIT_COUNT & 0xff, 0xe6, 0x40, 0xb0, PIT_COUNT >> 8, 0xe6, 0x40, // count low, high
  0x31, 0xdb, // xor ebx, ebx
  // loop:
  0x66, 0xba, IN_PORT & 0xff, IN_PORT >> 8, 0xed, // mov dx, 0x501; in eax, dx
  0x01, 0xc3, // add ebx, eax
  0x66, 0xba, OUT_PORT & 0xff, OUT_PORT >> 8, 0x89, 0xd8, 0xef, // mov dx, 0x500; mov eax, ebx; out dx, eax
  0xeb, 0xf0, // jmp loop
]);

// LAPIC registers (offsets into the 1 KiB register page).
const APIC_LVTT = 0x320, APIC_TMICT = 0x380, APIC_TMCCT = 0x390, APIC_TDCR = 0x3e0;
const MSR_IA32_TSC = 0x10, MSR_LSTAR = 0xc0000082, LSTAR = 0xffff_ffff_8123_4560n;
// The XSAVE area's legacy region and header (Intel SDM vol. 1, 13.4).
const XCRS_XCR0_VALUE = 16;
const XSAVE_MXCSR = 24, XSAVE_XMM0 = 160, XSAVE_XSTATE_BV = 512, XFEATURE_SSE = 2n;

interface Machine { vm: Vm; vcpu: Vcpu; mem: GuestMemory }

function machine(kvm: Kvm): Machine {
  const vm = kvm.createVm();
  vm.setTssAddr(KVM_TSS_ADDR);
  vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
  vm.createIrqchip();
  vm.createPit2();
  const mem = GuestMemory.create(8 * MiB);
  mem.regions.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.gpa, r.size, mem.address + BigInt(r.offset)));
  return { vm, vcpu: vm.createVcpu(0), mem };
}

function dispose(m: Machine): void {
  m.vcpu.close();
  m.mem.close();
  m.vm.close();
}

/**
 * Runs until the guest has written `outs` values, answering each IN with `answer`; returns what it wrote. With
 * `stopAtIn`, it then runs on to the next IN, answers it and returns with that exit still to be completed.
 */
function runGuest(vcpu: Vcpu, outs: number, answer: number, stopAtIn: boolean): number[] {
  const written: number[] = [];
  const dv = new DataView(vcpu.runMapping.buffer);
  for (let exits = 0; exits < 10_000; exits++) {
    const exit = vcpu.enter();
    if (exit.kind === 'intr') continue;
    assert.equal(exit.kind, 'io', `unexpected exit ${JSON.stringify(exit, (_, v: unknown) => typeof v === 'bigint' ? v.toString() : v)}`);
    if (exit.kind !== 'io') break;
    if (exit.port === IN_PORT && !exit.write) {
      dv.setUint32(exit.dataOffset, answer, true);
      if (stopAtIn && written.length === outs) return written;
    } else if (exit.port === OUT_PORT && exit.write) {
      written.push(dv.getUint32(exit.dataOffset, true));
      if (!stopAtIn && written.length === outs) return written;
    } else {
      assert.fail(`I/O on port 0x${exit.port.toString(16)}`);
    }
  }
  return assert.fail(`the guest wrote ${written.length} of ${outs} values`);
}

/** State that differs from a fresh vCPU's, so a restore that skipped a piece would show. */
function giveDistinctState(vcpu: Vcpu): void {
  // Through XSAVE with SSE marked live in its header: KVM_SET_FPU leaves the header alone, so the next entry's
  // XRSTOR would load XMM0 from its init state (zeros).
  const xsave = vcpu.getXsave();
  xsave.fill(0xa5, XSAVE_XMM0, XSAVE_XMM0 + 16);
  const x = new DataView(xsave.buffer);
  x.setUint32(XSAVE_MXCSR, 0x1f80, true);
  x.setBigUint64(XSAVE_XSTATE_BV, x.getBigUint64(XSAVE_XSTATE_BV, true) | XFEATURE_SSE, true);
  vcpu.setXsave(xsave);
  assert.equal(vcpu.setMsrs([[MSR_LSTAR, LSTAR]]), 1);
  // XCR0 = x87 | SSE; a fresh vCPU has x87 alone.
  const xcrs = vcpu.getXcrs();
  new DataView(xcrs.buffer).setBigUint64(XCRS_XCR0_VALUE, 3n, true);
  vcpu.setXcrs(xcrs);
  const dr = StructView.alloc(kvmDebugregs);
  new DataView(dr.field('db').buffer, dr.field('db').byteOffset).setBigUint64(0, 0x1234_5678n, true);
  dr.set('dr6', 0xffff0ff0).set('dr7', 0x400);
  vcpu.setDebugregs(dr.bytes());
  // A masked periodic LAPIC timer: it keeps counting without raising interrupts.
  const lapic = vcpu.getLapic();
  const l = new DataView(lapic.buffer, lapic.byteOffset);
  l.setUint32(APIC_LVTT, (1 << 17) | (1 << 16) | 0xec, true);
  l.setUint32(APIC_TDCR, 0xb, true);
  l.setUint32(APIC_TMICT, 0x1000_0000, true);
  vcpu.setLapic(lapic);
}

/** The state with what moves by itself between two saves blanked: the TSC and the LAPIC timer's current count. */
function stable(s: VcpuState): VcpuState {
  const lapic = s.lapic.slice();
  lapic.fill(0, APIC_TMCCT, APIC_TMCCT + 4);
  return { ...s, lapic, msrs: s.msrs.filter(([i]) => i !== MSR_IA32_TSC) };
}

/**
 * A chip's state without the interrupt request bits, which follow the running PIT's output on IRQ 0: struct
 * kvm_pic_state's last_irr and irr (bytes 0-1), struct kvm_ioapic_state's irr (bytes 16-19).
 */
function withoutRequests(chip: Uint8Array, ranges: ReadonlyArray<readonly [number, number]>): Uint8Array {
  const c = chip.slice();
  for (const [from, to] of ranges) c.fill(0, from, to);
  return c;
}
const PIC_REQUESTS = [[0, 2]] as const, IOAPIC_REQUESTS = [[16, 20]] as const;
/** Offsets in struct kvm_pic_state and struct kvm_ioapic_state. */
const PIC_IMR = 2, PIC_IRQ_BASE = 5, IOAPIC_REDIRTBL = 24;

/** The PIT's channels without count_load_time, a host timestamp KVM sets when it loads a count. */
function pitProgramming(pit: Uint8Array): Array<Record<string, number>> {
  return [0, 1, 2].map((i) => {
    const c = new StructView(kvmPitChannelState, pit, i * kvmPitChannelState.size);
    return { count: c.get('count'), mode: c.get('mode'), rwMode: c.get('rwMode'), gate: c.get('gate'), bcd: c.get('bcd') };
  });
}

test('a guest saved from one VM continues in a new VM where it stopped, with its PIT and LAPIC timer programming', (t) => {
  if (!requireKvm(t)) return;
  const kvm = Kvm.open();
  const cpuid = vcpuCpuid(kvm.supportedCpuid(), 0, 1);
  const a = machine(kvm);
  let b: Machine | undefined;
  try {
    setupVcpu(a.vcpu, a.mem, { protocol: 'linux64', entry: ENTRY, bootInfo: ZERO_PAGE, kernelEnd: ENTRY + 0x1000, initrd: undefined },
      kvm.supportedCpuid(), 1);
    a.mem.write(ENTRY, GUEST);
    const msrs = savableMsrs(kvm, a.vcpu);
    assert.ok(msrs.includes(MSR_IA32_TSC), 'the TSC travels in the MSR list');
    giveDistinctState(a.vcpu);

    const n = 20;
    assert.deepEqual(runGuest(a.vcpu, n, 1, true), Array.from({ length: n }, (_, i) => i + 1));
    // The vCPU sits on an IN whose answer (1) is in the run page: complete it, or RIP stays on the IN.
    a.vcpu.completePendingIo();
    const vcpuState = parseVcpuStateRecord(JSON.parse(JSON.stringify(vcpuStateRecord(saveVcpuState(a.vcpu, msrs)))));
    const vmState = parseVmStateRecord(JSON.parse(JSON.stringify(vmStateRecord(saveVmState(a.vm)))));
    assert.equal(new StructView(kvmPitChannelState, vmState.pit).get('count'), PIT_COUNT, 'the guest programmed the PIT');

    b = machine(kvm);
    b.mem.bytes.set(a.mem.bytes);
    b.vcpu.setCpuid(cpuid);
    restoreVmState(b.vm, vmState);
    restoreVcpuState(b.vcpu, vcpuState);

    assert.deepEqual(stable(saveVcpuState(b.vcpu, msrs)), stable(vcpuState));
    const again: VmState = saveVmState(b.vm);
    assert.deepEqual(pitProgramming(again.pit), pitProgramming(vmState.pit));
    assert.equal(new StructView(kvmPitState2, again.pit).get('flags'), new StructView(kvmPitState2, vmState.pit).get('flags'));
    for (const [chip, requests] of [['picMaster', PIC_REQUESTS], ['picSlave', PIC_REQUESTS], ['ioapic', IOAPIC_REQUESTS]] as const) {
      assert.deepEqual(withoutRequests(again[chip], requests), withoutRequests(vmState[chip], requests), chip);
    }
    const tsc = (s: VcpuState): bigint => s.msrs.find(([i]) => i === MSR_IA32_TSC)?.[1] ?? 0n;
    assert.ok(tsc(saveVcpuState(b.vcpu, msrs)) >= tsc(vcpuState), 'the TSC goes on from where A left it, not from 0');
    assert.ok(vcpuState.msrs.some(([i, v]) => i === MSR_LSTAR && v === LSTAR));

    // B answers its INs with 100: its first write is n + 1 only if A's answered IN came along, complete.
    assert.deepEqual(runGuest(b.vcpu, 3, 100, false), [n + 1, n + 101, n + 201]);
    assert.deepEqual([...b.vcpu.getXsave().subarray(XSAVE_XMM0, XSAVE_XMM0 + 16)], new Array<number>(16).fill(0xa5),
      'XMM0 as A left it');
  } finally {
    if (b) dispose(b);
    dispose(a);
    kvm.close();
  }
});

test('every piece of vCPU and VM state survives a restore into a new VM', (t) => {
  if (!requireKvm(t)) return;
  const kvm = Kvm.open();
  const cpuid = vcpuCpuid(kvm.supportedCpuid(), 0, 1);
  const a = machine(kvm);
  let b: Machine | undefined;
  try {
    a.vcpu.setCpuid(cpuid);
    const msrs = savableMsrs(kvm, a.vcpu);
    giveDistinctState(a.vcpu);
    // What a fresh vCPU and VM do not have: an interrupt shadow, masked NMIs, a halted vCPU, programmed chips.
    const ev = a.vcpu.getEvents();
    ev.set('interruptShadow', KVM_X86_SHADOW_INT_MOV_SS).set('nmiMasked', 1).set('flags', KVM_VCPUEVENT_VALID_SHADOW);
    a.vcpu.setEvents(ev);
    a.vcpu.setMpState(MP_STATE.HALTED);
    const pic = a.vm.getIrqchip(KVM_IRQCHIP_PIC_MASTER);
    pic[PIC_IMR] = 0xfb;
    pic[PIC_IRQ_BASE] = 0x20;
    a.vm.setIrqchip(KVM_IRQCHIP_PIC_MASTER, pic);
    const ioapic = a.vm.getIrqchip(KVM_IRQCHIP_IOAPIC);
    new DataView(ioapic.buffer).setBigUint64(IOAPIC_REDIRTBL, 0x1_0030n, true);
    a.vm.setIrqchip(KVM_IRQCHIP_IOAPIC, ioapic);

    const vcpuState = saveVcpuState(a.vcpu, msrs);
    const vmState = saveVmState(a.vm);
    b = machine(kvm);
    b.vcpu.setCpuid(cpuid);
    restoreVmState(b.vm, vmState);
    restoreVcpuState(b.vcpu, vcpuState);

    const again = saveVcpuState(b.vcpu, msrs);
    assert.deepEqual(stable(again), stable(vcpuState));
    assert.equal(again.mpState, MP_STATE.HALTED);
    assert.equal(new DataView(again.xcrs.buffer).getBigUint64(XCRS_XCR0_VALUE, true), 3n);
    assert.equal(new StructView(kvmVcpuEvents, again.events).get('nmiMasked'), 1);
    const vmAgain = saveVmState(b.vm);
    assert.deepEqual([vmAgain.picMaster, vmAgain.picSlave, vmAgain.ioapic], [vmState.picMaster, vmState.picSlave, vmState.ioapic]);
    assert.equal(vmAgain.picMaster[PIC_IMR], 0xfb);
    assert.deepEqual(pitProgramming(vmAgain.pit), pitProgramming(vmState.pit));
  } finally {
    if (b) dispose(b);
    dispose(a);
    kvm.close();
  }
});

test('kvmclock stands still across a restore unless the caller advances it', (t) => {
  if (!requireKvm(t)) return;
  const kvm = Kvm.open();
  const hour = 3600n * 1_000_000_000n;
  const a = machine(kvm);
  try {
    const saved = saveVmState(a.vm);
    for (const advance of [0n, hour]) {
      const b = machine(kvm);
      try {
        restoreVmState(b.vm, saved, { clockAdvanceNs: advance });
        const now = b.vm.getClock();
        assert.ok(now >= saved.clockNs + advance, `clock ${now} is not past ${saved.clockNs} + ${advance}`);
        // Only the few ms of this test pass between restore and read; an hour is a bound no host reaches.
        assert.ok(now < saved.clockNs + advance + hour, `clock ${now} jumped past ${saved.clockNs} + ${advance}`);
      } finally {
        dispose(b);
      }
    }
  } finally {
    dispose(a);
    kvm.close();
  }
});

test('a restore KVM refuses names the piece', (t) => {
  if (!requireKvm(t)) return;
  const kvm = Kvm.open();
  const a = machine(kvm);
  try {
    a.vcpu.setCpuid(vcpuCpuid(kvm.supportedCpuid(), 0, 1));
    const msrs = savableMsrs(kvm, a.vcpu);
    const s = saveVcpuState(a.vcpu, msrs);
    // Bit 1 of XCR0 (SSE) without bit 0 (x87) is an invalid XCR0, which KVM_SET_XCRS refuses.
    const xcrs = s.xcrs.slice();
    new DataView(xcrs.buffer).setBigUint64(16, 2n, true);
    assert.throws(() => restoreVcpuState(a.vcpu, { ...s, xcrs }), (e: Error) => /XCRs/.test(e.message));
    assert.throws(() => restoreVcpuState(a.vcpu, { ...s, xsave: new Uint8Array(s.xsave.length + 64) }),
      (e: Error) => /XSAVE area.*bytes, this VM's is/.test(e.message));
    assert.throws(() => restoreVcpuState(a.vcpu, { ...s, msrs: [...s.msrs, [0xdead_beef, 1n]] }),
      (e: Error) => /MSRs.*0xdeadbeef/.test(e.message));
  } finally {
    dispose(a);
    kvm.close();
  }
});
