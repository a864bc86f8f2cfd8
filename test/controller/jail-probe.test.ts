// A probe run through the real jail (its control group included) tries what a compromised hypervisor would; every
// way out the jail should close is checked from inside and from outside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { silentLogger } from '../../src/base/log.js';
import { InstanceCgroup, JAIL_PIDS_MAX } from '../../src/controller/cgroup.js';
import { componentFiles } from '../../src/controller/components.js';
import { JAIL_PATH, jailCommand, jailedExit, JAIL_UID_BASE, JailUids, memlockLimit } from '../../src/controller/jail.js';
import { projectRoot } from '../../src/images/paths.js';
import { EXPECTED_HYPERVISOR_ROLES, type Role, type RoleReport } from '../framework/seccomp-probe.js';
import { skipLoudly } from '../framework/kvm.js';
import { JAILED_PROC } from '../framework/processes.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-jail-probe-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('jail uids: each launch a new one, remembered across restarts, in-use ones skipped after a wrap', () => {
  const file = path.join(dir, 'uids', 'next');
  const a = new JailUids(file);
  assert.deepEqual([a.next(new Set()), a.next(new Set()), a.next(new Set())], [JAIL_UID_BASE, JAIL_UID_BASE + 1, JAIL_UID_BASE + 2]);
  assert.equal(new JailUids(file).next(new Set()), JAIL_UID_BASE + 3, 'a restarted controller goes on');
  assert.equal(new JailUids(file).next(new Set([JAIL_UID_BASE + 4, JAIL_UID_BASE + 5])), JAIL_UID_BASE + 6);
});

/** The child unshare forked: the jailed process itself. */
function jailedPid(outer: number): number {
  for (let hops = 0; hops < 10; hops++) {
    const kids = readFileSync(`/proc/${outer}/task/${outer}/children`, 'utf8').trim();
    if (kids) return Number(kids.split(' ')[0]);
  }
  throw new Error(`the jail's pid ${outer} has no child`);
}

