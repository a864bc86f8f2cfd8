// Binds snapshots to this host: an HMAC-SHA-384 under a key that never leaves the chip directory, over a snapshot's
// header and digest (the digest covers every other byte). The host reads only the header and the trailer, so a
// check costs two small reads whatever the memory size; the restoring hypervisor's digest check over the bytes it
// loads completes it (docs/snapshot-format.md, "What is checked where").
import { createHmac, timingSafeEqual } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import {
  pwriteFully, readSnapshotHeader, readSnapshotTrailer, snapshotMacInput, SNAPSHOT_FIX, type SnapshotHeader,
} from '../protocols/snapshot-file.js';
import { hostKey } from './host-key.js';

/** A snapshot: an fd the caller owns (left open), or a path this opens and closes. */
export type SnapshotTarget = number | string;

export interface CheckedSnapshot {
  readonly header: SnapshotHeader;
  /** The digest the MAC verified: hand it to the restoring hypervisor (readSnapshot's expectDigest). */
  readonly digest: Buffer;
}

export function snapshotMacKeyPath(hostDir: string): string {
  return path.join(hostDir, 'chip', 'snapshot-mac.key');
}

/** The host's snapshot MAC key, made where missing (host-key.ts). */
export function snapshotMacKey(hostDir: string): Buffer {
  return hostKey(snapshotMacKeyPath(hostDir), 'snapshot MAC key', 'snapshots sealed with the old one are then refused');
}

function withFd<T>(target: SnapshotTarget, flags: 'r' | 'r+', use: (fd: number, what: string) => T): T {
  if (typeof target === 'number') return use(target, 'the snapshot');
  const fd = openSync(target, flags);
  try {
    return use(fd, `the snapshot ${target}`);
  } finally {
    closeSync(fd);
  }
}

function mac(key: Buffer, header: Uint8Array, digest: Uint8Array): Buffer {
  return createHmac('sha384', key).update(snapshotMacInput(header, digest)).digest();
}

/** Writes the host's MAC into the snapshot's MAC slot; the hypervisor wrote the rest. */
export function sealSnapshot(hostDir: string, target: SnapshotTarget): void {
  const key = snapshotMacKey(hostDir);
  withFd(target, 'r+', (fd, what) => {
    const { bytes } = readSnapshotHeader(fd, what);
    const trailer = readSnapshotTrailer(fd, what);
    pwriteFully(fd, mac(key, bytes, trailer.digest), trailer.macOffset);
  });
}

/** Checks the snapshot's MAC; refuses, naming the file, one made on another host or altered since it was sealed. */
export function checkSnapshot(hostDir: string, target: SnapshotTarget): CheckedSnapshot {
  const key = snapshotMacKey(hostDir);
  return withFd(target, 'r', (fd, what) => {
    const { header, bytes } = readSnapshotHeader(fd, what);
    const trailer = readSnapshotTrailer(fd, what);
    if (!timingSafeEqual(mac(key, bytes, trailer.digest), trailer.mac)) {
      throw new AzoteError('SnapshotForeign', `${what} was not made on this host (or was altered): its MAC does not verify`, SNAPSHOT_FIX);
    }
    return { header, digest: trailer.digest };
  });
}
