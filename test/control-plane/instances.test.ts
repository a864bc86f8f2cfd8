// Real instances through @aws-sdk/client-ec2, unmodified (its waiters included): two microVMs launched with a key
// pair, user data and tags, followed through pending -> running -> stopping -> stopped -> pending -> running ->
// shutting-down -> terminated, with the guest's own console output, idempotent launches, placement refusals,
// isolation between accounts, pagination, a guest that powers itself off, and a restart of `azote up`. Each
// instance's SSH host keys are made at its first boot and printed on its console as EC2 prints them; what ssh-keygen
// computes from the printed keys is the printed fingerprints, and the keys survive a stop and start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { assertMatchesModel, rawCall, startEc2, type Ec2Host } from '../framework/ec2.js';
import { consoleUntil, defaultAmi, hostKeys } from '../framework/instances.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const WAIT = { maxWaitTime: 300, minDelay: 1, maxDelay: 2 };

const ami = defaultAmi;

/** Polls until the instance is in `state` (the SDK's waiters count some passing states as failures). */
async function waitState(ec2: sdk.EC2Client, id: string, state: string): Promise<sdk.Instance> {
  let last: sdk.Instance | undefined;
  for (let i = 0; i < 300; i++) {
    last = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
    if (last?.State?.Name === state) return last;
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.fail(`${id} did not become ${state}: ${JSON.stringify(last?.State)} ${JSON.stringify(last?.StateReason)}`);
}

async function ids(ec2: sdk.EC2Client, filters: sdk.Filter[]): Promise<string[]> {
  const r = await ec2.send(new sdk.DescribeInstancesCommand({ Filters: filters }));
  return (r.Reservations ?? []).flatMap((x) => x.Instances ?? []).map((i) => i.InstanceId ?? '').sort();
}

test('two instances: launched, running with their console and user data, stopped, started, terminated', { timeout: 900_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const host: Ec2Host = await startEc2();
  try {
    const dev = host.account('dev');
    const ec2 = host.client(dev);
    await ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'mykey', KeyType: 'ed25519' }));
    const userData = Buffer.from('#!/bin/sh\necho "user-data-says-hello $(cat /run/azote/metadata/instance-id)"\n').toString('base64');
    const request: sdk.RunInstancesCommandInput = {
      ImageId: ami(), InstanceType: 't3.micro', MinCount: 2, MaxCount: 2, KeyName: 'mykey', UserData: userData, ClientToken: 'launch-1',
      TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'env', Value: 'test' }] }],
    };
    const run = await ec2.send(new sdk.RunInstancesCommand(request));
    const launched = (run.Instances ?? []).map((i) => i.InstanceId ?? '').sort();
    assert.equal(launched.length, 2);
    assert.deepEqual(run.Instances?.map((i) => i.State?.Name), ['pending', 'pending']);
    assert.deepEqual(run.Instances?.map((i) => i.AmiLaunchIndex), [0, 1]);
    // The same client token: the same reservation, not new instances; with other parameters, an error.
    const again = await ec2.send(new sdk.RunInstancesCommand(request));
    assert.equal(again.ReservationId, run.ReservationId);
    assert.deepEqual((again.Instances ?? []).map((i) => i.InstanceId ?? '').sort(), launched);
    await assert.rejects(ec2.send(new sdk.RunInstancesCommand({ ...request, InstanceType: 't3.nano' })), { name: 'IdempotentParameterMismatch' });
    // The host's cores are taken: more is refused, never over-committed.
    const free = host.capacity.cores - 2;
    await assert.rejects(ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: free + 1, MaxCount: free + 1 })),
      { name: 'InsufficientInstanceCapacity' });

    await sdk.waitUntilInstanceRunning({ client: ec2, ...WAIT }, { InstanceIds: launched });
    assert.deepEqual(await ids(ec2, [{ Name: 'instance-state-name', Values: ['running'] }]), launched);
    assert.deepEqual(await ids(ec2, [{ Name: 'tag:env', Values: ['test'] }, { Name: 'instance-type', Values: ['t3.*'] }]), launched);
    assert.deepEqual(await ids(ec2, [{ Name: 'tag:env', Values: ['prod'] }]), []);
    assert.deepEqual(await ids(ec2, [{ Name: 'image-id', Values: [ami()] }, { Name: 'key-name', Values: ['mykey'] }]), launched);
    const described = await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: launched }));
    const instances = (described.Reservations ?? []).flatMap((r) => r.Instances ?? []);
    const ips = instances.map((i) => i.PrivateIpAddress ?? '');
    assert.ok(ips.every((ip) => /^172\.31\.(\d+)\.(\d+)$/.test(ip)) && new Set(ips).size === 2, `private addresses ${ips.join(', ')}`);
    assert.deepEqual(instances.map((i) => i.StateReason), [undefined, undefined], 'a running instance has no state reason');
    const raw = await rawCall(host.endpoint, dev, { Action: 'DescribeInstances' });
    assertMatchesModel('DescribeInstances', raw.body);

    for (const id of launched) {
      const text = await consoleUntil(ec2, id, new RegExp(`user-data-says-hello ${id}`));
      assert.match(text, /Linux version 6\.1/, 'the kernel\'s boot lines');
      assert.match(text, new RegExp(`azote-instance: ${id} \\(t3\\.micro, ${ami()}\\) is up, address 172\\.31\\.`));
      assert.match(text, /azote-instance: key pair installed for root/);
      assert.match(text, /azote-instance: SSH server listening on port 22 \(keys only\)/);
      const { fingerprints, keys } = hostKeys(text);
      assert.deepEqual(fingerprints.map((f) => /^(\d+) SHA256:\S+ \S+ \((\w+)\)$/.exec(f)?.slice(1).join(' ')), ['256 ECDSA', '256 ED25519', '2048 RSA']);
      const computed = execFileSync('ssh-keygen', ['-l', '-f', '-'], { input: `${keys.join('\n')}\n`, encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(computed, fingerprints, 'the printed fingerprints are those of the printed keys');
    }
    const keysBefore = hostKeys(await consoleUntil(ec2, launched[0] ?? '', /END SSH HOST KEY KEYS/)).keys;
    const status = await ec2.send(new sdk.DescribeInstanceStatusCommand({ InstanceIds: launched }));
    assert.deepEqual(status.InstanceStatuses?.map((s) => [s.InstanceState?.Name, s.InstanceStatus?.Status]), [['running', 'ok'], ['running', 'ok']]);

    // Another account: the same ids answer as missing ones.
    const other = host.client(host.account('other'));
    for (const send of [
      () => other.send(new sdk.DescribeInstancesCommand({ InstanceIds: [launched[0] ?? ''] })),
      () => other.send(new sdk.TerminateInstancesCommand({ InstanceIds: [launched[0] ?? ''] })),
      () => other.send(new sdk.GetConsoleOutputCommand({ InstanceId: launched[0] ?? '' })),
    ]) await assert.rejects(send(), { name: 'InvalidInstanceID.NotFound' });
    assert.deepEqual(await ids(other, []), []);

    const [first, second] = launched as [string, string];
    const stopping = await ec2.send(new sdk.StopInstancesCommand({ InstanceIds: [first] }));
    assert.deepEqual(stopping.StoppingInstances?.map((s) => [s.PreviousState?.Name, s.CurrentState?.Name]), [['running', 'stopping']]);
    await sdk.waitUntilInstanceStopped({ client: ec2, ...WAIT }, { InstanceIds: [first] });
    const stopped = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [first] }))).Reservations?.[0]?.Instances?.[0];
    assert.equal(stopped?.StateReason?.Code, 'Client.UserInitiatedShutdown');
    assert.match(stopped?.StateTransitionReason ?? '', /^User initiated \(/);
    await assert.rejects(ec2.send(new sdk.RebootInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] })), { name: 'InvalidInstanceID.NotFound' });
    await ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [first] }));
    await sdk.waitUntilInstanceRunning({ client: ec2, ...WAIT }, { InstanceIds: [first] });
    const restarted = await consoleUntil(ec2, first, /user-data-says-hello/);
    assert.deepEqual(hostKeys(restarted).keys, keysBefore, 'the host keys are kept on the root disk');
    const hostDisk = path.join(host.dataDir, 'instances', first, 'root.ext4');
    assert.ok(existsSync(hostDisk), 'the root disk survived the stop');

    const terminating = await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: launched }));
    assert.deepEqual(terminating.TerminatingInstances?.map((s) => s.CurrentState?.Name), ['shutting-down', 'shutting-down']);
    await sdk.waitUntilInstanceTerminated({ client: ec2, ...WAIT }, { InstanceIds: launched });
    assert.ok(!existsSync(path.join(host.dataDir, 'instances', first)) && !existsSync(path.join(host.dataDir, 'instances', second)),
      'a terminated instance\'s files are gone');
    await assert.rejects(ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [first] })), { name: 'IncorrectInstanceState' });
  } finally {
    await host.dispose();
  }
});

