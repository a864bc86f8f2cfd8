// A VM's attachment to the network card: a switch port on one side, the frame backend of the attachment's virtio-net
// data path on the other. Frames switched to it wait in a bounded queue until the guest has receive buffers; a full
// queue drops, as a congested port does.
import { MAX_FRAME, type FrameBackend } from '../../virtio/net.js';
import type { SwitchPort } from './switch.js';

/** Frames a port holds for a guest that is not taking them. */
export const PORT_QUEUE_FRAMES = 256;

export class VmPort implements SwitchPort, FrameBackend {
  /** The card serves the queue when told (onFrames), so there is no fd to wait on. */
  readonly fd = undefined;
  readonly counters = { queueDropped: 0, oversized: 0 };
  private readonly frames: Uint8Array[] = [];

  constructor(
    readonly name: string,
    public mac: Uint8Array,
    private readonly transmit: (from: VmPort, frame: Uint8Array) => void,
    private readonly onFrames: (port: VmPort) => void,
  ) {}

  get queued(): number {
    return this.frames.length;
  }

  deliver(frame: Uint8Array): void {
    if (frame.length > MAX_FRAME) {
      this.counters.oversized++; // larger than the guest's buffers may be, without offloads
      return;
    }
    if (this.frames.length >= PORT_QUEUE_FRAMES) {
      this.counters.queueDropped++;
      return;
    }
    this.frames.push(frame.slice());
    if (this.frames.length === 1) this.onFrames(this);
  }

  receive(into: Uint8Array): number {
    const frame = this.frames.shift();
    if (!frame) return 0;
    into.set(frame);
    return frame.length;
  }

  send(frame: Uint8Array): boolean {
    this.transmit(this, frame);
    return true;
  }
}
