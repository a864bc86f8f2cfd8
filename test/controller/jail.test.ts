// What the controller does to each instance's hypervisor, seen from outside the process (and the one host setting
// that relaxes core placement): no new privileges, a seccomp filter, its own unprivileged uid, a control group with
// memory and CPU limits, a network namespace of its own in which no address can be reached, a mount namespace whose
// root holds only node and its libraries and the verified hypervisor, Unix sockets only (its channel and the card
// connections handed to it, none listening), not ptrace-able even by its own uid, and its threads pinned to cores
// that no other account's instance has.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { parseCpuList } from '../../src/controller/cores.js';
import { HYPERVISOR_OVERHEAD_MIB } from '../../src/controller/cgroup.js';
import { JAIL_UID_BASE } from '../../src/controller/jail.js';
import { Store } from '../../src/control-plane/store.js';
import { startEc2 } from '../framework/ec2.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { JAILED_PROC, nodePidsWith, procStatus as status, rootTree as tree } from '../framework/processes.js';

useOwnNetworkNamespace();

const hypervisorPid = (instanceId: string): number =>
  nodePidsWith('instance-main.js', instanceId)[0] ?? assert.fail(`no hypervisor process for ${instanceId}`);


function threadCpus(pid: number): Set<number> {
  const cpus = new Set<number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) for (const c of parseCpuList(status(`${pid}/task/${tid}`, 'Cpus_allowed_list'))) cpus.add(c);
  return cpus;
}

/** Tries a TCP connection from inside the process's network namespace; the error code, or "connected". */
function connectFrom(pid: number, host: string, port: number): string {
  const script = `const s=require('net').connect(${port},${JSON.stringify(host)});s.on('connect',()=>{console.log('connected');process.exit(0)});`
    + "s.on('error',(e)=>{console.log(e.code);process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(0)},3000)";
  const r = spawnSync('nsenter', [`--net=/proc/${pid}/ns/net`, process.execPath, '-e', script], { encoding: 'utf8' });
  return (r.stdout || r.stderr).trim();
}

/** What a process of `uid` gets from ptrace(PTRACE_ATTACH) on `pid` (python3 from Debian: no build step). */
function ptraceAttachAs(uid: number, pid: number): string {
  const script = 'import ctypes,os,sys\nlibc=ctypes.CDLL(None,use_errno=True)\npid=int(sys.argv[1])\n'
    + 'r=libc.ptrace(16,pid,0,0)\nprint("attached" if r==0 else os.strerror(ctypes.get_errno()))';
  const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/usr/bin/python3', '-c', script, String(pid)], { encoding: 'utf8' });
  return (r.stdout || r.stderr).trim();
}

