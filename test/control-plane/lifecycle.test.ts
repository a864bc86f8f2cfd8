// What tenants see of the lifecycle: EC2's state reasons, never the host's paths or log lines (those go to the
// host's log); terminated instances forgotten after a while, at start and while the host runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { createLogger } from '../../src/base/log.js';
import { createAccount } from '../../src/control-plane/accounts.js';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { Store, type InstanceRow } from '../../src/control-plane/store.js';
import { startEc2 } from '../framework/ec2.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

function ami(): string {
  const image = images().find((i) => i.name === 'default');
  assert.ok(image, 'the default image (azote setup --tests)');
  return amiId(image);
}

async function waitState(ec2: sdk.EC2Client, id: string, state: string): Promise<sdk.Instance> {
  let last: sdk.Instance | undefined;
  for (let i = 0; i < 300; i++) {
    last = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
    if (last?.State?.Name === state) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`${id} did not become ${state}: ${JSON.stringify(last?.State)}`);
}

test('a launch that fails on the host: the tenant sees Server.InternalError without host paths; the host log has the detail', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'azote-ec2-'));
  // The instances' directory cannot be made: the root disk's build fails with an error naming host paths.
  writeFileSync(path.join(dataDir, 'instances'), 'not a directory');
  const lines: string[] = [];
  const host = await startEc2(dataDir, { log: createLogger('test', { write: (l) => { lines.push(l); } }, 'warn') });
  try {
    const ec2 = host.client(host.account('reasons'));
    const run = await ec2.send(new sdk.RunInstancesCommand({ ImageId: ami(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 }));
    const id = run.Instances?.[0]?.InstanceId ?? '';
    const stopped = await waitState(ec2, id, 'stopped');
    assert.equal(stopped.StateReason?.Code, 'Server.InternalError');
    assert.equal(stopped.StateReason?.Message, 'Server.InternalError: Internal error on launch');
    assert.ok(!(stopped.StateTransitionReason ?? '').includes(dataDir));
    assert.ok(lines.some((l) => l.includes(id) && l.includes(dataDir)), `the host log has the detail: ${lines.join('')}`);
  } finally {
    await host.dispose();
  }
});

/** A terminated instance of `account`, terminated `ageMs` ago, with a tag. */
function terminated(store: Store, account: string, ageMs: number): string {
  const id = `i-0${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}${String(ageMs % 1e8).padStart(8, '0')}`;
  const row: Omit<InstanceRow, 'seq'> = {
    id, account, reservation: `r-0${id.slice(3)}`, image_id: ami(), instance_type: 't3.nano', vcpus: 1, memory_mib: 256, root_gib: 1,
    state: 'terminated', transition_reason: '', state_reason_code: null, state_reason_message: null, key_name: null, user_data: null,
    launch_index: 0, launch_time: new Date(Date.now() - ageMs - 1000).toISOString(), client_token: 'token', private_ip: null, mac: null,
    cores: '', terminated_at: new Date(Date.now() - ageMs).toISOString(), hibernation_configured: 0,
  };
  store.addInstance(row);
  store.setTag(account, { resource_id: id, resource_type: 'instance', key: 'k', value: 'v' });
  store.addClientToken(account, `token-${id}`, row.reservation, '[]');
  return id;
}

test('terminated instances are forgotten an hour after they ended: at start and while the host runs', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'azote-ec2-'));
  const store = new Store(dataDir);
  const a = createAccount(store, dataDir, 'purged');
  const old = terminated(store, a.accountId, 2 * 3600_000);
  const recent = terminated(store, a.accountId, 60_000);
  store.close();
  const host = await startEc2(dataDir);
  try {
    const ec2 = host.client(a);
    const ids = async (): Promise<string[]> => ((await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations ?? [])
      .flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId ?? '');
    assert.deepEqual(await ids(), [recent]);
    await assert.rejects(ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [old] })), { name: 'InvalidInstanceID.NotFound' });
    assert.deepEqual((await ec2.send(new sdk.DescribeTagsCommand({}))).Tags?.map((t) => t.ResourceId), [recent]);
    const check = new Store(dataDir);
    assert.equal(check.clientToken(a.accountId, `token-${old}`), undefined);
    assert.ok(check.clientToken(a.accountId, `token-${recent}`));
    check.close();
  } finally {
    await host.close();
  }
  // A host that forgets them at once: one terminated while it runs goes at its next sweep.
  const quick = await startEc2(dataDir, { forgetTerminatedAfterMs: 0 });
  try {
    const ec2 = quick.client(a);
    assert.deepEqual((await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations ?? [], []);
    const late = new Store(dataDir);
    const id = terminated(late, a.accountId, 0);
    late.close();
    let seen = true;
    for (let i = 0; i < 600 && seen; i++) {
      await new Promise((r) => setTimeout(r, 100));
      seen = ((await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations ?? []).length > 0;
    }
    assert.equal(seen, false, `${id} was not forgotten`);
  } finally {
    await quick.dispose();
  }
});
