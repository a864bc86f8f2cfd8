// EC2 hibernation through the API, without VMs: RunInstances' HibernationOptions (refused with Nitro Enclaves, as EC2
// refuses the combination), DescribeInstances' hibernationOptions, StopInstances' Hibernate (refused for an instance
// not configured for it, with EC2's code; a hibernating instance's state reason), and a terminated instance's
// hibernation image deleted with it. The hibernation itself is in hibernation-awscli.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { Store, type InstanceRow } from '../../src/control-plane/store.js';
import { InstanceFiles } from '../../src/controller/instance-files.js';
import { assertEc2Error, assertMatchesModel, rawCall, startEc2, type Ec2Host } from '../framework/ec2.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

let host: Ec2Host;
// The instances' directory cannot be made: every launch fails on the host, so no VM runs in these tests.
test.before(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'azote-ec2-'));
  writeFileSync(path.join(dataDir, 'instances'), 'not a directory');
  host = await startEc2(dataDir);
});
test.after(async () => { await host.dispose(); });

function ami(): string {
  const image = images().find((i) => i.name === 'default');
  assert.ok(image, 'the default image (azote setup --tests)');
  return amiId(image);
}

async function describe(ec2: sdk.EC2Client, id: string): Promise<sdk.Instance> {
  const i = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
  assert.ok(i, id);
  return i;
}

async function waitStopped(ec2: sdk.EC2Client, id: string): Promise<void> {
  for (let i = 0; i < 600 && (await describe(ec2, id)).State?.Name !== 'stopped'; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await describe(ec2, id)).State?.Name, 'stopped');
}

/** An instance of `account` put in the store directly, in `state` (the host has no VM for it). */
function stored(dataDir: string, account: string, state: InstanceRow['state'], configured: boolean): string {
  const id = `i-0${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}abcdef12`;
  const store = new Store(dataDir);
  try {
    store.addInstance({
      id, account, reservation: `r-0${id.slice(3)}`, image_id: ami(), instance_type: 't3.nano', vcpus: 1, memory_mib: 512, root_gib: 1,
      state, transition_reason: '', state_reason_code: null, state_reason_message: null, key_name: null, user_data: null,
      launch_index: 0, launch_time: new Date().toISOString(), client_token: null, private_ip: null, mac: null, cores: '',
      terminated_at: null, hibernation_configured: configured ? 1 : 0,
    });
  } finally {
    store.close();
  }
  return id;
}

