// Writes and reads snapshot files (machine state + guest memory) in the layout of src/protocols/snapshot-file.ts,
// documented in docs/snapshot-format.md. The jailed hypervisor opens no files: it is handed an fd, and uses only
// positional reads and writes (pread64/pwrite64, already in its seccomp allowlist), from byte 0 whatever the fd's
// offset. Memory is streamed: a run of pages is written from, and read into, guest memory itself; only run headers
// and small runs pass through a 1 MiB staging buffer, which keeps the syscalls few when non-zero pages are scattered.
import { createHash, type Hash } from 'node:crypto';
import { ftruncateSync, readSync } from 'node:fs';
import { AzoteError } from '../../base/errors.js';
import { StructView } from '../../base/struct.js';
import {
  decodeSnapshotHeader, encodeSnapshotHeader, preadFully, pwriteFully, snapshotCorrupt, SNAPSHOT_END_MAGIC,
  SNAPSHOT_HEADER, SNAPSHOT_MAX_STATE_BYTES, SNAPSHOT_PAGE_SIZE, SNAPSHOT_RUN, SNAPSHOT_TRAILER,
} from '../../protocols/snapshot-file.js';
import { nonZeroRuns, type ByteExtent } from './zero-pages.js';

export { readSnapshotHeader, snapshotDigest } from '../../protocols/snapshot-file.js';

const STAGING_BYTES = 1024 * 1024;
/** From this size on, bytes go between the file and guest memory directly rather than through the staging buffer. */
const DIRECT_BYTES = 256 * 1024;
/** Node refuses single reads and writes of 2 GiB or more; larger runs take several. */
const MAX_IO_BYTES = 1024 * 1024 * 1024;

export interface SnapshotWritten {
  /** The file's length. */
  readonly bytes: number;
  /** Non-zero pages stored. */
  readonly pages: number;
  /** SHA-384 of all before the trailer, hex. */
  readonly digest: string;
}

export interface ReadSnapshotOptions {
  /** Names the file in error messages; "the snapshot" when not given. */
  readonly what?: string;
  /**
   * The digest the host's security chip verified the MAC over (SecurityChip.checkSnapshot): the load must hash to
   * it too, so that a file changed between the host's check and this read is refused even with a digest to match.
   */
  readonly expectDigest?: Uint8Array;
}

/** Hashes and writes bytes in file order, gathering small pieces into one write. */
class SnapshotSink {
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  private staged = 0;
  /** File offset of the staging buffer's first byte. */
  private flushedTo = 0;
  readonly hash: Hash = createHash('sha384');

  constructor(private readonly fd: number) {}

  get length(): number {
    return this.flushedTo + this.staged;
  }

  put(bytes: Uint8Array, hashed = true): void {
    if (hashed) this.hash.update(bytes);
    if (bytes.length >= DIRECT_BYTES) {
      this.flush();
      for (let at = 0; at < bytes.length; at += MAX_IO_BYTES) {
        const chunk = bytes.subarray(at, Math.min(bytes.length, at + MAX_IO_BYTES));
        pwriteFully(this.fd, chunk, this.flushedTo);
        this.flushedTo += chunk.length;
      }
      return;
    }
    if (this.staged + bytes.length > STAGING_BYTES) this.flush();
    this.staging.set(bytes, this.staged);
    this.staged += bytes.length;
  }

  flush(): void {
    if (this.staged === 0) return;
    pwriteFully(this.fd, this.staging.subarray(0, this.staged), this.flushedTo);
    this.flushedTo += this.staged;
    this.staged = 0;
  }
}

function runHeader(firstPage: number, pageCount: number): Uint8Array {
  return StructView.alloc(SNAPSHOT_RUN).set('firstPage', firstPage).set('pageCount', pageCount).bytes();
}

const STATE_FIX = 'save device state as plain JSON records (numbers, strings, booleans, null, arrays, objects; 64-bit values as strings)';

