// A hibernated instance's snapshot at rest: AES-256-GCM under the security chip's hibernation key, with a fresh random
// IV per image, streamed in chunks so that memory of any size costs one chunk of buffer. The header (and the
// instance's id) is authenticated with the ciphertext, so an image moved to another instance, cut short, lengthened
// or altered anywhere fails the tag check. The plaintext is only ever in a memfd (never on disk), and a memfd whose
// tag did not verify is closed before anyone uses it.
//
//   header  magic "AZHIBIMG" (8) | version u32 LE | reserved u32 (0) | plaintext length u64 LE | IV (12)
//   body    ciphertext, as long as the plaintext
//   tag     the GCM tag (16)
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';

const MAGIC = Buffer.from('AZHIBIMG', 'latin1');
const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 8 + 4 + 4 + 8 + IV_BYTES;
/** The streaming unit: large enough to keep the cipher busy, small enough to be nothing beside guest memory. */
export const IMAGE_CHUNK = 1 << 20;

const FIX = 'the instance boots instead of resuming; nothing is lost but its memory at hibernation';

function refused(file: string, why: string, cause?: unknown): AzoteError {
  return new AzoteError('HibernationImageRefused', `the hibernation image ${file} is refused: ${why}`, FIX, cause === undefined ? undefined : { cause });
}

/** The authenticated data: the header and the instance's id (an image is only ever its own instance's). */
function aad(header: Buffer, instanceId: string): Buffer {
  return Buffer.concat([header, Buffer.from(`\0${instanceId}`, 'utf8')]);
}

/** Lets the event loop run between chunks: an image of a few GiB must not stall the controller's other instances. */
const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function readFully(fd: number, buf: Buffer, position: number, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new Error(`${what} ended ${buf.length - done} bytes early`);
    done += n;
  }
}

function writeFully(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, position + done);
}

/**
 * Encrypts all of `plainFd` (left open: the caller owns it) into `file`, written under a temporary name, flushed and
 * renamed when whole, so that a crash or a full disk leaves no image that looks complete.
 */
export async function writeHibernationImage(key: Buffer, instanceId: string, plainFd: number, file: string): Promise<void> {
  const length = fstatSync(plainFd).size;
  const iv = randomBytes(IV_BYTES);
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(VERSION, 8);
  header.writeBigUInt64LE(BigInt(length), 16);
  iv.copy(header, 24);
  const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(aad(header, instanceId));
  const temp = `${file}.new`;
  const out = openSync(temp, 'w', 0o600);
  let outOpen = true;
  try {
    writeFully(out, header, 0);
    const chunk = Buffer.alloc(IMAGE_CHUNK);
    for (let at = 0; at < length; at += IMAGE_CHUNK) {
      const piece = chunk.subarray(0, Math.min(IMAGE_CHUNK, length - at));
      readFully(plainFd, piece, at, 'the snapshot');
      writeFully(out, cipher.update(piece), HEADER_BYTES + at);
      await yieldTurn();
    }
    writeFully(out, Buffer.concat([cipher.final(), cipher.getAuthTag()]), HEADER_BYTES + length);
    fsyncSync(out);
    outOpen = false;
    closeSync(out);
    renameSync(temp, file);
  } catch (e) {
    if (outOpen) closeSync(out);
    rmSync(temp, { force: true });
    throw e;
  }
  const dir = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * Decrypts `file` into a new memfd, which the caller then owns; refuses (HibernationImageRefused) an image that is
 * not one, of another version or instance, cut or lengthened, altered, or encrypted under another key: the tag is
 * checked before the memfd is returned, and on refusal the memfd is closed.
 */
export async function readHibernationImage(key: Buffer, instanceId: string, file: string): Promise<number> {
  const input = openSync(file, 'r');
  try {
    const size = fstatSync(input).size;
    if (size < HEADER_BYTES + TAG_BYTES) throw refused(file, `it is ${size} bytes, shorter than a header and a tag`);
    const header = Buffer.alloc(HEADER_BYTES);
    readFully(input, header, 0, file);
    if (!header.subarray(0, 8).equals(MAGIC)) throw refused(file, 'it is not a hibernation image (bad magic)');
    const version = header.readUInt32LE(8);
    if (version !== VERSION || header.readUInt32LE(12) !== 0) throw refused(file, `its version ${version} is not ${VERSION}`);
    const length = Number(header.readBigUInt64LE(16));
    if (length !== size - HEADER_BYTES - TAG_BYTES) {
      throw refused(file, `its header says ${length} bytes of snapshot, the file holds ${size - HEADER_BYTES - TAG_BYTES}`);
    }
    const tag = Buffer.alloc(TAG_BYTES);
    readFully(input, tag, size - TAG_BYTES, file);
    const decipher = createDecipheriv('aes-256-gcm', key, header.subarray(24)).setAAD(aad(header, instanceId)).setAuthTag(tag);
    const plain = libc.memfdCreate(`hibernation-${instanceId}`);
    try {
      const chunk = Buffer.alloc(IMAGE_CHUNK);
      for (let at = 0; at < length; at += IMAGE_CHUNK) {
        const piece = chunk.subarray(0, Math.min(IMAGE_CHUNK, length - at));
        readFully(input, piece, HEADER_BYTES + at, file);
        writeFully(plain, decipher.update(piece), at);
        await yieldTurn();
      }
      try {
        decipher.final();
      } catch (e) {
        throw refused(file, 'its authentication tag does not verify (altered, or encrypted under another key or for another instance)', e);
      }
      return plain;
    } catch (e) {
      libc.close(plain);
      throw e;
    }
  } finally {
    closeSync(input);
  }
}
