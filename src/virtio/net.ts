// virtio-net (virtio 1.2, section 5.1): queue 0 receives (frames to the guest), queue 1 transmits. No offloads are
// offered, so every frame is a plain Ethernet frame behind a 12-byte virtio_net_hdr_v1 that is all zeros but for
// num_buffers (1: no VIRTIO_NET_F_MRG_RXBUF). Frames come from and go to a FrameBackend (a TAP device in the
// hypervisor; a virtual switch port in a card later). When the guest has posted no receive buffer, the data path
// stops taking frames from the backend (they wait in its queue) until the guest adds buffers.
import { defineStruct, StructView } from '../base/struct.js';
import { VirtqueueError, type SplitQueue } from './split-queue.js';
import { gather, scatter } from './guest-buffers.js';
import { Backlog, QUEUE_BUDGET } from './budget.js';
import {
  RING_FEATURES, readConfigBytes, type DataPath, type DataPathSpec, type DeviceMemory, type DeviceModel, type VirtioDevice,
} from './device.js';

export const VIRTIO_ID_NET = 1;
export const NET_QUEUE_SIZE = 256;
export const NET_F = { MAC: 5, STATUS: 16 } as const;
export const NET_S_LINK_UP = 1;
export const RX_QUEUE = 0, TX_QUEUE = 1;
/** The largest frame either way: a 1500-byte payload, an Ethernet header and a VLAN tag. */
export const MAX_FRAME = 1518;

// Layouts from section 5.1.4 and 5.1.6; test/virtio/net.test.ts checks them against <linux/virtio_net.h>.
export const virtioNetConfig = defineStruct('virtio_net_config', 'struct virtio_net_config', 24, {
  mac: { offset: 0, type: { bytes: 6 } }, status: { offset: 6, type: 'u16' },
  maxVirtqueuePairs: { offset: 8, type: 'u16', c: 'max_virtqueue_pairs' }, mtu: { offset: 10, type: 'u16' },
});

export const virtioNetHdr = defineStruct('virtio_net_hdr_v1', 'struct virtio_net_hdr_v1', 12, {
  flags: { offset: 0, type: 'u8' }, gsoType: { offset: 1, type: 'u8', c: 'gso_type' },
  hdrLen: { offset: 2, type: 'u16', c: 'hdr_len' }, gsoSize: { offset: 4, type: 'u16', c: 'gso_size' },
  csumStart: { offset: 6, type: 'u16', c: 'csum_start' }, csumOffset: { offset: 8, type: 'u16', c: 'csum_offset' },
  numBuffers: { offset: 10, type: 'u16', c: 'num_buffers' },
});

/** Where frames go and come from. */
export interface FrameBackend {
  /** The fd to wait on for frames to receive, if the backend has one. */
  readonly fd: number | undefined;
  /** The next frame for the guest, copied into `into`; its length, or 0 when none is waiting. */
  receive(into: Uint8Array): number;
  /** A frame from the guest. False when the backend had to drop it. */
  send(frame: Uint8Array): boolean;
}

/** virtio-net as the driver sees it: one queue pair, a MAC, the link up. */
export class NetModel implements DeviceModel {
  readonly deviceId = VIRTIO_ID_NET;
  readonly features = RING_FEATURES | (1n << BigInt(NET_F.MAC)) | (1n << BigInt(NET_F.STATUS));
  readonly queueSizes = [NET_QUEUE_SIZE, NET_QUEUE_SIZE];
  private readonly config = StructView.alloc(virtioNetConfig);

  constructor(mac: Uint8Array) {
    this.setMac(mac);
    this.config.set('status', NET_S_LINK_UP).set('maxVirtqueuePairs', 1);
  }

  get mac(): Uint8Array {
    return this.config.bytes().slice(0, 6);
  }

  setMac(mac: Uint8Array): void {
    this.config.bytes().set(mac.subarray(0, 6), 0);
  }

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.config.bytes(), offset, size);
  }

  writeConfig(): void {} // the MAC is only writable with VIRTIO_NET_F_CTRL_MAC_ADDR, not offered
}

export class VirtioNet extends NetModel implements VirtioDevice {
  constructor(mac: Uint8Array, readonly dataPath: DataPathSpec) {
    super(mac);
  }
}

export class NetDataPath implements DataPath {
  readonly counters = { rxFrames: 0, txFrames: 0, txDropped: 0, rxTruncated: 0 };
  private readonly frame = new Uint8Array(MAX_FRAME + 64);
  /** A frame taken from the backend that found no receive buffer; delivered first when buffers come. */
  private pending = 0;
  private readonly header = new StructView(virtioNetHdr, new Uint8Array(virtioNetHdr.size)).set('numBuffers', 1).bytes();
  private readonly backlog = new Backlog();

  constructor(
    private readonly mem: DeviceMemory,
    private readonly queues: readonly (SplitQueue | undefined)[],
    private readonly backend: FrameBackend,
  ) {}

  /** The backend's fd while the guest has room for frames; none while receiving is stalled. */
  watched(): readonly number[] {
    return this.pending === 0 && this.backend.fd !== undefined && this.queues[RX_QUEUE] ? [this.backend.fd] : [];
  }

  process(index: number): boolean {
    if (index === TX_QUEUE) return this.transmit();
    if (index === RX_QUEUE) return this.receive();
    return false;
  }

  unfinished(index: number): boolean {
    return this.backlog.has(index);
  }

  /** The backend has frames (its fd is readable): hand them to the guest. */
  readable(): boolean {
    return this.receive();
  }

  private transmit(): boolean {
    const queue = this.queues[TX_QUEUE];
    if (!queue) return false;
    return this.backlog.serve(TX_QUEUE, queue, (chain) => {
      if (chain.writable.length > 0) throw new VirtqueueError('MalformedRequest', `transmit chain ${chain.head} has writable buffers`);
      if (chain.readableBytes < virtioNetHdr.size) throw new VirtqueueError('MalformedRequest', `transmit chain ${chain.head} has no header`);
      const length = chain.readableBytes - virtioNetHdr.size;
      if (length > MAX_FRAME) {
        this.counters.txDropped++; // larger than any frame without offloads: the driver broke the rules
      } else {
        if (this.backend.send(gather(this.mem, chain.readable, virtioNetHdr.size, length))) this.counters.txFrames++;
        else this.counters.txDropped++;
      }
      return 0;
    });
  }

  private receive(): boolean {
    const queue = this.queues[RX_QUEUE];
    if (!queue) return false;
    let interrupt = false;
    for (let n = 0; n < QUEUE_BUDGET; n++) {
      if (this.pending === 0) this.pending = this.backend.receive(this.frame);
      if (this.pending === 0) break;
      const chain = queue.pop();
      if (!chain) break; // no room: the frame waits here, the backend's fd is not watched until the guest adds buffers
      if (chain.readable.length > 0) throw new VirtqueueError('MalformedRequest', `receive chain ${chain.head} has readable buffers`);
      const total = virtioNetHdr.size + this.pending;
      let written = 0;
      if (chain.writableBytes >= total) {
        scatter(this.mem, chain.writable, 0, this.header);
        scatter(this.mem, chain.writable, virtioNetHdr.size, this.frame.subarray(0, this.pending));
        written = total;
        this.counters.rxFrames++;
      } else {
        this.counters.rxTruncated++; // a buffer too small for the frame: the frame is dropped, the buffer returned empty
      }
      this.pending = 0;
      interrupt = queue.push(chain.head, written) || interrupt;
    }
    return interrupt;
  }
}