test('a probe in the real jail: its cores cannot widen, its IPC, UTS and pid namespaces are its own, pids and locked memory are limited', async (t) => {
  if (process.getuid?.() !== 0) {
    skipLoudly(t, 'the jail as root needs root; without it the controller uses a user namespace');
    return;
  }
  // The probe as a component: its import closure (koffi included), as a bundle carries it.
  const component = path.join(dir, 'component');
  const files = componentFiles({ name: 'probe', entry: 'dist/test/controller/jail-probe-entry.js', libraries: 'bundled' });
  for (const f of files) {
    mkdirSync(path.dirname(path.join(component, f)), { recursive: true });
    copyFileSync(path.join(projectRoot(), f), path.join(component, f));
  }
  const mountPoint = path.join(dir, 'root');
  mkdirSync(mountPoint);
  const cores = [0];
  const cgroup = InstanceCgroup.create(`probe-${process.pid}`, { memoryMiB: 64, vcpus: 1, cores }, silentLogger);
  assert.ok(cgroup, 'the controller can make control groups here (root)');
  const uid = JAIL_UID_BASE + 4242;
  const memlock = memlockLimit(64 * 2 ** 20);
  const { command, args } = jailCommand({ mountPoint, componentDir: component, entry: path.join(component, 'dist/test/controller/jail-probe-entry.js'),
    args: [], cores, uid, cgroupProcs: cgroup.procsFiles, lockedMemory: memlock });
  const jail = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: JAIL_PATH } });
  try {
    let out = '';
    let err = '';
    jail.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    jail.stdout.setEncoding('utf8');
    while (!out.includes('\n')) {
      const [chunk] = await Promise.race([once(jail.stdout, 'data'), once(jail, 'exit').then(() => assert.fail(`the jail ended: ${err}`))]) as [string];
      out += chunk;
    }
    const seen = JSON.parse(out) as { pid: number; coresBefore: number[]; setAffinityAll: string; coresAfter: number[]; shmid: number; killHostInit: string;
      seccomp: Record<Role, RoleReport>; proc: string[]; threads: number; wake: string };
    assert.deepEqual(seen.coresBefore, cores);
    assert.deepEqual(seen.coresAfter, cores, `asking for every core (${seen.setAffinityAll}) leaves it on its own`);
    assert.equal(seen.pid, 1, 'the first process of a pid namespace of its own');
    assert.equal(seen.killHostInit, 'not reached');
    assert.ok(seen.shmid >= 0, 'it may make a SysV segment, in its own IPC namespace');
    assert.deepEqual(seen.seccomp, EXPECTED_HYPERVISOR_ROLES, 'each thread role of the hypervisor refuses what it must');
    assert.deepEqual(seen.proc, JAILED_PROC, 'its /proc shows its own process and no system file');
    assert.ok(seen.threads > 1, `it lists its threads (${seen.threads})`);
    assert.equal(seen.wake, 'woken', 'under its seccomp list, a pool thread blocked in a call is pulled out');

    const inside = jailedPid(jail.pid ?? 0);
    for (const ns of ['ipc', 'uts', 'pid', 'net', 'mnt']) {
      assert.notEqual(readlinkSync(`/proc/${inside}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `a ${ns} namespace of its own`);
    }
    assert.equal(readFileSync(`/proc/${inside}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1], String(uid));
    const shm = (): string[] => readFileSync('/proc/sysvipc/shm', 'utf8').split('\n').slice(1).filter((l) => l.trim().split(/\s+/)[7] === String(uid));
    assert.deepEqual(shm(), [], 'the host\'s IPC namespace never sees its segment');
    assert.match(readFileSync(`/proc/${inside}/limits`, 'utf8'), new RegExp(`^Max locked memory\\s+${memlock.bytes}\\s+${memlock.bytes}\\s+bytes`, 'm'));
    // No capability at all, but CAP_IPC_LOCK where the limit could not be raised (a container without CAP_SYS_RESOURCE).
    const capEff = readFileSync(`/proc/${inside}/status`, 'utf8').match(/^CapEff:\s+([0-9a-f]+)/m)?.[1];
    assert.equal(capEff, (memlock.ipcLock ? 1n << 14n : 0n).toString(16).padStart(16, '0'), `capabilities ${capEff}`);
    const groups = readFileSync(`/proc/${inside}/cgroup`, 'utf8');
    const name = `azote/probe-${process.pid}`;
    if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
      assert.match(groups, new RegExp(`^0::/${name}$`, 'm'));
      assert.equal(readFileSync(`/sys/fs/cgroup/${name}/pids.max`, 'utf8').trim(), String(JAIL_PIDS_MAX));
    } else {
      for (const h of ['cpuset', 'pids', 'memory']) assert.match(groups, new RegExp(`:${h}:/${name}$`, 'm'), `its own ${h} group`);
      assert.equal(readFileSync(`/sys/fs/cgroup/pids/${name}/pids.max`, 'utf8').trim(), String(JAIL_PIDS_MAX));
      assert.equal(readFileSync(`/sys/fs/cgroup/cpuset/${name}/cpuset.cpus`, 'utf8').trim(), '0');
    }
    jail.stdin.end();
    const [code] = await once(jail, 'exit') as [number | null];
    assert.equal(code, 0, err);
    assert.deepEqual(shm(), [], 'nothing it made outlives it');

    // Killed with SIGKILL (as the OOM killer would), the jailed process is reported as killed, though unshare above
    // it cannot re-raise SIGKILL on itself and exits 1 instead.
    const again = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: JAIL_PATH } });
    try {
      let againErr = '';
      again.stderr.setEncoding('utf8').on('data', (s: string) => { againErr += s; });
      await once(again.stdout, 'data');
      const ended = once(again, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      process.kill(jailedPid(again.pid ?? 0), 'SIGKILL');
      const [c2, s2] = await ended;
      assert.equal(jailedExit(c2, s2, againErr.trim().split('\n')).how, 'SIGKILL', `unshare ended with ${c2 ?? s2}: ${againErr}`);
    } finally {
      if (again.exitCode === null && again.signalCode === null) again.kill('SIGKILL');
    }
    assert.equal(jailedExit(3, null, ['a line']).how, 'status 3');
    assert.equal(jailedExit(null, 'SIGSEGV', []).how, 'SIGSEGV');
  } finally {
    if (jail.exitCode === null) jail.kill('SIGKILL');
    cgroup.remove();
  }
});
