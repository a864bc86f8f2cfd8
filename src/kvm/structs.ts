// KVM's binary structures (linux/kvm.h, asm/kvm.h for x86-64), declared once. test/kvm/layout.test.ts compiles
// a C program against the host's headers and checks every size and offset here.
import { defineStruct } from '../base/struct.js';

export const kvmRegs = defineStruct('kvm_regs', 'struct kvm_regs', 144, {
  rax: { offset: 0, type: 'u64' }, rbx: { offset: 8, type: 'u64' }, rcx: { offset: 16, type: 'u64' },
  rdx: { offset: 24, type: 'u64' }, rsi: { offset: 32, type: 'u64' }, rdi: { offset: 40, type: 'u64' },
  rsp: { offset: 48, type: 'u64' }, rbp: { offset: 56, type: 'u64' }, r8: { offset: 64, type: 'u64' },
  r9: { offset: 72, type: 'u64' }, r10: { offset: 80, type: 'u64' }, r11: { offset: 88, type: 'u64' },
  r12: { offset: 96, type: 'u64' }, r13: { offset: 104, type: 'u64' }, r14: { offset: 112, type: 'u64' },
  r15: { offset: 120, type: 'u64' }, rip: { offset: 128, type: 'u64' }, rflags: { offset: 136, type: 'u64' },
});

/** struct kvm_segment, 24 bytes; eight of them open struct kvm_sregs. */
export const kvmSegment = defineStruct('kvm_segment', 'struct kvm_segment', 24, {
  base: { offset: 0, type: 'u64' }, limit: { offset: 8, type: 'u32' }, selector: { offset: 12, type: 'u16' },
  type: { offset: 14, type: 'u8' }, present: { offset: 15, type: 'u8' }, dpl: { offset: 16, type: 'u8' },
  db: { offset: 17, type: 'u8' }, s: { offset: 18, type: 'u8' }, l: { offset: 19, type: 'u8' },
  g: { offset: 20, type: 'u8' }, avl: { offset: 21, type: 'u8' }, unusable: { offset: 22, type: 'u8' },
});

export const kvmDtable = defineStruct('kvm_dtable', 'struct kvm_dtable', 16, {
  base: { offset: 0, type: 'u64' }, limit: { offset: 8, type: 'u16' },
});

export const kvmSregs = defineStruct('kvm_sregs', 'struct kvm_sregs', 312, {
  cs: { offset: 0, type: { bytes: 24 } }, ds: { offset: 24, type: { bytes: 24 } },
  es: { offset: 48, type: { bytes: 24 } }, fs: { offset: 72, type: { bytes: 24 } },
  gs: { offset: 96, type: { bytes: 24 } }, ss: { offset: 120, type: { bytes: 24 } },
  tr: { offset: 144, type: { bytes: 24 } }, ldt: { offset: 168, type: { bytes: 24 } },
  gdt: { offset: 192, type: { bytes: 16 } }, idt: { offset: 208, type: { bytes: 16 } },
  cr0: { offset: 224, type: 'u64' }, cr2: { offset: 232, type: 'u64' }, cr3: { offset: 240, type: 'u64' },
  cr4: { offset: 248, type: 'u64' }, cr8: { offset: 256, type: 'u64' }, efer: { offset: 264, type: 'u64' },
  apicBase: { offset: 272, type: 'u64', c: 'apic_base' },
  interruptBitmap: { offset: 280, type: { bytes: 32 }, c: 'interrupt_bitmap' },
});

export const kvmFpu = defineStruct('kvm_fpu', 'struct kvm_fpu', 416, {
  fpr: { offset: 0, type: { bytes: 128 } }, fcw: { offset: 128, type: 'u16' }, fsw: { offset: 130, type: 'u16' },
  ftwx: { offset: 132, type: 'u8' }, lastOpcode: { offset: 134, type: 'u16', c: 'last_opcode' },
  lastIp: { offset: 136, type: 'u64', c: 'last_ip' }, lastDp: { offset: 144, type: 'u64', c: 'last_dp' },
  xmm: { offset: 152, type: { bytes: 256 } }, mxcsr: { offset: 408, type: 'u32' },
});

