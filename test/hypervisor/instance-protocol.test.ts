// What the controller takes from a hypervisor's channel: known messages with fields of the right types; anything
// else (a hypervisor is not trusted to be well-formed) is refused rather than acted on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hypervisorMessage } from '../../src/hypervisor/instance-protocol.js';

test('well-formed hypervisor messages pass; malformed ones are refused', () => {
  for (const good of [{ kind: 'booted' }, { kind: 'created', privateIp: '172.31.0.2', mac: '02:14:ac:1f:00:02' }, { kind: 'created' },
    { kind: 'connect-card', card: 'network' }, { kind: 'ended', end: 'crashed', detail: 'why' }]) {
    assert.deepEqual(hypervisorMessage(good), good);
  }
  for (const bad of [null, undefined, 7, 'booted', [], {}, { kind: 'launch' }, { kind: 'created', privateIp: 5 },
    { kind: 'created', mac: 'x'.repeat(65) }, { kind: 'connect-card' }, { kind: 'ended', end: 'exploded', detail: '' },
    { kind: 'ended', end: 'failed' }, { kind: 'ended', end: 'failed', detail: 'x'.repeat(4097) }]) {
    assert.equal(hypervisorMessage(bad), undefined, JSON.stringify(bad));
  }
  // Whatever arrives, the check answers without throwing.
  fc.assert(fc.property(fc.anything(), (m) => { hypervisorMessage(m); }), { numRuns: 2000 });
});