test('pages of instances, a guest that powers itself off, and instances across a restart of azote up', { timeout: 900_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const host: Ec2Host = await startEc2();
  let second: Ec2Host | undefined;
  try {
    const dev = host.account('dev');
    const ec2 = host.client(dev);
    // Six records: launched and terminated before their VMs start.
    for (let i = 0; i < 3; i++) {
      const r = await ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 2, MaxCount: 2 }));
      const launched = (r.Instances ?? []).map((x) => x.InstanceId ?? '');
      await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: launched }));
      await sdk.waitUntilInstanceTerminated({ client: ec2, ...WAIT }, { InstanceIds: launched });
    }
    const page1 = await ec2.send(new sdk.DescribeInstancesCommand({ MaxResults: 5 }));
    const count = (p: sdk.DescribeInstancesCommandOutput): number => (p.Reservations ?? []).reduce((n, r) => n + (r.Instances?.length ?? 0), 0);
    assert.equal(count(page1), 5);
    assert.ok(page1.NextToken);
    const page2 = await ec2.send(new sdk.DescribeInstancesCommand({ MaxResults: 5, NextToken: page1.NextToken }));
    assert.equal(count(page2), 1);
    assert.equal(page2.NextToken, undefined);

    // Launches at the same moment share the host's cores, never more: each core goes to one instance.
    const tries = host.capacity.cores + 2;
    const results = await Promise.allSettled(Array.from({ length: tries }, () =>
      ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 }))));
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? (r.value.Instances ?? []).map((i) => i.InstanceId ?? '') : []));
    assert.equal(won.length, host.capacity.cores);
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as Error).name, 'InsufficientInstanceCapacity');
    await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: won }));
    await sdk.waitUntilInstanceTerminated({ client: ec2, ...WAIT }, { InstanceIds: won });

    // A guest that runs poweroff: stopped, by itself.
    const off = await ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1,
      UserData: Buffer.from('#!/bin/sh\necho powering-off-now\npoweroff\n').toString('base64') }));
    const offId = off.Instances?.[0]?.InstanceId ?? '';
    const stays = await ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 }));
    const staysId = stays.Instances?.[0]?.InstanceId ?? '';
    const offRow = await waitState(ec2, offId, 'stopped');
    assert.equal(offRow?.StateReason?.Code, 'Client.InstanceInitiatedShutdown');
    await consoleUntil(ec2, offId, /powering-off-now[\s\S]*azote-init: the system is powering off/);

    // azote up goes away while an instance runs; the next one finds it stopped, with the reason, and can start it.
    await sdk.waitUntilInstanceRunning({ client: ec2, ...WAIT }, { InstanceIds: [staysId] });
    await host.close();
    second = await startEc2(host.dataDir);
    const ec2b = second.client(dev);
    const after = (await ec2b.send(new sdk.DescribeInstancesCommand({ InstanceIds: [staysId] }))).Reservations?.[0]?.Instances?.[0];
    assert.equal(after?.State?.Name, 'stopped');
    assert.equal(after?.StateReason?.Code, 'Server.InternalError');
    assert.match(after?.StateReason?.Message ?? '', /shut down|restarted/);
    await ec2b.send(new sdk.StartInstancesCommand({ InstanceIds: [staysId] }));
    await sdk.waitUntilInstanceRunning({ client: ec2b, ...WAIT }, { InstanceIds: [staysId] });
    await ec2b.send(new sdk.TerminateInstancesCommand({ InstanceIds: [staysId, offId] }));
    await sdk.waitUntilInstanceTerminated({ client: ec2b, ...WAIT }, { InstanceIds: [staysId, offId] });
  } finally {
    await second?.close();
    await host.dispose();
  }
});

