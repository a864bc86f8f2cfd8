// KVM ioctl request numbers, from the _IOC encoding of linux/ioctl.h (checked against the headers by a test).
import { kvmRegs, kvmSregs, kvmFpu, kvmUserspaceMemoryRegion, kvmCpuid2, kvmMsrs, kvmPitConfig, kvmIrqLevel,
  kvmLapicState, kvmMpState, kvmVcpuEvents, kvmIoeventfd, kvmIrqfd, kvmMsrList, kvmXsave, kvmXcrs, kvmDebugregs,
  kvmIrqchip, kvmPitState2, kvmClockData } from './structs.js';

const KVMIO = 0xae;
const NONE = 0, WRITE = 1, READ = 2;

function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}

export const KVM_GET_API_VERSION = ioc(NONE, 0x00, 0);
export const KVM_CREATE_VM = ioc(NONE, 0x01, 0);
export const KVM_GET_MSR_INDEX_LIST = ioc(READ | WRITE, 0x02, kvmMsrList.size);
export const KVM_CHECK_EXTENSION = ioc(NONE, 0x03, 0);
export const KVM_GET_VCPU_MMAP_SIZE = ioc(NONE, 0x04, 0);
export const KVM_GET_SUPPORTED_CPUID = ioc(READ | WRITE, 0x05, kvmCpuid2.size);
export const KVM_CREATE_VCPU = ioc(NONE, 0x41, 0);
export const KVM_SET_USER_MEMORY_REGION = ioc(WRITE, 0x46, kvmUserspaceMemoryRegion.size);
export const KVM_SET_TSS_ADDR = ioc(NONE, 0x47, 0);
export const KVM_SET_IDENTITY_MAP_ADDR = ioc(WRITE, 0x48, 8);
export const KVM_CREATE_IRQCHIP = ioc(NONE, 0x60, 0);
export const KVM_IRQ_LINE = ioc(WRITE, 0x61, kvmIrqLevel.size);
export const KVM_GET_IRQCHIP = ioc(READ | WRITE, 0x62, kvmIrqchip.size);
// _IOR although userspace writes it: the header has carried this encoding since 2007.
export const KVM_SET_IRQCHIP = ioc(READ, 0x63, kvmIrqchip.size);
export const KVM_IRQFD = ioc(WRITE, 0x76, kvmIrqfd.size);
export const KVM_IOEVENTFD = ioc(WRITE, 0x79, kvmIoeventfd.size);
export const KVM_CREATE_PIT2 = ioc(WRITE, 0x77, kvmPitConfig.size);
export const KVM_SET_CLOCK = ioc(WRITE, 0x7b, kvmClockData.size);
export const KVM_GET_CLOCK = ioc(READ, 0x7c, kvmClockData.size);
export const KVM_GET_PIT2 = ioc(READ, 0x9f, kvmPitState2.size);
export const KVM_SET_PIT2 = ioc(WRITE, 0xa0, kvmPitState2.size);
export const KVM_RUN = ioc(NONE, 0x80, 0);
export const KVM_GET_REGS = ioc(READ, 0x81, kvmRegs.size);
export const KVM_SET_REGS = ioc(WRITE, 0x82, kvmRegs.size);
export const KVM_GET_SREGS = ioc(READ, 0x83, kvmSregs.size);
export const KVM_SET_SREGS = ioc(WRITE, 0x84, kvmSregs.size);
export const KVM_GET_MSRS = ioc(READ | WRITE, 0x88, kvmMsrs.size);
export const KVM_SET_MSRS = ioc(WRITE, 0x89, kvmMsrs.size);
export const KVM_GET_FPU = ioc(READ, 0x8c, kvmFpu.size);
export const KVM_SET_FPU = ioc(WRITE, 0x8d, kvmFpu.size);
export const KVM_GET_LAPIC = ioc(READ, 0x8e, kvmLapicState.size);
export const KVM_SET_LAPIC = ioc(WRITE, 0x8f, kvmLapicState.size);
export const KVM_SET_CPUID2 = ioc(WRITE, 0x90, kvmCpuid2.size);
export const KVM_GET_MP_STATE = ioc(READ, 0x98, kvmMpState.size);
export const KVM_SET_MP_STATE = ioc(WRITE, 0x99, kvmMpState.size);
export const KVM_GET_VCPU_EVENTS = ioc(READ, 0x9f, kvmVcpuEvents.size);
export const KVM_SET_VCPU_EVENTS = ioc(WRITE, 0xa0, kvmVcpuEvents.size);
export const KVM_GET_DEBUGREGS = ioc(READ, 0xa1, kvmDebugregs.size);
export const KVM_SET_DEBUGREGS = ioc(WRITE, 0xa2, kvmDebugregs.size);
export const KVM_SET_TSC_KHZ = ioc(NONE, 0xa2, 0);
export const KVM_GET_TSC_KHZ = ioc(NONE, 0xa3, 0);
export const KVM_GET_XSAVE = ioc(READ, 0xa4, kvmXsave.size);
export const KVM_SET_XSAVE = ioc(WRITE, 0xa5, kvmXsave.size);
export const KVM_GET_XCRS = ioc(READ, 0xa6, kvmXcrs.size);
export const KVM_SET_XCRS = ioc(WRITE, 0xa7, kvmXcrs.size);
/** Like KVM_GET_XSAVE but fills KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) bytes (the size in the number stays 4096). */
export const KVM_GET_XSAVE2 = ioc(READ, 0xcf, kvmXsave.size);