function encodeState(state: unknown): Buffer {
  let json: string | undefined;
  try {
    json = JSON.stringify(state);
  } catch (err) {
    throw new AzoteError('SnapshotStateInvalid', `the machine state cannot be saved as JSON: ${(err as Error).message}`, STATE_FIX, { cause: err });
  }
  if (json === undefined) throw new AzoteError('SnapshotStateInvalid', 'the machine state cannot be saved as JSON: it is not a JSON value', STATE_FIX);
  const bytes = Buffer.from(json, 'utf8');
  if (bytes.length > SNAPSHOT_MAX_STATE_BYTES) {
    throw new AzoteError('SnapshotStateInvalid', `the machine state is ${bytes.length} bytes as JSON, over the format's ${SNAPSHOT_MAX_STATE_BYTES}`, STATE_FIX);
  }
  return bytes;
}

/**
 * Writes a snapshot of `state` (a JSON value) and `memory` (all of guest memory, memfd offset 0 first) to `fd`, from
 * byte 0, and cuts the file there. The MAC slot is left zero: the host seals the file (SecurityChip.sealSnapshot)
 * once this returns. Nothing may change `memory` meanwhile (vCPUs paused, cards quiesced): a page changed between
 * hashing and writing would make a file whose digest does not match. `dataExtents`, when given, are the memfd's
 * extents that hold data (lseek SEEK_DATA/SEEK_HOLE): pages outside them are not read, so not committed
 * (zero-pages.ts says why that matters).
 */
export function writeSnapshot(fd: number, state: unknown, memory: Uint8Array, dataExtents?: Iterable<ByteExtent>): SnapshotWritten {
  if (memory.length === 0 || memory.length % SNAPSHOT_PAGE_SIZE !== 0) {
    throw new AzoteError('SnapshotMemoryShape', `guest memory of ${memory.length} bytes is not a whole number of ${SNAPSHOT_PAGE_SIZE}-byte pages`,
      'give all of guest memory, from memfd offset 0');
  }
  const stateBytes = encodeState(state);
  const sink = new SnapshotSink(fd);
  sink.put(encodeSnapshotHeader({ memorySize: memory.length, stateLength: stateBytes.length }));
  sink.put(stateBytes);
  let pages = 0;
  for (const run of nonZeroRuns(memory, dataExtents)) {
    sink.put(runHeader(run.firstPage, run.pageCount));
    sink.put(memory.subarray(run.firstPage * SNAPSHOT_PAGE_SIZE, (run.firstPage + run.pageCount) * SNAPSHOT_PAGE_SIZE));
    pages += run.pageCount;
  }
  sink.put(runHeader(0, 0));
  const digest = sink.hash.digest();
  const trailer = StructView.alloc(SNAPSHOT_TRAILER);
  trailer.field('digest').set(digest);
  trailer.field('endMagic').set(SNAPSHOT_END_MAGIC);
  sink.put(trailer.bytes(), false);
  sink.flush();
  ftruncateSync(fd, sink.length);
  return { bytes: sink.length, pages, digest: digest.toString('hex') };
}

/** Reads and hashes a file in order, through a staging buffer for small pieces and straight into `into` for large. */
class SnapshotSource {
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  private start = 0;
  private end = 0;
  /** File offset of the byte after the staged ones. */
  private readTo = 0;
  readonly hash: Hash = createHash('sha384');

  constructor(private readonly fd: number, private readonly what: string) {}

  /** File offset of the next byte to be taken. */
  get position(): number {
    return this.readTo - (this.end - this.start);
  }

  private truncated(): AzoteError {
    return snapshotCorrupt(this.what, `truncated at byte ${this.readTo}`);
  }

