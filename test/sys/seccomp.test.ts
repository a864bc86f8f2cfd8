// The seccomp allowlists: layouts, numbers and the generated lists against the kernel's headers; no list holds a
// call of MUST_FAIL (save a card's accept4); and a process under a list keeps what is listed and nothing else, in
// every thread, with a thread's own list stacked on the process's and ioctl restricted to listed requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ALWAYS_ALLOWED, AUDIT_ARCH_X86_64, BPF_JMP_JEQ_K, BPF_JMP_JGE_K, BPF_LD_W_ABS, BPF_RET_K, MUST_FAIL, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS, SYS_IOCTL, X32_SYSCALL_BIT, allowProgram, forbiddenIn, seccompData, sockFilter, sockFprog, type SyscallAllowlist,
} from '../../src/sys/seccomp.js';
import { HYPERVISOR_SECCOMP, HYPERVISOR_SECCOMP_EXCEPTIONS } from '../../src/hypervisor/seccomp-profile.js';
import { BLOCK_CARD_SECCOMP, BLOCK_CARD_SECCOMP_EXCEPTIONS } from '../../src/cards/block/seccomp-profile.js';
import { NET_CARD_SECCOMP, NET_CARD_SECCOMP_EXCEPTIONS } from '../../src/cards/net/seccomp-profile.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';
import { EXPECTED_HYPERVISOR_ROLES } from '../framework/seccomp-probe.js';
import { hypervisorAllowlists } from '../../src/hypervisor/seccomp-roles.js';

const PROFILES: Array<[string, Record<string, SyscallAllowlist>, readonly string[]]> = [
  ['hypervisor', HYPERVISOR_SECCOMP, HYPERVISOR_SECCOMP_EXCEPTIONS],
  // The recorded lists with what the hypervisor adds by hand: accept4 where it takes vsock connections.
  ['hypervisor with vsock', { ...hypervisorAllowlists({ vsock: true }) }, ['accept4']],
  ['block card', BLOCK_CARD_SECCOMP, BLOCK_CARD_SECCOMP_EXCEPTIONS],
  ['network card', NET_CARD_SECCOMP, NET_CARD_SECCOMP_EXCEPTIONS],
];

test('sock_filter, sock_fprog, seccomp_data, the filter\'s constants and every list\'s numbers match the kernel\'s headers', () => {
  const layouts = [sockFilter, sockFprog, seccompData];
  const headers = ['linux/filter.h', 'linux/seccomp.h', 'linux/audit.h', 'sys/syscall.h', 'linux/kvm.h', 'sys/ioctl.h', 'linux/if_tun.h'];
  const ours = new Map<string, number>([
    ['LD_W_ABS', BPF_LD_W_ABS], ['JMP_JEQ_K', BPF_JMP_JEQ_K], ['JMP_JGE_K', BPF_JMP_JGE_K], ['RET_K', BPF_RET_K], ['SECCOMP_RET_KILL_PROCESS', SECCOMP_RET_KILL_PROCESS], ['SECCOMP_RET_ERRNO', SECCOMP_RET_ERRNO],
    ['SECCOMP_RET_ALLOW', SECCOMP_RET_ALLOW], ['AUDIT_ARCH_X86_64', AUDIT_ARCH_X86_64], ['__X32_SYSCALL_BIT', X32_SYSCALL_BIT], ['SYS_ioctl', SYS_IOCTL],
    ...Object.entries(MUST_FAIL).map(([name, nr]): [string, number] => [`SYS_${name}`, nr]),
    ...Object.entries(ALWAYS_ALLOWED).map(([name, nr]): [string, number] => [`SYS_${name}`, nr]),
  ]);
  for (const [, roles] of PROFILES) {
    for (const list of Object.values(roles)) {
      for (const [name, nr] of Object.entries(list.syscalls)) ours.set(`SYS_${name}`, nr);
      for (const [name, request] of Object.entries(list.ioctls ?? {})) ours.set(name, request);
    }
  }
  const facts = readCFacts(headers, layouts, [...ours.keys()], `#define LD_W_ABS (BPF_LD | BPF_W | BPF_ABS)
#define JMP_JEQ_K (BPF_JMP | BPF_JEQ | BPF_K)
#define JMP_JGE_K (BPF_JMP | BPF_JGE | BPF_K)
#define RET_K (BPF_RET | BPF_K)`);
  assert.deepEqual(layoutMismatches(layouts, facts), []);
  for (const [name, value] of ours) assert.equal(facts.constants.get(name), BigInt(value), name);
});

