// An Intel MultiProcessor Specification 1.4 table: how a guest without ACPI learns its CPUs, its IOAPIC and how
// interrupts reach the IOAPIC's 24 inputs. Written at the EBDA start, which the e820 map reserves.
import { AzoteError } from '../base/errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { IOAPIC_BASE, LAPIC_BASE, MPTABLE } from './layout.js';

const FLOATING_SIZE = 16;
const HEADER_SIZE = 44;
const PROCESSOR_SIZE = 20;
const ENTRY_SIZE = 8;
/** The IOAPIC's inputs: the 16 ISA lines and GSIs 16-23, each routed as an ISA interrupt to the same pin. */
const IOAPIC_PINS = 24;
const APIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
export const MAX_MPTABLE_CPUS = 32;
const AREA_END = 0xa0000;

export function mptableSize(cpus: number): number {
  return FLOATING_SIZE + HEADER_SIZE + cpus * PROCESSOR_SIZE + ENTRY_SIZE /* bus */ + ENTRY_SIZE /* ioapic */ +
    IOAPIC_PINS * ENTRY_SIZE + 2 * ENTRY_SIZE /* local interrupts */;
}

function checksum(b: Uint8Array): number {
  let s = 0;
  for (const x of b) s = (s + x) & 0xff;
  return (0x100 - s) & 0xff;
}

function ascii(b: Uint8Array, off: number, text: string, width: number): void {
  for (let i = 0; i < width; i++) b[off + i] = i < text.length ? text.charCodeAt(i) : 0x20;
}

/** Builds the table for `cpus` vCPUs (APIC ids 0..cpus-1, the IOAPIC's id after them). */
export function buildMptable(cpus: number): Uint8Array {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_MPTABLE_CPUS) {
    throw new AzoteError('BadVcpuCount', `${cpus} vCPUs: between 1 and ${MAX_MPTABLE_CPUS} are supported`);
  }
  const size = mptableSize(cpus);
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  const tableAddr = MPTABLE + FLOATING_SIZE;

  // Floating pointer structure.
  ascii(b, 0, '_MP_', 4);
  dv.setUint32(4, tableAddr, true);
  b[8] = 1; // length in 16-byte units
  b[9] = 4; // spec revision 1.4
  b[10] = checksum(b.subarray(0, FLOATING_SIZE));

  // Configuration table entries.
  const t = FLOATING_SIZE;
  let p = t + HEADER_SIZE;
  let count = 0;
  for (let id = 0; id < cpus; id++) {
    b[p] = 0;
    b[p + 1] = id;
    b[p + 2] = APIC_VERSION;
    b[p + 3] = 0x01 | (id === 0 ? 0x02 : 0); // enabled, bootstrap processor
    dv.setUint32(p + 4, 0x600, true); // family 6
    dv.setUint32(p + 8, 0x201, true); // FPU, APIC
    p += PROCESSOR_SIZE;
    count++;
  }
  const busId = 0;
  b[p] = 1; b[p + 1] = busId; ascii(b, p + 2, 'ISA', 6); p += ENTRY_SIZE; count++;
  const ioapicId = cpus;
  b[p] = 2; b[p + 1] = ioapicId; b[p + 2] = IOAPIC_VERSION; b[p + 3] = 1; dv.setUint32(p + 4, IOAPIC_BASE, true);
  p += ENTRY_SIZE; count++;
  for (let irq = 0; irq < IOAPIC_PINS; irq++) {
    b[p] = 3; b[p + 1] = 0; dv.setUint16(p + 2, 0, true); b[p + 4] = busId; b[p + 5] = irq; b[p + 6] = ioapicId; b[p + 7] = irq;
    p += ENTRY_SIZE; count++;
  }
  // LINT0 as ExtINT and LINT1 as NMI on every local APIC.
  b[p] = 4; b[p + 1] = 3; b[p + 4] = busId; b[p + 5] = 0; b[p + 6] = 0xff; b[p + 7] = 0; p += ENTRY_SIZE; count++;
  b[p] = 4; b[p + 1] = 1; b[p + 4] = busId; b[p + 5] = 0; b[p + 6] = 0xff; b[p + 7] = 1; p += ENTRY_SIZE; count++;

  ascii(b, t, 'PCMP', 4);
  dv.setUint16(t + 4, p - t, true);
  b[t + 6] = 4;
  ascii(b, t + 8, 'AZOTE', 8);
  ascii(b, t + 16, 'MICROVM', 12);
  dv.setUint16(t + 34, count, true);
  dv.setUint32(t + 36, LAPIC_BASE, true);
  b[t + 7] = checksum(b.subarray(t, p));
  return b;
}

export function writeMptable(mem: GuestMemory, cpus: number): void {
  const table = buildMptable(cpus);
  if (MPTABLE + table.length > AREA_END) throw new AzoteError('MptableTooLarge', 'MP table does not fit in the EBDA');
  mem.write(MPTABLE, table);
}
