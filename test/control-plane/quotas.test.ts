// Per-account quotas and the host's disk over-commit, answered with EC2's codes: volume sizes outside their type's
// bounds, storage beyond an account's limit or beyond what the host's disk can back, instances and vCPUs beyond an
// account's limits (pending and running ones count, started ones too); a refused or failed create leaves no file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { Store, type InstanceRow } from '../../src/control-plane/store.js';
import { startEc2, type Ec2Host } from '../framework/ec2.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const EXT4_MAGIC = 0xef53;
const ZONE = 'us-east-1a';

function ami(): string {
  const image = images().find((i) => i.name === 'default');
  assert.ok(image, 'the default image (azote setup --tests)');
  return amiId(image);
}

/** The volume files of the host (none may be left by a refused or failed create). */
function volumeFiles(host: Ec2Host): string[] {
  try {
    return readdirSync(path.join(host.dataDir, 'volumes')).sort();
  } catch {
    return [];
  }
}

/** An instance record of `account` in `state`, written beside the running host (as if launched earlier). */
function addInstance(host: Ec2Host, account: string, state: InstanceRow['state'], vcpus: number): string {
  const store = new Store(host.dataDir);
  try {
    const id = `i-0${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}${String(Date.now() % 1e8).padStart(8, '0')}`;
    store.addInstance({
      id, account, reservation: 'r-0123456789abcdef0', image_id: ami(), instance_type: 't3.nano', vcpus, memory_mib: 256,
      root_gib: 1, state, transition_reason: '', state_reason_code: null, state_reason_message: null, key_name: null,
      user_data: null, launch_index: 0, launch_time: new Date().toISOString(), client_token: null, private_ip: null, mac: null,
      cores: '', terminated_at: null, hibernation_configured: 0,
    });
    return id;
  } finally {
    store.close();
  }
}

test('volume sizes outside their type\'s bounds are InvalidParameterValue; a huge one is refused and leaves no file', async () => {
  const host = await startEc2();
  try {
    const ec2 = host.client(host.account('sizes'));
    const create = (Size: number, VolumeType?: sdk.VolumeType): Promise<unknown> =>
      ec2.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size, VolumeType }));
    await assert.rejects(create(16385, 'gp3'), { name: 'InvalidParameterValue' });
    await assert.rejects(create(16385, 'gp2'), { name: 'InvalidParameterValue' });
    await assert.rejects(create(0, 'gp3'), { name: 'InvalidParameterValue' });
    await assert.rejects(create(1025, 'standard'), { name: 'InvalidParameterValue' });
    await assert.rejects(create(100, 'st1'), { name: 'InvalidParameterValue' });
    await assert.rejects(create(3, 'io1'), { name: 'InvalidParameterValue' });
    // The requests: beyond the default storage of an account, never a sparse promise the disk cannot keep.
    await assert.rejects(create(16000, 'gp3'), { name: 'VolumeLimitExceeded' });
    await assert.rejects(create(16384, 'gp3'), { name: 'VolumeLimitExceeded' });
    assert.deepEqual(volumeFiles(host), []);
  } finally {
    await host.dispose();
  }
});

test('the host\'s disk over-commit is capped: InsufficientVolumeCapacity, counted over every account; no file left', async () => {
  // startEc2's data directories are made under the temporary directory.
  const fs = statfsSync(tmpdir());
  const free = fs.bavail * fs.bsize;
  // About 1.5 GiB may be promised beyond what is written: one 1 GiB volume fits, a second does not.
  const host = await startEc2(undefined, { limits: { volumeGiB: 1_000_000 }, diskOvercommit: (1.5 * 2 ** 30) / free });
  try {
    const a = host.client(host.account('one'));
    const b = host.client(host.account('two'));
    const v = await a.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1 }));
    await assert.rejects(b.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1 })), { name: 'InsufficientVolumeCapacity' });
    await assert.rejects(a.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 16000 })), { name: 'InsufficientVolumeCapacity' });
    assert.deepEqual(volumeFiles(host), [`${v.VolumeId ?? ''}.img`]);
    await a.send(new sdk.DeleteVolumeCommand({ VolumeId: v.VolumeId }));
    await b.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1 }));
  } finally {
    await host.dispose();
  }
});

test('a volume the file system cannot hold (EFBIG) is InsufficientVolumeCapacity and leaves no file', async (t) => {
  const host = await startEc2(undefined, { limits: { volumeGiB: 1_000_000 }, diskOvercommit: 1_000_000 });
  try {
    if (statfsSync(host.dataDir).type !== EXT4_MAGIC) {
      t.skip('the data directory is not on ext4, whose largest file is just under 16 TiB');
      return;
    }
    const ec2 = host.client(host.account('efbig'));
    await assert.rejects(ec2.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 16384 })), { name: 'InsufficientVolumeCapacity' });
    assert.deepEqual(volumeFiles(host), []);
  } finally {
    await host.dispose();
  }
});

test('an account\'s volume storage is limited (VolumeLimitExceeded), root disks included; another account is not held back', async () => {
  const host = await startEc2(undefined, { limits: { volumeGiB: 10 } });
  try {
    const a = host.client(host.account('store-a'));
    const b = host.client(host.account('store-b'));
    const six = await a.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 6 }));
    await assert.rejects(a.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 5 })), { name: 'VolumeLimitExceeded' });
    await b.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 5 }));
    await a.send(new sdk.CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 4 }));
    await assert.rejects(a.send(new sdk.RunInstancesCommand({ ImageId: ami(), MinCount: 1, MaxCount: 1 })), { name: 'VolumeLimitExceeded' });
    await a.send(new sdk.DeleteVolumeCommand({ VolumeId: six.VolumeId }));
    await assert.rejects(b.send(new sdk.RunInstancesCommand({ ImageId: ami(), MinCount: 1, MaxCount: 1,
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 6 } }] })), { name: 'VolumeLimitExceeded' });
  } finally {
    await host.dispose();
  }
});

test('running instances and vCPUs are limited per account (InstanceLimitExceeded, VcpuLimitExceeded); starting counts', async () => {
  const host = await startEc2(undefined, { limits: { instances: 2, vcpus: 3 } });
  try {
    const dev = host.account('limits');
    const ec2 = host.client(dev);
    await assert.rejects(ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 3, MaxCount: 3 })),
      { name: 'InstanceLimitExceeded' });
    await assert.rejects(ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.medium', MinCount: 2, MaxCount: 2 })),
      { name: 'VcpuLimitExceeded' });
    addInstance(host, dev.accountId, 'running', 2);
    addInstance(host, dev.accountId, 'stopped', 1);
    await assert.rejects(ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.medium', MinCount: 1, MaxCount: 1 })),
      { name: 'VcpuLimitExceeded' });
    addInstance(host, dev.accountId, 'pending', 1);
    await assert.rejects(ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 })),
      { name: 'InstanceLimitExceeded' });
    const stopped = (await ec2.send(new sdk.DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['stopped'] }] })))
      .Reservations?.[0]?.Instances?.[0]?.InstanceId;
    assert.ok(stopped);
    await assert.rejects(ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [stopped] })), { name: 'InstanceLimitExceeded' });
    const after = await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [stopped] }));
    assert.equal(after.Reservations?.[0]?.Instances?.[0]?.State?.Name, 'stopped');
  } finally {
    await host.dispose();
  }
});
