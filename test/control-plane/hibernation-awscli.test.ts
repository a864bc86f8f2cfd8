// EC2 hibernation end to end through Debian's AWS CLI: an instance launched with --hibernation-options
// Configured=true writes a file in a tmpfs and keeps printing its uptime; `stop-instances --hibernate` saves it,
// `start-instances` resumes it: the file is still there (its memory came back), the uptime went on from where it
// was, and the console goes on from the same boot (its one boot line, the ticks from before, then the new ones).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/base/log.js';
import { startEc2 } from '../framework/ec2.js';
import { cli } from '../framework/awscli.js';
import { requireAwsCli } from '../framework/host-tools.js';
import { consoleUntil, defaultAmi } from '../framework/instances.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

/**
 * Each tick: the guest's uptime, the tmpfs file's content, and whether /run is a tmpfs. The file holds the boot id of
 * the boot that wrote it: user data runs at every boot, so a guest that booted again would hold another.
 */
const TICK = /hibernation-tick uptime=(\d+(?:\.\d+)?) marker=(\S*) run-tmpfs=(\d+)/;
const USER_DATA = [
  '#!/bin/sh',
  'cat /proc/sys/kernel/random/boot_id > /run/hibernation-marker',
  '(while true; do echo "hibernation-tick uptime=$(cut -d" " -f1 /proc/uptime) marker=$(cat /run/hibernation-marker 2>/dev/null)'
    + ' run-tmpfs=$(grep -c "^tmpfs /run " /proc/mounts)"; sleep 2; done) &',
  '',
].join('\n');

function ticks(text: string): Array<{ uptime: number; marker: string; tmpfs: number }> {
  return [...text.matchAll(new RegExp(TICK, 'g'))].map((m) => ({ uptime: Number(m[1]), marker: m[2] ?? '', tmpfs: Number(m[3]) }));
}

test('aws ec2: run --hibernation-options Configured=true, stop --hibernate, start: the tmpfs file is there, the uptime went on', { timeout: 1_800_000 }, async (t) => {
  requireAwsCli();
  if (!requireKvm(t)) return;
  // The host's log, shown with any failure: the tenant sees EC2's reasons only, the cause is in the host's log.
  const lines: string[] = [];
  const host = await startEc2(undefined, { log: createLogger('hibernate', { write: (l) => { lines.push(l); } }, 'info') });
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-hibernate-'));
  try {
    const account = host.account('hibernate');
    const aws = cli(host, account);
    const ec2 = host.client(account);
    const ok = async (...args: string[]): Promise<string> => {
      const r = await aws(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}\nthe host's log:\n${lines.join('')}`);
      return r.stdout;
    };
    writeFileSync(path.join(dir, 'user-data.sh'), USER_DATA);
    const id = await ok('run-instances', '--image-id', defaultAmi(), '--instance-type', 't3.nano', '--count', '1',
      '--hibernation-options', 'Configured=true', '--user-data', `file://${path.join(dir, 'user-data.sh')}`, '--query', 'Instances[0].InstanceId');
    assert.equal(await ok('describe-instances', '--instance-ids', id, '--query', 'Reservations[0].Instances[0].HibernationOptions.Configured'), 'True');
    await ok('wait', 'instance-running', '--instance-ids', id);
    // Two ticks: the file is written and the loop runs.
    const before = ticks(await consoleUntil(ec2, id, /(hibernation-tick[^\n]*\n[\s\S]*){2}/, 600));
    const last = before.at(-1);
    assert.ok(last, 'ticks before hibernation');
    assert.match(last.marker, /^[0-9a-f-]{36}$/);
    assert.ok(last.tmpfs >= 1, '/run is a tmpfs: the file is in memory only');

    assert.equal(await ok('stop-instances', '--instance-ids', id, '--hibernate', '--query', 'StoppingInstances[0].CurrentState.Name'), 'stopping');
    await ok('wait', 'instance-stopped', '--instance-ids', id);
    assert.equal(await ok('describe-instances', '--instance-ids', id, '--query', 'Reservations[0].Instances[0].StateReason.Code'), 'Client.UserInitiatedHibernate');
    // The console as the VM was saved: after the resume it goes on from there.
    const saved = ticks(await consoleUntil(ec2, id, TICK, 60));

    await ok('start-instances', '--instance-ids', id);
    await ok('wait', 'instance-running', '--instance-ids', id);
    const text = await consoleUntil(ec2, id, (t) => ticks(t).length > saved.length, 600);
    const all = ticks(text);
    const after = all[saved.length];
    const lastSaved = saved.at(-1) ?? last;
    const hostLog = lines.filter((l) => l.includes(id)).join('');
    assert.ok(after, `a tick after the start: ${text}`);
    assert.deepEqual(all.slice(0, saved.length), saved, 'the console from before the hibernation is kept');
    assert.equal([...text.matchAll(/azote-instance: .* is up/g)].length, 1, `the guest resumed, it did not boot again; the host's log:\n${hostLog}`);
    assert.equal(after.marker, last.marker, 'the file in tmpfs is still there, as the first boot wrote it');
    assert.ok(after.uptime >= lastSaved.uptime, `the uptime went on (${lastSaved.uptime} s before hibernation, ${after.uptime} s after the resume)`);

    await ok('terminate-instances', '--instance-ids', id);
    await ok('wait', 'instance-terminated', '--instance-ids', id);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await host.dispose();
  }
});
