// The hypervisor's paths, exercised in milliseconds by the freestanding guests under guest/test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireKvm } from '../framework/kvm.js';
import { runGuest, testGuest } from '../framework/microvm.js';

test('serial output, boot marker, PVH command line and memory map', async (t) => {
  if (!requireKvm(t)) return;
  const r = await runGuest(testGuest('hello'), { cmdline: 'greeting=yes', memoryMiB: 64 });
  assert.deepEqual(r.end, { kind: 'exit-status', status: 0 });
  assert.match(r.output, /hello from azote test guest/);
  assert.match(r.output, /cmdline: greeting=yes/);
  assert.match(r.output, /memmap: 3 entries, 63 MiB RAM/);
  assert.deepEqual(r.markers, [1]);
});

test('exit-status port carries the guest\'s status', async (t) => {
  if (!requireKvm(t)) return;
  for (const status of [0, 7, 42, 255]) {
    const r = await runGuest(testGuest('exit'), { cmdline: `status=${status}` });
    assert.deepEqual(r.end, { kind: 'exit-status', status });
  }
});

test('several vCPUs: MP table lists them and every AP starts', async (t) => {
  if (!requireKvm(t)) return;
  for (const vcpus of [1, 2, 4]) {
    const r = await runGuest(testGuest('smp'), { vcpus });
    assert.match(r.output, new RegExp(`mptable: ${vcpus} cpus`));
    assert.deepEqual(r.end, { kind: 'exit-status', status: vcpus }, r.output);
  }
});

test('unclaimed ports and MMIO read as all ones, are counted, and do not stop the VM', async (t) => {
  if (!requireKvm(t)) return;
  const r = await runGuest(testGuest('badio'));
  assert.deepEqual(r.end, { kind: 'exit-status', status: 0 }, r.output);
  assert.match(r.output, /badio: all checks passed/);
  // The guest counts what it did; the host's counters must agree exactly.
  const m = /unclaimed accesses: (\d+) port reads, (\d+) port writes, (\d+) mmio reads, (\d+) mmio writes/.exec(r.output);
  assert.ok(m, r.output);
  const [portReads, portWrites, mmioReads, mmioWrites] = m.slice(1).map(Number);
  assert.deepEqual(
    { ...r.stats.bus },
    { unknownPortReads: portReads, unknownPortWrites: portWrites, unknownMmioReads: mmioReads, unknownMmioWrites: mmioWrites },
  );
});

test('CMOS RTC answers like a real clock', async (t) => {
  if (!requireKvm(t)) return;
  const r = await runGuest(testGuest('cmos'));
  assert.deepEqual(r.end, { kind: 'exit-status', status: 0 }, r.output);
  assert.match(r.output, /cmos: sane/);
});

test('a triple fault ends the VM with a reason', async (t) => {
  if (!requireKvm(t)) return;
  const r = await runGuest(testGuest('triple'));
  assert.equal(r.end.kind, 'crashed');
  assert.match(r.end.kind === 'crashed' ? r.end.reason : '', /triple-faulted/);
  assert.doesNotMatch(r.output, /still alive/);
});

test('a parked guest is stopped from the host, with every vCPU', async (t) => {
  if (!requireKvm(t)) return;
  const r = await runGuest(testGuest('hello'), { cmdline: 'halt', vcpus: 2, stopAfterMs: 300 });
  assert.deepEqual(r.end, { kind: 'stopped' });
});

test('VMs come and go without leaking file descriptors', async (t) => {
  if (!requireKvm(t)) return;
  const { readdirSync } = await import('node:fs');
  const fds = (): number => readdirSync('/proc/self/fd').length;
  await runGuest(testGuest('exit'), { cmdline: 'status=0', vcpus: 2 });
  const before = fds();
  for (let i = 0; i < 5; i++) await runGuest(testGuest('exit'), { cmdline: 'status=0', vcpus: 2 });
  assert.equal(fds(), before);
});
