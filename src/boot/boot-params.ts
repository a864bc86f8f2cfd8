// The Linux x86 zero page (struct boot_params, Documentation/arch/x86/boot.rst and zero-page.rst).
// Only the fields a 64-bit loader fills are named; test/boot/layout.test.ts checks them against asm/bootparam.h.
import { defineStruct } from '../base/struct.js';

export const setupHeaderOffset = 0x1f1;

export const bootParams = defineStruct('boot_params', 'struct boot_params', 4096, {
  extRamdiskImage: { offset: 0x0c0, type: 'u32', c: 'ext_ramdisk_image' },
  extRamdiskSize: { offset: 0x0c4, type: 'u32', c: 'ext_ramdisk_size' },
  extCmdLinePtr: { offset: 0x0c8, type: 'u32', c: 'ext_cmd_line_ptr' },
  e820Entries: { offset: 0x1e8, type: 'u8', c: 'e820_entries' },
  setupSects: { offset: 0x1f1, type: 'u8', c: 'hdr.setup_sects' },
  bootFlag: { offset: 0x1fe, type: 'u16', c: 'hdr.boot_flag' },
  header: { offset: 0x202, type: 'u32', c: 'hdr.header' },
  version: { offset: 0x206, type: 'u16', c: 'hdr.version' },
  typeOfLoader: { offset: 0x210, type: 'u8', c: 'hdr.type_of_loader' },
  loadflags: { offset: 0x211, type: 'u8', c: 'hdr.loadflags' },
  code32Start: { offset: 0x214, type: 'u32', c: 'hdr.code32_start' },
  ramdiskImage: { offset: 0x218, type: 'u32', c: 'hdr.ramdisk_image' },
  ramdiskSize: { offset: 0x21c, type: 'u32', c: 'hdr.ramdisk_size' },
  heapEndPtr: { offset: 0x224, type: 'u16', c: 'hdr.heap_end_ptr' },
  cmdLinePtr: { offset: 0x228, type: 'u32', c: 'hdr.cmd_line_ptr' },
  initrdAddrMax: { offset: 0x22c, type: 'u32', c: 'hdr.initrd_addr_max' },
  kernelAlignment: { offset: 0x230, type: 'u32', c: 'hdr.kernel_alignment' },
  relocatableKernel: { offset: 0x234, type: 'u8', c: 'hdr.relocatable_kernel' },
  xloadflags: { offset: 0x236, type: 'u16', c: 'hdr.xloadflags' },
  cmdlineSize: { offset: 0x238, type: 'u32', c: 'hdr.cmdline_size' },
  prefAddress: { offset: 0x258, type: 'u64', c: 'hdr.pref_address' },
  initSize: { offset: 0x260, type: 'u32', c: 'hdr.init_size' },
  e820Table: { offset: 0x2d0, type: { bytes: 20 * 128 }, c: 'e820_table' },
});

export const bootE820Entry = defineStruct('boot_e820_entry', 'struct boot_e820_entry', 20, {
  addr: { offset: 0, type: 'u64' }, size: { offset: 8, type: 'u64' }, type: { offset: 16, type: 'u32' },
});

export const E820_MAX_ENTRIES_ZEROPAGE = 128;
export const SETUP_HEADER_MAGIC = 0x53726448; // "HdrS"
export const LOADED_HIGH = 0x01;
export const CAN_USE_HEAP = 0x80;
export const XLF_KERNEL_64 = 0x01;
export const LOADER_TYPE_UNDEFINED = 0xff;
