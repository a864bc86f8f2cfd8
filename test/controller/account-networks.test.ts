// Each account's instances are on a network of their own: a network card (switch process) per account. A switch
// never gives one address twice, so two accounts' first instances both having the subnet's first guest address shows
// they are on two switches; the same account's next instance is on its account's switch (the next address).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { startEc2 } from '../framework/ec2.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { hostProcesses } from '../framework/processes.js';

useOwnNetworkNamespace();

/** The sockets of the network cards running under `dataDir`. */
function netCardSockets(dataDir: string): string[] {
  return hostProcesses().map(({ args }) => ({ args, socket: args[args.indexOf('--socket') + 1] ?? '' }))
    .filter(({ args, socket }) => args.includes('--subnet') && socket.startsWith(`${dataDir}/`)).map(({ socket }) => socket);
}

/** The instances' private addresses, once every one has one (its hypervisor was given its card's address). */
async function privateIps(ec2: sdk.EC2Client, ids: readonly string[]): Promise<string[]> {
  for (let i = 0; i < 600; i++) {
    const r = await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [...ids] }));
    const all = (r.Reservations ?? []).flatMap((x) => x.Instances ?? []);
    const failed = all.find((x) => x.State?.Name !== 'pending' && x.State?.Name !== 'running');
    assert.equal(failed, undefined, `an instance ended: ${failed?.StateReason?.Message ?? ''}`);
    const ips = all.map((x) => x.PrivateIpAddress).filter((ip): ip is string => ip !== undefined);
    if (ips.length === ids.length) return ips.sort();
    await sleep(500);
  }
  assert.fail('the instances got no private address within 300 s');
}

test('two accounts\' instances are on two network cards; one account\'s instances share one', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  // Two cores here: bob's instance takes one, alice's two share the other.
  const host = await startEc2(undefined, { shareCoresWithinAccount: true });
  try {
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    const run = async (ec2: sdk.EC2Client, count: number): Promise<string[]> => {
      const r = await ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: count, MaxCount: count }));
      return (r.Instances ?? []).map((i) => i.InstanceId ?? '');
    };
    const [bob, alice] = [host.client(host.account('bob')), host.client(host.account('alice'))];
    const bobIds = await run(bob, 1);
    const aliceIds = await run(alice, 2);
    assert.deepEqual(await privateIps(bob, bobIds), ['172.31.0.2']);
    assert.deepEqual(await privateIps(alice, aliceIds), ['172.31.0.2', '172.31.0.3'],
      'alice\'s first instance has the address bob\'s has: another switch; her second the next one of hers');
    assert.equal(new Set(netCardSockets(host.dataDir)).size, 2, 'a network card per account');
    await bob.send(new sdk.TerminateInstancesCommand({ InstanceIds: bobIds }));
    await alice.send(new sdk.TerminateInstancesCommand({ InstanceIds: aliceIds }));
    await sdk.waitUntilInstanceTerminated({ client: bob, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: bobIds });
    await sdk.waitUntilInstanceTerminated({ client: alice, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: aliceIds });
  } finally {
    await host.dispose();
  }
  // The cards were killed; a deadline only to detect a card that never goes.
  for (let i = 0; i < 100 && netCardSockets(host.dataDir).length > 0; i++) await sleep(100);
  assert.deepEqual(netCardSockets(host.dataDir), [], 'the cards stop with the host');
});