test('an instance\'s hypervisor: no new privileges, seccomp, its own uid and minimal root, no network, Unix sockets only, no ptrace, its own cores', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const host = await startEc2();
  const listener = net.createServer((c) => c.end()).listen(0, '127.0.0.1');
  try {
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    const launch = async (account: string): Promise<string> => {
      const ec2 = host.client(host.account(account));
      const r = await ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 }));
      const id = r.Instances?.[0]?.InstanceId ?? '';
      await sdk.waitUntilInstanceRunning({ client: ec2, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: [id] });
      return id;
    };
    const ids = [await launch('alice'), await launch('bob')];
    const pids = ids.map(hypervisorPid);
    const port = (listener.address() as net.AddressInfo).port;
    assert.equal(connectFrom(process.pid, '127.0.0.1', port), 'connected', 'the control: from the host\'s namespace it connects');
    const uids = pids.map((pid) => status(pid, 'Uid').split(/\s+/));
    for (const [i, pid] of pids.entries()) {
      assert.equal(status(pid, 'NoNewPrivs'), '1');
      assert.equal(status(pid, 'Seccomp'), '2', 'a seccomp filter (test/sys/seccomp.test.ts shows what it refuses)');
      // An unprivileged uid of its own (real, effective, saved, file system), no groups, no capabilities.
      const uid = Number(uids[i]?.[0]);
      assert.ok(uid >= JAIL_UID_BASE, `uid ${uid}`);
      assert.deepEqual(uids[i], [String(uid), String(uid), String(uid), String(uid)]);
      assert.equal(status(pid, 'Groups'), '');
      assert.equal(status(pid, 'CapEff'), '0000000000000000');
      assert.equal(status(pid, 'CapBnd'), '0000000000000000');
      // Its root: node, setpriv and their libraries, and the verified hypervisor bundle; nothing else of the host.
      const root = `/proc/${pid}/root`;
      for (const ns of ['mnt', 'ipc', 'uts', 'pid']) {
        assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `a ${ns} namespace of its own`);
      }
      assert.match(status(pid, 'NSpid'), /^\d+\s+1$/, 'pid 1 of its own pid namespace');
      const bundle = tree(root, '').find((p) => p.endsWith('/components/hypervisor/files')) ?? assert.fail('the hypervisor bundle is in its root');
      const seen = tree(root, bundle).filter((p) => p !== bundle && !p.startsWith(`${bundle}/`));
      const allowed = (p: string): boolean => p === '/.old' || p === '/proc' || /^\/(usr\/)?(bin|lib|lib64)(\/|$)/.test(p) || p === '/usr' || bundle.startsWith(`${p}/`);
      assert.deepEqual(seen.filter((p) => !allowed(p)), [], 'nothing else in its root');
      assert.deepEqual(readdirSync(`${root}/.old`), [], 'the old root is gone');
      assert.deepEqual(readdirSync(`${root}/proc`).sort(), JAILED_PROC, 'its /proc shows only itself');
      for (const gone of ['/dev', '/etc', '/sys', '/root', path.join(host.dataDir, 'instances')]) assert.equal(existsSync(`${root}${gone}`), false, `${gone} is not in its root`);
      assert.deepEqual(seen.filter((p) => p.startsWith('/usr/bin/')).sort(), ['/usr/bin/node', '/usr/bin/setpriv'], 'no program but node and setpriv');
      // Not dumpable: its own uid cannot attach to it (the control: a dumpable process of that uid it can).
      assert.equal(ptraceAttachAs(uid, pid), 'Operation not permitted', 'ptrace by the hypervisor\'s own uid');
      const control = spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sleep', '30']);
      try {
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(ptraceAttachAs(uid, control.pid ?? 0), 'attached', 'the control: a dumpable process of the same uid');
      } finally {
        control.kill('SIGKILL');
      }
      // Its own control group, limited to its guest's memory and the process's overhead, and one core's time per vCPU.
      const groups = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      const id = ids[i] ?? '';
      if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
        assert.match(groups, new RegExp(`^0::/azote/${id}$`, 'm'));
        assert.equal(readFileSync(`/sys/fs/cgroup/azote/${id}/memory.max`, 'utf8').trim(), String((256 + HYPERVISOR_OVERHEAD_MIB) * 2 ** 20));
        assert.equal(readFileSync(`/sys/fs/cgroup/azote/${id}/cpu.max`, 'utf8').trim(), '100000 100000');
      } else {
        assert.match(groups, new RegExp(`:memory:/azote/${id}$`, 'm'));
        assert.match(groups, new RegExp(`:cpu(,cpuacct)?:/azote/${id}$`, 'm'));
        assert.equal(readFileSync(`/sys/fs/cgroup/memory/azote/${id}/memory.limit_in_bytes`, 'utf8').trim(), String((256 + HYPERVISOR_OVERHEAD_MIB) * 2 ** 20));
        assert.equal(readFileSync(`/sys/fs/cgroup/cpu/azote/${id}/cpu.cfs_quota_us`, 'utf8').trim(), '100000');
        assert.match(groups, new RegExp(`:cpuset:/azote/${id}$`, 'm'));
        assert.match(groups, new RegExp(`:pids:/azote/${id}$`, 'm'));
        assert.deepEqual(parseCpuList(readFileSync(`/sys/fs/cgroup/cpuset/azote/${id}/cpuset.cpus`, 'utf8').trim()), [...threadCpus(pid)].sort((x, y) => x - y),
          'its cpuset is exactly the cores it is pinned to');
      }
      assert.notEqual(readlinkSync(`/proc/${pid}/ns/net`), readlinkSync('/proc/self/ns/net'), 'a network namespace of its own');
      assert.match(execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'link'], { encoding: 'utf8' }).trim(), /^1: lo: <LOOPBACK> .* state DOWN/);
      assert.equal(execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'link'], { encoding: 'utf8' }).trim().split('\n').length, 1, 'no interface but lo');
      for (const target of ['127.0.0.1', '10.1.2.3', '8.8.8.8']) assert.equal(connectFrom(pid, target, port), 'ENETUNREACH', `${target} from the hypervisor's namespace`);
      // Its sockets: its channel and its network card connection, both made in the controller's namespace and
      // handed over, neither listening (its stderr is a file); its own namespace has no socket at all.
      const inodes = readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } })
        .map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter((i): i is string => i !== undefined);
      const table = (f: string): string[][] => readFileSync(f, 'utf8').split('\n').slice(1).filter(Boolean).map((l) => l.trim().split(/\s+/));
      assert.deepEqual(table(`/proc/${pid}/net/unix`), [], 'no Unix socket was made in its namespace');
      const unix = table('/proc/self/net/unix');
      assert.equal(inodes.length, 2, 'its channel and its card connection');
      assert.match(readlinkSync(`/proc/${pid}/fd/3`), /^socket:/, 'fd 3: its channel');
      for (const inode of inodes) {
        const row = unix.find((r) => r[6] === inode);
        assert.ok(row, `socket ${inode} is a Unix socket of the controller's namespace`);
        assert.equal(Number.parseInt(row[3] ?? '0', 16) & 0x10000, 0, `socket ${inode} is not listening`);
      }
      for (const table of ['tcp', 'tcp6', 'udp', 'udp6']) {
        assert.equal(readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').length, 1, `no ${table} socket in its namespace`);
      }
    }
    assert.notEqual(uids[0]?.[0], uids[1]?.[0], 'each hypervisor its own uid');
    const [a, b] = pids.map(threadCpus) as [Set<number>, Set<number>];
    assert.ok(a.size > 0 && b.size > 0);
    assert.deepEqual([...a].filter((c) => b.has(c)), [], `alice's hypervisor threads (${[...a]}) and bob's (${[...b]}) share no core`);
  } finally {
    listener.close();
    await host.dispose();
  }
});

test('with the host setting, one account\'s instances may share cores; another account still gets none of them', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const host = await startEc2(undefined, { shareCoresWithinAccount: true });
  try {
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    const alice = host.account('alice');
    const ec2a = host.client(alice);
    const many = host.capacity.cores + 1;
    const r = await ec2a.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: many, MaxCount: many }));
    const ids = (r.Instances ?? []).map((i) => i.InstanceId ?? '');
    assert.equal(ids.length, many, 'more instances than cores, for one account');
    await assert.rejects(host.client(host.account('bob')).send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 })),
      { name: 'InsufficientInstanceCapacity' });
    const store = new Store(host.dataDir);
    try {
      const cores = store.instances(alice.accountId).map((row) => row.cores);
      assert.equal(new Set(cores).size, host.capacity.coreGroups.length, `alice's instances hold every core, one of them twice: ${cores.join(' | ')}`);
    } finally {
      store.close();
    }
    await ec2a.send(new sdk.TerminateInstancesCommand({ InstanceIds: ids }));
    await sdk.waitUntilInstanceTerminated({ client: ec2a, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: ids });
  } finally {
    await host.dispose();
  }
});
