// What a user gets when something is wrong: one line naming the cause and the fix, and status 125.
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AzoteError } from '../../src/base/errors.js';
import { silentLogger } from '../../src/base/log.js';
import { MicroVm } from '../../src/hypervisor/vm.js';
import { projectRoot } from '../../src/images/paths.js';
import { azote } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';
import { testGuest } from '../framework/microvm.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-cli-'));
const emptyInitrd = path.join(dir, 'empty.cpio');
writeFileSync(emptyInitrd, '');
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Exactly one line on stderr, "azote: ...", matching `cause`, and the status of an Azote failure. */
function assertOneLineError(r: { status: number | null; stderr: string; stdout: string }, cause: RegExp): void {
  assert.equal(r.status, 125, `status (stderr: ${r.stderr})`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0] ?? '', /^azote: /);
  assert.match(lines[0] ?? '', cause);
}

test('a kernel path that does not exist', async () => {
  assertOneLineError(await azote(['run', '--kernel', path.join(dir, 'nope'), '--initrd', emptyInitrd, '--', 'true']),
    /cannot read the kernel .*nope: no such file: check the --kernel path/);
});

test('a file that is not a kernel', async (t) => {
  if (!requireKvm(t)) return;
  const notKernel = path.join(dir, 'passwd');
  writeFileSync(notKernel, 'root:x:0:0:root:/root:/bin/sh\n'.repeat(200));
  assertOneLineError(await azote(['run', '--kernel', notKernel, '--initrd', emptyInitrd, '--', 'true']),
    /is not a kernel.*pass a bzImage or an uncompressed vmlinux/);
});

test('more memory than the host can give', async () => {
  assertOneLineError(await azote(['run', '--kernel', testGuest('exit'), '--initrd', emptyInitrd, '--mem', '100000000', '--', 'true']),
    /--mem 100000000 MiB is more than this host can give \(\d+ MiB available\): use --mem \d+ or less/);
});

test('an initrd that does not fit in guest memory', async (t) => {
  if (!requireKvm(t)) return;
  const big = path.join(dir, 'big.cpio');
  writeFileSync(big, Buffer.alloc(80 << 20));
  assertOneLineError(await azote(['run', '--kernel', testGuest('exit'), '--initrd', big, '--mem', '64', '--', 'true']),
    /the initrd \(\d+ bytes\) does not fit in guest memory .*: give the VM more memory \(--mem \d+ or more\)/);
});

test('a missing /dev/kvm names the cause and the fix', () => {
  assert.throws(
    () => new MicroVm({ kernel: new Uint8Array(0), cmdline: '', vcpus: 1, memoryMiB: 64, log: silentLogger,
      output: () => undefined, kvmDevice: path.join(dir, 'kvm') }),
    (e: unknown) => e instanceof AzoteError && e.code === 'NoKvm'
      && /kvm does not exist: run on a Linux host with KVM enabled/.test(e.oneLine()),
  );
});

test('a malformed --env', async () => {
  assertOneLineError(await azote(['run', '--kernel', testGuest('exit'), '--initrd', emptyInitrd, '-e', 'NOVALUE', '--', 'true']),
    /--env NOVALUE is not KEY=VALUE/);
});

test('Ctrl-C on the host stops the VM cleanly with status 130', async (t) => {
  if (!requireKvm(t)) return;
  const child = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'run', '--kernel', testGuest('hello'),
    '--initrd', emptyInitrd, '--cmdline', 'halt', '--vcpus', '2', '--', 'true'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const status = await new Promise<number | null>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (/halting/.test(out)) child.kill('SIGINT');
    });
    child.on('close', (code) => resolve(code));
  });
  assert.equal(status, 130, out);
});
