// StopInstances asks the guest to shut down before it stops the VM: a file the guest wrote without sync is still
// there at the next boot. With Force the VM is stopped at once, the guest not asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as sdk from '@aws-sdk/client-ec2';
import { silentLogger } from '../../src/base/log.js';
import { amiId } from '../../src/control-plane/catalogue.js';
import { buildImage, DEFAULT_IMAGE } from '../../src/images/rootfs.js';
import { startEc2 } from '../framework/ec2.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const ASKED = /azote-init: the host asked to shut down: the system is powering off/;

async function consoleUntil(ec2: sdk.EC2Client, id: string, re: RegExp): Promise<string> {
  let text = '';
  for (let i = 0; i < 900 && !re.test(text); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 1000));
    const out = await ec2.send(new sdk.GetConsoleOutputCommand({ InstanceId: id }));
    text = Buffer.from(out.Output ?? '', 'base64').toString('utf8');
  }
  assert.match(text, re, `console of ${id}`);
  return text;
}

async function waitState(ec2: sdk.EC2Client, id: string, state: string): Promise<void> {
  let last: sdk.Instance | undefined;
  for (let i = 0; i < 900; i++) {
    last = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
    if (last?.State?.Name === state) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.fail(`${id} did not become ${state}: ${JSON.stringify(last?.State)} ${JSON.stringify(last?.StateReason)}`);
}

test('StopInstances shuts the guest down (an unsynced file survives); Force stops it at once', { timeout: 1_800_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const host = await startEc2();
  try {
    const ec2 = host.client(host.account('dev'));
    // The default image as this tree builds it: its init is the one that answers the shutdown request.
    const image = await buildImage(DEFAULT_IMAGE, silentLogger);
    // User data runs at every boot: it shows what the last boot left, then writes without sync.
    const script = '#!/bin/sh\necho "kept-file: $(cat /root/kept 2>/dev/null || echo none)"\necho written-without-sync > /root/kept\necho kept-file-written\n';
    const r = await ec2.send(new sdk.RunInstancesCommand({
      ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1, UserData: Buffer.from(script).toString('base64'),
    }));
    const id = r.Instances?.[0]?.InstanceId ?? '';
    await consoleUntil(ec2, id, /kept-file: none\s+kept-file-written/);
    await ec2.send(new sdk.StopInstancesCommand({ InstanceIds: [id] }));
    await waitState(ec2, id, 'stopped');
    await consoleUntil(ec2, id, ASKED);

    await ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [id] }));
    await consoleUntil(ec2, id, /kept-file: written-without-sync\s+kept-file-written/);
    await ec2.send(new sdk.StopInstancesCommand({ InstanceIds: [id], Force: true }));
    await waitState(ec2, id, 'stopped');
    const text = await consoleUntil(ec2, id, /kept-file-written/);
    assert.doesNotMatch(text, ASKED, 'a forced stop does not ask the guest');
  } finally {
    await host.dispose();
  }
});
