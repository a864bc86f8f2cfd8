// virtio-rng (virtio 1.2, section 5.4): one request queue whose writable buffers the device fills from the host's
// CSPRNG. A guest may offer huge buffers: each chain gets at most RNG_MAX_BYTES_PER_CHAIN (the used length says how
// many), so a request never makes the host allocate more than that.
import { randomFillSync } from 'node:crypto';
import type { SplitQueue, QueueMemory } from './split-queue.js';
import { VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, type VirtioDevice } from './mmio-transport.js';

export const VIRTIO_ID_RNG = 4;
export const RNG_QUEUE_SIZE = 256;
export const RNG_MAX_BYTES_PER_CHAIN = 64 * 1024;

export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_RNG;
  readonly features = (1n << VIRTIO_F_RING_INDIRECT_DESC) | (1n << VIRTIO_F_RING_EVENT_IDX);
  readonly queueSizes = [RNG_QUEUE_SIZE];
  private queue: SplitQueue | undefined;
  private usedBuffers: () => void = () => undefined;
  /** Bytes handed to the guest since creation. */
  served = 0;

  constructor(private readonly mem: QueueMemory) {}

  readConfig(): number {
    return 0; // no configuration space
  }

  writeConfig(): void {}

  activate(queues: readonly (SplitQueue | undefined)[], _features: bigint, usedBuffers: () => void): void {
    this.queue = queues[0];
    this.usedBuffers = usedBuffers;
  }

  notify(index: number): void {
    if (index !== 0 || !this.queue) return;
    let interrupt = false;
    for (let chain = this.queue.pop(); chain; chain = this.queue.pop()) {
      let left = RNG_MAX_BYTES_PER_CHAIN;
      let written = 0;
      for (const b of chain.writable) {
        const n = Math.min(b.len, left);
        if (n === 0) break;
        this.mem.write(b.addr, randomFillSync(new Uint8Array(n)));
        written += n;
        left -= n;
      }
      this.served += written;
      interrupt = this.queue.push(chain.head, written) || interrupt;
    }
    if (interrupt) this.usedBuffers();
  }

  reset(): void {
    this.queue = undefined;
    this.usedBuffers = () => undefined;
  }
}
