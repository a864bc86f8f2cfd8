// Guest RAM on one memfd (so cards and a live update can map the same pages), mapped once into this process.
// Every access by guest-physical address is bounds-checked against the regions; nothing reads outside them.
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';

export interface MemoryRegion {
  /** Guest-physical start. */
  readonly gpa: number;
  readonly size: number;
  /** Offset of the region in the memfd (and in the host mapping). */
  readonly offset: number;
}

/** What another thread needs to reach the same memory: the mapping's address and the region table. */
export interface SharedGuestMemory {
  readonly fd: number;
  readonly address: bigint;
  readonly size: number;
  readonly regions: readonly MemoryRegion[];
  readonly secret: boolean;
}

export class GuestMemoryError extends AzoteError {
  constructor(readonly gpa: number, readonly length: number) {
    super('GuestMemoryOutOfRange', `guest address range 0x${gpa.toString(16)}+${length} is outside guest memory`);
    this.name = 'GuestMemoryError';
  }
}

export const GiB = 1024 * 1024 * 1024;
export const MiB = 1024 * 1024;
const PAGE = 4096;
/** RAM above this guest-physical address is moved above 4 GiB, leaving the 32-bit MMIO hole free. */
export const MMIO_HOLE_START = 3 * GiB;
export const MMIO_HOLE_END = 4 * GiB;

/** The guest-physical regions for `size` bytes of RAM: below the MMIO hole, and the rest above 4 GiB. */
export function planRegions(size: number): MemoryRegion[] {
  const low = Math.min(size, MMIO_HOLE_START);
  const regions: MemoryRegion[] = [{ gpa: 0, size: low, offset: 0 }];
  if (size > low) regions.push({ gpa: MMIO_HOLE_END, size: size - low, offset: low });
  return regions;
}

export class GuestMemory {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;

  private constructor(
    readonly fd: number,
    private readonly mapping: libc.Mapping | undefined,
    buffer: ArrayBuffer,
    readonly address: bigint,
    readonly size: number,
    readonly regions: readonly MemoryRegion[],
    /** On secret memory (memfd_secret) rather than a sealed memfd. */
    readonly secret: boolean,
  ) {
    this.bytes = new Uint8Array(buffer);
    this.dv = new DataView(buffer);
  }

  /**
   * Allocates `size` bytes of guest RAM; pages are only committed when touched. On a new memfd sealed at that size
   * (`secret` false), or on secret memory (memfd_secret: out of the kernel's direct map, readable by no other process;
   * its size is fixed by its first ftruncate, and it is charged as locked memory).
   */
  static create(size: number, name = 'azote-guest-ram', o: { readonly secret?: boolean } = {}): GuestMemory {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0) {
      throw new AzoteError('BadMemorySize', `guest memory size ${size} is not a positive multiple of 4096`);
    }
    const fd = o.secret ? libc.memfdSecret() : libc.memfdCreate(name, libc.MFD_ALLOW_SEALING);
    try {
      libc.ftruncate(fd, size);
      // Sealed at its size: a card maps only memory that cannot shrink under it (touching a page past the end of
      // a shrunk file is SIGBUS), and nothing can change the seals afterwards.
      if (!o.secret) libc.addSeals(fd, libc.F_SEAL_SHRINK | libc.F_SEAL_GROW | libc.F_SEAL_SEAL);
      const m = libc.mmap(size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED | libc.MAP_NORESERVE, fd, 0);
      // Guest pages stay out of core dumps of the hypervisor (secret memory never is in one).
      if (!o.secret) libc.madvise(m, libc.MADV_DONTDUMP);
      return new GuestMemory(fd, m, m.buffer, m.address, size, planRegions(size), o.secret === true);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
  }

