// What a virtio device is made of. The model (features, configuration space) answers the driver's register accesses
// through the transport; the data path serves the queues once the driver starts the device. The data path is built
// from a serializable description, so the same code runs inline (tests), on the hypervisor's I/O thread, or later in
// a card process behind vhost-user; it never assumes where it lives.
import type { QueueConfig, QueueMemory } from './split-queue.js';

export const VIRTIO_F_VERSION_1 = 32n, VIRTIO_F_RING_INDIRECT_DESC = 28n, VIRTIO_F_RING_EVENT_IDX = 29n;

/** The ring features every Azote device offers. */
export const RING_FEATURES = (1n << VIRTIO_F_RING_INDIRECT_DESC) | (1n << VIRTIO_F_RING_EVENT_IDX);

/** How to build a device's data path: plain data (fd numbers are valid in every thread of the process). */
export type DataPathSpec =
  | { readonly kind: 'rng' }
  | { readonly kind: 'blk'; readonly fd: number; readonly readOnly: boolean; readonly sectors: number; readonly serial: string }
  | { readonly kind: 'net'; readonly tapFd: number }
  | { readonly kind: 'vsock'; readonly guestCid: number; readonly listenFd: number }
  | { readonly kind: 'relay'; readonly callFds: readonly number[] };

/** A device as its driver sees it: identity, features, queues and configuration space. */
export interface DeviceModel {
  readonly deviceId: number;
  /** Feature bits offered; VIRTIO_F_VERSION_1 is added by the transport. */
  readonly features: bigint;
  /** The largest size of each queue (a power of two); their number is the number of queues. */
  readonly queueSizes: readonly number[];
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
}

/** A device the hypervisor runs itself: its model and how to build its data path. */
export interface VirtioDevice extends DeviceModel {
  readonly dataPath: DataPathSpec;
}

/** Guest memory as a data path sees it: the queue's checked accessors and live views for zero-copy I/O. */
export interface DeviceMemory extends QueueMemory {
  /** A live view of [gpa, gpa+length); throws when the range is not inside guest memory. */
  slice(gpa: number, length: number): Uint8Array;
}

/** A running device's queue work: pops chains, does the I/O, returns them. */
export interface DataPath {
  /**
   * Serves what the driver made available on queue `index`, at most QUEUE_BUDGET chains (virtio/budget.ts). Returns
   * whether the driver should be interrupted. Throws VirtqueueError for a malformed chain or request; the device then
   * needs a reset.
   */
  process(index: number): boolean;
  /**
   * Whether queue `index`'s last turn ended at its budget with chains left: the runner serves it again once the other
   * work that is ready had its turn, without waiting for another notification.
   */
  unfinished?(index: number): boolean;
  /** Host fds the data path waits on besides its queues (a TAP, sockets); asked again after every event. */
  watched?(): readonly number[];
  /** One of the watched fds is readable (or hung up). Returns whether the driver should be interrupted. */
  readable?(fd: number): boolean;
  /** Host fds the data path waits to write to (output it could not place yet). */
  watchedWritable?(): readonly number[];
  writable?(fd: number): boolean;
  /** vsock: the answer to a DataPathRequests.connectHost (VsockDataPath.hostConnected). */
  hostConnected?(hostPort: number, fd: number | undefined): boolean;
  /** Releases what the data path opened itself (connections); its queues are no longer served. */
  close?(): void;
  /**
   * Why its state cannot be saved now (live host connections a snapshot cannot carry), or undefined. A data path
   * without it keeps nothing between turns but its queues' positions.
   */
  snapshotBlocker?(): string | undefined;
}

/** What a data path asks of whoever runs it, answered later through the data path. */
export interface DataPathRequests {
  /** vsock: a connection to the host program at `hostPort` (answered with hostConnected). */
  connectHost(hostPort: number): void;
}

/** What the transport hears back from a running data path. */
export interface RunnerEvents {
  usedBuffers(): void;
  failed(why: string): void;
}

/** Runs a device's data path somewhere: inline, on an I/O thread, or in another process. */
export interface QueueRunner {
  /** The driver set DRIVER_OK: serve these queues (undefined where the driver left one unused). */
  start(queues: readonly (QueueConfig | undefined)[], features: bigint, events: RunnerEvents): void;
  /** The driver notified queue `index` through the register (not through an ioeventfd). */
  notify(index: number): void;
  /** The device was reset: once this returns, the data path no longer touches the queues. */
  stop(): void;
}

/** A configuration-space read of `size` bytes (1, 2 or 4) at `offset` of `bytes`, little-endian; zeros past the end. */
export function readConfigBytes(bytes: Uint8Array, offset: number, size: number): number {
  let v = 0;
  for (let i = Math.min(size, 4) - 1; i >= 0; i--) v = v * 256 + (bytes[offset + i] ?? 0);
  return v;
}
