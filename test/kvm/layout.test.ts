import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmLayouts } from '../../src/kvm/structs.js';
import { kvmConstants, kvmIoctls } from '../../src/kvm/ioctls.js';
import { readCFacts, layoutMismatches } from '../framework/c-layout.js';

test('KVM struct layouts match <linux/kvm.h>', () => {
  const facts = readCFacts(['linux/kvm.h'], kvmLayouts, [...Object.keys(kvmIoctls), ...Object.keys(kvmConstants)]);
  assert.deepEqual(layoutMismatches(kvmLayouts, facts), []);
  for (const [name, value] of Object.entries(kvmIoctls)) {
    assert.equal(BigInt(value), facts.constants.get(name), `${name} request number`);
  }
  for (const [name, value] of Object.entries(kvmConstants)) {
    assert.equal(BigInt(value), facts.constants.get(name), name);
  }
});
