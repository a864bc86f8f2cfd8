// `azote run` on SIGTERM asks the guest to shut down: Azote's init ends the command, syncs and unmounts its disks,
// and powers off with 128 + SIGTERM, which `azote run` exits with; a file written without sync is on the disk. A
// guest that does not answer (a test guest has no init) is stopped hard after the grace time, as Ctrl-C would (130).
import { test } from 'node:test';
import { execFileSync, spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/images/paths.js';
import { requireKvm } from '../framework/kvm.js';
import { testGuest } from '../framework/microvm.js';

/** Runs `azote run ARGS`, sends SIGTERM once its output matches `ready`; its status and output. */
function terminateWhen(args: string[], ready: RegExp): Promise<{ status: number | null; out: string }> {
  const child = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let sent = false;
  // Only detects a hang: a boot under this nested KVM can take minutes when the host is busy.
  const limit = setTimeout(() => child.kill('SIGKILL'), 600_000);
  return new Promise((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (!sent && ready.test(out)) {
        sent = true;
        child.kill('SIGTERM');
      }
    });
    child.on('close', (status) => {
      clearTimeout(limit);
      resolve({ status, out });
    });
  });
}

test('SIGTERM: the guest shuts down, a file it wrote without sync is on its disk, and azote run exits with 143', { timeout: 700_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-run-'));
  try {
    const disk = path.join(dir, 'disk.ext4');
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', disk, '16M']);
    const r = await terminateWhen(['--disk', disk, '--', 'sh', '-c',
      'mkdir -p /mnt && mount /dev/vda /mnt && echo written-without-sync > /mnt/kept && echo command-ready && exec sleep 100000'], /command-ready/);
    assert.match(r.out, /azote-init: the host asked to shut down: the system is powering off/);
    assert.equal(r.status, 143, r.out);
    assert.equal(execFileSync('debugfs', ['-R', 'cat /kept', disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), 'written-without-sync\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM: a guest that does not shut down is stopped after the grace time (status 130)', { timeout: 700_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-run-'));
  try {
    const emptyInitrd = path.join(dir, 'empty.cpio');
    writeFileSync(emptyInitrd, '');
    const r = await terminateWhen(['--kernel', testGuest('hello'), '--initrd', emptyInitrd, '--cmdline', 'halt', '--', 'true'], /halting/);
    assert.equal(r.status, 130, r.out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
