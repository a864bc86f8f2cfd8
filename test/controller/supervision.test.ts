// The controller supervises what it starts: a card that dies is verified, measured and started again, and the
// instances using it carry on; a hypervisor that dies is reported with its exit reason; a hypervisor that floods its
// channel is cut off alone, while the controller and the other instances carry on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import koffi from 'koffi';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { INHERITED_FDS } from '../../src/protocols/instance.js';
import { SecurityChip } from '../../src/security-chip/chip.js';
import * as libc from '../../src/sys/libc.js';
import { startEc2, type Ec2Host } from '../framework/ec2.js';
import { requireKvm } from '../framework/kvm.js';
import { createLogger } from '../../src/base/log.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { nodePidsWith, pidsWith, until as poll } from '../framework/processes.js';

useOwnNetworkNamespace();

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> =>
  poll(what, probe, { tries: 600, everyMs: 200 });
const hypervisorPids = (instanceId: string): number[] => nodePidsWith('instance-main.js', instanceId);

/** `count` t3.nano instances of the default image, launched for account dev. */
async function launch(host: Ec2Host, count: number): Promise<{ ec2: sdk.EC2Client; ids: string[] }> {
  const ec2 = host.client(host.account('dev'));
  const image = images().find((i) => i.name === 'default') ?? assert.fail('the default image (azote setup --tests)');
  const r = await ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: count, MaxCount: count }));
  return { ec2, ids: (r.Instances ?? []).map((i) => i.InstanceId ?? '') };
}

test('a killed network card is verified and started again; a killed hypervisor leaves its instance stopped with the reason', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const lines: string[] = [];
  const host = await startEc2(undefined, { log: createLogger('test', { write: (l) => { lines.push(l); } }, 'info') });
  try {
    const { ec2, ids: [id = ''] } = await launch(host, 1);
    await sdk.waitUntilInstanceRunning({ client: ec2, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: [id] });
    const chip = SecurityChip.open(`${host.dataDir}/host`);
    const measured = (): number => chip.eventLog().filter((e) => e.component === 'card-net').length;
    assert.equal(measured(), 1);
    // The VPC's network card (the host's first: vpc-networks.ts numbers their sockets).
    const socket = `${host.dataDir}/cards/net-1.sock`;
    const [card] = pidsWith('cards/net/main.js', socket);
    assert.ok(card, 'the network card runs from the component store');
    process.kill(card, 'SIGKILL');
    const again = await until('a new network card', () => pidsWith('cards/net/main.js', socket).find((p) => p !== card));
    assert.notEqual(again, card);
    await until('its measurement', () => (measured() === 2 ? true : undefined));
    const state = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name;
    assert.equal(state, 'running', 'the instance carries on');

    const [hypervisor] = hypervisorPids(id);
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

const syscall = koffi.load('libc.so.6').func('long syscall(long nr, long a1, long a2, long a3)');
const SYS_PIDFD_OPEN = 434, SYS_PIDFD_GETFD = 438;

/** A copy of descriptor `fd` of process `pid` (pidfd_getfd: root may take one even from a non-dumpable process). */
function takeFd(pid: number, fd: number): number {
  const pidfd = syscall(SYS_PIDFD_OPEN, pid, 0, 0) as number;
  if (pidfd < 0) throw new libc.SysError('pidfd_open', libc.errno());
  try {
    const copy = syscall(SYS_PIDFD_GETFD, pidfd, fd, 0) as number;
    if (copy < 0) throw new libc.SysError('pidfd_getfd', libc.errno());
    return copy;
  } finally {
    libc.close(pidfd);
  }
}

test('a hypervisor that writes 64 MiB without any message boundary on its channel is cut off alone; the controller and other instances carry on', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const lines: string[] = [];
  const host = await startEc2(undefined, { log: createLogger('test', { write: (l) => { lines.push(l); } }, 'info') });
  try {
    const { ec2, ids: [hostile, other] } = await launch(host, 2);
    assert.ok(hostile && other);
    // Both VMs run (their guests print on the console); their guests need not have finished booting.
    const started = (id: string): boolean => existsSync(path.join(host.dataDir, 'instances', id, 'console.log'))
      && statSync(path.join(host.dataDir, 'instances', id, 'console.log')).size > 0;
    await until('both VMs to start', () => (started(hostile) && started(other) ? true : undefined));
    const [hypervisor] = hypervisorPids(hostile);
    assert.ok(hypervisor);
    // What a compromised hypervisor could do: write on its end of the channel, as fast as it takes, bytes that are
    // no message (Node's IPC buffered them all, waiting for a newline, until the controller ran out of memory).
    const channel = takeFd(hypervisor, INHERITED_FDS.channel);
    const chunk = Buffer.alloc(128 * 1024, 'x');
    let written = 0;
    try {
      while (written < 64 * 2 ** 20) {
        try {
          written += writeSync(channel, chunk);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EPIPE' || code === 'ECONNRESET') break; // cut off
          if (code !== 'EAGAIN') throw e;
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    } finally {
      libc.close(channel);
    }
    const state = async (id: string): Promise<sdk.Instance | undefined> =>
      (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
    const reason = await until('the flooding instance to stop', async () => {
      const d = await state(hostile);
      return d?.State?.Name === 'stopped' ? d.StateReason : undefined;
    });
    assert.equal(reason.Code, 'Server.InternalError');
    // Pending or running when it was cut off: EC2's reason either way.
    assert.match(reason.Message ?? '', /^Server\.InternalError: Internal error( on launch)?$/, 'the tenant sees EC2\'s reason');
    assert.ok(lines.some((l) => l.includes(hostile) && /the hypervisor was cut off: the hypervisor of i-\w+ sent a message longer than 65536 bytes/.test(l)),
      `the host log says why: ${lines.join('')}`);
    assert.equal(hypervisorPids(hostile).length, 0, 'its hypervisor is gone');
    assert.ok(['pending', 'running'].includes((await state(other))?.State?.Name ?? ''), 'the other instance carries on');
    assert.equal(hypervisorPids(other).length, 1, 'with its hypervisor');
    // The controller still serves: the flooded instance starts again, with a new hypervisor.
    await ec2.send(new sdk.StartInstancesCommand({ InstanceIds: [hostile] }));
    await until('a new hypervisor for it', () => hypervisorPids(hostile).find((p) => p !== hypervisor));
  } finally {
    await host.dispose();
  }
});
