// memfd_secret(2) for tests: glibc has no wrapper, so it is called through syscall(2) by number (x86-64;
// test/sys/memfd.test.ts checks the number against <sys/syscall.h>).
import koffi from 'koffi';
import * as libc from '../../src/sys/libc.js';

export const SYS_memfd_secret = 447;
const syscall = koffi.load('libc.so.6').func('long syscall(long number, unsigned int flags)');

/** A new secret-memory fd (close-on-exec) given its one and only size. */
export function secretMemory(size: number): number {
  const fd = Number(syscall(SYS_memfd_secret, libc.O_CLOEXEC));
  if (fd < 0) throw new libc.SysError('memfd_secret', koffi.errno(), 'the kernel needs CONFIG_SECRETMEM (and secretmem.enable=1 before Linux 6.5)');
  try {
    libc.ftruncate(fd, size);
  } catch (e) {
    libc.close(fd);
    throw e;
  }
  return fd;
}
