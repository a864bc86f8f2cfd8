// Checks shared by the saved-state tests of every device model: a refused record is a BadSnapshotState and changes
// nothing; random mutations of a valid record are either taken or refused that way, never another exception.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AzoteError } from '../../src/base/errors.js';

export interface Saves {
  saveState(): unknown;
  restoreState(record: unknown): void;
}

/** `record` is refused with BadSnapshotState and `target` keeps the state it had. */
export function assertRefused(target: Saves, record: unknown, why?: RegExp): void {
  const before = JSON.stringify(target.saveState());
  assert.throws(() => target.restoreState(record), (e: unknown) => {
    assert.ok(e instanceof AzoteError, `not an AzoteError: ${String(e)}`);
    assert.equal(e.code, 'BadSnapshotState', e.message);
    assert.match(e.fix ?? '', /--cold/);
    if (why) assert.match(e.message, why);
    return true;
  });
  assert.equal(JSON.stringify(target.saveState()), before, 'a refused record changed nothing');
}

/** A JSON-able copy: what a record is after a trip through a file. */
export const viaJson = <T>(v: T): unknown => JSON.parse(JSON.stringify(v)) as unknown;

type Json = Record<string, unknown>;

/** One random change to a record: a field removed, replaced by anything, or added; nested lists included. */
export function mutation(): fc.Arbitrary<(record: Json) => unknown> {
  const value = fc.oneof(fc.anything(), fc.jsonValue(), fc.integer(), fc.integer({ min: -1, max: 70000 }),
    fc.string(), fc.base64String(), fc.constantFrom(null, true, 1.5, -0, NaN, '', '18446744073709551616', 2 ** 53));
  return fc.oneof(
    fc.record({ op: fc.constantFrom('delete', 'set'), pick: fc.nat(), value }).map(({ op, pick, value: v }) => (record: Json) => {
      const out = structuredClone(record);
      const target = pickObject(out, pick);
      const keys = Object.keys(target);
      const key = keys[pick % Math.max(1, keys.length)] ?? 'kind';
      if (op === 'delete') delete target[key];
      else target[key] = v;
      return out;
    }),
    fc.record({ key: fc.string(), value, pick: fc.nat() }).map(({ key, value: v, pick }) => (record: Json) => {
      const out = structuredClone(record);
      pickObject(out, pick)[key] = v;
      return out;
    }),
    value.map((v) => () => v),
  );
}

/** The record itself or one of the objects in its lists. */
function pickObject(record: Json, pick: number): Json {
  const nested = Object.values(record).flatMap((v) => (Array.isArray(v) ? v.filter((x): x is Json => typeof x === 'object' && x !== null) : []));
  return pick % 3 === 0 || nested.length === 0 ? record : (nested[pick % nested.length] as Json);
}

/** Restoring `mutated` into `target` either succeeds or is a clean refusal. */
export function takenOrRefused(target: Saves, mutated: unknown): void {
  const before = JSON.stringify(target.saveState());
  try {
    target.restoreState(mutated);
  } catch (e) {
    assert.ok(e instanceof AzoteError && e.code === 'BadSnapshotState', `unexpected ${e instanceof Error ? e.stack : String(e)}`);
    assert.equal(JSON.stringify(target.saveState()), before, 'a refused record changed nothing');
  }
}
