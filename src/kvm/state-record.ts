// Reading the JSON records that carry KVM state in a snapshot. A snapshot is input: every field is checked for its
// type and exact size, and anything else is refused with one BadSnapshotState error naming what is wrong.
import { AzoteError } from '../base/errors.js';

export function badState(what: string): AzoteError {
  return new AzoteError('BadSnapshotState', what,
    'the snapshot is damaged or was made by another Azote version: boot cold (--cold)');
}

export type JsonRecord = Readonly<Record<string, unknown>>;

/** `value` as a record of exactly `keys` with this kind and version. */
export function expectRecord(value: unknown, kind: string, version: number, keys: readonly string[]): JsonRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badState(`${kind} state is not an object`);
  const rec = value as JsonRecord;
  if (rec['kind'] !== kind) throw badState(`state of kind ${JSON.stringify(rec['kind'])}, expected "${kind}"`);
  if (rec['version'] !== version) {
    throw badState(`${kind} state version ${JSON.stringify(rec['version'])}, this Azote reads version ${version}`);
  }
  const expected = new Set(['kind', 'version', ...keys]);
  for (const k of Object.keys(rec)) if (!expected.has(k)) throw badState(`${kind} state has an unknown field "${k}"`);
  for (const k of keys) if (!(k in rec)) throw badState(`${kind} state lacks "${k}"`);
  return rec;
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Decodes canonical base64 only, of a length `fits` accepts: Buffer.from alone skips stray characters and ignores
 * padding bits, so the decoded bytes must encode back to the same text.
 */
export function bytesField(rec: JsonRecord, kind: string, key: string, fits: (length: number) => boolean,
  expected: string): Uint8Array {
  const v = rec[key];
  if (typeof v !== 'string') throw badState(`${kind} state "${key}" is not a base64 string`);
  const bytes = new Uint8Array(Buffer.from(v, 'base64'));
  if (toBase64(bytes) !== v) throw badState(`${kind} state "${key}" is not canonical base64`);
  if (!fits(bytes.length)) throw badState(`${kind} state "${key}" has ${bytes.length} bytes, expected ${expected}`);
  return bytes;
}

export function exactBytes(rec: JsonRecord, kind: string, key: string, length: number): Uint8Array {
  return bytesField(rec, kind, key, (n) => n === length, String(length));
}

export function toHex64(v: bigint): string {
  return `0x${v.toString(16)}`;
}

const HEX64 = /^0x(?:0|[1-9a-f][0-9a-f]{0,15})$/;

/** A u64 written as canonical lower-case hex ("0x0", "0x1f"), so each value has exactly one spelling. */
export function parseHex64(v: unknown, kind: string, what: string): bigint {
  if (typeof v !== 'string' || !HEX64.test(v)) throw badState(`${kind} state ${what} is not a 64-bit hex value`);
  return BigInt(v);
}

export function u32Field(rec: JsonRecord, kind: string, key: string): number {
  const v = rec[key];
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff) {
    throw badState(`${kind} state "${key}" is not a 32-bit unsigned integer`);
  }
  return v as number;
}
