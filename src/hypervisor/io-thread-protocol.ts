// What the VM's main thread and its I/O thread say to each other. The I/O thread runs the virtio data paths: it
// waits on the queues' ioeventfds, serves them, and raises interrupts through irqfds, so a guest's notification and
// its completion interrupt never pass through the main thread or a vCPU's exit to userspace.
import type { SyscallAllowlist } from '../sys/seccomp.js';
import type { MessagePort } from 'node:worker_threads';
import type { DataPathSpec } from '../virtio/device.js';
import type { QueueConfig } from '../virtio/split-queue.js';
import type { SharedGuestMemory } from '../memory/guest-memory.js';

export interface IoThreadInit {
  readonly memory: SharedGuestMemory;
  /** Signalled after each command is posted, to wake the thread from poll. */
  readonly wakeFd: number;
  /** The thread stores the number of the last command it finished here (Int32 slot 0) and notifies. */
  readonly ack: SharedArrayBuffer;
  readonly commands: MessagePort;
  /** The list the thread narrows its system calls to (the I/O role's) before it serves anything, if any. */
  readonly confine: SyscallAllowlist | undefined;
}

export type IoCommand =
  | {
    readonly type: 'start'; readonly seq: number; readonly device: number; readonly spec: DataPathSpec;
    readonly queues: readonly (QueueConfig | undefined)[]; readonly features: bigint;
    /** Per queue index: the eventfd KVM signals when the guest writes that index to QueueNotify. */
    readonly notifyFds: readonly number[];
    readonly irqFd: number;
    /** The transport's InterruptStatus word. */
    readonly isr: SharedArrayBuffer;
  }
  | { readonly type: 'stop'; readonly seq: number; readonly device: number }
  /** The answer to a `connect-host`: a connected socket (now the thread's) or none. */
  | { readonly type: 'host-connected'; readonly seq: number; readonly device: number; readonly hostPort: number; readonly fd: number | undefined }
  /** Stop serving (a snapshot is being taken): the thread touches no guest memory until `resume`. */
  | { readonly type: 'pause'; readonly seq: number }
  | { readonly type: 'resume'; readonly seq: number }
  | { readonly type: 'exit'; readonly seq: number };

export type IoEvent =
  /** The guest gave a device something malformed: it needs a reset (the thread stopped serving it). */
  | { readonly type: 'failed'; readonly device: number; readonly why: string }
  /** A data path failed in a way that is not the guest's doing. */
  | { readonly type: 'crashed'; readonly device: number; readonly why: string }
  /** A vsock device asks for a connection to the host program at `hostPort` (answered with `host-connected`). */
  | { readonly type: 'connect-host'; readonly device: number; readonly hostPort: number }
  /** The thread paused; why some devices' state cannot be saved now, if any (DataPath.snapshotBlocker). */
  | { readonly type: 'paused'; readonly blockers: readonly string[] };
