// What each side takes from the channel between a controller and a hypervisor: known messages with fields of the
// right types and the right number of descriptors; anything else (a hypervisor is not trusted to be well-formed) is
// refused rather than acted on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { controllerMessage, hypervisorMessage } from '../../src/protocols/instance.js';

test('well-formed hypervisor messages pass; malformed ones are refused', () => {
  for (const good of [{ kind: 'booted' }, { kind: 'created', privateIp: '172.31.0.2', mac: '02:14:ac:1f:00:02' }, { kind: 'created' },
    { kind: 'connect-card', card: 'network' }, { kind: 'ended', end: 'crashed', detail: 'why' }]) {
    assert.deepEqual(hypervisorMessage(good), good);
  }
  for (const bad of [null, undefined, 7, 'booted', [], {}, { kind: 'launch' }, { kind: 'created', privateIp: 5 },
    { kind: 'created', mac: 'x'.repeat(65) }, { kind: 'connect-card' }, { kind: 'connect-card', card: 'x'.repeat(257) },
    { kind: 'ended', end: 'exploded', detail: '' }, { kind: 'ended', end: 'failed' }, { kind: 'ended', end: 'failed', detail: 'x'.repeat(4097) }]) {
    assert.equal(hypervisorMessage(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(hypervisorMessage({ kind: 'booted' }, 1), undefined, 'a hypervisor sends no descriptors');
  // Whatever arrives, the check answers without throwing.
  fc.assert(fc.property(fc.anything(), fc.nat(8), (m, fds) => { hypervisorMessage(m, fds); }), { numRuns: 2000 });
});

test('well-formed controller messages pass, a card with its one descriptor; malformed ones are refused', () => {
  const launch = {
    kind: 'launch', kvmFd: 4, kernelFd: 5, flavour: 'hardware', cmdline: 'console=ttyS0', vcpus: 1, memoryMiB: 256,
    disks: [{ fd: 6, name: 'root', readOnly: false }], netCard: 'network', volumes: ['volume vol-1'],
  };
  for (const [good, fds] of [[launch, 0], [{ kind: 'stop' }, 0], [{ kind: 'card', card: 'network' }, 1],
    [{ kind: 'card-unavailable', card: 'network', why: 'restarting' }, 0]] as const) {
    assert.deepEqual(controllerMessage(good, fds), good);
  }
  for (const [bad, fds] of [[{ kind: 'card', card: 'network' }, 0], [{ kind: 'card', card: 'network' }, 2], [{ kind: 'stop' }, 1],
    [{ ...launch, flavour: 'other' }, 0], [{ ...launch, vcpus: 0 }, 0], [{ ...launch, kvmFd: -1 }, 0], [{ ...launch, disks: [{ fd: 6 }] }, 0],
    [{ ...launch, volumes: [7] }, 0], [{ kind: 'card-unavailable', card: 'network' }, 0], [null, 0], [{ kind: 'ended' }, 0]] as const) {
    assert.equal(controllerMessage(bad, fds), undefined, JSON.stringify(bad));
  }
  fc.assert(fc.property(fc.anything(), fc.nat(8), (m, fds) => { controllerMessage(m, fds); }), { numRuns: 2000 });
});
