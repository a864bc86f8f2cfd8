// A writer for "newc" cpio archives (magic 070701), the format Linux unpacks as an initramfs.
//
// Each entry: a 110-byte ASCII header, the name with its NUL, zero padding so header + name end on a 4-byte
// boundary, the data (file contents, or a symlink's target without NUL), zero padding to 4 bytes. The archive
// ends with an entry named "TRAILER!!!". Numbers are 8 hex digits, no prefix.
//
// | field     | offset | width | here                                                            |
// |-----------|--------|-------|-----------------------------------------------------------------|
// | magic     |      0 |     6 | "070701" (no checksum)                                          |
// | ino       |      6 |     8 | 1, 2, 3... per entry (0 for the trailer); no hard links         |
// | mode      |     14 |     8 | file type bits (S_IF*) | permissions                            |
// | uid       |     22 |     8 | 0                                                               |
// | gid       |     30 |     8 | 0                                                               |
// | nlink     |     38 |     8 | 2 for directories, else 1 (Linux links files with nlink >= 2)   |
// | mtime     |     46 |     8 | 0 unless given, so archives are reproducible                    |
// | filesize  |     54 |     8 | length of the data                                              |
// | devmajor  |     62 |     8 | 0 (device holding the file)                                     |
// | devminor  |     70 |     8 | 0                                                               |
// | rdevmajor |     78 |     8 | device nodes: major number                                      |
// | rdevminor |     86 |     8 | device nodes: minor number                                      |
// | namesize  |     94 |     8 | length of the name including its NUL                            |
// | check     |    102 |     8 | 0                                                               |
import { AzoteError } from '../base/errors.js';

export const NEWC_MAGIC = '070701';
/** Header fields after the magic, in order; each is 8 hex digits, so field i sits at 6 + 8 * i. */
export const NEWC_FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor',
  'rdevmajor', 'rdevminor', 'namesize', 'check'] as const;
export type NewcField = (typeof NEWC_FIELDS)[number];
export const NEWC_HEADER_SIZE = NEWC_MAGIC.length + NEWC_FIELDS.length * 8; // 110
export const NEWC_TRAILER = 'TRAILER!!!';

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** Byte offset of a header field from the start of its entry. */
export function newcFieldOffset(field: NewcField): number {
  return NEWC_MAGIC.length + NEWC_FIELDS.indexOf(field) * 8;
}

/** Linux's initramfs unpacker refuses longer names and symlink targets. */
const PATH_MAX = 4096;
const MAX_U32 = 0xffffffff;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function badName(name: string, why: string): AzoteError {
  return new AzoteError('BadArchiveName', `invalid path in cpio archive ${JSON.stringify(name)}: ${why}`,
    'use a relative path of plain components, like "bin/sh"');
}

/**
 * The name as stored: a leading "/" is dropped ("/bin/sh" -> "bin/sh"). Empty names, empty or "." or ".."
 * components, NUL bytes and names longer than PATH_MAX are refused.
 */
export function checkName(name: string): string {
  if (name.includes('\0')) throw badName(name, 'it contains a NUL byte');
  const clean = name.replace(/^\/+/, '');
  if (clean === '') throw badName(name, 'it is empty');
  for (const c of clean.split('/')) {
    if (c === '') throw badName(name, 'it has an empty component (a doubled or trailing "/")');
    if (c === '.' || c === '..') throw badName(name, `it has a "${c}" component`);
  }
  if (clean === NEWC_TRAILER) throw badName(name, 'it is the name of the end-of-archive marker');
  if (Buffer.byteLength(clean) + 1 > PATH_MAX) throw badName(name, `it is longer than ${PATH_MAX - 1} bytes`);
  return clean;
}

function checkMode(path: string, mode: number): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new AzoteError('BadArchiveMode', `invalid permissions ${String(mode)} for ${path} in cpio archive`,
      'give permission bits only, between 0 and 0o7777');
  }
  return mode;
}

function checkU32(path: string, what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > MAX_U32) {
    throw new AzoteError('BadArchiveField', `invalid ${what} ${String(v)} for ${path} in cpio archive`,
      'give an integer between 0 and 2^32 - 1');
  }
  return v;
}

