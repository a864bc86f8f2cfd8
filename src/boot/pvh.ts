// The PVH boot ABI's start-of-day structures (Xen's public arch-x86/hvm/start_info.h, version 1).
// test/boot/layout.test.ts checks these against a C transcription of that header.
import { defineStruct } from '../base/struct.js';

export const XEN_HVM_START_MAGIC = 0x336ec578;

export const hvmStartInfo = defineStruct('hvm_start_info', 'struct hvm_start_info', 56, {
  magic: { offset: 0, type: 'u32' }, version: { offset: 4, type: 'u32' }, flags: { offset: 8, type: 'u32' },
  nrModules: { offset: 12, type: 'u32', c: 'nr_modules' },
  modlistPaddr: { offset: 16, type: 'u64', c: 'modlist_paddr' },
  cmdlinePaddr: { offset: 24, type: 'u64', c: 'cmdline_paddr' },
  rsdpPaddr: { offset: 32, type: 'u64', c: 'rsdp_paddr' },
  memmapPaddr: { offset: 40, type: 'u64', c: 'memmap_paddr' },
  memmapEntries: { offset: 48, type: 'u32', c: 'memmap_entries' },
});

export const hvmModlistEntry = defineStruct('hvm_modlist_entry', 'struct hvm_modlist_entry', 32, {
  paddr: { offset: 0, type: 'u64' }, size: { offset: 8, type: 'u64' },
  cmdlinePaddr: { offset: 16, type: 'u64', c: 'cmdline_paddr' },
});

export const hvmMemmapEntry = defineStruct('hvm_memmap_table_entry', 'struct hvm_memmap_table_entry', 24, {
  addr: { offset: 0, type: 'u64' }, size: { offset: 8, type: 'u64' }, type: { offset: 16, type: 'u32' },
});
