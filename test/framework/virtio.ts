// Plain memory and a minimal driver for testing the virtio data paths without a VM.
import type { QueueConfig } from '../../src/virtio/split-queue.js';
import type { DeviceMemory } from '../../src/virtio/device.js';

/** Guest memory as a plain array, with the same bounds rule as GuestMemory; counts any access outside it. */
export class PlainMemory implements DeviceMemory {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  outside = 0;
  /** New zeroed memory of `size` bytes, or a view of memory mapped elsewhere (shared with a card). */
  constructor(size: number | Uint8Array) {
    this.bytes = typeof size === 'number' ? new Uint8Array(size) : size;
    this.dv = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }
  contains(gpa: number, length: number): boolean {
    return Number.isSafeInteger(gpa) && Number.isSafeInteger(length) && gpa >= 0 && length >= 0 && gpa + length <= this.bytes.length;
  }
  private at(gpa: number, n: number): number {
    if (!this.contains(gpa, n)) {
      this.outside++;
      throw new RangeError(`access outside memory at ${gpa}`);
    }
    return gpa;
  }
  readU16(gpa: number): number { return this.dv.getUint16(this.at(gpa, 2), true); }
  readU32(gpa: number): number { return this.dv.getUint32(this.at(gpa, 4), true); }
  readU64(gpa: number): bigint { return this.dv.getBigUint64(this.at(gpa, 8), true); }
  writeU16(gpa: number, v: number): void { this.dv.setUint16(this.at(gpa, 2), v, true); }
  writeU32(gpa: number, v: number): void { this.dv.setUint32(this.at(gpa, 4), v, true); }
  writeU64(gpa: number, v: bigint): void { this.dv.setBigUint64(this.at(gpa, 8), v, true); }
  write(gpa: number, data: Uint8Array): void { this.bytes.set(data, this.at(gpa, data.length)); }
  slice(gpa: number, length: number): Uint8Array { return this.bytes.subarray(this.at(gpa, length), gpa + length); }
}

/** A driver for the tests: writes descriptors and offers chains the way Linux's virtio_ring does. */
export class Driver {
  availIdx = 0;
  constructor(readonly mem: PlainMemory, readonly c: QueueConfig) {}
  desc(table: number, i: number, addr: bigint, len: number, flags: number, next = 0): void {
    const at = table + 16 * i;
    this.mem.writeU64(at, addr);
    this.mem.writeU32(at + 8, len);
    this.mem.writeU16(at + 12, flags);
    this.mem.writeU16(at + 14, next);
  }
  offer(head: number): void {
    this.mem.writeU16(this.c.availAddr + 4 + 2 * (this.availIdx % this.c.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.writeU16(this.c.availAddr + 2, this.availIdx);
  }
}

