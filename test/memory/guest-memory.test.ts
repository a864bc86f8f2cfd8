import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as libc from '../../src/sys/libc.js';
import { GiB, GuestMemory, GuestMemoryError, MiB, planRegions } from '../../src/memory/guest-memory.js';

test('regions: RAM above 3 GiB moves above 4 GiB', () => {
  assert.deepEqual(planRegions(512 * MiB), [{ gpa: 0, size: 512 * MiB, offset: 0 }]);
  assert.deepEqual(planRegions(5 * GiB), [
    { gpa: 0, size: 3 * GiB, offset: 0 },
    { gpa: 4 * GiB, size: 2 * GiB, offset: 3 * GiB },
  ]);
});

test('guest memory: checked reads and writes by guest address', () => {
  const mem = GuestMemory.create(2 * MiB);
  try {
    mem.writeU32(0x1000, 0xdeadbeef);
    assert.equal(mem.readU32(0x1000), 0xdeadbeef);
    mem.write(2 * MiB - 4, Uint8Array.of(1, 2, 3, 4));
    assert.deepEqual([...mem.read(2 * MiB - 4, 4)], [1, 2, 3, 4]);
    assert.throws(() => mem.readU32(2 * MiB - 2), GuestMemoryError);
    assert.throws(() => mem.write(2 * MiB, Uint8Array.of(1)), GuestMemoryError);
    assert.throws(() => mem.slice(-1, 4), GuestMemoryError);
    assert.throws(() => mem.slice(0, Number.MAX_SAFE_INTEGER), GuestMemoryError);
    assert.throws(() => mem.readU8(Number.NaN), GuestMemoryError);
    assert.equal(mem.contains(0, 2 * MiB), true);
    assert.equal(mem.contains(1, 2 * MiB), false);
  } finally {
    mem.close();
  }
});

test('guest memory: a second view of the same memfd sees the same bytes', () => {
  const mem = GuestMemory.create(MiB);
  try {
    const other = GuestMemory.attach(mem.share());
    mem.writeU64(0x100, 0x1122334455667788n);
    assert.equal(other.readU64(0x100), 0x1122334455667788n);
  } finally {
    mem.close();
  }
});

test('guest memory: sizes that are not whole pages are refused', () => {
  assert.throws(() => GuestMemory.create(1000), /multiple of 4096/);
  assert.throws(() => GuestMemory.create(0), /multiple of 4096/);
});

test('guest memory: its memfd is sealed at its size (cannot shrink, grow, or lose its seals)', () => {
  const mem = GuestMemory.create(MiB);
  try {
    assert.equal(libc.fileSeals(mem.fd), libc.F_SEAL_SHRINK | libc.F_SEAL_GROW | libc.F_SEAL_SEAL);
    assert.throws(() => libc.ftruncate(mem.fd, 4096), /EPERM/);
    assert.throws(() => libc.ftruncate(mem.fd, 2 * MiB), /EPERM/);
    assert.throws(() => libc.addSeals(mem.fd, libc.F_SEAL_WRITE), /EPERM/);
  } finally {
    mem.close();
  }
});

test('guest memory: its data extents cover the pages written and none of the holes', () => {
  const mem = GuestMemory.create(64 * MiB);
  try {
    assert.deepEqual(mem.dataExtents(), [], 'a new memfd is all hole');
    mem.write(5 * 4096 + 7, Uint8Array.of(1));
    mem.write(40 * MiB, new Uint8Array(3 * 4096).fill(2));
    mem.write(64 * MiB - 1, Uint8Array.of(3));
    const extents = mem.dataExtents();
    const pageOf = (at: number): number => Math.floor(at / 4096);
    const covered = (page: number): boolean => extents.some((e) => pageOf(e.offset) <= page && page < Math.ceil((e.offset + e.length) / 4096));
    for (const page of [5, pageOf(40 * MiB), pageOf(40 * MiB) + 2, pageOf(64 * MiB - 1)]) assert.ok(covered(page), `page ${page} is data`);
    const bytes = extents.reduce((n, e) => n + e.length, 0);
    // shmem keeps data by page (or by huge page where the mount asks for it: not on memfds by default).
    assert.ok(bytes <= 6 * 4096, `${bytes} bytes of data for 6 written pages`);
    assert.ok(extents.every((e, i) => i === 0 || (extents[i - 1]?.offset ?? 0) + (extents[i - 1]?.length ?? 0) < e.offset), 'in order, apart');
  } finally {
    mem.close();
  }
});

/** What another process reads of this one's memory at `address` through /proc/PID/mem: the bytes, or the error. */
function readFromOutside(address: bigint, length: number): string {
  const r = spawnSync(process.execPath, ['-e', `
    const fs = require('node:fs');
    const fd = fs.openSync('/proc/${process.pid}/mem', 'r');
    const b = Buffer.alloc(${length});
    try { fs.readSync(fd, b, 0, b.length, ${address}); process.stdout.write(b.toString('hex')); }
    catch (e) { process.stdout.write(e.code); }`], { encoding: 'utf8' });
  return r.stdout;
}

test('guest memory on secret memory: usable here, unreadable from another process; a plain memfd is readable (the control)', (t) => {
  let secret: GuestMemory;
  try {
    secret = GuestMemory.create(2 * MiB, 'secret-test', { secret: true });
  } catch (e) {
    // Only a kernel built without CONFIG_SECRETMEM (or booted with secretmem.enable=0) has none: said, not skipped.
    assert.ok(e instanceof libc.SysError && e.code === 'ENOSYS', `memfd_secret failed: ${String(e)}`);
    t.diagnostic('this kernel has no memfd_secret: guest memory is a sealed memfd here');
    return;
  }
  const plain = GuestMemory.create(2 * MiB);
  try {
    assert.equal(secret.secret, true);
    assert.equal(libc.fileSystemMagic(secret.fd), libc.SECRETMEM_MAGIC);
    const marker = Buffer.from('a secret only the guest holds');
    secret.write(MiB, marker);
    plain.write(MiB, marker);
    assert.deepEqual(Buffer.from(secret.read(MiB, marker.length)), marker, 'the owner reads its own mapping');
    assert.equal(readFromOutside(plain.address + BigInt(MiB), marker.length), marker.toString('hex'), 'a memfd mapping is readable from outside');
    assert.equal(readFromOutside(secret.address + BigInt(MiB), marker.length), 'EIO', 'secret memory is not');
    // Secret memory cannot be asked for holes (lseek), but its resident pages tell them: only the page written.
    assert.deepEqual(secret.dataExtents(), [{ offset: MiB, length: 4096 }], 'secret memory\'s data is its resident pages');
    secret.write(2 * MiB - 4096, Uint8Array.of(1));
    secret.write(MiB + 4096, Uint8Array.of(1));
    assert.deepEqual(secret.dataExtents(), [{ offset: MiB, length: 8192 }, { offset: 2 * MiB - 4096, length: 4096 }]);
    // Its size is fixed: it cannot grow or shrink after the first ftruncate.
    assert.throws(() => libc.ftruncate(secret.fd, 4 * MiB));
  } finally {
    secret.close();
    plain.close();
  }
});