test('no list holds a call of MUST_FAIL but its program\'s stated exceptions; each fits in one filter', () => {
  for (const [program, roles, exceptions] of PROFILES) {
    assert.ok(exceptions.every((e) => e === 'accept4'), `${program}: only accept4 may be kept`);
    for (const [role, list] of Object.entries(roles)) {
      assert.deepEqual(forbiddenIn(list, exceptions), [], `${program} ${role}`);
      assert.ok(Object.keys(list.syscalls).length > 0, `${program} ${role}: an empty list`);
      allowProgram(list);
    }
  }
  // The hypervisor's I/O thread has a narrower list than the process, and restricts ioctl.
  for (const role of ['io'] as const) {
    const list = HYPERVISOR_SECCOMP[role];
    assert.ok(Object.keys(list.syscalls).every((n) => n in HYPERVISOR_SECCOMP.process.syscalls), `${role} within the process's list`);
    assert.ok('ioctls' in list, `${role}: ioctl restricted`);
    assert.ok(!('memfd_create' in list.syscalls) && !('openat' in list.syscalls) && !('clone3' in list.syscalls), `${role}: no memfd, open or thread`);
  }
});

test('under a list: listed calls work, the rest fail with EPERM in every thread; a thread\'s list stacks; ioctl only with listed requests', () => {
  const seccomp = fileURLToPath(new URL('../../src/sys/seccomp.js', import.meta.url));
  const libc = fileURLToPath(new URL('../../src/sys/libc.js', import.meta.url));
  const script = `
    import { MUST_FAIL, restrictProcess, restrictThisThread } from ${JSON.stringify(seccomp)};
    import * as libc from ${JSON.stringify(libc)};
    import koffi from 'koffi';
    import { readFileSync } from 'node:fs';
    import { Worker } from 'node:worker_threads';
    const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b, long c)');
    const errnoOf = (nr, a = 0, b = 0, c = 0) => (raw(nr, a, b, c) < 0 ? koffi.errno() : 0);
    const nrs = Object.fromEntries(readFileSync('/usr/include/x86_64-linux-gnu/asm/unistd_64.h', 'utf8').split('\\n')
      .map((l) => /^#define __NR_(\\w+) (\\d+)$/.exec(l)).filter(Boolean).map((m) => [m[1], Number(m[2])]));
    // Everything Node needs to run (this script's whole run, traced once), less getppid, memfd_create and ioctl's TCGETS.
    const node = readFileSync(0, 'utf8').trim().split(' ').filter((n) => n !== 'getppid' && n !== 'memfd_create');
    const list = { syscalls: Object.fromEntries(node.map((n) => [n, nrs[n]])), ioctls: { FIONBIO: 0x5421, KVM_RUN: 0xae80 } };
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
    const thread = new Worker(\`
      import('node:worker_threads').then(async ({ parentPort, workerData }) => {
        const koffi = (await import('koffi')).default;
        const { restrictThisThread } = await import(workerData.seccomp);
        const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b, long c)');
        const errnoOf = (nr, a = 0, b = 0, c = 0) => (raw(nr, a, b, c) < 0 ? koffi.errno() : 0);
        parentPort.once('message', () => {
          const before = { getpid: errnoOf(workerData.nrs.getpid), getppid: errnoOf(workerData.nrs.getppid) };
          restrictThisThread({ syscalls: Object.fromEntries(Object.entries(workerData.list).filter(([n]) => n !== 'getpid')) });
          parentPort.postMessage({ before, after: { getpid: errnoOf(workerData.nrs.getpid) } });
        });
      });\`, { eval: true, workerData: { seccomp: ${JSON.stringify(seccomp)}, nrs, list: list.syscalls } });
    await new Promise((r) => thread.once('online', r));
    const seen = { before: { getppid: errnoOf(nrs.getppid), memfd: errnoOf(nrs.memfd_create, 0, 0) } };
    restrictProcess(list);
    seen.mustFail = Object.entries(MUST_FAIL).filter(([name, nr]) => errnoOf(nr) !== libc.EPERM).map(([name]) => name);
    seen.getppid = errnoOf(nrs.getppid);
    seen.getpid = errnoOf(nrs.getpid);
    seen.ioctlListed = errnoOf(nrs.ioctl, -1, 0xae80);
    seen.ioctlUnlisted = errnoOf(nrs.ioctl, -1, 0x5401);
    seen.thread = await new Promise((r) => { thread.once('message', r); thread.postMessage('go'); });
    seen.status = /^Seccomp:\\s*(\\d)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1];
    console.log(JSON.stringify(seen));
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, input: nodeCalls().join(' ') });
  assert.equal(r.status, 0, r.stderr);
  const EPERM = 1, EBADF = 9;
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}'), {
    before: { getppid: 0, memfd: 14 /* EFAULT: a null name, but let through */ },
    mustFail: [], getppid: EPERM, getpid: 0, ioctlListed: EBADF, ioctlUnlisted: EPERM, status: '2',
    // A thread's own list (no getpid) on top of the process's (no getppid), where the process's was on it before.
    thread: { before: { getpid: 0, getppid: EPERM }, after: { getpid: EPERM } },
  });
});

/** What a Node process running such a script calls: the hypervisor's whole list, which holds every call Node makes. */
function nodeCalls(): string[] {
  return Object.keys(HYPERVISOR_SECCOMP.process.syscalls);
}

test('the hypervisor\'s lists, probed as root (where only the filter can say EPERM): each role refuses what it must and keeps what it needs', () => {
  const probe = fileURLToPath(new URL('../framework/seccomp-probe.js', import.meta.url));
  const libc = fileURLToPath(new URL('../../src/sys/libc.js', import.meta.url));
  const script = `
    import * as libc from ${JSON.stringify(libc)};
    import { probeHypervisorRoles } from ${JSON.stringify(probe)};
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
    console.log(JSON.stringify(await probeHypervisorRoles()));
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}'), EXPECTED_HYPERVISOR_ROLES);
});

