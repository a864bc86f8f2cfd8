// File seals and secret memory, as a card tells memory that cannot shrink from memory that can: the constants and
// struct statfs match the C headers, and the calls say what the kernel does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as libc from '../../src/sys/libc.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';
import { secretMemory, SYS_memfd_secret } from '../framework/secret-memory.js';

test('seal, memfd and secret-memory constants and struct statfs match <linux/fcntl.h>, <linux/memfd.h>, <linux/magic.h>, <sys/vfs.h>', () => {
  const ours: Array<[string, number]> = [
    ['F_ADD_SEALS', libc.F_ADD_SEALS], ['F_GET_SEALS', libc.F_GET_SEALS], ['F_SEAL_SEAL', libc.F_SEAL_SEAL],
    ['F_SEAL_SHRINK', libc.F_SEAL_SHRINK], ['F_SEAL_GROW', libc.F_SEAL_GROW], ['F_SEAL_WRITE', libc.F_SEAL_WRITE],
    ['MFD_CLOEXEC', libc.MFD_CLOEXEC], ['MFD_ALLOW_SEALING', libc.MFD_ALLOW_SEALING], ['SECRETMEM_MAGIC', libc.SECRETMEM_MAGIC],
    ['EINVAL', libc.EINVAL], ['SYS_memfd_secret', SYS_memfd_secret],
  ];
  const facts = readCFacts(['linux/fcntl.h', 'linux/memfd.h', 'linux/magic.h', 'errno.h', 'sys/syscall.h', 'sys/vfs.h'],
    [libc.statfsLayout], ours.map(([n]) => n));
  for (const [name, value] of ours) assert.equal(facts.constants.get(name), BigInt(value), name);
  assert.deepEqual(layoutMismatches([libc.statfsLayout], facts), []);
});

test('a sealable memfd carries the seals added to it; a plain memfd only F_SEAL_SEAL; a regular file none', () => {
  const sealed = libc.memfdCreate('azote-seal-test', libc.MFD_ALLOW_SEALING);
  const plain = libc.memfdCreate('azote-plain-test');
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-seals-'));
  const file = openSync(path.join(dir, 'f'), 'w');
  try {
    libc.ftruncate(sealed, 8192);
    assert.equal(libc.fileSeals(sealed), 0);
    libc.addSeals(sealed, libc.F_SEAL_SHRINK);
    assert.equal(libc.fileSeals(sealed), libc.F_SEAL_SHRINK);
    assert.throws(() => libc.ftruncate(sealed, 4096), /EPERM/);
    libc.ftruncate(sealed, 16384); // growing is still allowed without F_SEAL_GROW
    assert.equal(libc.fileSeals(plain), libc.F_SEAL_SEAL);
    assert.equal(libc.fileSeals(file), undefined);
    assert.notEqual(libc.fileSystemMagic(sealed), libc.SECRETMEM_MAGIC);
  } finally {
    libc.close(sealed);
    libc.close(plain);
    closeSync(file);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('secret memory: recognised by its file system, takes no seals, and cannot be resized once sized', () => {
  const fd = secretMemory(8192);
  try {
    assert.equal(libc.fileSystemMagic(fd), libc.SECRETMEM_MAGIC);
    assert.equal(libc.fileSeals(fd), undefined);
    assert.throws(() => libc.ftruncate(fd, 4096), /EINVAL/);
  } finally {
    libc.close(fd);
  }
});

test('fallocateAsync: a memfd allocated off the event loop has its size; a refused allocation fails clearly', async () => {
  const fd = libc.memfdCreate('fallocate-async', libc.MFD_ALLOW_SEALING);
  try {
    await libc.fallocateAsync(fd, 0, 0, 8 * 2 ** 20);
    assert.equal(fstatSync(fd).size, 8 * 2 ** 20);
    // Refused at once, nothing allocated (an allocation beyond the host's memory would wake the OOM killer instead).
    libc.addSeals(fd, libc.F_SEAL_GROW);
    await assert.rejects(libc.fallocateAsync(fd, 0, 0, 16 * 2 ** 20), (e: Error & { code?: string }) => e.code === 'AllocationFailed' && /16777216 bytes/.test(e.message));
  } finally {
    libc.close(fd);
  }
});
