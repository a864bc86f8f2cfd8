// Builds a device's data path from its description, wherever it runs.
import { SplitQueue, type QueueConfig } from './split-queue.js';
import type { DataPath, DataPathSpec, DeviceMemory } from './device.js';
import { RngDataPath } from './rng.js';
import { BlockDataPath } from './blk.js';
import { RawFileBackend } from './raw-file.js';
import { NetDataPath } from './net.js';
import { TapBackend } from './tap-backend.js';
import { VsockDataPath } from './vsock.js';

/** Checks each queue's geometry (VirtqueueError) and builds the data path over them. */
export function createDataPath(
  spec: DataPathSpec, mem: DeviceMemory, configs: readonly (QueueConfig | undefined)[], features: bigint,
): DataPath {
  const queues = configs.map((c) => (c ? new SplitQueue(mem, c) : undefined));
  switch (spec.kind) {
    case 'rng': return new RngDataPath(mem, queues[0]);
    case 'blk': return new BlockDataPath(mem, queues, features, new RawFileBackend(spec.fd, spec.sectors, spec.readOnly), spec.serial);
    case 'net': return new NetDataPath(mem, queues, new TapBackend(spec.tapFd));
    case 'vsock': return new VsockDataPath(mem, queues, spec.guestCid, spec.listenFd, spec.path);
  }
}