/** The shared page of a vCPU (mmap of the vCPU fd): the exit reason and its details. */
export const kvmRun = defineStruct('kvm_run', 'struct kvm_run', 2352, {
  requestInterruptWindow: { offset: 0, type: 'u8', c: 'request_interrupt_window' },
  immediateExit: { offset: 1, type: 'u8', c: 'immediate_exit' },
  exitReason: { offset: 8, type: 'u32', c: 'exit_reason' },
  readyForInterruptInjection: { offset: 12, type: 'u8', c: 'ready_for_interrupt_injection' },
  ifFlag: { offset: 13, type: 'u8', c: 'if_flag' },
  flags: { offset: 14, type: 'u16' },
  cr8: { offset: 16, type: 'u64' },
  apicBase: { offset: 24, type: 'u64', c: 'apic_base' },
  ioDirection: { offset: 32, type: 'u8', c: 'io.direction' },
  ioSize: { offset: 33, type: 'u8', c: 'io.size' },
  ioPort: { offset: 34, type: 'u16', c: 'io.port' },
  ioCount: { offset: 36, type: 'u32', c: 'io.count' },
  ioDataOffset: { offset: 40, type: 'u64', c: 'io.data_offset' },
  mmioPhysAddr: { offset: 32, type: 'u64', c: 'mmio.phys_addr' },
  mmioData: { offset: 40, type: { bytes: 8 }, c: 'mmio.data' },
  mmioLen: { offset: 48, type: 'u32', c: 'mmio.len' },
  mmioIsWrite: { offset: 52, type: 'u8', c: 'mmio.is_write' },
  failEntryReason: { offset: 32, type: 'u64', c: 'fail_entry.hardware_entry_failure_reason' },
  failEntryCpu: { offset: 40, type: 'u32', c: 'fail_entry.cpu' },
  internalSuberror: { offset: 32, type: 'u32', c: 'internal.suberror' },
  internalNdata: { offset: 36, type: 'u32', c: 'internal.ndata' },
  internalData: { offset: 40, type: { bytes: 128 }, c: 'internal.data' },
  systemEventType: { offset: 32, type: 'u32', c: 'system_event.type' },
  systemEventNdata: { offset: 36, type: 'u32', c: 'system_event.ndata' },
  exOffset: { offset: 32, type: 'u32', c: 'ex.exception' },
  exErrorCode: { offset: 36, type: 'u32', c: 'ex.error_code' },
});

export const kvmUserspaceMemoryRegion = defineStruct('kvm_userspace_memory_region',
  'struct kvm_userspace_memory_region', 32, {
    slot: { offset: 0, type: 'u32' }, flags: { offset: 4, type: 'u32' },
    guestPhysAddr: { offset: 8, type: 'u64', c: 'guest_phys_addr' },
    memorySize: { offset: 16, type: 'u64', c: 'memory_size' },
    userspaceAddr: { offset: 24, type: 'u64', c: 'userspace_addr' },
  });

/** struct kvm_cpuid2 header; `entries` of kvmCpuidEntry2 follow it. */
export const kvmCpuid2 = defineStruct('kvm_cpuid2', 'struct kvm_cpuid2', 8, {
  nent: { offset: 0, type: 'u32' },
});

export const kvmCpuidEntry2 = defineStruct('kvm_cpuid_entry2', 'struct kvm_cpuid_entry2', 40, {
  function: { offset: 0, type: 'u32' }, index: { offset: 4, type: 'u32' }, flags: { offset: 8, type: 'u32' },
  eax: { offset: 12, type: 'u32' }, ebx: { offset: 16, type: 'u32' }, ecx: { offset: 20, type: 'u32' },
  edx: { offset: 24, type: 'u32' },
});

/** struct kvm_msrs header; `entries` of kvmMsrEntry follow it. */
export const kvmMsrs = defineStruct('kvm_msrs', 'struct kvm_msrs', 8, {
  nmsrs: { offset: 0, type: 'u32' },
});

export const kvmMsrEntry = defineStruct('kvm_msr_entry', 'struct kvm_msr_entry', 16, {
  index: { offset: 0, type: 'u32' }, data: { offset: 8, type: 'u64' },
});

export const kvmPitConfig = defineStruct('kvm_pit_config', 'struct kvm_pit_config', 64, {
  flags: { offset: 0, type: 'u32' },
});

export const kvmIrqLevel = defineStruct('kvm_irq_level', 'struct kvm_irq_level', 8, {
  irq: { offset: 0, type: 'u32' }, level: { offset: 4, type: 'u32' },
});

export const kvmLapicState = defineStruct('kvm_lapic_state', 'struct kvm_lapic_state', 1024, {
  regs: { offset: 0, type: { bytes: 1024 } },
});

export const kvmMpState = defineStruct('kvm_mp_state', 'struct kvm_mp_state', 4, {
  mpState: { offset: 0, type: 'u32', c: 'mp_state' },
});

export const kvmVcpuEvents = defineStruct('kvm_vcpu_events', 'struct kvm_vcpu_events', 64, {
  exceptionInjected: { offset: 0, type: 'u8', c: 'exception.injected' },
  exceptionNr: { offset: 1, type: 'u8', c: 'exception.nr' },
  exceptionHasErrorCode: { offset: 2, type: 'u8', c: 'exception.has_error_code' },
  exceptionPending: { offset: 3, type: 'u8', c: 'exception.pending' },
  exceptionErrorCode: { offset: 4, type: 'u32', c: 'exception.error_code' },
  interruptInjected: { offset: 8, type: 'u8', c: 'interrupt.injected' },
  interruptShadow: { offset: 11, type: 'u8', c: 'interrupt.shadow' },
  nmiInjected: { offset: 12, type: 'u8', c: 'nmi.injected' },
  nmiMasked: { offset: 14, type: 'u8', c: 'nmi.masked' },
  sipiVector: { offset: 16, type: 'u32', c: 'sipi_vector' },
  flags: { offset: 20, type: 'u32' },
  exceptionHasPayload: { offset: 55, type: 'u8', c: 'exception_has_payload' },
  exceptionPayload: { offset: 56, type: 'u64', c: 'exception_payload' },
});

