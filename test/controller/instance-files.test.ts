// An instance's files: the root disk is built aside and appears whole or not at all (a failed build leaves nothing
// and the next launch builds again); the console and hypervisor logs are capped, rotated to .1, and
// GetConsoleOutput's newest 64 KiB reads across the rotation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CONSOLE_TAIL, InstanceFiles } from '../../src/controller/instance-files.js';
import type { ImageRecord } from '../../src/images/rootfs.js';

function image(dir: string, name: string, ext4: boolean): ImageRecord {
  const file = path.join(dir, `${name}.img`);
  writeFileSync(file, Buffer.alloc(16 * 2 ** 20, ext4 ? 0 : 0x5a));
  if (ext4) execFileSync('mkfs.ext4', ['-q', '-F', file]);
  return { name, id: 'img-0123456789abcdef', path: file, sizeMiB: 16, created: new Date().toISOString(), contents: [] };
}

test('a root disk whose build fails leaves no file; the next launch builds it whole', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-files-'));
  try {
    const files = new InstanceFiles(dir, 'i-0123456789abcdef0');
    // Not ext4: copied, grown, then refused by e2fsck.
    await assert.rejects(files.createRoot(image(dir, 'broken', false), 1), { name: 'AzoteError', code: 'RootDisk' });
    assert.equal(files.hasRoot, false);
    assert.deepEqual(readdirSync(files.dir), [], 'nothing half-built is left');
    await files.createRoot(image(dir, 'good', true), 1);
    assert.equal(files.hasRoot, true);
    assert.equal(statSync(files.root).size, 2 ** 30);
    execFileSync('e2fsck', ['-n', '-f', files.root], { stdio: 'ignore' });
    assert.deepEqual(readdirSync(files.dir), ['root.ext4']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the console log is capped and rotated to .1; the console tail reads across the rotation; a new boot starts empty', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-files-'));
  try {
    const files = new InstanceFiles(dir, 'i-0123456789abcdef0');
    const cap = 256 * 1024;
    const fd = files.openConsole();
    const log = files.openHypervisorLog();
    try {
      const line = (i: number): Buffer => Buffer.from(`line ${String(i).padStart(8, '0')}\n`);
      let i = 0;
      for (; i < 3 * cap / 14; i++) writeSync(fd, line(i));
      writeSync(log, Buffer.alloc(cap + 1, 0x61));
      files.capLogs(cap);
      assert.equal(statSync(files.console).size, 0);
      assert.ok(statSync(`${files.console}.1`).size >= cap);
      assert.equal(statSync(files.hypervisorLog).size, 0);
      // The hypervisor's descriptor writes on at the start of the emptied file (it appends).
      for (let j = 0; j < 100; j++, i++) writeSync(fd, line(i));
      assert.equal(statSync(files.console).size, 100 * 14);
      const tail = files.consoleTail();
      assert.equal(tail.length, CONSOLE_TAIL);
      assert.ok(tail.toString().endsWith(line(i - 1).toString()), 'the newest line last');
      const lines = tail.toString().split('\n').slice(1, -1);
      for (const [k, l] of lines.entries()) if (k > 0) assert.equal(Number(l.slice(5)), Number(lines[k - 1]?.slice(5)) + 1, 'no gap, no repeat');
      files.capLogs(cap);
      assert.equal(statSync(files.console).size, 100 * 14, 'under the cap: left alone');
    } finally {
      closeSync(fd);
      closeSync(log);
    }
    // A VM resumed from hibernation is the same boot: its console goes on.
    const kept = files.consoleTail();
    const resumed = files.openConsole(true);
    writeSync(resumed, 'after the resume\n');
    closeSync(resumed);
    assert.equal(files.consoleTail().toString(), `${kept.toString().slice('after the resume\n'.length)}after the resume\n`);
    closeSync(files.openConsole());
    assert.equal(existsSync(`${files.console}.1`), false, 'a new boot\'s console begins empty');
    assert.equal(files.consoleTail().length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
