// A disk that is a plain file, byte for byte (raw format). Opening takes a lock so that two VMs never write the same
// file: a writable disk holds an exclusive flock, a read-only one a shared flock (many VMs may read one image).
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync, constants as fsc } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { SECTOR_SIZE, type BlockBackend, type BlockDiskInfo } from './blk.js';

/** Opens and locks a disk file; the lock lasts as long as the fd (closeDisk, or the process ending). */
export function openDisk(path: string, readOnly: boolean): BlockDiskInfo & { path: string } {
  let fd: number; // Node opens files close-on-exec
  try {
    fd = openSync(path, readOnly ? fsc.O_RDONLY : fsc.O_RDWR);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AzoteError('DiskNotFound', `disk ${path} does not exist`, 'create it first, e.g. truncate -s 1G ' + path);
    if (code === 'EACCES' || code === 'EROFS') {
      throw new AzoteError('DiskNotWritable', `disk ${path} cannot be opened for writing (${code})`, `attach it read-only: --disk ${path},ro`);
    }
    throw new AzoteError('DiskOpen', `disk ${path} cannot be opened: ${(e as Error).message}`);
  }
  return adoptDisk(fd, path, readOnly);
}

/**
 * A disk someone else opened (the controller, for a jailed hypervisor that sees no file system): checked and locked
 * like an opened one; `path` only names it. The fd is closed if it cannot be used.
 */
export function adoptDisk(fd: number, path: string, readOnly: boolean): BlockDiskInfo & { path: string } {
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new AzoteError('DiskNotAFile', `disk ${path} is not a regular file`, 'give the path of a raw disk image file');
    const sectors = Math.floor(st.size / SECTOR_SIZE);
    if (sectors === 0) throw new AzoteError('DiskEmpty', `disk ${path} is smaller than one 512-byte sector`, `give it a size, e.g. truncate -s 1G ${path}`);
    if (!libc.flock(fd, (readOnly ? libc.LOCK_SH : libc.LOCK_EX) | libc.LOCK_NB)) {
      throw new AzoteError('DiskLocked', `disk ${path} is in use by another VM`,
        readOnly ? 'stop the VM that writes it' : `stop the VM using it, or attach it read-only to both (--disk ${path},ro)`);
    }
    return { path, fd, sectors, readOnly, serial: `azote-${st.ino.toString(16)}` };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

export function closeDisk(disk: { fd: number }): void {
  closeSync(disk.fd);
}

const ZERO_CHUNK = 1024 * 1024;

export class RawFileBackend implements BlockBackend {
  constructor(private readonly fd: number, readonly sectors: number, readonly readOnly: boolean) {}

  read(into: Uint8Array, offset: number): void {
    for (let done = 0; done < into.length;) {
      const n = readSync(this.fd, into, done, into.length - done, offset + done);
      if (n === 0) {
        into.fill(0, done); // the file shrank under us: what is gone reads as zeros
        return;
      }
      done += n;
    }
  }

  write(from: Uint8Array, offset: number): void {
    for (let done = 0; done < from.length;) done += writeSync(this.fd, from, done, from.length - done, offset + done);
  }

  flush(): void {
    fdatasyncSync(this.fd);
  }

  discard(offset: number, length: number): void {
    // Discard is a hint: a file system without hole punching keeps the data.
    libc.fallocate(this.fd, libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE, offset, length);
  }

  writeZeroes(offset: number, length: number, unmap: boolean): void {
    const mode = unmap ? libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE : libc.FALLOC_FL_ZERO_RANGE | libc.FALLOC_FL_KEEP_SIZE;
    if (libc.fallocate(this.fd, mode, offset, length)) return;
    const zeros = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; done += zeros.length) {
      this.write(zeros.subarray(0, Math.min(zeros.length, length - done)), offset + done);
    }
  }
}
