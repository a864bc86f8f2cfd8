// The key hibernation images are encrypted under at rest (AES-256-GCM, src/controller/hibernation-image.ts): a host
// secret in the chip directory, never in the instances' directories, so that a copy of an instance's files alone
// does not give its memory away.
import path from 'node:path';
import { hostKey } from './host-key.js';

export function hibernationKeyPath(hostDir: string): string {
  return path.join(hostDir, 'chip', 'hibernation.key');
}

/** The host's hibernation key, made where missing (host-key.ts). */
export function hibernationKey(hostDir: string): Buffer {
  return hostKey(hibernationKeyPath(hostDir), 'hibernation key', 'instances hibernated under the old one then boot instead of resuming');
}