test('RunInstances: HibernationOptions.Configured is kept and described; with enclaves it is refused as EC2 refuses it', async () => {
  const dev = host.account('hibernation-run');
  const ec2 = host.client(dev);
  const call = (p: Record<string, string>): ReturnType<typeof rawCall> => rawCall(host.endpoint, dev, { Action: 'RunInstances', ImageId: ami(), MinCount: '1', MaxCount: '1', InstanceType: 't3.nano', ...p });
  assertEc2Error(await call({ 'HibernationOptions.Configured': 'true', 'EnclaveOptions.Enabled': 'true' }), 400, 'UnsupportedHibernationConfiguration');
  assertEc2Error(await call({ 'EnclaveOptions.Enabled': 'true' }), 400, 'Unsupported');
  assertEc2Error(await call({ 'HibernationOptions.Configured': 'yes' }), 400, 'InvalidParameterValue');
  assert.equal((await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations?.length ?? 0, 0, 'nothing launched by a refused call');

  const configured = (await ec2.send(new sdk.RunInstancesCommand({
    ImageId: ami(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1, HibernationOptions: { Configured: true }, EnclaveOptions: { Enabled: false },
  }))).Instances?.[0];
  assert.equal(configured?.HibernationOptions?.Configured, true);
  // This host's disk accounting cannot stat a second instance's missing root: the one without hibernation is stored.
  const [a, b] = [configured?.InstanceId ?? '', stored(host.dataDir, dev.accountId, 'stopped', false)];
  await waitStopped(ec2, a);
  assert.equal((await describe(ec2, a)).HibernationOptions?.Configured, true);
  assert.equal((await describe(ec2, b)).HibernationOptions?.Configured, false);
  assert.equal((await describe(ec2, b)).EnclaveOptions?.Enabled, false);
  const raw = await rawCall(host.endpoint, dev, { Action: 'DescribeInstances', 'InstanceId.1': a });
  assert.equal(raw.status, 200, raw.body);
  assertMatchesModel('DescribeInstances', raw.body);
  assert.match(raw.body, /<hibernationOptions><configured>true<\/configured><\/hibernationOptions>/);
});

test('StopInstances Hibernate: refused for an instance not configured for it; a configured one stops as hibernating', async () => {
  const dev = host.account('hibernation-stop');
  const ec2 = host.client(dev);
  const plain = stored(host.dataDir, dev.accountId, 'running', false);
  const configured = stored(host.dataDir, dev.accountId, 'running', true);
  const stop = (p: Record<string, string>): ReturnType<typeof rawCall> => rawCall(host.endpoint, dev, { Action: 'StopInstances', ...p });
  assertEc2Error(await stop({ 'InstanceId.1': plain, Hibernate: 'true' }), 400, 'UnsupportedHibernationConfiguration');
  // One instance not configured refuses the whole call: the configured one is untouched.
  assertEc2Error(await stop({ 'InstanceId.1': configured, 'InstanceId.2': plain, Hibernate: 'true', Force: 'true' }), 400, 'UnsupportedHibernationConfiguration');
  assert.equal((await describe(ec2, configured)).State?.Name, 'running');
  assertEc2Error(await stop({ 'InstanceId.1': configured, Hibernate: 'maybe' }), 400, 'InvalidParameterValue');

  const answer = await stop({ 'InstanceId.1': configured, Hibernate: 'true' });
  assert.equal(answer.status, 200, answer.body);
  assertMatchesModel('StopInstances', answer.body);
  const after = await describe(ec2, configured);
  // No VM runs for it on this host: it is stopped at once, with the hibernation's reason.
  assert.equal(after.State?.Name, 'stopped');
  assert.equal(after.StateReason?.Code, 'Client.UserInitiatedHibernate');
  assert.equal(after.StateReason?.Message, 'Client.UserInitiatedHibernate: User initiated hibernate');
  assert.match(after.StateTransitionReason ?? '', /^User initiated \(/);
  // Hibernate on a stopped instance changes nothing, as a stop of a stopped one; Force with Hibernate is accepted.
  const again = await ec2.send(new sdk.StopInstancesCommand({ InstanceIds: [configured], Hibernate: true, Force: true }));
  assert.equal(again.StoppingInstances?.[0]?.CurrentState?.Name, 'stopped');
  // A plain stop of an instance not configured for hibernation is still a stop.
  await ec2.send(new sdk.StopInstancesCommand({ InstanceIds: [plain] }));
  assert.equal((await describe(ec2, plain)).StateReason?.Code, 'Client.UserInitiatedShutdown');
});

test('TerminateInstances deletes a hibernated instance\'s image with its files', async () => {
  // A host whose instances' directory exists (the shared one's cannot): still no VM, the instance is only stored.
  const own = await startEc2();
  try {
    const dev = own.account('hibernation-terminate');
    const ec2 = own.client(dev);
    const id = stored(own.dataDir, dev.accountId, 'stopped', true);
    const files = new InstanceFiles(own.dataDir, id);
    mkdirSync(files.dir, { recursive: true });
    writeFileSync(files.hibernationImage, 'an image');
    await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.equal((await describe(ec2, id)).State?.Name, 'terminated');
    assert.ok(!existsSync(files.hibernationImage), 'the image is gone with the instance');
  } finally {
    await own.dispose();
  }
});
