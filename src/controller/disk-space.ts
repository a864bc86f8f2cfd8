// The host's disk as the over-commit cap of sparse disks sees it: what the data directory's file system has free, and
// how much of a sparse disk file is really allocated (the rest is a promise the file system may not keep).
import { statfsSync, statSync } from 'node:fs';

/** Bytes that may still be allocated on the file system holding `dir` (without the blocks kept for root). */
export function availableBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Bytes the file occupies on disk; 0 for one not created yet (a root disk before its first launch). */
export function allocatedBytes(file: string): number {
  try {
    return statSync(file).blocks * 512;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}
