// A guest driver that never stops: on its own thread, it keeps a ring full by making the chain at descriptor 0
// available again as fast as the device returns chains, until told to stop. It notifies the device when the device
// has caught up with it (and might be waiting), as a driver whose notifications are suppressed while the device works.
import { workerData } from 'node:worker_threads';
import * as libc from '../../src/sys/libc.js';
import type { QueueConfig } from '../../src/virtio/split-queue.js';

export interface FlooderData {
  readonly address: bigint;
  readonly size: number;
  readonly queue: QueueConfig;
  /** The ring's kick eventfd. */
  readonly kick: number;
  /** [0]: set to 1 to stop; [1]: chains the device has returned so far. */
  readonly control: SharedArrayBuffer;
}

const { address, size, queue, kick, control } = workerData as FlooderData;
const dv = new DataView(libc.viewAt(address, size));
const cells = new Int32Array(control);
let availIdx = dv.getUint16(queue.availAddr + 2, true);
let lastUsed = dv.getUint16(queue.usedAddr + 2, true);
while (Atomics.load(cells, 0) === 0) {
  const used = dv.getUint16(queue.usedAddr + 2, true);
  Atomics.add(cells, 1, (used - lastUsed) & 0xffff);
  lastUsed = used;
  const idle = used === availIdx;
  let added = 0;
  for (; ((availIdx - used) & 0xffff) < queue.size; added++) {
    dv.setUint16(queue.availAddr + 4 + 2 * (availIdx % queue.size), 0, true);
    availIdx = (availIdx + 1) & 0xffff;
  }
  if (added > 0) dv.setUint16(queue.availAddr + 2, availIdx, true);
  if (idle) libc.eventfdSignal(kick);
}