/** Binds an eventfd to guest writes of an MMIO or port address (optionally of one value): no exit to userspace. */
export const kvmIoeventfd = defineStruct('kvm_ioeventfd', 'struct kvm_ioeventfd', 64, {
  datamatch: { offset: 0, type: 'u64' }, addr: { offset: 8, type: 'u64' }, len: { offset: 16, type: 'u32' },
  fd: { offset: 20, type: 'u32' }, flags: { offset: 24, type: 'u32' },
});

/** Binds an eventfd to an interrupt line: a write to it raises the GSI inside KVM. */
export const kvmIrqfd = defineStruct('kvm_irqfd', 'struct kvm_irqfd', 32, {
  fd: { offset: 0, type: 'u32' }, gsi: { offset: 4, type: 'u32' }, flags: { offset: 8, type: 'u32' },
  resamplefd: { offset: 12, type: 'u32' },
});

/** The MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST on /dev/kvm); nmsrs u32 indices follow. */
export const kvmMsrList = defineStruct('kvm_msr_list', 'struct kvm_msr_list', 4, {
  nmsrs: { offset: 0, type: 'u32' },
});

/** The legacy 4 KiB XSAVE area; KVM_GET_XSAVE2 extends it to KVM_CAP_XSAVE2 bytes when that is larger. */
export const kvmXsave = defineStruct('kvm_xsave', 'struct kvm_xsave', 4096, {
  region: { offset: 0, type: { bytes: 4096 } },
});

export const kvmXcr = defineStruct('kvm_xcr', 'struct kvm_xcr', 16, {
  xcr: { offset: 0, type: 'u32' }, value: { offset: 8, type: 'u64' },
});

export const kvmXcrs = defineStruct('kvm_xcrs', 'struct kvm_xcrs', 392, {
  nrXcrs: { offset: 0, type: 'u32', c: 'nr_xcrs' }, flags: { offset: 4, type: 'u32' },
  xcrs: { offset: 8, type: { bytes: 256 } },
});

export const kvmDebugregs = defineStruct('kvm_debugregs', 'struct kvm_debugregs', 128, {
  db: { offset: 0, type: { bytes: 32 } }, dr6: { offset: 32, type: 'u64' }, dr7: { offset: 40, type: 'u64' },
  flags: { offset: 48, type: 'u64' },
});

/** One in-kernel interrupt controller's state: chip 0 = PIC master, 1 = PIC slave, 2 = IOAPIC (a 512-byte union). */
export const kvmIrqchip = defineStruct('kvm_irqchip', 'struct kvm_irqchip', 520, {
  chipId: { offset: 0, type: 'u32', c: 'chip_id' }, chip: { offset: 8, type: { bytes: 512 } },
});

export const kvmPitChannelState = defineStruct('kvm_pit_channel_state', 'struct kvm_pit_channel_state', 24, {
  count: { offset: 0, type: 'u32' }, latchedCount: { offset: 4, type: 'u16', c: 'latched_count' },
  countLatched: { offset: 6, type: 'u8', c: 'count_latched' },
  statusLatched: { offset: 7, type: 'u8', c: 'status_latched' }, status: { offset: 8, type: 'u8' },
  readState: { offset: 9, type: 'u8', c: 'read_state' }, writeState: { offset: 10, type: 'u8', c: 'write_state' },
  writeLatch: { offset: 11, type: 'u8', c: 'write_latch' }, rwMode: { offset: 12, type: 'u8', c: 'rw_mode' },
  mode: { offset: 13, type: 'u8' }, bcd: { offset: 14, type: 'u8' }, gate: { offset: 15, type: 'u8' },
  countLoadTime: { offset: 16, type: 'u64', c: 'count_load_time' },
});

export const kvmPitState2 = defineStruct('kvm_pit_state2', 'struct kvm_pit_state2', 112, {
  channels: { offset: 0, type: { bytes: 72 } }, flags: { offset: 72, type: 'u32' },
});

/** kvmclock: the guest's clock in ns; with KVM_CLOCK_REALTIME in flags, SET_CLOCK advances it by the host's elapsed realtime. */
export const kvmClockData = defineStruct('kvm_clock_data', 'struct kvm_clock_data', 48, {
  clock: { offset: 0, type: 'u64' }, flags: { offset: 8, type: 'u32' }, realtime: { offset: 16, type: 'u64' },
  hostTsc: { offset: 24, type: 'u64', c: 'host_tsc' },
});

export const kvmLayouts = [
  kvmRegs, kvmSegment, kvmDtable, kvmSregs, kvmFpu, kvmRun, kvmUserspaceMemoryRegion, kvmCpuid2, kvmCpuidEntry2,
  kvmMsrs, kvmMsrEntry, kvmPitConfig, kvmIrqLevel, kvmLapicState, kvmMpState, kvmVcpuEvents, kvmIoeventfd,
  kvmIrqfd, kvmMsrList, kvmXsave, kvmXcr, kvmXcrs, kvmDebugregs, kvmIrqchip, kvmPitChannelState, kvmPitState2,
  kvmClockData,
];
