// What each side takes from the channel between a controller and a hypervisor: known messages with fields of the
// right types and the right number of descriptors; anything else (a hypervisor is not trusted to be well-formed) is
// refused rather than acted on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { controllerMessage, hypervisorMessage } from '../../src/protocols/instance.js';

test('well-formed hypervisor messages pass; malformed ones are refused', () => {
  for (const good of [{ kind: 'booted' }, { kind: 'created', privateIp: '172.31.0.2', mac: '02:14:ac:1f:00:02' }, { kind: 'created' },
    { kind: 'connect-card', card: 'network' }, { kind: 'ended', end: 'crashed', detail: 'why' }, { kind: 'ended', end: 'exit-status', detail: '7', status: 7 },
    { kind: 'connect-vsock', port: 6000 }, { kind: 'connect-vsock', port: 0xffffffff }]) {
    assert.deepEqual(hypervisorMessage(good), good);
  }
  for (const bad of [null, undefined, 7, 'booted', [], {}, { kind: 'launch' }, { kind: 'created', privateIp: 5 },
    { kind: 'created', mac: 'x'.repeat(65) }, { kind: 'connect-card' }, { kind: 'connect-card', card: 'x'.repeat(257) },
    { kind: 'ended', end: 'exploded', detail: '' }, { kind: 'ended', end: 'failed' }, { kind: 'ended', end: 'failed', detail: 'x'.repeat(4097) },
    { kind: 'ended', end: 'exit-status', detail: '7' }, { kind: 'ended', end: 'exit-status', detail: '', status: 256 },
    { kind: 'ended', end: 'exit-status', detail: '', status: 1.5 }, { kind: 'ended', end: 'stopped', detail: '', status: 0 },
    { kind: 'connect-vsock' }, { kind: 'connect-vsock', port: -1 }, { kind: 'connect-vsock', port: 2 ** 32 }, { kind: 'connect-vsock', port: '6000' }]) {
    assert.equal(hypervisorMessage(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(hypervisorMessage({ kind: 'booted' }, 1), undefined, 'a hypervisor sends no descriptors');
  // Whatever arrives, the check answers without throwing.
  fc.assert(fc.property(fc.anything(), fc.nat(8), (m, fds) => { hypervisorMessage(m, fds); }), { numRuns: 2000 });
});

test('well-formed controller messages pass, a card with its one descriptor; malformed ones are refused', () => {
  const launch = {
    kind: 'launch', kvmFd: 4, kernelFd: 5, flavour: 'hardware', cmdline: 'console=ttyS0', vcpus: 1, memoryMiB: 256, memory: { kind: 'memfd', noKvmclock: false },
    disks: [{ fd: 6, name: 'root', readOnly: false }], netCard: 'network', volumes: ['volume vol-1'], rng: true,
  };
  // What `azote run` adds: the initramfs, a TAP with its addresses, a vsock's listening socket.
  const run = {
    ...launch, initrdFd: 7, vsockFd: 9, netCard: undefined, volumes: [],
    tap: { fd: 8, mac: '02:41:5a:00:00:00', hostIp: '172.29.0.1', guestIp: '172.29.0.2', prefix: 30 },
  };
  const save = { mode: 'save', fd: 10 };
  const restore = { mode: 'restore', fd: 10, digest: 'ab'.repeat(48) };
  for (const [good, fds] of [[launch, 0], [run, 0], [{ kind: 'stop' }, 0], [{ kind: 'card', card: 'network' }, 1],
    [{ kind: 'card-unavailable', card: 'network', why: 'restarting' }, 0], [{ kind: 'vsock', port: 6000 }, 1],
    [{ kind: 'vsock-refused', port: 6000 }, 0], [{ kind: 'hibernate' }, 1],
    [{ ...run, snapshot: save, runRequest: 'cmVxdWVzdA==' }, 0], [{ ...run, snapshot: restore, runRequest: 'cmVxdWVzdA==' }, 0],
    // A hibernated instance continues a running guest: there is no request to give.
    [{ ...launch, snapshot: restore }, 0]] as const) {
    assert.deepEqual(controllerMessage(good, fds), good);
  }
  for (const [bad, fds] of [[{ kind: 'card', card: 'network' }, 0], [{ kind: 'card', card: 'network' }, 2], [{ kind: 'stop' }, 1],
    [{ ...launch, flavour: 'other' }, 0], [{ ...launch, memory: undefined }, 0], [{ ...launch, memory: { kind: 'anonymous', noKvmclock: false } }, 0],
    [{ ...launch, memory: { kind: 'secret' } }, 0], [{ ...launch, vcpus: 0 }, 0], [{ ...launch, kvmFd: -1 }, 0], [{ ...launch, disks: [{ fd: 6 }] }, 0],
    [{ ...launch, volumes: [7] }, 0], [{ kind: 'card-unavailable', card: 'network' }, 0], [null, 0], [{ kind: 'ended' }, 0],
    [{ ...launch, rng: undefined }, 0], [{ ...run, initrdFd: -1 }, 0], [{ ...run, vsockFd: '9' }, 0],
    [{ ...run, tap: { ...run.tap, fd: undefined } }, 0], [{ ...run, tap: { ...run.tap, mac: '02:41:5a:00:00' } }, 0],
    [{ ...run, tap: { ...run.tap, hostIp: '172.29.0.256' } }, 0], [{ ...run, tap: { ...run.tap, prefix: 31 } }, 0],
    [{ kind: 'vsock', port: 6000 }, 0], [{ kind: 'vsock-refused', port: 6000 }, 1], [{ kind: 'vsock', port: -1 }, 1],
    [{ kind: 'hibernate' }, 0], [{ kind: 'hibernate' }, 2], [{ ...run, snapshot: save }, 0], [{ ...launch, runRequest: 'cmVxdWVzdA==' }, 0],
    [{ ...run, snapshot: restore, runRequest: '***' }, 0], [{ ...run, snapshot: { ...restore, digest: 'ab' } }, 0],
    [{ ...run, snapshot: { mode: 'copy', fd: 10 }, runRequest: '' }, 0]] as const) {
    assert.equal(controllerMessage(bad, fds), undefined, JSON.stringify(bad));
  }
  fc.assert(fc.property(fc.anything(), fc.nat(8), (m, fds) => { controllerMessage(m, fds); }), { numRuns: 2000 });
});
