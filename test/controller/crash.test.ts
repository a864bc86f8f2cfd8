// A controller killed with SIGKILL leaves nothing running: its cards die with it (parent-death signal) and its
// hypervisors stop (their channel closes). A new controller on the same data directory starts the instance again,
// its volume's card included (a surviving card would still hold the volume's lock).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { createAccount } from '../../src/control-plane/accounts.js';
import { Store } from '../../src/control-plane/store.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { nodePidsWith, pidsWith, until as poll } from '../framework/processes.js';
import { startUpProcess, type UpProcess } from '../framework/up-process.js';

useOwnNetworkNamespace();

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> =>
  poll(what, probe, { tries: 900, everyMs: 1000 });

test('after a SIGKILL of azote up no card or hypervisor is left, and a new azote up starts the instance with its volume', { timeout: 1_800_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'azote-crash-'));
  const store = new Store(dataDir);
  const account = createAccount(store, dataDir, 'dev');
  store.close();
  const ups: UpProcess[] = [];
  try {
    const first = await startUpProcess(dataDir);
    ups.push(first);
    let ec2 = first.client(account);
    const image = images().find((i) => i.name === 'default');
    assert.ok(image, 'the default image (azote setup --tests)');
    const script = '#!/bin/sh\nif [ -b /dev/vdc ]; then echo "volume-sectors $(cat /sys/block/vdc/size)"; fi\n';
    const id = (await ec2.send(new sdk.RunInstancesCommand({
      ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1, UserData: Buffer.from(script).toString('base64'),
    }))).Instances?.[0]?.InstanceId ?? '';
    const state = async (): Promise<string | undefined> =>
      (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name;
    // Volumes attach to stopped instances: the first boot is cut short.
    await ec2.send(new sdk.StopInstancesCommand({ InstanceIds: [id], Force: true }));
    await until('the instance to stop', async () => (await state() === 'stopped' ? true : undefined));
    const vol = (await ec2.send(new sdk.CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 1 }))).VolumeId ?? '';
    await ec2.send(new sdk.AttachVolumeCommand({ VolumeId: vol, InstanceId: id, Device: '/dev/sdf' }));
    await ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [id] }));
    // The crash comes once the volume's card holds the volume and the hypervisor runs (the guest need not be up).
    await until('the volume\'s card and the hypervisor', () =>
      (nodePidsWith(`${vol}.sock`).length === 1 && nodePidsWith(id).length === 1 ? true : undefined));
    assert.equal(nodePidsWith(path.join(dataDir, 'cards', 'net-1.sock')).length, 1, 'the network card runs');

    first.child.kill('SIGKILL');
    await first.exited;
    await until('the cards and the hypervisor to end', () =>
      (pidsWith(dataDir).length === 0 && pidsWith(id).length === 0 ? true : undefined));

    const second = await startUpProcess(dataDir);
    ups.push(second);
    ec2 = second.client(account);
    await ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [id] }));
    const seen = await until('the guest to see its volume, or the instance to stop', async () => {
      const described = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
      if (described?.State?.Name === 'stopped') return `stopped: ${described.StateReason?.Message ?? ''}`;
      const out = Buffer.from((await ec2.send(new sdk.GetConsoleOutputCommand({ InstanceId: id }))).Output ?? '', 'base64').toString('utf8');
      return /volume-sectors 2097152/.test(out) ? 'volume seen' : undefined;
    });
    assert.equal(seen, 'volume seen');
    assert.equal(await state(), 'running');
  } finally {
    for (const up of ups) {
      up.child.kill('SIGTERM');
      await up.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
