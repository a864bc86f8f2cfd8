// Saved device state: each model writes a plain JSON-able record tagged with its kind and version, and reads one back
// only through a StateReader. A record comes from a file that may be damaged or made by another Azote version, so
// every field is checked (type, range, length) and every fault is one BadSnapshotState error naming the device and
// the field; nothing else escapes a parse, and a model applies a record only after all of it was read.
import { AzoteError } from './errors.js';

/** What every saved record starts with. */
export interface StateRecord {
  readonly kind: string;
  readonly version: number;
}

const FIX = 'the snapshot is damaged or was made by another Azote version: boot cold (--cold)';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** The largest value of a u64 field, which a record holds as a decimal string (see StateReader.bigint). */
export const U64_MAX = 2n ** 64n - 1n;

export function badState(device: string, what: string): AzoteError {
  return new AzoteError('BadSnapshotState', `${device} state: ${what}`, FIX);
}

/** Bytes as a record holds them. */
export function encodeBytes(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export class StateReader {
  private readonly fields: Record<string, unknown>;
  private readonly read = new Set<string>();

  /** Checks that `record` is an object of `kind` at `version`; `device` (and `path`) name it in errors. */
  constructor(private readonly device: string, record: unknown, kind: string, version: number, private readonly path = '') {
    let fields: Record<string, unknown> | undefined;
    try {
      // Only own, plain data counts: a prototype's properties or an array are not a record.
      if (typeof record === 'object' && record !== null && !Array.isArray(record)) fields = { ...record } as Record<string, unknown>;
    } catch {
      fields = undefined;
    }
    if (!fields) this.fail(`${path || 'the record'} is not an object of plain fields`);
    this.fields = fields;
    if (path === '') {
      const k = this.take('kind');
      if (k !== kind) this.fail(`kind is ${JSON.stringify(k)}, not "${kind}"`);
      const v = this.take('version');
      if (v !== version) this.fail(`version ${JSON.stringify(v)} is not ${version}, the one this Azote reads`);
    }
  }

  fail(what: string): never {
    throw badState(this.device, what);
  }

  private where(name: string): string {
    return this.path ? `${this.path}.${name}` : name;
  }

  private take(name: string): unknown {
    if (!Object.hasOwn(this.fields, name)) this.fail(`${this.where(name)} is missing`);
    this.read.add(name);
    return this.fields[name];
  }

  int(name: string, min: number, max: number): number {
    const v = this.take(name);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(`${this.where(name)} is ${describe(v)}, not an integer from ${min} to ${max}`);
    }
    return v;
  }

  bool(name: string): boolean {
    const v = this.take(name);
    if (typeof v !== 'boolean') this.fail(`${this.where(name)} is ${describe(v)}, not true or false`);
    return v;
  }

  /** A bigint written as a decimal string (JSON has no 64-bit integers). */
  bigint(name: string, min: bigint, max: bigint): bigint {
    const v = this.take(name);
    const limit = max.toString().length;
    if (typeof v !== 'string' || v.length > limit || !DECIMAL.test(v) || BigInt(v) < min || BigInt(v) > max) {
      this.fail(`${this.where(name)} is ${describe(v)}, not a decimal string from ${min} to ${max}`);
    }
    return BigInt(v);
  }

  /** Base64 bytes: exactly `length.exact` of them, or at most `length.max`. */
  bytes(name: string, length: { readonly exact: number } | { readonly max: number }): Uint8Array {
    const v = this.take(name);
    const max = 'exact' in length ? length.exact : length.max;
    const expected = 'exact' in length ? `exactly ${length.exact}` : `at most ${length.max}`;
    // Checked before decoding, so a huge string is never decoded.
    if (typeof v !== 'string' || v.length > 4 * Math.ceil(max / 3) || v.length % 4 !== 0 || !BASE64.test(v)) {
      this.fail(`${this.where(name)} is ${describe(v)}, not base64 of ${expected} bytes`);
    }
    const bytes = new Uint8Array(Buffer.from(v, 'base64'));
    // Only the canonical spelling, what this Azote writes: Buffer.from ignores the padding bits.
    if (encodeBytes(bytes) !== v) this.fail(`${this.where(name)} is not canonical base64`);
    if (bytes.length > max || ('exact' in length && bytes.length !== length.exact)) {
      this.fail(`${this.where(name)} holds ${bytes.length} bytes, not ${expected}`);
    }
    return bytes;
  }

  /** A string of at most `maxLength` characters, or absent. */
  optionalString(name: string, maxLength: number): string | undefined {
    if (!Object.hasOwn(this.fields, name)) return undefined;
    const v = this.take(name);
    if (typeof v !== 'string' || v.length > maxLength) this.fail(`${this.where(name)} is ${describe(v)}, not a string of at most ${maxLength} characters`);
    return v;
  }

  /** A nested record as it is, for the parser of its own kind (which checks all of it). */
  record(name: string): unknown {
    return this.take(name);
  }

  /** A list of `min` to `max` nested records as they are, each for the parser of its own kind. */
  records(name: string, min: number, max: number): unknown[] {
    const v = this.take(name);
    if (!Array.isArray(v) || v.length < min || v.length > max) {
      this.fail(`${this.where(name)} is ${describe(v)}, not a list of ${min === max ? min : `${min} to ${max}`} entries`);
    }
    return [...v] as unknown[];
  }

  /** A list of `min` to `max` strings of at most `maxLength` characters each. */
  strings(name: string, min: number, max: number, maxLength: number): string[] {
    const v = this.take(name);
    if (!Array.isArray(v) || v.length < min || v.length > max || !v.every((x) => typeof x === 'string' && x.length <= maxLength)) {
      this.fail(`${this.where(name)} is ${describe(v)}, not a list of ${min === max ? min : `${min} to ${max}`} strings`);
    }
    return [...v] as string[];
  }

  /** A list of `min` to `max` nested records, each read by `each`, with no field left over. */
  list<T>(name: string, min: number, max: number, each: (r: StateReader, index: number) => T): T[] {
    const v = this.take(name);
    if (!Array.isArray(v) || v.length < min || v.length > max) {
      this.fail(`${this.where(name)} is ${describe(v)}, not a list of ${min === max ? min : `${min} to ${max}`} entries`);
    }
    return v.map((item: unknown, i) => {
      const r = new StateReader(this.device, item, '', 0, this.where(`${name}[${i}]`));
      const value = each(r, i);
      r.end();
      return value;
    });
  }

  /** Refuses fields nobody read: a record with more than its version has was not written by this version. */
  end(): void {
    const extra = Object.keys(this.fields).find((k) => !this.read.has(k));
    if (extra !== undefined) this.fail(`${this.where(JSON.stringify(extra.slice(0, 40)).slice(1, -1))} is not a field of this record`);
  }
}

/** A short, safe description of an unexpected value for an error. */
function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string': return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
    case 'number': case 'boolean': return String(v);
    case 'object': return 'an object';
    default: return `a ${typeof v}`;
  }
}

/**
 * Reads a record with `read`, then checks no field was left over. Whatever goes wrong inside (a record made of
 * exotic objects included) is a BadSnapshotState.
 */
export function parseState<T>(device: string, record: unknown, kind: string, version: number, read: (r: StateReader) => T): T {
  try {
    const r = new StateReader(device, record, kind, version);
    const value = read(r);
    r.end();
    return value;
  } catch (e) {
    if (e instanceof AzoteError && e.code === 'BadSnapshotState') throw e;
    throw badState(device, `the record cannot be read (${e instanceof Error ? e.message : String(e)})`);
  }
}
