// The snapshot file's layout, declared once for both sides that handle a snapshot: the hypervisor writes and reads
// it whole (src/hypervisor/snapshot/format.ts), the security chip reads only its header and trailer to MAC it
// (src/security-chip/snapshot-mac.ts). It lives here because the file crosses a process boundary and both layers may
// import protocols. The format, byte by byte, is in docs/snapshot-format.md.
//
//   header   SNAPSHOT_HEADER (36 bytes)
//   state    `stateLength` bytes of UTF-8 JSON: the machine state's versioned records
//   memory   runs: SNAPSHOT_RUN (16 bytes) then `pageCount` pages of bytes; an empty run ends them
//   trailer  SNAPSHOT_TRAILER (104 bytes): SHA-384 of everything before it, the host's MAC, the end magic
import { fstatSync, readSync, writeSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';

/** Bump when a reader of the previous version would misread a new file (see docs/snapshot-format.md). */
export const SNAPSHOT_FORMAT_VERSION = 1;
/** Names the file type, so that another file handed over by mistake is refused before anything is read. */
export const SNAPSHOT_MAGIC = Buffer.from('AZOTESNP', 'latin1');
/** Ends the file, so that a file cut exactly at a run boundary is told from a whole one by the host too. */
export const SNAPSHOT_END_MAGIC = Buffer.from('AZSNPEND', 'latin1');
/** Pages are x86's 4 KiB, the unit of the memfd's zero pages; stored so that a reader never assumes it. */
export const SNAPSHOT_PAGE_SIZE = 4096;
/** The machine state is a few records per device; a larger length is a damaged header, refused before allocating. */
export const SNAPSHOT_MAX_STATE_BYTES = 64 * 1024 * 1024;
export const SNAPSHOT_DIGEST_BYTES = 48;
export const SNAPSHOT_MAC_BYTES = 48;
/** Flag bits a reader of this version understands: none yet; a reader refuses a file with any other bit set. */
export const SNAPSHOT_KNOWN_FLAGS = 0;

export const SNAPSHOT_HEADER = defineStruct('snapshot header', undefined, 36, {
  magic: { offset: 0, type: { bytes: 8 } },
  version: { offset: 8, type: 'u32' },
  flags: { offset: 12, type: 'u32' },
  /** Bytes of guest memory (memfd offsets 0..memorySize): the restoring VM must have exactly this much. */
  memorySize: { offset: 16, type: 'u64' },
  stateLength: { offset: 24, type: 'u64' },
  pageSize: { offset: 32, type: 'u32' },
});

/** A run of non-zero pages, by page number in guest memory (memfd offset / page size); pageCount 0 ends the runs. */
export const SNAPSHOT_RUN = defineStruct('snapshot run', undefined, 16, {
  firstPage: { offset: 0, type: 'u64' },
  pageCount: { offset: 8, type: 'u64' },
});

export const SNAPSHOT_TRAILER = defineStruct('snapshot trailer', undefined, 104, {
  /** SHA-384 of every byte before the trailer: the hypervisor recomputes it as it loads. */
  digest: { offset: 0, type: { bytes: SNAPSHOT_DIGEST_BYTES } },
  /** HMAC-SHA-384 by the host's security chip over snapshotMacInput(); zero as the hypervisor writes it. */
  mac: { offset: 48, type: { bytes: SNAPSHOT_MAC_BYTES } },
  endMagic: { offset: 96, type: { bytes: 8 } },
});

/**
 * The most bytes a snapshot of `memoryBytes` of guest memory with `stateBytes` of machine state takes: every page
 * stored, in runs of one page apart (the most run headers), and the end run. For preallocating the file.
 */
export function snapshotCapacity(memoryBytes: number, stateBytes: number): number {
  const pages = Math.ceil(memoryBytes / SNAPSHOT_PAGE_SIZE);
  const runs = Math.ceil(pages / 2);
  return SNAPSHOT_HEADER.size + stateBytes + runs * SNAPSHOT_RUN.size + pages * SNAPSHOT_PAGE_SIZE + SNAPSHOT_RUN.size + SNAPSHOT_TRAILER.size;
}

/** Separates this MAC from any other the same key could be asked for, and names the format it covers. */
const MAC_LABEL = Buffer.from('azote snapshot mac 1\0', 'latin1');

export interface SnapshotHeader {
  readonly version: number;
  readonly flags: number;
  readonly memorySize: number;
  readonly stateLength: number;
  readonly pageSize: number;
}

export interface SnapshotTrailer {
  readonly digest: Buffer;
  readonly mac: Buffer;
  /** File offset of the MAC slot, where the host writes the MAC. */
  readonly macOffset: number;
}

export const SNAPSHOT_FIX = 'delete it; azote makes a new one on the next run';

/** `what` names the file in messages: "the snapshot" or "the snapshot /path". */
export function snapshotCorrupt(what: string, why: string): AzoteError {
  return new AzoteError('SnapshotCorrupt', `${what} is damaged: ${why}`, SNAPSHOT_FIX);
}

export function encodeSnapshotHeader(h: Omit<SnapshotHeader, 'version' | 'flags' | 'pageSize'>): Uint8Array {
  const v = StructView.alloc(SNAPSHOT_HEADER);
  v.field('magic').set(SNAPSHOT_MAGIC);
  v.set('version', SNAPSHOT_FORMAT_VERSION).set('flags', 0).set('memorySize', h.memorySize)
    .set('stateLength', h.stateLength).set('pageSize', SNAPSHOT_PAGE_SIZE);
  return v.bytes();
}

/** Checks a header's magic, version, flags and sizes; a file of another version is refused as SnapshotVersion. */
export function decodeSnapshotHeader(bytes: Uint8Array, what: string): SnapshotHeader {
  const v = new StructView(SNAPSHOT_HEADER, bytes);
  if (!Buffer.from(v.field('magic')).equals(SNAPSHOT_MAGIC)) throw snapshotCorrupt(what, 'it does not start with the snapshot magic (not an Azote snapshot)');
  const version = v.get('version');
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw new AzoteError('SnapshotVersion', `${what} was made by format version ${version}; this Azote reads ${SNAPSHOT_FORMAT_VERSION}`, SNAPSHOT_FIX);
  }
  const flags = v.get('flags');
  if ((flags & ~SNAPSHOT_KNOWN_FLAGS) !== 0) {
    throw new AzoteError('SnapshotVersion', `${what} uses features this Azote does not know (flags 0x${flags.toString(16)})`, SNAPSHOT_FIX);
  }
  const pageSize = v.get('pageSize');
  if (pageSize !== SNAPSHOT_PAGE_SIZE) throw snapshotCorrupt(what, `its page size is ${pageSize}, not ${SNAPSHOT_PAGE_SIZE}`);
  const memory = v.get64('memorySize');
  if (memory === 0n || memory % BigInt(SNAPSHOT_PAGE_SIZE) !== 0n || memory > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw snapshotCorrupt(what, `its memory size ${memory} is not a whole number of pages`);
  }
  const state = v.get64('stateLength');
  if (state > BigInt(SNAPSHOT_MAX_STATE_BYTES)) throw snapshotCorrupt(what, `its state section claims ${state} bytes (at most ${SNAPSHOT_MAX_STATE_BYTES})`);
  return { version, flags, memorySize: Number(memory), stateLength: Number(state), pageSize };
}

