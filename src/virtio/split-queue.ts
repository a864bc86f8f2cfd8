// The device side of a virtio split virtqueue (virtio 1.2, section 2.7): takes descriptor chains the driver made
// available and returns them through the used ring. Everything in the rings is written by the guest and hostile:
// every index, address, length and flag is checked before use, and each malformed case is a VirtqueueError with its
// own code, after which the device is expected to set DEVICE_NEEDS_RESET and stop using the queue. This is a pure
// data path over guest memory: no fds, no hypervisor, so the same code serves in a card process.
import { AzoteError } from '../base/errors.js';
import { defineStruct } from '../base/struct.js';

/** What the queue needs of guest memory (GuestMemory provides it; tests may use plain memory). */
export interface QueueMemory {
  contains(gpa: number, length: number): boolean;
  readU16(gpa: number): number;
  readU32(gpa: number): number;
  readU64(gpa: number): bigint;
  writeU16(gpa: number, v: number): void;
  writeU32(gpa: number, v: number): void;
  write(gpa: number, data: Uint8Array): void;
}

// Layouts (section 2.7.5 - 2.7.8); test/virtio/split-queue.test.ts checks them against <linux/virtio_ring.h>.
export const vringDesc = defineStruct('vring_desc', 'struct vring_desc', 16, {
  addr: { offset: 0, type: 'u64' }, len: { offset: 8, type: 'u32' },
  flags: { offset: 12, type: 'u16' }, next: { offset: 14, type: 'u16' },
});
/** The available ring's header; `ring` is its first u16 entry, followed after the last one by used_event. */
export const vringAvail = defineStruct('vring_avail', 'struct vring_avail', 4, {
  flags: { offset: 0, type: 'u16' }, idx: { offset: 2, type: 'u16' }, ring: { offset: 4, type: { bytes: 0 } },
});
export const vringUsedElem = defineStruct('vring_used_elem', 'struct vring_used_elem', 8, {
  id: { offset: 0, type: 'u32' }, len: { offset: 4, type: 'u32' },
});
/** The used ring's header; `ring` is its first element, followed after the last one by avail_event. */
export const vringUsed = defineStruct('vring_used', 'struct vring_used', 4, {
  flags: { offset: 0, type: 'u16' }, idx: { offset: 2, type: 'u16' }, ring: { offset: 4, type: { bytes: 0 } },
});
const DESC_SIZE = vringDesc.size;
const DESC_ADDR = vringDesc.fields.addr.offset, DESC_LEN = vringDesc.fields.len.offset;
const DESC_FLAGS = vringDesc.fields.flags.offset, DESC_NEXT = vringDesc.fields.next.offset;
const RING_FLAGS = vringAvail.fields.flags.offset, RING_IDX = vringAvail.fields.idx.offset;
const RING_ENTRIES = vringAvail.fields.ring.offset;
const USED_ELEM_SIZE = vringUsedElem.size;
export const DESC_ALIGN = 16, AVAIL_ALIGN = 2, USED_ALIGN = 4;
export const VIRTQ_DESC_F_NEXT = 1, VIRTQ_DESC_F_WRITE = 2, VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const MAX_QUEUE_SIZE = 32768;

export type VirtqueueErrorCode =
  | 'BadQueueSize' | 'RingMisaligned' | 'RingOutsideMemory' | 'AvailIndexJump' | 'DescriptorIndexOutOfRange'
  | 'BufferOutsideMemory' | 'ChainTooLong' | 'IndirectNotNegotiated' | 'IndirectWithNext' | 'IndirectNotAtHead'
  | 'NestedIndirect' | 'IndirectTableBadLength' | 'ReadableAfterWritable' | 'LengthOverflow' | 'UsedIdOutOfRange'
  | 'MalformedRequest';

export class VirtqueueError extends AzoteError {
  constructor(readonly reason: VirtqueueErrorCode, detail: string) {
    super(`Virtqueue${reason}`, `virtqueue: ${detail}`);
    this.name = 'VirtqueueError';
  }
}

/** One guest buffer of a chain: a guest-physical range inside guest memory. */
export interface GuestBuffer {
  readonly addr: number;
  readonly len: number;
}

