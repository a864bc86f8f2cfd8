// The boot GDT and the KVM segment registers derived from it.
import { StructView } from '../base/struct.js';
import { kvmSegment } from '../kvm/structs.js';

/** Access/flags words (high byte: G, D/B, L, AVL; low byte: P, DPL, S, type). */
export const CODE64 = 0xa09b;
export const CODE32 = 0xc09b;
export const DATA = 0xc093;
export const TSS = 0x808b;

export const SEL_CODE = 0x10;
export const SEL_DATA = 0x18;
export const SEL_TSS = 0x20;

export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const b = BigInt(base), l = BigInt(limit), f = BigInt(flags);
  return ((b & 0xff000000n) << 32n) | ((b & 0x00ffffffn) << 16n) | (l & 0xffffn) | ((l & 0xf0000n) << 32n) |
    ((f & 0xf0ffn) << 40n);
}

/** GDT: null, null, code (0x10), data (0x18), TSS (0x20). */
export function bootGdt(code: number): bigint[] {
  return [0n, 0n, gdtEntry(code, 0, 0xfffff), gdtEntry(DATA, 0, 0xfffff), gdtEntry(TSS, 0, 0xfffff)];
}

export function gdtBytes(entries: bigint[]): Uint8Array {
  const b = new Uint8Array(entries.length * 8);
  const dv = new DataView(b.buffer);
  entries.forEach((e, i) => dv.setBigUint64(i * 8, e, true));
  return b;
}

/** The kvm_segment a selector loads from `entry`. */
export function segmentFromEntry(selector: number, entry: bigint): Uint8Array {
  const base = Number(((entry >> 16n) & 0xffffffn) | ((entry >> 32n) & 0xff000000n));
  const rawLimit = Number((entry & 0xffffn) | ((entry >> 32n) & 0xf0000n));
  const access = Number((entry >> 40n) & 0xf0ffn);
  const g = (access >> 15) & 1;
  const s = StructView.alloc(kvmSegment);
  s.set('base', base).set('limit', g ? rawLimit * 4096 + 0xfff : rawLimit).set('selector', selector)
    .set('type', access & 0xf).set('present', (access >> 7) & 1).set('dpl', (access >> 5) & 3)
    .set('db', (access >> 14) & 1).set('s', (access >> 4) & 1).set('l', (access >> 13) & 1).set('g', g)
    .set('avl', (access >> 12) & 1).set('unusable', (access >> 7) & 1 ? 0 : 1);
  return s.bytes();
}
