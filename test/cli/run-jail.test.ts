// `azote run`'s hypervisor runs in the controller's jail: seen from the host while a VM runs (its uid, seccomp,
// no_new_privs, namespaces and root), as root and in a user namespace without root; unjailed and silent with --no-jail, and when the jail cannot be made, one line
// says so (the decision tested with its inputs). A hypervisor killed with SIGKILL gives the terminal back and azote
// exits 125 with one line. The functional tests (test/functional/) run `azote run` jailed by default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JAIL_UID_BASE } from '../../src/controller/jail.js';
import { defaultDataDir } from '../../src/controller/data-dir.js';
import { projectRoot } from '../../src/images/paths.js';
import { chooseJail } from '../../src/cli/run-jail.js';
import { searchableByOthers } from '../framework/other-user.js';
import { requireKvm, skipLoudly } from '../framework/kvm.js';
import { testGuest } from '../framework/microvm.js';
import { nodePidsWith, procStatus, rootTree, until } from '../framework/processes.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-run-jail-'));
chmodSync(dir, 0o755); // the test without root runs azote as another user, who reads the initramfs here
const emptyInitrd = path.join(dir, 'empty.cpio');
writeFileSync(emptyInitrd, '');
test.after(() => rmSync(dir, { recursive: true, force: true }));

const AZOTE = path.join(projectRoot(), 'bin', 'azote.js');
/** A test guest that prints "halting" and then waits with interrupts on: a VM that runs until stopped. */
const HALTING = ['--kernel', testGuest('hello'), '--initrd', emptyInitrd, '--cmdline', 'halt', '--', 'true'];

test('the jail decision: --no-jail says nothing; root always jails; without root, user namespaces decide, and one line says why not', () => {
  let probed = 0;
  const probe = (why: string | undefined) => (): string | undefined => {
    probed++;
    return why;
  };
  assert.deepEqual(chooseJail({ noJail: true, root: true, userNamespaces: probe(undefined) }), { jail: false, notice: undefined });
  assert.deepEqual(chooseJail({ noJail: true, root: false, userNamespaces: probe('no') }), { jail: false, notice: undefined });
  assert.deepEqual(chooseJail({ noJail: false, root: true, userNamespaces: probe('no') }), { jail: true });
  assert.equal(probed, 0, 'nothing is probed where it does not matter');
  assert.deepEqual(chooseJail({ noJail: false, root: false, userNamespaces: probe(undefined) }), { jail: true });
  const refused = chooseJail({ noJail: false, root: false, userNamespaces: probe('unshare: unshare failed: Operation not permitted') });
  assert.equal(refused.jail, false);
  const notice = refused.jail ? '' : refused.notice ?? '';
  assert.match(notice, /^azote: running without a jail: .*\(unshare: unshare failed: Operation not permitted\) \(run as root, or .*\)$/);
  assert.ok(!notice.includes('\n'), 'one line');
});

/** `azote run ARGS` with its output gathered; resolves once `ready` matches its stdout. */
function start(args: string[], prefix: string[] = [], env: Record<string, string> = {}): {
  child: ChildProcess; out: () => string; err: () => string; ready: (re: RegExp) => Promise<void>; exit: Promise<number | null>;
} {
  const [command = process.execPath, ...rest] = [...prefix, process.execPath, AZOTE, 'run', ...args];
  const child = spawn(command, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AZOTE_LOG_LEVEL: 'warn', ...env } });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { out += s; });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { err += s; });
  let ended = false;
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => {
    ended = true;
    resolve(code);
  }));
  // Only detects a hang: a boot under this nested KVM can take minutes when the host is busy.
  const limit = setTimeout(() => child.kill('SIGKILL'), 300_000);
  void exit.then(() => clearTimeout(limit));
  return {
    child, out: () => out, err: () => err, exit,
    ready: (re) => until(`azote run's output to match ${re}`, () => {
      if (re.test(out)) return true;
      return ended ? assert.fail(`azote run ended first: ${err}`) : undefined;
    }, { tries: 3000, everyMs: 100 }).then(() => undefined),
  };
}

/** The hypervisor node process of the `azote run` whose pid is `azotePid` (its entry is named after it). */
function hypervisorOf(azotePid: number): Promise<number> {
  return until('the hypervisor process', () => nodePidsWith('instance-main.js', `run-${azotePid}`)[0], { tries: 100, everyMs: 100 });
}

const NAMESPACES = ['pid', 'net', 'ipc', 'mnt', 'uts'];
/** The user without root the test turns into. */
const NOBODY = 65534;