/** A validated chain: the buffers the device may read, then those it may write. */
export interface DescriptorChain {
  readonly head: number;
  readonly readable: readonly GuestBuffer[];
  readonly writable: readonly GuestBuffer[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

export interface QueueConfig {
  readonly size: number;
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  /** VIRTIO_F_RING_INDIRECT_DESC negotiated. */
  readonly indirect: boolean;
  /** VIRTIO_F_RING_EVENT_IDX negotiated. */
  readonly eventIdx: boolean;
  /** Where the device starts in the available ring (vhost-user's SET_VRING_BASE); 0 for a new queue. */
  readonly startIndex?: number;
  /** Where the device starts in the used ring, when not at startIndex (a restored queue whose chains were in flight). */
  readonly startUsed?: number;
}

/** How far a queue's device side has gone: what it pops next from the available ring and where it writes the next used element. */
export interface QueuePosition {
  readonly nextAvail: number;
  readonly nextUsed: number;
}

/**
 * A full memory barrier. The driver runs on another CPU: a device that publishes an index and then reads the
 * driver's (avail_event against avail idx, used idx against used_event) must not have the load pass the store, or
 * both sides miss the other's update and a notification is lost. A seq-cst Atomics store is a locked instruction.
 */
const fenceCell = new Int32Array(new SharedArrayBuffer(4));
function fence(): void {
  Atomics.store(fenceCell, 0, 0);
}

function fail(reason: VirtqueueErrorCode, detail: string): never {
  throw new VirtqueueError(reason, detail);
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export class SplitQueue {
  private lastAvail = 0;
  private usedIdx = 0;

  /** Checks the geometry the driver wrote to the transport; throws VirtqueueError when it is unusable. */
  constructor(private readonly mem: QueueMemory, readonly cfg: QueueConfig) {
    const { size } = cfg;
    // Unless told otherwise, every chain before the start is taken as completed: the used index starts there too.
    this.lastAvail = (cfg.startIndex ?? 0) & 0xffff;
    this.usedIdx = (cfg.startUsed ?? this.lastAvail) & 0xffff;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      fail('BadQueueSize', `queue size ${size} is not a power of two from 1 to ${MAX_QUEUE_SIZE}`);
    }
    const rings: Array<[string, number, number, number]> = [
      ['descriptor table', cfg.descAddr, DESC_SIZE * size, DESC_ALIGN],
      ['available ring', cfg.availAddr, RING_ENTRIES + 2 * size + 2, AVAIL_ALIGN],
      ['used ring', cfg.usedAddr, RING_ENTRIES + USED_ELEM_SIZE * size + 2, USED_ALIGN],
    ];
    for (const [what, addr, len, align] of rings) {
      if (addr % align !== 0) fail('RingMisaligned', `the ${what} at ${hex(addr)} is not ${align}-byte aligned`);
      if (!mem.contains(addr, len)) fail('RingOutsideMemory', `the ${what} at ${hex(addr)}+${len} is outside guest memory`);
    }
  }

  /** The next available-ring index the device will take (what vhost-user's GET_VRING_BASE returns). */
  get nextAvail(): number {
    return this.lastAvail;
  }

  /** Where the device side is, for a saved state (equal indices when no chain is in flight). */
  get position(): QueuePosition {
    return { nextAvail: this.lastAvail, nextUsed: this.usedIdx };
  }

  /** Chains the driver has made available and the device has not taken yet (after checking the index). */
  pending(): number {
    const n = (this.mem.readU16(this.cfg.availAddr + RING_IDX) - this.lastAvail) & 0xffff;
    if (n > this.cfg.size) fail('AvailIndexJump', `the available index moved ${n} entries ahead on a queue of ${this.cfg.size}`);
    return n;
  }

  /** The next available chain, validated in full; undefined when none is pending. */
  pop(): DescriptorChain | undefined {
    if (this.pending() === 0) return undefined;
    const { size, availAddr } = this.cfg;
    const head = this.mem.readU16(availAddr + RING_ENTRIES + 2 * (this.lastAvail % size));
    const chain = this.walk(head);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    // With EVENT_IDX the device asks to be notified once the driver adds past what it has taken (avail_event).
    if (this.cfg.eventIdx) {
      this.mem.writeU16(this.cfg.usedAddr + RING_ENTRIES + USED_ELEM_SIZE * size, this.lastAvail);
      fence(); // the next pending() must see a chain the driver added before it read avail_event
    }
    return chain;
  }

  /**
   * Returns a chain to the driver with the number of bytes the device wrote into it. Returns whether the driver
   * wants an interrupt for it (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX).
   */
  push(head: number, written: number): boolean {
    const { size, usedAddr, availAddr } = this.cfg;
    if (!Number.isInteger(head) || head < 0 || head >= size) fail('UsedIdOutOfRange', `used id ${head} on a queue of ${size}`);
    const elem = usedAddr + RING_ENTRIES + USED_ELEM_SIZE * (this.usedIdx % size);
    this.mem.writeU32(elem, head);
    this.mem.writeU32(elem + 4, written >>> 0);
    const old = this.usedIdx;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // The element is in place before the index that publishes it (x86 keeps stores in order).
    this.mem.writeU16(usedAddr + RING_IDX, this.usedIdx);
    fence(); // the used index is visible before the driver's interrupt request is read
    if (!this.cfg.eventIdx) return (this.mem.readU16(availAddr + RING_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = this.mem.readU16(availAddr + RING_ENTRIES + 2 * size);
    // vring_need_event: notify when the new index passed used_event since the last notification point.
    return ((this.usedIdx - usedEvent - 1) & 0xffff) < ((this.usedIdx - old) & 0xffff);
  }

  private readDesc(table: number, index: number): { addr: bigint; len: number; flags: number; next: number } {
    const at = table + DESC_SIZE * index;
    return {
      addr: this.mem.readU64(at + DESC_ADDR), len: this.mem.readU32(at + DESC_LEN),
      flags: this.mem.readU16(at + DESC_FLAGS), next: this.mem.readU16(at + DESC_NEXT),
    };
  }

  private walk(head: number): DescriptorChain {
    const { size, descAddr } = this.cfg;
    if (head >= size) fail('DescriptorIndexOutOfRange', `chain head ${head} on a queue of ${size}`);
    let table = descAddr;
    let entries = size;
    let index = head;
    let indirect = false;
    const readable: GuestBuffer[] = [];
    const writable: GuestBuffer[] = [];
    let readableBytes = 0, writableBytes = 0;
    for (let steps = 0; ; steps++) {
      if (steps >= entries) fail('ChainTooLong', `chain from ${head} has more than ${entries} descriptors (or a loop)`);
      const d = this.readDesc(table, index);
      if (d.flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.cfg.indirect) fail('IndirectNotNegotiated', `descriptor ${index} is indirect but the feature was not negotiated`);
        if (indirect) fail('NestedIndirect', `descriptor ${index} of an indirect table is itself indirect`);
        if (d.flags & VIRTQ_DESC_F_NEXT) fail('IndirectWithNext', `descriptor ${index} is indirect and has NEXT`);
        if (steps !== 0) fail('IndirectNotAtHead', `indirect descriptor ${index} follows other descriptors`);
        if (d.len === 0 || d.len % DESC_SIZE !== 0 || d.len / DESC_SIZE > MAX_QUEUE_SIZE) {
          fail('IndirectTableBadLength', `indirect table of ${d.len} bytes is not 1 to ${MAX_QUEUE_SIZE} descriptors`);
        }
        // No alignment is required of an indirect table (Linux's come from kmalloc, 8-byte aligned with SLOB).
        table = this.checkedRange(d.addr, d.len, index);
        entries = d.len / DESC_SIZE;
        index = 0;
        indirect = true;
        steps = -1;
        continue;
      }
      const addr = this.checkedRange(d.addr, d.len, index);
      if (d.flags & VIRTQ_DESC_F_WRITE) {
        writable.push({ addr, len: d.len });
        writableBytes += d.len;
      } else {
        if (writable.length > 0) fail('ReadableAfterWritable', `readable descriptor ${index} follows a writable one`);
        readable.push({ addr, len: d.len });
        readableBytes += d.len;
      }
      if (readableBytes > 0xffffffff || writableBytes > 0xffffffff) {
        fail('LengthOverflow', `chain from ${head} holds more than 4 GiB`);
      }
      if (!(d.flags & VIRTQ_DESC_F_NEXT)) return { head, readable, writable, readableBytes, writableBytes };
      if (d.next >= entries) fail('DescriptorIndexOutOfRange', `descriptor ${index} points to ${d.next} in a table of ${entries}`);
      index = d.next;
    }
  }

  private checkedRange(addr: bigint, len: number, index: number): number {
    if (addr > BigInt(Number.MAX_SAFE_INTEGER) || !this.mem.contains(Number(addr), len)) {
      fail('BufferOutsideMemory', `descriptor ${index}: 0x${addr.toString(16)}+${len} is outside guest memory`);
    }
    return Number(addr);
  }
}
