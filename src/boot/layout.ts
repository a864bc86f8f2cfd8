// Where boot structures live in guest-physical memory. guest/ABI.md documents the same map for guest authors.
export const BOOT_GDT = 0x500;
export const BOOT_IDT = 0x520;
export const PVH_START_INFO = 0x6000;
export const PVH_MEMMAP = 0x6100;
export const PVH_MODLIST = 0x6800;
export const ZERO_PAGE = 0x7000;
export const BOOT_STACK = 0x8ff0;
export const PML4 = 0x9000;
export const PDPT = 0xa000;
export const PD = 0xb000;
export const CMDLINE = 0x20000;
/** Linux on x86-64 keeps at most COMMAND_LINE_SIZE (2048) bytes of its command line, NUL included. */
export const CMDLINE_MAX = 2048;
export const EBDA_START = 0x9fc00;
export const MPTABLE = EBDA_START;
export const LEGACY_HOLE_END = 0x100000;
export const HIGH_MEMORY = 0x100000;
export const IOAPIC_BASE = 0xfec00000;
export const LAPIC_BASE = 0xfee00000;
/** KVM's Intel-only helpers need three pages and one page just below 4 GiB; nothing else lives there. */
export const KVM_TSS_ADDR = 0xfffbd000;
export const KVM_IDENTITY_MAP_ADDR = 0xfffbc000;
