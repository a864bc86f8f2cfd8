// The guest's physical memory map (BIOS e820 types), shared by the Linux zero page and the PVH start info.
import type { MemoryRegion } from '../memory/guest-memory.js';
import { EBDA_START, HIGH_MEMORY } from './layout.js';

export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface E820Entry {
  readonly addr: number;
  readonly size: number;
  readonly type: number;
}

/** RAM below the EBDA, the MP table area reserved, and every region from 1 MiB up as RAM. */
export function e820Map(regions: readonly MemoryRegion[]): E820Entry[] {
  const map: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820_RAM },
    { addr: EBDA_START, size: 0x100000 - EBDA_START, type: E820_RESERVED },
  ];
  for (const r of regions) {
    const start = Math.max(r.gpa, HIGH_MEMORY);
    const end = r.gpa + r.size;
    if (end > start) map.push({ addr: start, size: end - start, type: E820_RAM });
  }
  return map;
}
