import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CpioWriter, NEWC_FIELDS, NEWC_HEADER_SIZE, newcFieldOffset, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG,
  type NewcField,
} from '../../src/images/cpio.js';
interface Entry {
  readonly offset: number;
  readonly name: string;
  readonly fields: Record<NewcField, number>;
  readonly dataOffset: number;
  readonly data: Buffer;
}

/** A minimal newc reader, independent of the writer, that also checks the alignment rules. */
function parse(a: Buffer): Entry[] {
  const out: Entry[] = [];
  let off = 0;
  for (;;) {
    assert.equal(off % 4, 0, `entry at ${off} is 4-byte aligned`);
    assert.equal(a.subarray(off, off + 6).toString('ascii'), '070701', `magic at ${off}`);
    const fields = {} as Record<NewcField, number>;
    for (const f of NEWC_FIELDS) {
      const text = a.subarray(off + newcFieldOffset(f), off + newcFieldOffset(f) + 8).toString('ascii');
      assert.match(text, /^[0-9a-f]{8}$/, `${f} is 8 hex digits`);
      fields[f] = parseInt(text, 16);
    }
    const nameEnd = off + NEWC_HEADER_SIZE + fields.namesize;
    assert.equal(a[nameEnd - 1], 0, 'the name ends with NUL');
    const name = a.subarray(off + NEWC_HEADER_SIZE, nameEnd - 1).toString('utf8');
    const dataOffset = nameEnd + ((4 - (nameEnd % 4)) % 4);
    assert.ok(a.subarray(nameEnd, dataOffset).every((b) => b === 0), 'name padding is zeros');
    const data = a.subarray(dataOffset, dataOffset + fields.filesize);
    const end = dataOffset + fields.filesize;
    const next = end + ((4 - (end % 4)) % 4);
    assert.ok(a.subarray(end, next).every((b) => b === 0), 'data padding is zeros');
    out.push({ offset: off, name, fields, dataOffset, data });
    off = next;
    if (name === 'TRAILER!!!') break;
  }
  assert.equal(off, a.length, 'nothing after the trailer');
  return out;
}

test('cpio newc: header fields sit at their documented offsets and widths', () => {
  assert.equal(NEWC_HEADER_SIZE, 110);
  const documented: Array<[NewcField, number]> = [
    ['ino', 6], ['mode', 14], ['uid', 22], ['gid', 30], ['nlink', 38], ['mtime', 46], ['filesize', 54],
    ['devmajor', 62], ['devminor', 70], ['rdevmajor', 78], ['rdevminor', 86], ['namesize', 94], ['check', 102],
  ];
  assert.deepEqual(NEWC_FIELDS.map((f) => [f, newcFieldOffset(f)]), documented);

  const a = new CpioWriter().file('hello', Buffer.from('abc'), 0o640, 0x5f5e100).finish();
  const text = (from: number, len = 8): string => a.subarray(from, from + len).toString('ascii');
  assert.equal(text(0, 6), '070701');
  assert.equal(text(6), '00000001', 'ino: the first entry is 1');
  assert.equal(text(14), '000081a0', 'mode: S_IFREG | 0640');
  assert.equal(text(22), '00000000', 'uid 0');
  assert.equal(text(30), '00000000', 'gid 0');
  assert.equal(text(38), '00000001', 'nlink 1: no hard links');
  assert.equal(text(46), '05f5e100', 'mtime as given');
  assert.equal(text(54), '00000003', 'filesize');
  assert.equal(text(78), '00000000', 'rdevmajor');
  assert.equal(text(94), '00000006', 'namesize counts the NUL');
  assert.equal(text(102), '00000000', 'check');
  assert.equal(text(110, 6), 'hello\0');
  // 110 + 6 = 116 is aligned: the data follows at once, then one byte of padding, then the trailer.
  assert.equal(text(116, 3), 'abc');
  assert.equal(a[119], 0);
  assert.equal(text(120, 6), '070701');
  assert.equal(text(120 + 6), '00000000', 'the trailer has ino 0');
  assert.equal(a.subarray(120 + 110, 120 + 110 + 11).toString('ascii'), 'TRAILER!!!\0');
  assert.equal(a.length % 4, 0);
});

test('cpio newc: every name and data length is padded to 4 bytes; inodes are sequential; mtime defaults to 0', () => {
  const w = new CpioWriter();
  // Name lengths 1..8 (with NUL 2..9) and data lengths 0..7 cover every padding case.
  for (let i = 1; i <= 8; i++) w.file('f'.repeat(i), Buffer.alloc(i - 1, 0x41 + i));
  w.dir('d').symlink('d/l', 'target').charDevice('d/c', 5, 1).blockDevice('d/b', 8, 3, 0o660);
  const entries = parse(w.finish());
  assert.equal(entries.length, 13);
  entries.slice(0, 8).forEach((e, i) => {
    assert.equal(e.name, 'f'.repeat(i + 1));
    assert.deepEqual(e.data, Buffer.alloc(i, 0x42 + i));
    assert.equal(e.fields.mode, S_IFREG | 0o644);
    assert.equal(e.fields.mtime, 0);
  });
  assert.deepEqual(entries.map((e) => e.fields.ino), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0]);
  const [dir, link, chr, blk] = entries.slice(8);
  assert.equal(dir?.fields.mode, S_IFDIR | 0o755);
  assert.equal(dir?.fields.nlink, 2);
  assert.equal(link?.fields.mode, S_IFLNK | 0o777);
  assert.equal(link?.data.toString(), 'target', 'a symlink stores its target as data, without NUL');
  assert.equal(chr?.fields.mode, S_IFCHR | 0o600);
  assert.deepEqual([chr?.fields.rdevmajor, chr?.fields.rdevminor, chr?.fields.filesize], [5, 1, 0]);
  assert.equal(blk?.fields.mode, S_IFBLK | 0o660);
  assert.deepEqual([blk?.fields.rdevmajor, blk?.fields.rdevminor], [8, 3]);
  for (const e of entries) assert.deepEqual([e.fields.uid, e.fields.gid, e.fields.devmajor, e.fields.check], [0, 0, 0, 0]);
});