/** Reads `into.length` bytes at `position`, however many reads that takes; returns how many there were. */
export function preadFully(fd: number, into: Uint8Array, position: number): number {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export function pwriteFully(fd: number, from: Uint8Array, position: number): void {
  let done = 0;
  while (done < from.length) done += writeSync(fd, from, done, from.length - done, position + done);
}

/** The header as stored (for the MAC) and decoded. */
export function readSnapshotHeader(fd: number, what = 'the snapshot'): { header: SnapshotHeader; bytes: Uint8Array } {
  const bytes = new Uint8Array(SNAPSHOT_HEADER.size);
  const got = preadFully(fd, bytes, 0);
  if (got < bytes.length) throw snapshotCorrupt(what, `truncated at byte ${got}`);
  return { header: decodeSnapshotHeader(bytes, what), bytes };
}

/** The trailer, read from the file's end: what the host needs without reading the memory. */
export function readSnapshotTrailer(fd: number, what = 'the snapshot'): SnapshotTrailer {
  const size = fstatSync(fd).size;
  if (size < SNAPSHOT_HEADER.size + SNAPSHOT_RUN.size + SNAPSHOT_TRAILER.size) throw snapshotCorrupt(what, `truncated at byte ${size}`);
  const bytes = new Uint8Array(SNAPSHOT_TRAILER.size);
  const at = size - bytes.length;
  if (preadFully(fd, bytes, at) < bytes.length) throw snapshotCorrupt(what, `truncated at byte ${size}`);
  const v = new StructView(SNAPSHOT_TRAILER, bytes);
  if (!Buffer.from(v.field('endMagic')).equals(SNAPSHOT_END_MAGIC)) throw snapshotCorrupt(what, 'it does not end with the end magic (truncated or extended)');
  return { digest: Buffer.from(v.field('digest')), mac: Buffer.from(v.field('mac')), macOffset: at + SNAPSHOT_TRAILER.fields.mac.offset };
}

/** The file's stored digest (SHA-384 of all before the trailer), for logs and for the host to hand the restorer. */
export function snapshotDigest(fd: number, what = 'the snapshot'): Buffer {
  return readSnapshotTrailer(fd, what).digest;
}

/** What the host's MAC covers: the header (so its sizes and version are the host's too) and the digest (so every byte). */
export function snapshotMacInput(header: Uint8Array, digest: Uint8Array): Buffer {
  return Buffer.concat([MAC_LABEL, header, digest]);
}
