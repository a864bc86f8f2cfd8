// virtio-rng (virtio 1.2, section 5.4): one request queue whose writable buffers the device fills from the host's
// CSPRNG. A guest may offer huge buffers: each chain gets at most RNG_MAX_BYTES_PER_CHAIN (the used length says how
// many), so a request never makes the host allocate more than that.
import { randomFillSync } from 'node:crypto';
import type { SplitQueue } from './split-queue.js';
import { Backlog } from './budget.js';
import { RING_FEATURES, type DataPath, type DataPathSpec, type DeviceMemory, type VirtioDevice } from './device.js';

export const VIRTIO_ID_RNG = 4;
export const RNG_QUEUE_SIZE = 256;
export const RNG_MAX_BYTES_PER_CHAIN = 64 * 1024;

export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_RNG;
  readonly features = RING_FEATURES;
  readonly queueSizes = [RNG_QUEUE_SIZE];
  readonly dataPath: DataPathSpec = { kind: 'rng' };

  readConfig(): number {
    return 0; // no configuration space
  }

  writeConfig(): void {}
}

export class RngDataPath implements DataPath {
  /** Bytes handed to the guest since the device started. */
  served = 0;
  private readonly backlog = new Backlog();

  constructor(private readonly mem: DeviceMemory, private readonly queue: SplitQueue | undefined) {}

  process(index: number): boolean {
    if (index !== 0 || !this.queue) return false;
    return this.backlog.serve(0, this.queue, (chain) => {
      let left = RNG_MAX_BYTES_PER_CHAIN;
      let written = 0;
      for (const b of chain.writable) {
        const n = Math.min(b.len, left);
        if (n === 0) break;
        randomFillSync(this.mem.slice(b.addr, n));
        written += n;
        left -= n;
      }
      this.served += written;
      return written;
    });
  }

  unfinished(index: number): boolean {
    return this.backlog.has(index);
  }
}
