// A VM's memory as a vhost-user backend sees it: the regions of the frontend's memory table, each an fd it mapped
// itself. Guest addresses are checked against the regions, as GuestMemory does in the hypervisor; vring addresses,
// which the frontend gives in its own address space, are translated through the table.
import { AzoteError } from '../base/errors.js';
import { fstatSync } from 'node:fs';
import * as libc from '../sys/libc.js';
import type { DeviceMemory } from '../virtio/device.js';
import type { MemRegion } from './messages.js';
import { ProtocolError } from './messages.js';

/**
 * A memory table fd the frontend could still shrink: touching a mapped page past the new end of the file is SIGBUS,
 * which would end the card and every frontend it serves. Only that frontend's session ends.
 */
export class ShrinkableMemoryError extends ProtocolError {
  constructor(region: number, what: string) {
    super(`memory region ${region}'s fd ${what}: the frontend could shrink it under the card's mapping`,
      'VhostUserShrinkableMemory',
      'share guest memory as a memfd sealed with F_SEAL_SHRINK (QEMU: memory-backend-memfd with seal=on, its default) or as secret memory (memfd_secret)');
    this.name = 'ShrinkableMemoryError';
  }
}

/** Throws ShrinkableMemoryError unless `fd`'s size can never go down. */
function requireUnshrinkable(fd: number, region: number): void {
  let secret: boolean;
  let seals: number | undefined;
  try {
    // Secret memory takes no seals, but its size is fixed by its first ftruncate.
    secret = libc.fileSystemMagic(fd) === libc.SECRETMEM_MAGIC;
    seals = secret ? undefined : libc.fileSeals(fd);
  } catch (e) {
    throw new ProtocolError(`memory region ${region}'s fd cannot be used: ${(e as Error).message}`);
  }
  if (secret) return;
  if (seals === undefined) throw new ShrinkableMemoryError(region, 'is neither a memfd nor secret memory');
  if (!(seals & libc.F_SEAL_SHRINK)) throw new ShrinkableMemoryError(region, 'is not sealed with F_SEAL_SHRINK');
}

interface Mapped {
  readonly gpa: number;
  readonly size: number;
  readonly userAddr: bigint;
  readonly mapping: libc.Mapping;
  readonly bytes: Uint8Array;
  readonly dv: DataView;
}

const PAGE = 4096n;

export class MappedMemory implements DeviceMemory {
  private constructor(private readonly regions: readonly Mapped[]) {}

  /**
   * Maps each region's fd (shared, read-write) once it is known not to shrink (a memfd sealed with F_SEAL_SHRINK, or
   * secret memory) and to cover its region; the fds are closed once mapped.
   */
  static map(table: readonly MemRegion[], fds: readonly number[]): MappedMemory {
    if (fds.length !== table.length) {
      for (const fd of fds) libc.close(fd);
      throw new ProtocolError(`a memory table of ${table.length} regions came with ${fds.length} fds`);
    }
    const mapped: Mapped[] = [];
    try {
      table.forEach((r, i) => {
        const fd = fds[i] ?? -1;
        const end = r.guestAddr + r.size;
        if (r.size === 0n || end > BigInt(Number.MAX_SAFE_INTEGER) || r.mmapOffset % PAGE !== 0n || r.size > 1n << 40n) {
          throw new ProtocolError(`memory region ${i} (guest 0x${r.guestAddr.toString(16)}+0x${r.size.toString(16)}, offset ${r.mmapOffset}) cannot be mapped`);
        }
        for (const m of mapped) {
          if (r.guestAddr < BigInt(m.gpa + m.size) && BigInt(m.gpa) < end) throw new ProtocolError(`memory region ${i} overlaps another`);
        }
        // A mapping past the end of its file would fault (SIGBUS) when touched: the table must match the fds, and
        // the fds must keep their size (checked first, so that the size read next stays true).
        requireUnshrinkable(fd, i);
        let fileSize: bigint;
        try {
          fileSize = BigInt(fstatSync(fd).size);
        } catch (e) {
          throw new ProtocolError(`memory region ${i}'s fd cannot be used: ${(e as Error).message}`);
        }
        if (r.mmapOffset + r.size > fileSize) {
          throw new ProtocolError(`memory region ${i} (offset ${r.mmapOffset}, 0x${r.size.toString(16)} bytes) goes past the end of its fd (${fileSize} bytes)`);
        }
        const mapping = libc.mmap(Number(r.size), libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, Number(r.mmapOffset));
        mapped.push({
          gpa: Number(r.guestAddr), size: Number(r.size), userAddr: r.userAddr, mapping,
          bytes: new Uint8Array(mapping.buffer), dv: new DataView(mapping.buffer),
        });
      });
    } catch (e) {
      for (const m of mapped) libc.munmap(m.mapping);
      throw e instanceof AzoteError ? e : new ProtocolError(`mapping guest memory failed: ${(e as Error).message}`);
    } finally {
      for (const fd of fds) libc.close(fd);
    }
    return new MappedMemory(mapped);
  }

  /** The guest address of the frontend's `addr` (a vring address), when `length` bytes from it are in one region. */
  guestAddress(addr: bigint, length: number): number | undefined {
    for (const m of this.regions) {
      if (addr >= m.userAddr && addr + BigInt(length) <= m.userAddr + BigInt(m.size)) return m.gpa + Number(addr - m.userAddr);
    }
    return undefined;
  }

  private find(gpa: number, length: number): { m: Mapped; off: number } | undefined {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) return undefined;
    for (const m of this.regions) if (gpa >= m.gpa && gpa + length <= m.gpa + m.size) return { m, off: gpa - m.gpa };
    return undefined;
  }

  private at(gpa: number, length: number): { m: Mapped; off: number } {
    const f = this.find(gpa, length);
    if (!f) throw new AzoteError('GuestMemoryOutOfRange', `guest address range 0x${gpa.toString(16)}+${length} is outside the mapped memory`);
    return f;
  }

  contains(gpa: number, length: number): boolean {
    return this.find(gpa, length) !== undefined;
  }

  slice(gpa: number, length: number): Uint8Array {
    const { m, off } = this.at(gpa, length);
    return m.bytes.subarray(off, off + length);
  }

  write(gpa: number, data: Uint8Array): void {
    const { m, off } = this.at(gpa, data.length);
    m.bytes.set(data, off);
  }

  readU16(gpa: number): number { const { m, off } = this.at(gpa, 2); return m.dv.getUint16(off, true); }
  readU32(gpa: number): number { const { m, off } = this.at(gpa, 4); return m.dv.getUint32(off, true); }
  readU64(gpa: number): bigint { const { m, off } = this.at(gpa, 8); return m.dv.getBigUint64(off, true); }
  writeU16(gpa: number, v: number): void { const { m, off } = this.at(gpa, 2); m.dv.setUint16(off, v, true); }
  writeU32(gpa: number, v: number): void { const { m, off } = this.at(gpa, 4); m.dv.setUint32(off, v >>> 0, true); }

  close(): void {
    for (const m of this.regions) libc.munmap(m.mapping);
  }
}
