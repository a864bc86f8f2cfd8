// The controller supervises what it starts: a card that dies is verified, measured and started again, and the
// instances using it carry on; a hypervisor that dies is reported with its exit reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { SecurityChip } from '../../src/security-chip/chip.js';
import { startEc2 } from '../framework/ec2.js';
import { requireKvm } from '../framework/kvm.js';
import { createLogger } from '../../src/base/log.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

/** The pids whose command line has every one of `parts`. */
function pidsOf(...parts: string[]): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((p) => {
    try {
      const args = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return parts.every((part) => args.some((a) => a.includes(part)));
    } catch {
      return false;
    }
  }).map(Number);
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('a killed network card is verified and started again; a killed hypervisor leaves its instance stopped with the reason', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const lines: string[] = [];
  const host = await startEc2(undefined, { log: createLogger('test', { write: (l) => { lines.push(l); } }, 'info') });
  try {
    const ec2 = host.client(host.account('dev'));
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    const r = await ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 }));
    const id = r.Instances?.[0]?.InstanceId ?? '';
    await sdk.waitUntilInstanceRunning({ client: ec2, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: [id] });
    const chip = SecurityChip.open(`${host.dataDir}/host`);
    const measured = (): number => chip.eventLog().filter((e) => e.component === 'card-net').length;
    assert.equal(measured(), 1);
    // The account's network card (the host's first: account-networks.ts numbers their sockets).
    const socket = `${host.dataDir}/cards/net-1.sock`;
    const [card] = pidsOf('cards/net/main.js', socket);
    assert.ok(card, 'the network card runs from the component store');
    process.kill(card, 'SIGKILL');
    const again = await until('a new network card', () => pidsOf('cards/net/main.js', socket).find((p) => p !== card));
    assert.notEqual(again, card);
    await until('its measurement', () => (measured() === 2 ? true : undefined));
    const state = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name;
    assert.equal(state, 'running', 'the instance carries on');

    const [hypervisor] = pidsOf('instance-main.js', id);
    assert.ok(hypervisor);
    process.kill(hypervisor, 'SIGKILL');
    const reason = await until('the instance to stop', async () => {
      const d = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
      return d?.State?.Name === 'stopped' ? d.StateReason : undefined;
    });
    assert.equal(reason.Code, 'Server.InternalError');
    assert.equal(reason.Message, 'Server.InternalError: Internal error', 'the tenant sees EC2\'s reason');
    assert.ok(lines.some((l) => l.includes(id) && /the hypervisor exited \(SIGKILL\)/.test(l)), `the host log has the cause: ${lines.join('')}`);
  } finally {
    await host.dispose();
  }
});