// Cards and a hypervisor with a vsock device take connections on a listening socket they were handed, and nothing more.
for (const [who, list] of [['the block card', BLOCK_CARD_SECCOMP.process], ['the network card', NET_CARD_SECCOMP.process],
  ['a hypervisor with vsock', hypervisorAllowlists({ vsock: true }).process]] as const) {
  test(`${who}'s list: accept4 on the listening socket it was handed works; every other MUST_FAIL call fails with EPERM`, () => {
    // Made and removed here: the list refuses reading directories and unlinking.
    const dir = mkdtempSync(path.join(tmpdir(), 'azote-seccomp-'));
    const seccomp = fileURLToPath(new URL('../../src/sys/seccomp.js', import.meta.url));
    const libc = fileURLToPath(new URL('../../src/sys/libc.js', import.meta.url));
    const script = `
      import { MUST_FAIL, restrictProcess } from ${JSON.stringify(seccomp)};
      import koffi from 'koffi';
      import { execFileSync } from 'node:child_process';
      import * as libc from ${JSON.stringify(libc)};
      const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b, long c)');
      const rawErrno = (nr) => (raw(nr, 0, 0, 0) < 0 ? koffi.errno() : 0);
      const attempt = (f) => { try { f(); return 'allowed'; } catch (e) { return e.code ?? e.message; } };
      // What the parent does before the process starts: the listening socket, and a peer's connection waiting on it.
      const dir = ${JSON.stringify(dir)};
      const listening = libc.listenUnix(dir + '/card.sock');
      const frontend = libc.connectUnix(dir + '/card.sock');
      libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
      restrictProcess(${JSON.stringify(list)});
      const seen = {
        notRefused: Object.entries(MUST_FAIL).filter(([name, nr]) => name !== 'accept4' && rawErrno(nr) !== libc.EPERM).map(([name]) => name),
        accepted: libc.acceptNonBlocking(listening) >= 0,
        socket: attempt(() => libc.socket(libc.AF_UNIX, libc.SOCK_STREAM)),
        connect: attempt(() => libc.connectUnix(dir + '/card.sock')),
        listen: attempt(() => libc.listenUnix(dir + '/other.sock')),
        exec: attempt(() => execFileSync('/bin/true')),
      };
      libc.close(frontend);
      console.log(JSON.stringify(seen));
      // Straight out (exit_group), as these processes end: by a signal, never through Node's teardown, which the
      // lists need not hold.
      raw(231, 0, 0, 0);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}'), {
      notRefused: [], accepted: true, socket: 'EPERM', connect: 'EPERM', listen: 'EPERM', exec: 'EPERM',
    });
  });
}
