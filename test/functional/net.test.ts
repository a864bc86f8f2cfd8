// Networking end to end: `azote run --net tap` on the real minimal Linux, reached from the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { azote } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';

const BOOT_LIMIT = { timeoutMs: 300_000 };

/** Creating a TAP needs CAP_NET_ADMIN (bit 12 of the effective set). */
async function requireNetAdmin(t: { skip(msg: string): void }): Promise<boolean> {
  const { readFileSync } = await import('node:fs');
  const eff = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  if ((BigInt(`0x${eff}`) >> 12n) & 1n) return true;
  const msg = 'SKIP: creating a TAP device needs CAP_NET_ADMIN, which this test process does not have';
  process.stderr.write(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}\n`);
  t.skip(msg);
  return false;
}

test('--net tap: the guest has eth0 on a /30 with the host, and pings the host', async (t) => {
  if (!requireKvm(t) || !(await requireNetAdmin(t))) return;
  // Single commands, no pipeline: see guest/kernel/README.md on pipelines under the nested KVM.
  const script = 'echo "guest $AZOTE_GUEST_IP host $AZOTE_HOST_IP"; cat /sys/class/net/eth0/operstate; '
    + 'ping -c 2 -W 10 $AZOTE_HOST_IP > /tmp/ping; grep -o "2 packets received" /tmp/ping';
  const r = await azote(['run', '--net', 'tap', '--', 'sh', '-c', script], BOOT_LIMIT);
  assert.equal(r.status, 0, `${r.stderr}\n${r.stdout}`);
  const m = /^guest (172\.29\.\d+\.\d+) host (172\.29\.\d+\.\d+)\nup\n2 packets received\n$/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.match(r.stderr, new RegExp(`network: TAP azt\\d+, host ${m[2]?.replaceAll('.', '\\.')}, guest ${m[1]?.replaceAll('.', '\\.')}/30`));
});

test('--net with an unknown kind is a one-line error', async () => {
  const r = await azote(['run', '--net', 'bridge', '--', 'true']);
  assert.equal(r.status, 125);
  assert.match(r.stderr, /^azote: --net bridge is not a kind of network Azote has: use --net tap$/m);
});