/**
 * Builds a newc archive in memory. Entries are written in the order they are added; Linux does not create
 * missing parent directories, so add directories before what they hold (the run request archive relies on
 * directories of an earlier archive instead). Each method returns the writer, so calls chain.
 */
export class CpioWriter {
  private readonly parts: Buffer[] = [];
  private readonly names = new Set<string>();
  private nextIno = 1;
  private size = 0;
  private finished = false;

  /** Entries added so far (the trailer not counted). */
  get count(): number {
    return this.names.size;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.size;
  }

  file(path: string, data: Uint8Array, mode = 0o644, mtime = 0): this {
    const name = checkName(path);
    return this.entry(name, S_IFREG | checkMode(name, mode), data, checkU32(name, 'mtime', mtime));
  }

  dir(path: string, mode = 0o755): this {
    const name = checkName(path);
    return this.entry(name, S_IFDIR | checkMode(name, mode), new Uint8Array(0));
  }

  symlink(path: string, target: string): this {
    const name = checkName(path);
    const body = Buffer.from(target, 'utf8');
    if (target === '' || target.includes('\0') || body.length >= PATH_MAX) {
      throw new AzoteError('BadArchiveName', `invalid symlink target ${JSON.stringify(target)} for ${name}`,
        `give a non-empty target without NUL bytes, shorter than ${PATH_MAX} bytes`);
    }
    return this.entry(name, S_IFLNK | 0o777, body);
  }

  charDevice(path: string, major: number, minor: number, mode = 0o600): this {
    return this.device(S_IFCHR, path, major, minor, mode);
  }

  blockDevice(path: string, major: number, minor: number, mode = 0o600): this {
    return this.device(S_IFBLK, path, major, minor, mode);
  }

  /** Appends the trailer and returns the archive; the writer cannot be used afterwards. */
  finish(): Buffer {
    this.header(NEWC_TRAILER, 0, 0, 0, 0, 0, 0);
    this.finished = true;
    return Buffer.concat(this.parts, this.size);
  }

  private device(type: number, path: string, major: number, minor: number, mode: number): this {
    const name = checkName(path);
    return this.entry(name, type | checkMode(name, mode), new Uint8Array(0), 0,
      checkU32(name, 'major number', major), checkU32(name, 'minor number', minor));
  }

  private entry(name: string, mode: number, data: Uint8Array, mtime = 0, rdevMajor = 0, rdevMinor = 0): this {
    if (this.finished) throw new Error('CpioWriter: the archive is already finished');
    if (this.names.has(name)) {
      throw new AzoteError('BadArchiveName', `duplicate path in cpio archive: ${name}`, 'add each path once');
    }
    if (data.length > MAX_U32) {
      throw new AzoteError('BadArchiveField', `${name} is too large for a cpio archive (${data.length} bytes)`,
        'keep files under 4 GiB');
    }
    this.names.add(name);
    this.header(name, this.nextIno++, mode, mtime, data.length, rdevMajor, rdevMinor);
    if (data.length > 0) {
      this.push(Buffer.from(data.buffer, data.byteOffset, data.length));
      this.push(Buffer.alloc(pad4(data.length)));
    }
    return this;
  }

  private header(name: string, ino: number, mode: number, mtime: number, filesize: number, rdevmajor: number,
    rdevminor: number): void {
    if (this.finished) throw new Error('CpioWriter: the archive is already finished');
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    const fields: Record<NewcField, number> = {
      ino, mode, uid: 0, gid: 0, nlink: (mode & S_IFMT) === S_IFDIR ? 2 : 1, mtime, filesize,
      devmajor: 0, devminor: 0, rdevmajor, rdevminor, namesize: nameBytes.length, check: 0,
    };
    const text = NEWC_MAGIC + NEWC_FIELDS.map((f) => fields[f].toString(16).padStart(8, '0')).join('');
    this.push(Buffer.from(text, 'ascii'));
    this.push(nameBytes);
    this.push(Buffer.alloc(pad4(NEWC_HEADER_SIZE + nameBytes.length)));
  }

  private push(b: Buffer): void {
    if (b.length === 0) return;
    this.parts.push(b);
    this.size += b.length;
  }
}
