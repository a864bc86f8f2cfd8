// The record reader every device model's restore goes through: each kind of fault is one BadSnapshotState naming the
// device and the field, whatever the input is made of.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AzoteError } from '../../src/base/errors.js';
import { encodeBytes, parseState, type StateReader } from '../../src/base/state-record.js';

const read = (r: StateReader): unknown => ({
  n: r.int('n', 0, 10), b: r.bool('b'), big: r.bigint('big', 0n, 2n ** 64n - 1n), exact: r.bytes('exact', { exact: 3 }),
  upTo: r.bytes('upTo', { max: 5 }), s: r.optionalString('s', 8), list: r.list('list', 0, 2, (x) => x.int('v', 0, 1)),
});
const good = { kind: 'thing', version: 3, n: 4, b: false, big: '18446744073709551615', exact: 'AQID', upTo: '', list: [{ v: 1 }] };

function refused(record: unknown, why: RegExp): void {
  assert.throws(() => parseState('the thing', record, 'thing', 3, read), (e: unknown) => {
    assert.ok(e instanceof AzoteError && e.code === 'BadSnapshotState', String(e));
    assert.match(e.message, /^the thing state: /);
    assert.match(e.message, why);
    assert.equal(e.fix, 'the snapshot is damaged or was made by another Azote version: boot cold (--cold)');
    return true;
  });
}

test('state records: a good record reads back; each fault names its field', () => {
  assert.deepEqual(parseState('the thing', good, 'thing', 3, read), {
    n: 4, b: false, big: 2n ** 64n - 1n, exact: Uint8Array.of(1, 2, 3), upTo: new Uint8Array(0), s: undefined, list: [1],
  });
  assert.equal(encodeBytes(Uint8Array.of(1, 2, 3)), 'AQID');
  const cases: Array<[unknown, RegExp]> = [
    [{ ...good, kind: 'other' }, /kind is "other", not "thing"/], [{ ...good, version: 4 }, /version 4 is not 3/],
    [{ ...good, n: 11 }, /n is 11, not an integer from 0 to 10/], [{ ...good, n: 2.5 }, /n is 2.5/], [{ ...good, n: '4' }, /n is "4"/],
    [{ ...good, b: 0 }, /b is 0, not true or false/], [{ ...good, big: '18446744073709551616' }, /big/], [{ ...good, big: '-1' }, /big/],
    [{ ...good, big: '01' }, /big/], [{ ...good, big: 5 }, /big/], [{ ...good, big: '9'.repeat(10_000) }, /a string of 10000 characters/],
    [{ ...good, exact: 'AQ==' }, /exact holds 1 bytes, not exactly 3/], [{ ...good, exact: 'AQIDBA==' }, /exact/],
    [{ ...good, exact: 'AQI' }, /exact .*base64/], [{ ...good, exact: 'AQ*D' }, /exact .*base64/], [{ ...good, upTo: 'AQIDBAUG' }, /upTo/],
    [{ ...good, upTo: 'AR==' }, /upTo is not canonical base64/], [{ ...good, upTo: 'A'.repeat(1_000_000) }, /upTo/], [{ ...good, s: 'x'.repeat(9) }, /s is "xxxxxxxxx"/],
    [{ ...good, s: null }, /s is null/], [{ ...good, list: [{ v: 2 }] }, /list\[0\]\.v is 2/], [{ ...good, list: [{ v: 1, w: 0 }] }, /list\[0\]\.w is not a field/],
    [{ ...good, list: [1] }, /list\[0\] is not an object/], [{ ...good, list: [{}, {}, {}] }, /list/], [{ ...good, list: {} }, /list/],
    [{ ...good, more: 1 }, /more is not a field/], [{ ...good, n: undefined }, /n is undefined, not an integer/],
  ];
  for (const [record, why] of cases) refused(record, why);
  const { n: _n, ...missing } = good;
  refused(missing, /n is missing/);
});

test('state records: exotic inputs (proxies, throwing getters, prototypes, symbols) are refused, never thrown through', () => {
  const { proxy, revoke } = Proxy.revocable({ ...good }, {});
  revoke();
  const throwingKeys = new Proxy({ ...good }, { ownKeys: () => { throw new TypeError('trap'); } });
  const throwingGet = new Proxy({ ...good }, { get: () => { throw new RangeError('trap'); } });
  const getter = Object.defineProperty({ ...good }, 'n', { get: () => { throw new Error('getter'); }, enumerable: true });
  for (const odd of [proxy, throwingKeys, throwingGet, getter, Object.create(good), new Map(Object.entries(good)), 1n, Symbol('x'), () => good]) {
    assert.throws(() => parseState('the thing', odd, 'thing', 3, read), (e: unknown) => e instanceof AzoteError && e.code === 'BadSnapshotState');
  }
  fc.assert(fc.property(fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true }), (v) => {
    try {
      parseState('the thing', v, 'thing', 3, read);
    } catch (e) {
      assert.ok(e instanceof AzoteError && e.code === 'BadSnapshotState', String(e));
    }
  }), { numRuns: 2000, seed: 0x0dd });
});
