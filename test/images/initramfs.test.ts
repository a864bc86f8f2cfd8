import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/base/log.js';
import { ensureBaseInitramfs } from '../../src/images/initramfs.js';
import { runRequestArchive } from '../../src/images/run-request.js';
/** Extracts the archive (or only the named entries) into a new temporary directory. */
function extract(archive: Buffer, only: string[] = []): { dir: string; files: (name: string) => string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-req-'));
  execFileSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames', ...only], { input: archive, cwd: dir });
  return { dir, files: (name) => readFileSync(path.join(dir, name), 'utf8') };
}

test('run request: arguments and environment travel NUL-separated', () => {
  const archive = runRequestArchive(['sh', '-c', 'echo "a b"; exit 7', '', 'ünï'], { FOO: 'bar baz', EMPTY: '' });
  assert.deepEqual(execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8' }).trim().split('\n'),
    ['azote/argv', 'azote/env']);
  const x = extract(archive);
  try {
    assert.equal(x.files('azote/argv'), 'sh\0-c\0echo "a b"; exit 7\0\0ünï\0', 'an empty argument survives');
    assert.equal(x.files('azote/env'), 'FOO=bar baz\0EMPTY=\0');
  } finally {
    rmSync(x.dir, { recursive: true, force: true });
  }
});

test('run request: shell mode has no azote/argv', () => {
  assert.equal(execFileSync('cpio', ['-t', '--quiet'], { input: runRequestArchive(undefined), encoding: 'utf8' }), '',
    'no command and no environment: an empty archive');
  assert.equal(execFileSync('cpio', ['-t', '--quiet'], { input: runRequestArchive(undefined, { A: '1' }),
    encoding: 'utf8' }), 'azote/env\n');
});

test('run request: what the guest cannot carry is refused', () => {
  assert.throws(() => runRequestArchive(['a\0b']), /NUL/);
  assert.throws(() => runRequestArchive([]), /empty/);
  assert.throws(() => runRequestArchive(['true'], { 'A=B': 'x' }), /name/);
  assert.throws(() => runRequestArchive(['true'], { '': 'x' }), /name/);
  assert.throws(() => runRequestArchive(['true'], { A: 'x\0y' }), /NUL/);
});

test('base initramfs: init, busybox and the links scripts name, device nodes, directories before their contents',
  async () => {
    const image = await ensureBaseInitramfs(silentLogger);
    const archive = readFileSync(image);
    const listing = execFileSync('cpio', ['-tv', '--quiet'], { input: archive, encoding: 'utf8', maxBuffer: 16 << 20 });
    assert.match(listing, /^-rwxr-xr-x .* init$/m);
    assert.match(listing, /^-rwxr-xr-x .* bin\/busybox$/m);
    assert.match(listing, /^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m);
    assert.match(listing, /^lrwxrwxrwx .* usr\/bin\/env -> \/bin\/busybox$/m);
    assert.match(listing, /^crw------- .* 5, +1 .* dev\/console$/m);
    assert.match(listing, /^crw-rw-rw- .* 1, +3 .* dev\/null$/m);
    assert.match(listing, /^crw-rw---- .* 4, +64 .* dev\/ttyS0$/m);
    assert.match(listing, /^drwxrwxrwt .* tmp$/m);
    for (const d of ['proc', 'sys', 'run', 'root', 'etc', 'mnt', 'azote', 'usr/bin', 'usr/sbin', 'sbin']) {
      assert.match(listing, new RegExp(`^d[rwx-]{9} .* ${d}$`, 'm'), `directory ${d}`);
    }
    assert.doesNotMatch(listing, / linuxrc /);
    assert.equal(listing.match(/^l/gm)?.length, 2, 'no other applet links: the busybox shell and init find applets');

    // Linux's unpacker does not create parents: each entry's directory must come earlier in the archive.
    const names = execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8', maxBuffer: 16 << 20 })
      .trim().split('\n');
    const seen = new Set<string>();
    for (const n of names) {
      const parent = path.posix.dirname(n);
      assert.ok(parent === '.' || seen.has(parent), `${n} comes after its directory ${parent}`);
      assert.ok(!seen.has(n), `${n} appears once`);
      seen.add(n);
    }

    // Not the device nodes: creating them needs privileges the test may not have.
    const x = extract(archive, ['etc/passwd', 'etc/group', 'etc/hostname', 'init']);
    try {
      assert.equal(x.files('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
      assert.equal(x.files('etc/group'), 'root:x:0:\n');
      assert.equal(x.files('etc/hostname'), 'azote\n');
      const elf = readFileSync(path.join(x.dir, 'init'));
      assert.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF', '/init is an ELF program');
      assert.equal(elf.readUInt16LE(18), 62, '/init is x86-64');
    } finally {
      rmSync(x.dir, { recursive: true, force: true });
    }
    assert.equal(await ensureBaseInitramfs(silentLogger), image, 'a second call reuses the cached image');
  });
