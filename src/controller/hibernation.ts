// Hibernation on the host: the snapshot a hypervisor wrote into a memfd is sealed by the security chip (its MAC binds
// it to this host) and kept in the instance's directory encrypted at rest (hibernation-image.ts); at the next start
// it is decrypted into a memfd and its MAC checked before a hypervisor continues it. An image that cannot be used is
// discarded with the reason in the host's log, and the instance boots instead: as EC2, whose hibernated instance
// that cannot resume just starts.
import { rmSync } from 'node:fs';
import { errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import type { SecurityChip } from '../security-chip/chip.js';
import * as libc from '../sys/libc.js';
import { readHibernationImage, writeHibernationImage } from './hibernation-image.js';
import type { InstanceFiles } from './instance-files.js';

/** A hibernation image ready to continue: a memfd the receiver owns, and the digest its MAC verified (hex). */
export interface ResumableImage {
  readonly fd: number;
  readonly digest: string;
}

export class Hibernations {
  constructor(private readonly chip: SecurityChip, private readonly log: Logger) {}

  /** Seals the snapshot in `memfd` and writes it encrypted as the instance's image; closes `memfd` in any case. */
  async save(files: InstanceFiles, memfd: number): Promise<void> {
    try {
      this.chip.sealSnapshot(memfd);
      await writeHibernationImage(this.chip.hibernationKey(), files.instanceId, memfd, files.hibernationImage);
    } finally {
      libc.close(memfd);
    }
  }

  /** The instance's image, decrypted and checked; undefined if it has none, or none usable (then discarded, and logged). */
  async open(files: InstanceFiles): Promise<ResumableImage | undefined> {
    let fd: number;
    try {
      fd = await readHibernationImage(this.chip.hibernationKey(), files.instanceId, files.hibernationImage);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      this.discard(files, errorMessage(e));
      return undefined;
    }
    try {
      return { fd, digest: this.chip.checkSnapshot(fd).digest.toString('hex') };
    } catch (e) {
      libc.close(fd);
      this.discard(files, errorMessage(e));
      return undefined;
    }
  }

  /** Removes the image: consumed by a resume (no reason), or unusable (the reason is logged; the instance boots). */
  discard(files: InstanceFiles, why?: string): void {
    rmSync(files.hibernationImage, { force: true });
    if (why !== undefined) this.log.warn('a hibernation image was discarded: the instance boots instead of resuming', { instance: files.instanceId, why });
  }
}