test('azote run: the hypervisor is jailed: its own uid, seccomp, no_new_privs, namespaces and a root that holds only its code', { timeout: 400_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const run = start(HALTING);
  try {
    await run.ready(/halting/);
    const pid = await hypervisorOf(run.child.pid ?? 0);
    assert.equal(procStatus(pid, 'Seccomp'), '2', 'a seccomp filter');
    assert.equal(procStatus(pid, 'NoNewPrivs'), '1');
    assert.equal(procStatus(pid, 'CapEff'), '0000000000000000', 'no capabilities');
    const uid = Number(procStatus(pid, 'Uid').split(/\s+/)[0]);
    if (process.getuid?.() === 0) assert.ok(uid >= JAIL_UID_BASE, `a jail uid, not ${uid}`);
    for (const ns of NAMESPACES) assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `its own ${ns} namespace`);
    const staged = path.join(defaultDataDir(), 'run', `hypervisor-${run.child.pid}`);
    const tree = rootTree(`/proc/${pid}/root`, '/proc');
    assert.ok(tree.includes(`${staged}/dist/src/hypervisor/instance-main.js`), 'its code, copied for the run');
    assert.ok(tree.includes(process.execPath), 'node');
    for (const absent of ['/etc', '/dev', '/home', '/sys', '/tmp', projectRoot(), emptyInitrd, '/dev/kvm']) {
      assert.ok(!tree.includes(absent), `${absent} is not in its root`);
    }
    assert.deepEqual(tree.filter((p) => !['/.old', '/proc', '/lib', '/lib64', '/usr', process.execPath].some((k) => p === k || p.startsWith(`${k}/`))
      && !staged.startsWith(p) && !p.startsWith(staged)), [], 'nothing else: node, its libraries, the code');
    run.child.kill('SIGINT');
    assert.equal(await run.exit, 130, run.err());
    assert.ok(!existsSync(staged), 'the copy of its code goes with the run');
  } finally {
    run.child.kill('SIGKILL');
  }
});

test('azote run without root: the hypervisor is jailed in a user namespace of its own', { timeout: 400_000 }, async (t) => {
  if (!requireKvm(t)) return;
  if (process.getuid?.() !== 0) {
    skipLoudly(t, 'the test turns into another user, which needs root');
    return;
  }
  // Another user, who may open /dev/kvm (CAP_DAC_OVERRIDE, as a member of its group would) and nothing more.
  const home = path.join(dir, 'home');
  mkdirSync(home);
  chownSync(home, NOBODY, NOBODY);
  const restore = searchableByOthers(AZOTE, home);
  const run = start(HALTING, ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=+dac_override',
    '--ambient-caps=+dac_override', '--'], { HOME: home });
  try {
    await run.ready(/halting/);
    const pid = await hypervisorOf(run.child.pid ?? 0);
    assert.equal(procStatus(pid, 'Uid').split(/\s+/)[0], String(NOBODY), 'the user\'s own uid, seen from the host');
    assert.equal(procStatus(pid, 'Seccomp'), '2');
    assert.equal(procStatus(pid, 'NoNewPrivs'), '1');
    for (const ns of ['user', ...NAMESPACES]) assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `its own ${ns} namespace`);
    run.child.kill('SIGINT');
    assert.equal(await run.exit, 130, run.err());
    assert.equal(run.err(), '', 'jailed: nothing to say');
  } finally {
    restore();
    run.child.kill('SIGKILL');
  }
});

test('azote run --no-jail: the hypervisor runs in this user\'s namespaces, and nothing is said', { timeout: 400_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const run = start(['--no-jail', ...HALTING]);
  try {
    await run.ready(/halting/);
    const pid = await hypervisorOf(run.child.pid ?? 0);
    for (const ns of NAMESPACES) assert.equal(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `the host's ${ns} namespace`);
    assert.equal(procStatus(pid, 'Uid').split(/\s+/)[0], String(process.getuid?.()));
    assert.equal(readlinkSync(`/proc/${pid}/root`), '/');
    run.child.kill('SIGINT');
    assert.equal(await run.exit, 130);
    assert.equal(run.err(), '', 'no notice: the user asked for it');
  } finally {
    run.child.kill('SIGKILL');
  }
});

test('a hypervisor killed with SIGKILL: the terminal is given back and azote exits 125 with one line', { timeout: 400_000 }, async (t) => {
  if (!requireKvm(t)) return;
  // A terminal for azote (script(1) gives it a pty); its settings before and after, taken inside it.
  const before = path.join(dir, 'stty-before'), after = path.join(dir, 'stty-after'), status = path.join(dir, 'status');
  const inner = `stty -g > ${before}; ${[process.execPath, AZOTE, 'run', ...HALTING].map((a) => `'${a}'`).join(' ')}; echo $? > ${status}; stty -g > ${after}`;
  const run: ChildProcess = spawn('script', ['-qec', inner, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, AZOTE_LOG_LEVEL: 'warn' } });
  let out = '';
  run.stdout?.setEncoding('utf8').on('data', (s: string) => { out += s; });
  try {
    await until('the guest to halt', () => (/halting/.test(out) ? true : undefined), { tries: 3000, everyMs: 100 });
    const azotePid = await until('azote', () => nodePidsWith(AZOTE, 'run', testGuest('hello'))[0], { tries: 100, everyMs: 100 });
    assert.notEqual(readFileSync(before, 'utf8'), '', 'the terminal\'s settings were taken');
    process.kill(await hypervisorOf(azotePid), 'SIGKILL');
    await new Promise((resolve) => run.on('close', resolve));
    assert.equal(readFileSync(status, 'utf8').trim(), '125', out);
    assert.match(out, /azote: the hypervisor was killed \(SIGKILL\) before its VM did \(the guest is gone; run it again\)/);
    assert.doesNotMatch(out, /sigprocmask/, 'unshare\'s own complaint is explained, not passed on');
    assert.equal(readFileSync(after, 'utf8'), readFileSync(before, 'utf8'), 'the terminal is as it was (not raw)');
  } finally {
    run.kill('SIGKILL');
  }
});