  /**
   * The byte ranges of the memory that hold data: pages never touched are holes, which a reader can take as zero
   * without touching them (touching a hole allocates a page: on secret memory, a locked one). A memfd is asked with
   * SEEK_DATA/SEEK_HOLE; secret memory cannot be (lseek gives ESPIPE), so its resident pages are (mincore).
   */
  dataExtents(): Array<{ offset: number; length: number }> {
    if (this.secret) return this.residentExtents();
    const extents: Array<{ offset: number; length: number }> = [];
    for (let at = 0; at < this.size;) {
      const data = libc.seekExtent(this.fd, at, libc.SEEK_DATA);
      if (data === undefined || data >= this.size) break;
      const hole = Math.min(libc.seekExtent(this.fd, data, libc.SEEK_HOLE) ?? this.size, this.size);
      extents.push({ offset: data, length: hole - data });
      at = hole;
    }
    return extents;
  }

  private residentExtents(): Array<{ offset: number; length: number }> {
    const resident = libc.residentPages(this.address, this.size);
    const extents: Array<{ offset: number; length: number }> = [];
    for (let page = 0; page < resident.length;) {
      if (((resident[page] ?? 0) & 1) === 0) {
        page++;
        continue;
      }
      const first = page;
      while (page < resident.length && ((resident[page] ?? 0) & 1) !== 0) page++;
      extents.push({ offset: first * PAGE, length: Math.min(page * PAGE, this.size) - first * PAGE });
    }
    return extents;
  }

  /** The same memory, seen from another thread of this process. */
  static attach(shared: SharedGuestMemory): GuestMemory {
    return new GuestMemory(shared.fd, undefined, libc.viewAt(shared.address, shared.size), shared.address,
      shared.size, shared.regions, shared.secret);
  }

  share(): SharedGuestMemory {
    return { fd: this.fd, address: this.address, size: this.size, regions: this.regions, secret: this.secret };
  }

  /** Offset in the mapping of [gpa, gpa+length), or undefined when the range is not entirely inside one region. */
  offsetOf(gpa: number, length: number): number | undefined {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) return undefined;
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa + length <= r.gpa + r.size) return r.offset + (gpa - r.gpa);
    }
    return undefined;
  }

  contains(gpa: number, length: number): boolean {
    return this.offsetOf(gpa, length) !== undefined;
  }

  private at(gpa: number, length: number): number {
    const off = this.offsetOf(gpa, length);
    if (off === undefined) throw new GuestMemoryError(gpa, length);
    return off;
  }

  /** A live view of guest memory (no copy). */
  slice(gpa: number, length: number): Uint8Array {
    const off = this.at(gpa, length);
    return this.bytes.subarray(off, off + length);
  }

  read(gpa: number, length: number): Uint8Array {
    return this.slice(gpa, length).slice();
  }

  write(gpa: number, data: Uint8Array): void {
    this.bytes.set(data, this.at(gpa, data.length));
  }

  fill(gpa: number, length: number, value: number): void {
    const off = this.at(gpa, length);
    this.bytes.fill(value, off, off + length);
  }

  readU8(gpa: number): number { return this.dv.getUint8(this.at(gpa, 1)); }
  readU16(gpa: number): number { return this.dv.getUint16(this.at(gpa, 2), true); }
  readU32(gpa: number): number { return this.dv.getUint32(this.at(gpa, 4), true); }
  readU64(gpa: number): bigint { return this.dv.getBigUint64(this.at(gpa, 8), true); }
  writeU8(gpa: number, v: number): void { this.dv.setUint8(this.at(gpa, 1), v); }
  writeU16(gpa: number, v: number): void { this.dv.setUint16(this.at(gpa, 2), v, true); }
  writeU32(gpa: number, v: number): void { this.dv.setUint32(this.at(gpa, 4), v >>> 0, true); }
  writeU64(gpa: number, v: bigint): void { this.dv.setBigUint64(this.at(gpa, 8), BigInt.asUintN(64, v), true); }

  close(): void {
    if (this.mapping) {
      libc.munmap(this.mapping);
      libc.close(this.fd);
    }
  }
}