/** Every request number by its C name, for the header test. */
export const kvmIoctls: Record<string, number> = {
  KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE, KVM_GET_SUPPORTED_CPUID,
  KVM_CREATE_VCPU, KVM_SET_USER_MEMORY_REGION, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP,
  KVM_IRQ_LINE, KVM_IRQFD, KVM_IOEVENTFD, KVM_CREATE_PIT2, KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
  KVM_SET_MSRS, KVM_GET_FPU, KVM_SET_FPU, KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_SET_CPUID2, KVM_GET_MP_STATE,
  KVM_SET_MP_STATE, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_MSR_INDEX_LIST, KVM_GET_MSRS, KVM_GET_IRQCHIP,
  KVM_SET_IRQCHIP, KVM_SET_CLOCK, KVM_GET_CLOCK, KVM_GET_PIT2, KVM_SET_PIT2, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
  KVM_SET_TSC_KHZ, KVM_GET_TSC_KHZ, KVM_GET_XSAVE, KVM_SET_XSAVE, KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_XSAVE2,
};

export const KVM_API_VERSION = 12;
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_SET_TSS_ADDR = 4;
export const KVM_CAP_IRQFD = 32;
export const KVM_CAP_PIT2 = 33;
export const KVM_CAP_IOEVENTFD = 36;
export const KVM_CAP_ADJUST_CLOCK = 39;
export const KVM_CAP_DEBUGREGS = 50;
export const KVM_CAP_XSAVE = 55;
export const KVM_CAP_XCRS = 56;
export const KVM_CAP_GET_TSC_KHZ = 61;
export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_XSAVE2 = 208;
export const KVM_PIT_SPEAKER_DUMMY = 1;
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1, KVM_IOEVENTFD_FLAG_DEASSIGN = 4;
export const KVM_IRQFD_FLAG_DEASSIGN = 1;
export const KVM_IRQCHIP_PIC_MASTER = 0, KVM_IRQCHIP_PIC_SLAVE = 1, KVM_IRQCHIP_IOAPIC = 2;
export const KVM_XSAVE_LEGACY_SIZE = 4096;
export const KVM_VCPUEVENT_VALID_SHADOW = 4;
export const KVM_X86_SHADOW_INT_MOV_SS = 1;

/** Capability numbers and other constants by their C name, for the header test. */
export const kvmConstants: Record<string, number> = {
  KVM_API_VERSION, KVM_CAP_IRQCHIP, KVM_CAP_USER_MEMORY, KVM_CAP_SET_TSS_ADDR, KVM_CAP_IRQFD, KVM_CAP_PIT2,
  KVM_CAP_IOEVENTFD, KVM_CAP_ADJUST_CLOCK, KVM_CAP_DEBUGREGS, KVM_CAP_XSAVE, KVM_CAP_XCRS, KVM_CAP_GET_TSC_KHZ,
  KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_XSAVE2, KVM_PIT_SPEAKER_DUMMY, KVM_IOEVENTFD_FLAG_DATAMATCH,
  KVM_IOEVENTFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
  KVM_IRQCHIP_IOAPIC, KVM_VCPUEVENT_VALID_SHADOW, KVM_X86_SHADOW_INT_MOV_SS,
};
