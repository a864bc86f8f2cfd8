// `azote run` from a booted snapshot, as a user runs it: the first run of a machine boots and saves it, later runs
// continue copies of it, each with its own clock, entropy, MAC and address, and a damaged snapshot is refused and
// replaced by a cold boot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cacheDir } from '../../src/images/cache.js';
import { azote, type CliRun } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const LIMIT = { timeoutMs: 300_000 };
// A cache of its own for the snapshots, sharing the kernel, init and images already built.
const cache = mkdtempSync(path.join(tmpdir(), 'azote-snapshots-'));
for (const entry of readdirSync(cacheDir())) if (entry !== 'snapshots') symlinkSync(path.join(cacheDir(), entry), path.join(cache, entry));
test.after(() => rmSync(cache, { recursive: true, force: true }));
const env = { AZOTE_CACHE_DIR: cache };

// One command per line of output: single commands, no pipelines (guest/kernel/README.md).
const SCRIPT = [
  'cat /sys/class/net/eth0/address',
  'od -An -N16 -tx1 /dev/urandom',
  'echo "$AZOTE_GUEST_IP"',
  'ping -c 1 -W 5 "$AZOTE_HOST_IP" >/dev/null && echo reachable',
  'read uptime idle < /proc/uptime',
  'echo "$uptime"',
  'exit 3',
].join('; ');
const ARGS = ['--net', 'tap', '--', 'sh', '-c', SCRIPT];

interface Seen { mac: string; random: string; ip: string; reachable: string; uptime: number }

/** The run's four lines, checked against the TAP the CLI said it made. */
function seen(r: CliRun): Seen {
  assert.equal(r.status, 3, r.stderr);
  const [mac = '', random = '', ip = '', reachable = '', uptime = ''] = r.stdout.split('\n').map((l) => l.trim());
  const tap = /TAP azt(\d+), host [\d.]+, guest ([\d.]+)\//.exec(r.stderr);
  assert.ok(tap, r.stderr);
  const k = Number(tap[1]);
  assert.equal(mac, `02:41:5a:${[k >> 16, (k >> 8) & 0xff, k & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(':')}`, 'eth0 has its TAP\'s MAC');
  assert.equal(ip, tap[2], 'eth0 has its TAP\'s address');
  assert.match(random, /^([0-9a-f]{2} ){15}[0-9a-f]{2}$/);
  assert.match(uptime, /^\d+\.\d+$/);
  return { mac, random, ip, reachable, uptime: Number(uptime) };
}

function snapshots(): string[] {
  try {
    return readdirSync(path.join(cache, 'snapshots')).filter((f) => f.endsWith('.snap'));
  } catch {
    return [];
  }
}

test('azote run continues a booted snapshot: same output and status as a cold boot, each copy its own; a damaged one is refused', async (t) => {
  if (!requireKvm(t)) return;
  const cold = seen(await azote(['run', '--cold', ...ARGS], { ...LIMIT, env }));
  assert.equal(cold.reachable, 'reachable');
  assert.deepEqual(snapshots(), [], '--cold saves nothing');

  const first = await azote(['run', '--boot-time', ...ARGS], { ...LIMIT, env });
  assert.match(first.stderr, /init reached/, 'the first run boots');
  assert.equal(seen(first).reachable, 'reachable');
  assert.equal(snapshots().length, 1, 'and saves the booted machine');

  // Two copies at once: each on its own TAP, so each must take its own MAC and address over the snapshot's.
  const [a, b] = await Promise.all([1, 2].map(() => azote(['run', '--boot-time', ...ARGS], { ...LIMIT, env })));
  for (const r of [a, b]) assert.match(r?.stderr ?? '', /the guest ran again from its snapshot/);
  const [sa, sb] = [seen(a as CliRun), seen(b as CliRun)];
  for (const s of [sa, sb]) assert.equal(s.reachable, 'reachable', 'the network works under the new MAC and address');
  assert.notEqual(sa.mac, sb.mac);
  assert.notEqual(sa.random, sb.random, 'two copies of one snapshot read different bytes from /dev/urandom');
  assert.notEqual(sa.random, cold.random);

  // The guest's clock goes on from where the snapshot left it, not from the host's time since: a copy run after a
  // pause sees about the uptime an earlier copy saw (each run's own few seconds apart), not the pause on top.
  const PAUSE_S = 8;
  await new Promise((resolve) => setTimeout(resolve, PAUSE_S * 1000));
  const later = seen(await azote(['run', ...ARGS], { ...LIMIT, env }));
  assert.ok(Math.abs(later.uptime - sa.uptime) < PAUSE_S / 2, `uptime ${sa.uptime} s, then ${later.uptime} s after a ${PAUSE_S} s pause`);

  // One flipped byte in the middle (guest memory): the hypervisor's digest check refuses it, the run boots cold.
  const [name = ''] = snapshots();
  const file = path.join(cache, 'snapshots', name);
  const bytes = readFileSync(file);
  const middle = Math.floor(bytes.length / 2);
  bytes[middle] = (bytes[middle] ?? 0) ^ 0x01;
  writeFileSync(file, bytes);
  const damaged = await azote(['run', '--boot-time', ...ARGS], { ...LIMIT, env });
  assert.match(damaged.stderr, /snapshot was refused.*is damaged/);
  assert.match(damaged.stderr, /init reached/, 'it booted instead');
  assert.equal(seen(damaged).reachable, 'reachable');
  assert.equal(snapshots().length, 1);
  assert.notDeepEqual(readFileSync(file), bytes, 'a new snapshot replaced the damaged one');
});
