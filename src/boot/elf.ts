// ELF images: Linux's uncompressed vmlinux (ELF64) and our test guests (ELF32), both entered through PVH.
// Every offset and size read from the file is checked against the file before use.
import { AzoteError } from '../base/errors.js';

export interface ElfSegment {
  readonly paddr: number;
  readonly fileOffset: number;
  readonly fileSize: number;
  readonly memSize: number;
}

export interface ElfImage {
  readonly class: 32 | 64;
  readonly entry: number;
  readonly segments: ElfSegment[];
  /** The 32-bit PVH entry point from the XEN_ELFNOTE_PHYS32_ENTRY note, if present. */
  readonly pvhEntry: number | undefined;
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export function isElf(data: Uint8Array): boolean {
  return data.length >= 4 && data[0] === 0x7f && data[1] === 0x45 && data[2] === 0x4c && data[3] === 0x46;
}

function bad(why: string): AzoteError {
  return new AzoteError('BadKernel', `not a bootable ELF kernel: ${why}`, 'pass an uncompressed vmlinux with a PVH note, or a bzImage');
}

export function parseElf(data: Uint8Array): ElfImage {
  if (!isElf(data) || data.length < 52) throw bad('no ELF header');
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const cls = data[4];
  if (cls !== 1 && cls !== 2) throw bad('unknown ELF class');
  if (data[5] !== 1) throw bad('not little-endian');
  const is64 = cls === 2;
  const machine = dv.getUint16(18, true);
  if (machine !== (is64 ? 62 : 3)) throw bad(`machine ${machine} is not x86`);
  const u = (off: number, w: 4 | 8): number => {
    if (off + w > data.length) throw bad('truncated');
    return w === 4 ? dv.getUint32(off, true) : Number(dv.getBigUint64(off, true));
  };
  const entry = is64 ? u(24, 8) : u(24, 4);
  const phoff = is64 ? u(32, 8) : u(28, 4);
  const phentsize = dv.getUint16(is64 ? 54 : 42, true);
  const phnum = dv.getUint16(is64 ? 56 : 44, true);
  if (phentsize < (is64 ? 56 : 32) || phnum === 0 || phoff + phnum * phentsize > data.length) {
    throw bad('program headers out of range');
  }
  const segments: ElfSegment[] = [];
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const type = u(ph, 4);
    const offset = is64 ? u(ph + 8, 8) : u(ph + 4, 4);
    const paddr = is64 ? u(ph + 24, 8) : u(ph + 12, 4);
    const filesz = is64 ? u(ph + 32, 8) : u(ph + 16, 4);
    const memsz = is64 ? u(ph + 40, 8) : u(ph + 20, 4);
    if (offset + filesz > data.length) throw bad(`segment ${i} extends past the end of the file`);
    if (type === PT_LOAD) {
      if (memsz < filesz) throw bad(`segment ${i} is smaller in memory than in the file`);
      segments.push({ paddr, fileOffset: offset, fileSize: filesz, memSize: memsz });
    } else if (type === PT_NOTE) {
      pvhEntry ??= findPvhNote(dv, offset, filesz);
    }
  }
  if (segments.length === 0) throw bad('no loadable segment');
  return { class: is64 ? 64 : 32, entry, segments, pvhEntry };
}

function findPvhNote(dv: DataView, start: number, size: number): number | undefined {
  let p = start;
  const end = start + size;
  while (p + 12 <= end) {
    const namesz = dv.getUint32(p, true);
    const descsz = dv.getUint32(p + 4, true);
    const type = dv.getUint32(p + 8, true);
    const desc = p + 12 + align4(namesz);
    if (desc + descsz > end) return undefined;
    if (type === XEN_ELFNOTE_PHYS32_ENTRY && namesz === 4 && descsz >= 4 &&
      dv.getUint32(p + 12, true) === 0x006e6558 /* "Xen\0" */) {
      return descsz >= 8 ? Number(dv.getBigUint64(desc, true)) : dv.getUint32(desc, true);
    }
    p = desc + align4(descsz);
  }
  return undefined;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
