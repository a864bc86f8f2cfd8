// The hypervisor's seccomp filter: its layouts and numbers against the kernel's headers, and a process that took it
// can still read files and use its descriptors but can neither open a connection, listen, nor start a program.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  AUDIT_ARCH_X86_64, BPF_JMP_JEQ_K, BPF_JMP_JGE_K, BPF_LD_W_ABS, BPF_RET_K, DENIED_SYSCALLS, SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, X32_SYSCALL_BIT, seccompData, sockFilter, sockFprog,
} from '../../src/sys/seccomp.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';

test('sock_filter, sock_fprog, seccomp_data and the filter\'s constants match <linux/filter.h>, <linux/seccomp.h>, <sys/syscall.h>', () => {
  const layouts = [sockFilter, sockFprog, seccompData];
  const headers = ['linux/filter.h', 'linux/seccomp.h', 'linux/audit.h', 'sys/syscall.h'];
  const ours: Array<[string, number]> = [
    ['LD_W_ABS', BPF_LD_W_ABS], ['JMP_JEQ_K', BPF_JMP_JEQ_K], ['JMP_JGE_K', BPF_JMP_JGE_K], ['RET_K', BPF_RET_K], ['SECCOMP_RET_KILL_PROCESS', SECCOMP_RET_KILL_PROCESS], ['SECCOMP_RET_ERRNO', SECCOMP_RET_ERRNO],
    ['SECCOMP_RET_ALLOW', SECCOMP_RET_ALLOW], ['AUDIT_ARCH_X86_64', AUDIT_ARCH_X86_64], ['__X32_SYSCALL_BIT', X32_SYSCALL_BIT],
    ...Object.entries(DENIED_SYSCALLS).map(([name, nr]): [string, number] => [`SYS_${name}`, nr]),
  ];
  const facts = readCFacts(headers, layouts, ours.map(([n]) => n), `#define LD_W_ABS (BPF_LD | BPF_W | BPF_ABS)
#define JMP_JEQ_K (BPF_JMP | BPF_JEQ | BPF_K)
#define JMP_JGE_K (BPF_JMP | BPF_JGE | BPF_K)
#define RET_K (BPF_RET | BPF_K)`);
  assert.deepEqual(layoutMismatches(layouts, facts), []);
  for (const [name, value] of ours) assert.equal(facts.constants.get(name), BigInt(value), name);
});

test('after the filter: files and pipes work; sockets, connections, listening, exec and every denied call fail with EPERM in every thread', () => {
  const seccomp = fileURLToPath(new URL('../../src/sys/seccomp.js', import.meta.url));
  const libc = fileURLToPath(new URL('../../src/sys/libc.js', import.meta.url));
  const script = `
    import { DENIED_SYSCALLS, denyNetworkAndExec } from ${JSON.stringify(seccomp)};
    import koffi from 'koffi';
    import * as libc from ${JSON.stringify(libc)};
    import { readFileSync } from 'node:fs';
    import { execFileSync } from 'node:child_process';
    import net from 'node:net';
    import { Worker } from 'node:worker_threads';
    const seen = {};
    const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b, long c)');
    const rawErrno = (nr) => (raw(nr, 0, 0, 0) < 0 ? koffi.errno() : 0);
    const attempt = (name, f) => { try { f(); seen[name] = 'allowed'; } catch (e) { seen[name] = e.code ?? e.message; } };
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
    // A thread that exists before the filter is installed takes it too.
    const before = new Worker(\`
      import('node:worker_threads').then(({ parentPort }) => parentPort.once('message', async () => {
        const { execFileSync } = await import('node:child_process');
        try { execFileSync('/bin/true'); parentPort.postMessage('allowed'); } catch (e) { parentPort.postMessage(e.code); } }));\`, { eval: true });
    seen.unshareBefore = rawErrno(DENIED_SYSCALLS.unshare);
    denyNetworkAndExec();
    // Every denied call, with zero arguments (harmless where it would run): EPERM is the filter's answer.
    seen.notRefused = Object.entries(DENIED_SYSCALLS).filter(([, nr]) => rawErrno(nr) !== libc.EPERM).map(([name]) => name);
    attempt('read a file', () => readFileSync('/proc/self/status'));
    attempt('socket', () => libc.socket(libc.AF_UNIX, libc.SOCK_STREAM));
    attempt('socketpair', () => libc.socketpair());
    attempt('exec', () => execFileSync('/bin/true'));
    seen.status = /^Seccomp:\\s*(\\d)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1];
    seen.thread = await new Promise((resolve) => { before.once('message', resolve); before.postMessage('go'); });
    await before.terminate();
    seen.connect = await new Promise((resolve) => net.connect(9, '127.0.0.1').on('error', (e) => resolve(e.code)).on('connect', () => resolve('allowed')));
    seen.listen = await new Promise((resolve) => net.createServer().listen(0).on('error', (e) => resolve(e.code)).on('listening', () => resolve('allowed')));
    console.log(JSON.stringify(seen));
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}'), {
    unshareBefore: 0, notRefused: [], 'read a file': 'allowed', socket: 'EPERM', socketpair: 'EPERM', exec: 'EPERM', status: '2', thread: 'EPERM', connect: 'EPERM', listen: 'EPERM',
  });
});

// A card and a hypervisor with a vsock device take connections on a listening socket they were handed, and nothing more.
for (const [who, filter] of [['a card', 'denyForCards'], ['a hypervisor with vsock', 'denyForVsock']]) {
  test(`${who}'s filter: accept4 on the listening socket it was handed works; every other denied call fails with EPERM`, () => {
    const seccomp = fileURLToPath(new URL('../../src/sys/seccomp.js', import.meta.url));
    const libc = fileURLToPath(new URL('../../src/sys/libc.js', import.meta.url));
    const script = `
      import { DENIED_SYSCALLS, ${filter} } from ${JSON.stringify(seccomp)};
      import koffi from 'koffi';
      import { mkdtempSync, rmSync } from 'node:fs';
      import { tmpdir } from 'node:os';
      import { execFileSync } from 'node:child_process';
      import * as libc from ${JSON.stringify(libc)};
      const raw = koffi.load('libc.so.6').func('long syscall(long nr, long a, long b, long c)');
      const rawErrno = (nr) => (raw(nr, 0, 0, 0) < 0 ? koffi.errno() : 0);
      const attempt = (f) => { try { f(); return 'allowed'; } catch (e) { return e.code ?? e.message; } };
      // What the controller does before the card starts: the listening socket, and a frontend's connection waiting on it.
      const dir = mkdtempSync(tmpdir() + '/azote-seccomp-');
      const listening = libc.listenUnix(dir + '/card.sock');
      const frontend = libc.connectUnix(dir + '/card.sock');
      libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
      ${filter}();
      const seen = {
        notRefused: Object.entries(DENIED_SYSCALLS).filter(([name, nr]) => name !== 'accept4' && rawErrno(nr) !== libc.EPERM).map(([name]) => name),
        accepted: libc.acceptNonBlocking(listening) >= 0,
        socket: attempt(() => libc.socket(libc.AF_UNIX, libc.SOCK_STREAM)),
        connect: attempt(() => libc.connectUnix(dir + '/card.sock')),
        listen: attempt(() => libc.listenUnix(dir + '/other.sock')),
        exec: attempt(() => execFileSync('/bin/true')),
      };
      libc.close(frontend);
      rmSync(dir, { recursive: true, force: true });
      console.log(JSON.stringify(seen));
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}'), {
      notRefused: [], accepted: true, socket: 'EPERM', connect: 'EPERM', listen: 'EPERM', exec: 'EPERM',
    });
  });
}
