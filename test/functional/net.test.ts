// Networking end to end: `azote run --net tap` on the real minimal Linux, reached from the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { azote } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';
import { requireNetAdmin } from '../framework/host-tools.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const BOOT_LIMIT = { timeoutMs: 300_000 };

test('--net tap: the guest has eth0 on a /30 with the host, and pings the host', async (t) => {
  if (!requireKvm(t) || !requireNetAdmin(t)) return;
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
  assert.match(r.stderr, /^azote: --net bridge is not a kind of network Azote has: use --net tap or --net card:SOCKET$/m);
});
