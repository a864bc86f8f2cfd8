// The jail's root, without a VM: how host paths are mirrored into it (links as links, the rest bound), and a process
// started by jailCommand sees only what the jail holds, as its own uid, with the host's root gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jailCommand, JAIL_UID_BASE, memlockLimit, mirrorSteps } from '../../src/controller/jail.js';
import { lddLibraries } from '../../src/controller/shared-libraries.js';
import { skipLoudly } from '../framework/kvm.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-jail-root-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('mirror steps: each link on the way is recreated, what the path names is bound', () => {
  const base = path.join(dir, 'mirror');
  mkdirSync(path.join(base, 'real', 'lib'), { recursive: true });
  writeFileSync(path.join(base, 'real', 'lib', 'libx.so.1.2'), 'x');
  symlinkSync('libx.so.1.2', path.join(base, 'real', 'lib', 'libx.so.1'));
  symlinkSync('real', path.join(base, 'usr'));
  assert.deepEqual(mirrorSteps(path.join(base, 'usr', 'lib', 'libx.so.1')), [
    { kind: 'link', at: path.join(base, 'usr'), target: 'real' },
    { kind: 'link', at: path.join(base, 'real', 'lib', 'libx.so.1'), target: 'libx.so.1.2' },
    { kind: 'file', at: path.join(base, 'real', 'lib', 'libx.so.1.2') },
  ]);
  assert.deepEqual(mirrorSteps(path.join(base, 'real')), [{ kind: 'dir', at: path.join(base, 'real') }]);
  assert.ok(lddLibraries(process.execPath).some((l) => /ld-linux|libc\.so/.test(l)), 'node\'s libraries are found');
  assert.deepEqual(lddLibraries(path.join(base, 'real', 'lib', 'libx.so.1.2')), [], 'a file ldd cannot read loads nothing');
});

test('a jailed process: its own uid, a read-only root holding only node, setpriv, their libraries and its component', (t) => {
  if (process.getuid?.() !== 0) {
    skipLoudly(t, 'the jail as root needs root; without it the controller uses a user namespace');
    return;
  }
  // The component: a directory with an entry that reports what it sees.
  const component = path.join(dir, 'component');
  mkdirSync(component, { recursive: true });
  const entry = path.join(component, 'probe.cjs');
  writeFileSync(entry, `const fs = require('fs');
const tryWrite = () => { try { fs.writeFileSync('/x', ''); return 'written'; } catch (e) { return e.code; } };
console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), top: fs.readdirSync('/').sort(), old: fs.readdirSync('/.old'),
  bins: fs.readdirSync('/usr/bin').sort(), write: tryWrite(), dataGone: !fs.existsSync(${JSON.stringify(fileURLToPath(import.meta.url))}),
  args: process.argv.slice(2) }));`);
  const mountPoint = path.join(dir, 'root');
  mkdirSync(mountPoint);
  const { command, args } = jailCommand({ mountPoint, componentDir: component, entry, args: ['--instance', 'i-1'], cores: [0], uid: JAIL_UID_BASE + 7,
    cgroupProcs: [], lockedMemory: memlockLimit(64 * 2 ** 20) });
  const r = spawnSync(command, args, { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  assert.equal(r.status, 0, r.stderr);
  const seen = JSON.parse(r.stdout) as Record<string, unknown>;
  const top = (seen.top as string[]).filter((n) => !['.old', 'proc', 'usr', 'lib', 'lib64', 'bin'].includes(n));
  assert.deepEqual(top, [dir.split('/')[1]], 'besides the system directories, only the way to the component');
  assert.deepEqual({ ...seen, top: undefined }, {
    uid: JAIL_UID_BASE + 7, gid: JAIL_UID_BASE + 7, top: undefined, old: [], bins: ['node', 'setpriv'], write: 'EROFS', dataGone: true,
    args: ['--instance', 'i-1'],
  });
});

test('a jail keeps no capability at all, or CAP_IPC_LOCK alone where its secret guest memory must be locked', () => {
  const component = path.join(dir, 'caps');
  mkdirSync(component, { recursive: true });
  const entry = path.join(component, 'entry.js');
  writeFileSync(entry, '');
  const setpriv = (ipcLock: boolean): string[] => {
    const { args } = jailCommand({ mountPoint: path.join(dir, 'caps-root'), componentDir: component, entry, args: [], cores: [0], uid: JAIL_UID_BASE + 9,
      cgroupProcs: [], lockedMemory: { bytes: 0, ipcLock } });
    // The setpriv that runs the entry: its capability options come just before --no-new-privs.
    const end = args.indexOf('--no-new-privs');
    assert.ok(end > 0);
    return args.slice(end - 3, end).filter((a) => /caps|bounding/.test(a));
  };
  assert.deepEqual(setpriv(false), ['--inh-caps=-all', '--bounding-set=-all']);
  // Measured with these options from root to an unprivileged uid: CapEff 0x4000 in the child, and a 64 MiB
  // memfd_secret mapped under an 8 MiB RLIMIT_MEMLOCK.
  assert.deepEqual(setpriv(true), ['--inh-caps=-all,+ipc_lock', '--ambient-caps=+ipc_lock', '--bounding-set=-all,+ipc_lock']);
});
