// Runs ring-flooder.ts on a worker thread over one ring of a SharedGuest, and reports how far it got.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { FlooderData } from './ring-flooder.js';
import type { SharedGuest } from './shared-guest.js';

export class RingFlood {
  private readonly cells = new Int32Array(new SharedArrayBuffer(8));
  private readonly worker: Worker;

  constructor(g: SharedGuest, index: number) {
    const queue = g.queues[index];
    const kick = g.kicks[index];
    assert.ok(queue && kick !== undefined, `ring ${index} exists`);
    const data: FlooderData = { address: g.mapping.address, size: g.mapping.length, queue, kick, control: this.cells.buffer as SharedArrayBuffer };
    this.worker = new Worker(new URL('./ring-flooder.js', import.meta.url), { workerData: data });
  }

  /** Chains the device has returned so far. */
  get returned(): number {
    return Atomics.load(this.cells, 1);
  }

  /** Waits (up to a minute) until the device has returned `chains` chains. */
  async reaches(chains: number): Promise<void> {
    for (let i = 0; i < 600 && this.returned < chains; i++) await sleep(100);
    assert.ok(this.returned >= chains, `the flooded ring was served: ${this.returned} chains of ${chains}`);
  }

  async stop(): Promise<void> {
    Atomics.store(this.cells, 0, 1);
    await this.worker.terminate();
  }
}