test('cpio newc: an empty archive is just the trailer', () => {
  const a = new CpioWriter().finish();
  assert.equal(a.length, 124); // 110 + 11 ("TRAILER!!!\0") + 3 of padding
  assert.deepEqual(parse(a).map((e) => e.name), ['TRAILER!!!']);
});

test('cpio newc: the host cpio lists and extracts what we wrote', () => {
  const script = Buffer.from('#!/bin/sh\necho hi\n');
  const odd = Buffer.alloc(4097, 7);
  const archive = new CpioWriter()
    .dir('bin').dir('/etc', 0o700).dir('dev')
    .file('bin/script', script, 0o755).file('etc/odd', odd, 0o600).file('etc/empty', new Uint8Array(0))
    .symlink('bin/sh', '/bin/busybox').symlink('etc/rel', '../bin/script')
    .charDevice('dev/console', 5, 1).charDevice('dev/ttyS0', 4, 64, 0o660)
    .finish();
  const listing = execFileSync('cpio', ['-t', '--quiet'], { input: archive, encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listing, ['bin', 'etc', 'dev', 'bin/script', 'etc/odd', 'etc/empty', 'bin/sh', 'etc/rel',
    'dev/console', 'dev/ttyS0']);
  const verbose = execFileSync('cpio', ['-tv', '--quiet'], { input: archive, encoding: 'utf8' });
  assert.match(verbose, /^drwx------ .* etc$/m);
  assert.match(verbose, /^-rwxr-xr-x .* bin\/script$/m);
  assert.match(verbose, /^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m);
  assert.match(verbose, /^crw------- .* 5, +1 .* dev\/console$/m);
  assert.match(verbose, /^crw-rw---- .* 4, +64 .* dev\/ttyS0$/m);

  const dir = mkdtempSync(path.join(tmpdir(), 'azote-cpio-'));
  try {
    // Without device nodes: creating them needs privileges the test may not have.
    const noDevices = new CpioWriter()
      .dir('bin').dir('etc', 0o700)
      .file('bin/script', script, 0o755).file('etc/odd', odd, 0o600).file('etc/empty', new Uint8Array(0))
      .symlink('bin/sh', '/bin/busybox').symlink('etc/rel', '../bin/script')
      .finish();
    execFileSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { input: noDevices, cwd: dir });
    assert.deepEqual(readFileSync(path.join(dir, 'bin/script')), script);
    assert.deepEqual(readFileSync(path.join(dir, 'etc/odd')), odd);
    assert.equal(readFileSync(path.join(dir, 'etc/empty')).length, 0);
    assert.equal(lstatSync(path.join(dir, 'bin/script')).mode & 0o7777, 0o755);
    assert.equal(lstatSync(path.join(dir, 'etc/odd')).mode & 0o7777, 0o600);
    assert.equal(lstatSync(path.join(dir, 'etc')).mode & 0o7777, 0o700);
    assert.equal(lstatSync(path.join(dir, 'bin/script')).mtimeMs, 0, 'mtime 0 kept by -m');
    assert.ok(lstatSync(path.join(dir, 'bin/sh')).isSymbolicLink());
    assert.equal(readlinkSync(path.join(dir, 'bin/sh')), '/bin/busybox');
    assert.equal(readlinkSync(path.join(dir, 'etc/rel')), '../bin/script');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cpio newc: unsafe or malformed entries are refused with a clear error', () => {
  const w = new CpioWriter();
  const bad = (f: () => unknown, re: RegExp): void => assert.throws(f, (e: Error) => {
    assert.equal(e.name, 'AzoteError');
    assert.match(e.message, re);
    return true;
  });
  bad(() => w.file('../escape', Buffer.alloc(1)), /invalid path .*"\.\." component/);
  bad(() => w.file('a/../../b', Buffer.alloc(1)), /"\.\." component/);
  bad(() => w.file('a/./b', Buffer.alloc(1)), /"\." component/);
  bad(() => w.file('', Buffer.alloc(1)), /empty/);
  bad(() => w.file('/', Buffer.alloc(1)), /empty/);
  bad(() => w.dir('a//b'), /empty component/);
  bad(() => w.dir('a/'), /empty component/);
  bad(() => w.file('a\0b', Buffer.alloc(1)), /NUL/);
  bad(() => w.file('TRAILER!!!', Buffer.alloc(1)), /end-of-archive/);
  bad(() => w.file('x'.repeat(5000), Buffer.alloc(1)), /longer than/);
  bad(() => w.symlink('x', ''), /symlink target/);
  bad(() => w.symlink('x', 'a\0b'), /symlink target/);
  bad(() => w.file('m', Buffer.alloc(1), 0o100644), /permissions/);
  bad(() => w.charDevice('c', -1, 0), /major/);
  w.file('/leading/slash/ok', Buffer.alloc(1));
  bad(() => w.file('leading/slash/ok', Buffer.alloc(1)), /duplicate/);
  const entries = parse(w.finish());
  assert.deepEqual(entries.map((e) => e.name), ['leading/slash/ok', 'TRAILER!!!'], 'refused entries leave no trace');
  assert.throws(() => w.dir('late'), /finished/);
});
