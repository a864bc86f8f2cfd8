import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defineStruct, StructView } from '../../src/base/struct.js';

const demo = defineStruct('demo', 'struct demo', 16, {
  flags: { offset: 0, type: 'u32' }, wide: { offset: 8, type: 'u64' },
});

test('struct: a negative value for a u64 field is refused instead of sign-extended', () => {
  const v = StructView.alloc(demo);
  assert.throws(() => v.set('wide', 0x80000000 | 0x11), /demo\.wide = -2147483631: negative/);
  v.set('wide', (0x80000000 | 0x11) >>> 0);
  assert.equal(v.get64('wide'), 0x80000011n);
  v.set('flags', 0x80000000 | 1); // a 32-bit field stores the same bits either way
  assert.equal(v.get('flags'), 0x80000001);
});