test('a volume attached to a stopped instance: the guest writes it, the file holds it; every answer matches the model', { timeout: 900_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const host: Ec2Host = await startEc2();
  try {
    const dev = host.account('dev');
    const ec2 = host.client(dev);
    const call = async (action: string, params: Record<string, string>): Promise<string> => {
      const r = await rawCall(host.endpoint, dev, { Action: action, ...params });
      assert.equal(r.status, 200, r.body);
      assertMatchesModel(action, r.body);
      return r.body;
    };
    const script = '#!/bin/sh\nif [ -b /dev/vdc ]; then echo "volume-sectors $(cat /sys/block/vdc/size)"; printf vol-pattern > /tmp/p; '
      + 'dd if=/tmp/p of=/dev/vdc conv=fsync 2>/dev/null && echo volume-written; fi\n';
    const ran = await call('RunInstances', { ImageId: ami(), InstanceType: 't3.nano', MinCount: '1', MaxCount: '1', UserData: Buffer.from(script).toString('base64') });
    const id = /<instanceId>(i-[0-9a-f]+)<\/instanceId>/.exec(ran)?.[1] ?? '';
    await sdk.waitUntilInstanceRunning({ client: ec2, ...WAIT }, { InstanceIds: [id] });
    await call('GetConsoleOutput', { InstanceId: id });
    await call('DescribeInstanceStatus', { 'InstanceId.1': id });
    await call('StopInstances', { 'InstanceId.1': id });
    await waitState(ec2, id, 'stopped');
    const created = await call('CreateVolume', { AvailabilityZone: 'us-east-1a', Size: '1' });
    const vol = /<volumeId>(vol-[0-9a-f]+)<\/volumeId>/.exec(created)?.[1] ?? '';
    await call('AttachVolume', { VolumeId: vol, InstanceId: id, Device: '/dev/sdf' });
    await assert.rejects(ec2.send(new sdk.DeleteVolumeCommand({ VolumeId: vol })), { name: 'VolumeInUse' });
    await call('StartInstances', { 'InstanceId.1': id });
    await assert.rejects(ec2.send(new sdk.DetachVolumeCommand({ VolumeId: vol })), { name: 'IncorrectInstanceState' });
    await consoleUntil(ec2, id, /volume-sectors 2097152\s+volume-written/);
    const described = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
    assert.deepEqual(described?.BlockDeviceMappings?.map((m) => m.DeviceName), ['/dev/xvda', '/dev/sdf']);
    await call('StopInstances', { 'InstanceId.1': id });
    await waitState(ec2, id, 'stopped');
    const onHost = readFileSync(path.join(host.dataDir, 'volumes', `${vol}.img`)).subarray(0, 11).toString();
    assert.equal(onHost, 'vol-pattern');
    await call('DetachVolume', { VolumeId: vol });
    await call('TerminateInstances', { 'InstanceId.1': id });
    await sdk.waitUntilInstanceTerminated({ client: ec2, ...WAIT }, { InstanceIds: [id] });
    await call('DeleteVolume', { VolumeId: vol });
    await call('DescribeInstances', {});
  } finally {
    await host.dispose();
  }
});
