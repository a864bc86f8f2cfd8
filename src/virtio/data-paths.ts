// Builds a device's data path from its description, wherever it runs.
import { SplitQueue, type QueueConfig } from './split-queue.js';
import type { DataPath, DataPathRequests, DataPathSpec, DeviceMemory } from './device.js';
import { RngDataPath } from './rng.js';
import { BlockDataPath } from './blk.js';
import { RawFileBackend } from './raw-file.js';
import { NetDataPath } from './net.js';
import { TapBackend } from './tap-backend.js';
import { VsockDataPath } from './vsock.js';
import { InterruptRelay } from './relay.js';

/** The queues of a device (undefined where the driver left one unused); VirtqueueError for a bad geometry. */
export function buildQueues(mem: DeviceMemory, configs: readonly (QueueConfig | undefined)[]): (SplitQueue | undefined)[] {
  return configs.map((c) => (c ? new SplitQueue(mem, c) : undefined));
}

/** Builds the data path of `spec` over its queues; `requests` answers what it asks of its runner (vsock's only). */
export function createDataPath(
  spec: DataPathSpec, mem: DeviceMemory, queues: readonly (SplitQueue | undefined)[], features: bigint, requests?: DataPathRequests,
): DataPath {
  switch (spec.kind) {
    case 'rng': return new RngDataPath(mem, queues[0]);
    case 'blk': return new BlockDataPath(mem, queues, features, new RawFileBackend(spec.fd, spec.sectors, spec.readOnly), spec.serial);
    case 'net': return new NetDataPath(mem, queues, new TapBackend(spec.tapFd));
    case 'vsock': {
      if (!requests) throw new Error('a vsock data path needs a runner that answers its connections to the host');
      return new VsockDataPath(mem, queues, spec.guestCid, spec.listenFd, (port) => requests.connectHost(port));
    }
    case 'relay': return new InterruptRelay(spec.callFds);
  }
}
