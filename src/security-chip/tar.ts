// Bundles travel as gzip-compressed tar archives (POSIX ustar, regular files only), readable with `tar -tzf`.
// The reader takes nothing on trust: sizes, names and checksums are checked, and anything but a plain file is refused.
import { gunzipSync, gzipSync } from 'node:zlib';
import { AzoteError } from '../base/errors.js';

const BLOCK = 512;
/** The largest archive read (a bundle is a few MiB). */
const MAX_ARCHIVE = 256 * 2 ** 20;

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number, mode: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new AzoteError('BundleName', `path ${name} is longer than 100 bytes`, 'use shorter paths');
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 'utf8');
  h.write(octal(mode, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write('0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'binary');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

export function writeTgz(entries: ReadonlyArray<{ name: string; data: Uint8Array; mode: number }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e.name, e.data.length, e.mode), Buffer.from(e.data), Buffer.alloc((BLOCK - (e.data.length % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

function bad(why: string): AzoteError {
  return new AzoteError('BadBundle', `the bundle is not a valid archive: ${why}`, 'fetch or build the bundle again');
}

export function readTgz(archive: Uint8Array): Map<string, { data: Buffer; mode: number }> {
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: MAX_ARCHIVE });
  } catch (e) {
    throw bad(`not gzip data of at most ${MAX_ARCHIVE} bytes (${(e as Error).message})`);
  }
  const out = new Map<string, { data: Buffer; mode: number }>();
  for (let at = 0; at + BLOCK <= tar.length;) {
    const h = tar.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) return out;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i] ?? 0;
    const stored = parseInt(h.toString('ascii', 148, 156).replace(/\0.*$/s, '').trim(), 8);
    if (stored !== sum) throw bad(`header checksum mismatch at byte ${at}`);
    const name = h.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const type = h.toString('ascii', 156, 157);
    if (type !== '0' && type !== '\0') throw bad(`${name} is not a regular file`);
    const size = parseInt(h.toString('ascii', 124, 136).replace(/\0.*$/s, '').trim(), 8);
    const mode = parseInt(h.toString('ascii', 100, 108).replace(/\0.*$/s, '').trim(), 8);
    if (!Number.isSafeInteger(size) || size < 0 || at + BLOCK + size > tar.length) throw bad(`${name} is cut short`);
    if (out.has(name)) throw bad(`${name} appears twice`);
    out.set(name, { data: Buffer.from(tar.subarray(at + BLOCK, at + BLOCK + size)), mode: Number.isNaN(mode) ? 0o644 : mode });
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  throw bad('no end-of-archive marker');
}
