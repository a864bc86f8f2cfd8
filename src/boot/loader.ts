// Puts a kernel, its command line and initrd into guest memory and describes how to enter it:
// an ELF with a PVH note (vmlinux, test guests) through PVH, or a bzImage through the 64-bit boot protocol.
import { AzoteError } from '../base/errors.js';
import { StructView } from '../base/struct.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  bootE820Entry, bootParams, CAN_USE_HEAP, E820_MAX_ENTRIES_ZEROPAGE, LOADED_HIGH, LOADER_TYPE_UNDEFINED,
  SETUP_HEADER_MAGIC, setupHeaderOffset, XLF_KERNEL_64,
} from './boot-params.js';
import { e820Map } from './e820.js';
import { isElf, parseElf } from './elf.js';
import { CMDLINE, CMDLINE_MAX, HIGH_MEMORY, PVH_MEMMAP, PVH_MODLIST, PVH_START_INFO, ZERO_PAGE } from './layout.js';
import { writeMptable } from './mptable.js';
import { hvmMemmapEntry, hvmModlistEntry, hvmStartInfo, XEN_HVM_START_MAGIC } from './pvh.js';

export interface BootConfig {
  readonly kernel: Uint8Array;
  readonly initrd?: Uint8Array | undefined;
  readonly cmdline: string;
  readonly vcpus: number;
}

export interface BootPlan {
  /** 'pvh': 32-bit protected mode, EBX = start info. 'linux64': long mode, RSI = zero page. */
  readonly protocol: 'pvh' | 'linux64';
  readonly entry: number;
  readonly bootInfo: number;
  /** End of the highest byte the kernel image occupies. */
  readonly kernelEnd: number;
  readonly initrd: { addr: number; size: number } | undefined;
}

const PAGE = 4096;

function notAKernel(why: string): AzoteError {
  return new AzoteError('BadKernel', `the kernel file is not a kernel: ${why}`,
    'pass a bzImage or an uncompressed vmlinux (ELF with a PVH note) with --kernel');
}

export function loadGuest(mem: GuestMemory, cfg: BootConfig): BootPlan {
  const cmd = new TextEncoder().encode(cfg.cmdline);
  if (cmd.length + 1 > CMDLINE_MAX) {
    throw new AzoteError('CmdlineTooLong', `the kernel command line is ${cmd.length} bytes; Linux keeps at most ${CMDLINE_MAX - 1}`,
      'shorten it (with --image, the command and its environment ride on it: put long ones in a script on a --disk)');
  }
  mem.write(CMDLINE, cmd);
  mem.writeU8(CMDLINE + cmd.length, 0);
  writeMptable(mem, cfg.vcpus);
  return isElf(cfg.kernel) ? loadPvh(mem, cfg) : loadBzImage(mem, cfg, cmd.length);
}

function lowMemoryEnd(mem: GuestMemory): number {
  const low = mem.regions[0];
  if (!low) throw new AzoteError('NoMemory', 'guest has no memory');
  return low.gpa + low.size;
}

/** The initrd goes at the top of low memory, page aligned, above the kernel. */
function placeInitrd(mem: GuestMemory, initrd: Uint8Array, kernelEnd: number, limit: number): { addr: number; size: number } {
  const top = Math.min(lowMemoryEnd(mem), limit);
  const addr = Math.floor((top - initrd.length) / PAGE) * PAGE;
  if (addr < kernelEnd || addr < HIGH_MEMORY) {
    const needMiB = Math.ceil((kernelEnd + initrd.length) / (1024 * 1024)) + 1;
    throw new AzoteError('InitrdTooLarge',
      `the initrd (${initrd.length} bytes) does not fit in guest memory above the kernel`,
      `give the VM more memory (--mem ${Math.max(needMiB * 2, 64)} or more) or use a smaller initrd`);
  }
  mem.write(addr, initrd);
  return { addr, size: initrd.length };
}