  /** Stages at least `n` (at most the staging size) bytes. */
  private fill(n: number): void {
    this.staging.copyWithin(0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
    while (this.end < n) {
      const got = readSync(this.fd, this.staging, this.end, STAGING_BYTES - this.end, this.readTo);
      if (got === 0) throw this.truncated();
      this.end += got;
      this.readTo += got;
    }
  }

  /** The next `n` bytes (n at most the staging size), valid until the next call. */
  take(n: number, hashed = true): Uint8Array {
    if (this.end - this.start < n) this.fill(n);
    const bytes = this.staging.subarray(this.start, this.start + n);
    this.start += n;
    if (hashed) this.hash.update(bytes);
    return bytes;
  }

  /** Fills `into` with the next bytes. */
  into(into: Uint8Array): void {
    let done = Math.min(this.end - this.start, into.length);
    into.set(this.staging.subarray(this.start, this.start + done));
    this.start += done;
    while (done < into.length) {
      const left = into.length - done;
      if (left >= DIRECT_BYTES) {
        const got = readSync(this.fd, into, done, Math.min(left, MAX_IO_BYTES), this.readTo);
        if (got === 0) throw this.truncated();
        done += got;
        this.readTo += got;
      } else {
        this.fill(Math.min(left, STAGING_BYTES));
        const n = Math.min(left, this.end - this.start);
        into.set(this.staging.subarray(this.start, this.start + n), done);
        this.start += n;
        done += n;
      }
    }
    this.hash.update(into);
  }

  /** Whether the file ends after the bytes taken. */
  atEnd(): boolean {
    return this.end === this.start && preadFully(this.fd, new Uint8Array(1), this.readTo) === 0;
  }
}

/**
 * Loads the snapshot on `fd` for a restoring hypervisor: checks its header, that its memory size is `memory.length`,
 * every run's bounds (within memory, in increasing order, not overlapping), reads the stored pages straight into
 * `memory` (which must be fresh, all zero: pages not stored are zero), checks the digest it computed against the
 * trailer's (and `options.expectDigest`), and returns the machine state. It does not check the MAC: the host does,
 * before it hands the fd over (SecurityChip.checkSnapshot).
 *
 * Any problem with the file throws an AzoteError (SnapshotCorrupt, SnapshotVersion, SnapshotMismatch) naming it.
 * The digest is known only at the end, so when this throws, `memory` may already hold bytes from the refused file:
 * they are not trusted, and the caller must discard that VM and its memory, never run it.
 */
export function readSnapshot(fd: number, memory: Uint8Array, options: ReadSnapshotOptions = {}): unknown {
  const what = options.what ?? 'the snapshot';
  const src = new SnapshotSource(fd, what);
  const header = decodeSnapshotHeader(src.take(SNAPSHOT_HEADER.size), what);
  if (header.memorySize !== memory.length) {
    throw new AzoteError('SnapshotMismatch', `${what} holds ${header.memorySize} bytes of guest memory; this VM has ${memory.length}`,
      'restore it into a VM with the same memory size, or delete it');
  }
  const state = new Uint8Array(header.stateLength);
  src.into(state);
  const pages = BigInt(memory.length / SNAPSHOT_PAGE_SIZE);
  let next = 0n;
  for (;;) {
    const at = src.position;
    const run = new StructView(SNAPSHOT_RUN, src.take(SNAPSHOT_RUN.size));
    const first = run.get64('firstPage');
    const count = run.get64('pageCount');
    if (count === 0n) {
      if (first !== 0n) throw snapshotCorrupt(what, `the end run at byte ${at} names page ${first}`);
      break;
    }
    if (first < next) throw snapshotCorrupt(what, `the run at byte ${at} starts at page ${first}, before the previous run's end (page ${next})`);
    if (first + count > pages) throw snapshotCorrupt(what, `the run at byte ${at} (pages ${first}+${count}) goes past the end of guest memory (${pages} pages)`);
    src.into(memory.subarray(Number(first) * SNAPSHOT_PAGE_SIZE, Number(first + count) * SNAPSHOT_PAGE_SIZE));
    next = first + count;
  }
  const digest = src.hash.digest();
  const trailer = new StructView(SNAPSHOT_TRAILER, src.take(SNAPSHOT_TRAILER.size, false));
  if (!Buffer.from(trailer.field('endMagic')).equals(SNAPSHOT_END_MAGIC)) throw snapshotCorrupt(what, `it has no end magic at byte ${src.position - 8}`);
  if (!Buffer.from(trailer.field('digest')).equals(digest)) throw snapshotCorrupt(what, 'its digest does not match (a byte was changed)');
  if (options.expectDigest !== undefined && !digest.equals(options.expectDigest)) {
    throw snapshotCorrupt(what, 'its digest is not the one the host checked (the file changed after its MAC was verified)');
  }
  if (!src.atEnd()) throw snapshotCorrupt(what, `it goes on after its end at byte ${src.position}`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(state));
  } catch (err) {
    throw snapshotCorrupt(what, `its machine state is not UTF-8 JSON (${(err as Error).message})`);
  }
}
