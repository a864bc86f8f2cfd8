// A writer for "newc" cpio archives, the format Linux unpacks as an initramfs.
//
// Each entry is a 110-byte ASCII header, the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes.
// Header: magic "070701" at 0, then 8 hex digits each: ino 6, mode 14, uid 22, gid 30, nlink 38, mtime 46,
// filesize 54, devmajor 62, devminor 70, rdevmajor 78, rdevminor 86, namesize (with the NUL) 94, check 102.
// The archive ends with an entry named "TRAILER!!!". test/images/cpio.test.ts checks these offsets.
import { AzoteError } from '../base/errors.js';

/** Field order and offsets of the newc header (each field 8 hex digits after the 6-byte magic). */
export const NEWC_FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor',
  'rdevmajor', 'rdevminor', 'namesize', 'check'] as const;
export const NEWC_MAGIC = '070701';
export const NEWC_HEADER_SIZE = 6 + NEWC_FIELDS.length * 8;

export const S_IFREG = 0o100000, S_IFDIR = 0o040000, S_IFLNK = 0o120000, S_IFCHR = 0o020000;

type Header = Record<(typeof NEWC_FIELDS)[number], number>;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

export function checkName(name: string): string {
  const clean = name.replace(/^\/+/, '');
  if (clean === '' || clean.includes('\0') || clean.split('/').some((c) => c === '..' || c === '')) {
    throw new AzoteError('BadArchiveName', `invalid path in archive: ${JSON.stringify(name)}`);
  }
  return clean;
}

export class CpioWriter {
  private readonly parts: Buffer[] = [];
  private ino = 1;
  private finished = false;

  private entry(name: string, mode: number, data: Uint8Array, rdev: [number, number] = [0, 0]): this {
    if (this.finished) throw new Error('cpio archive already finished');
    const nameBytes = Buffer.from(name + '\0', 'utf8');
    const h: Header = {
      ino: name === 'TRAILER!!!' ? 0 : this.ino++, mode, uid: 0, gid: 0, nlink: (mode & S_IFDIR) === S_IFDIR ? 2 : 1,
      mtime: 0, filesize: data.length, devmajor: 0, devminor: 0, rdevmajor: rdev[0], rdevminor: rdev[1],
      namesize: nameBytes.length, check: 0,
    };
    const header = NEWC_MAGIC + NEWC_FIELDS.map((f) => h[f].toString(16).padStart(8, '0')).join('');
    this.parts.push(Buffer.from(header, 'ascii'), nameBytes, Buffer.alloc(pad4(NEWC_HEADER_SIZE + nameBytes.length)));
    if (data.length > 0) this.parts.push(Buffer.from(data.buffer, data.byteOffset, data.length), Buffer.alloc(pad4(data.length)));
    return this;
  }

  file(path: string, data: Uint8Array, mode = 0o644): this {
    return this.entry(checkName(path), S_IFREG | (mode & 0o7777), data);
  }

  dir(path: string, mode = 0o755): this {
    return this.entry(checkName(path), S_IFDIR | (mode & 0o7777), new Uint8Array(0));
  }

  symlink(path: string, target: string): this {
    if (target === '' || target.includes('\0')) throw new AzoteError('BadArchiveName', `invalid symlink target for ${path}`);
    return this.entry(checkName(path), S_IFLNK | 0o777, Buffer.from(target, 'utf8'));
  }

  charDevice(path: string, major: number, minor: number, mode = 0o600): this {
    return this.entry(checkName(path), S_IFCHR | (mode & 0o7777), new Uint8Array(0), [major, minor]);
  }

  finish(): Buffer {
    this.entry('TRAILER!!!', 0, new Uint8Array(0));
    this.finished = true;
    return Buffer.concat(this.parts);
  }
}