function loadPvh(mem: GuestMemory, cfg: BootConfig): BootPlan {
  const elf = parseElf(cfg.kernel);
  if (elf.pvhEntry === undefined) throw notAKernel('the ELF has no XEN_ELFNOTE_PHYS32_ENTRY (PVH) note');
  let kernelEnd = 0;
  for (const s of elf.segments) {
    if (!mem.contains(s.paddr, s.memSize) || s.paddr < HIGH_MEMORY) {
      throw new AzoteError('KernelDoesNotFit',
        `kernel segment at 0x${s.paddr.toString(16)} (${s.memSize} bytes) is outside guest memory`,
        'give the VM more memory with --mem');
    }
    mem.write(s.paddr, cfg.kernel.subarray(s.fileOffset, s.fileOffset + s.fileSize));
    mem.fill(s.paddr + s.fileSize, s.memSize - s.fileSize, 0);
    kernelEnd = Math.max(kernelEnd, s.paddr + s.memSize);
  }
  const initrd = cfg.initrd ? placeInitrd(mem, cfg.initrd, kernelEnd, 0xffffffff) : undefined;

  const map = e820Map(mem.regions);
  map.forEach((e, i) => {
    const v = new StructView(hvmMemmapEntry, mem.slice(PVH_MEMMAP + i * hvmMemmapEntry.size, hvmMemmapEntry.size));
    v.set('addr', e.addr).set('size', e.size).set('type', e.type);
  });
  if (initrd) {
    new StructView(hvmModlistEntry, mem.slice(PVH_MODLIST, hvmModlistEntry.size))
      .set('paddr', initrd.addr).set('size', initrd.size).set('cmdlinePaddr', 0);
  }
  new StructView(hvmStartInfo, mem.slice(PVH_START_INFO, hvmStartInfo.size))
    .set('magic', XEN_HVM_START_MAGIC).set('version', 1).set('flags', 0)
    .set('nrModules', initrd ? 1 : 0).set('modlistPaddr', initrd ? PVH_MODLIST : 0)
    .set('cmdlinePaddr', CMDLINE).set('rsdpPaddr', 0)
    .set('memmapPaddr', PVH_MEMMAP).set('memmapEntries', map.length);
  return { protocol: 'pvh', entry: elf.pvhEntry, bootInfo: PVH_START_INFO, kernelEnd, initrd };
}

function loadBzImage(mem: GuestMemory, cfg: BootConfig, cmdlineLength: number): BootPlan {
  const k = cfg.kernel;
  if (k.length < 0x1000) throw notAKernel('too small');
  const image = new StructView(bootParams, k.subarray(0, 4096));
  if (image.get('header') !== SETUP_HEADER_MAGIC) throw notAKernel('no "HdrS" setup header (neither ELF nor bzImage)');
  const version = image.get('version');
  if (version < 0x206) throw notAKernel(`boot protocol ${version.toString(16)} is older than 2.06`);
  if (!(image.get('loadflags') & LOADED_HIGH)) throw notAKernel('not a bzImage (zImage is not supported)');
  if (!(image.get('xloadflags') & XLF_KERNEL_64)) throw notAKernel('the kernel has no 64-bit entry point');
  const setupSects = image.get('setupSects') || 4;
  const kernelOffset = (setupSects + 1) * 512;
  if (kernelOffset >= k.length) throw notAKernel('setup sectors exceed the file');
  const payload = k.subarray(kernelOffset);
  const loadAddr = HIGH_MEMORY;
  const initSize = Math.max(image.get('initSize'), payload.length);
  if (!mem.contains(loadAddr, initSize)) {
    throw new AzoteError('KernelDoesNotFit', `the kernel needs ${initSize} bytes from 1 MiB; guest memory is too small`,
      'give the VM more memory with --mem');
  }
  mem.write(loadAddr, payload);
  const kernelEnd = loadAddr + initSize;
  const initrd = cfg.initrd ? placeInitrd(mem, cfg.initrd, kernelEnd, image.get('initrdAddrMax') + 1) : undefined;

  // The zero page starts as a copy of the image's setup header; the loader then fills in its own fields.
  mem.fill(ZERO_PAGE, 4096, 0);
  const headerEnd = 0x202 + (k[0x201] ?? 0);
  mem.write(ZERO_PAGE + setupHeaderOffset, k.subarray(setupHeaderOffset, Math.min(headerEnd, 4096)));
  const zp = new StructView(bootParams, mem.slice(ZERO_PAGE, 4096));
  zp.set('typeOfLoader', LOADER_TYPE_UNDEFINED)
    .set('loadflags', zp.get('loadflags') | CAN_USE_HEAP)
    .set('heapEndPtr', 0xfe00)
    .set('cmdLinePtr', CMDLINE).set('extCmdLinePtr', 0).set('cmdlineSize', cmdlineLength)
    .set('code32Start', loadAddr);
  if (initrd) {
    zp.set('ramdiskImage', initrd.addr).set('ramdiskSize', initrd.size);
  }
  const map = e820Map(mem.regions);
  if (map.length > E820_MAX_ENTRIES_ZEROPAGE) throw new AzoteError('E820TooLarge', 'too many e820 entries');
  const table = zp.field('e820Table');
  map.forEach((e, i) => {
    new StructView(bootE820Entry, table, i * bootE820Entry.size).set('addr', e.addr).set('size', e.size).set('type', e.type);
  });
  zp.set('e820Entries', map.length);
  return { protocol: 'linux64', entry: loadAddr + 0x200, bootInfo: ZERO_PAGE, kernelEnd, initrd };
}
