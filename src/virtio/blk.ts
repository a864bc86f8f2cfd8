// virtio-blk (virtio 1.2, section 5.2): one request queue; each request is a 16-byte header the device reads, data,
// and a status byte the device writes last. The header, data and status may be split across descriptors in any way
// (VIRTIO_F_ANY_LAYOUT is implied by VERSION_1), so requests are read as byte streams over the chain's buffers.
// A request the driver framed impossibly (no header, no status byte) is a VirtqueueError; a well-framed request the
// disk cannot do (out of range, read-only, an I/O error) completes with IOERR or UNSUPP, and the device goes on.
import { defineStruct, StructView } from '../base/struct.js';
import { VirtqueueError, type DescriptorChain, type GuestBuffer, type SplitQueue } from './split-queue.js';
import { gather, ranges, scatter } from './guest-buffers.js';
import { Backlog } from './budget.js';
import {
  RING_FEATURES, readConfigBytes, type DataPath, type DataPathSpec, type DeviceMemory, type VirtioDevice,
} from './device.js';

export const VIRTIO_ID_BLOCK = 2;
export const SECTOR_SIZE = 512;
export const BLK_QUEUE_SIZE = 256;
/** Each discard or write-zeroes request may carry this many ranges, each at most this many sectors. */
export const MAX_DISCARD_SEGMENTS = 32, MAX_DISCARD_SECTORS = 0x3fffff;
/** The device ID a GET_ID request returns, NUL-padded. */
export const BLK_ID_BYTES = 20;

export const BLK_F = { SEG_MAX: 2, RO: 5, BLK_SIZE: 6, FLUSH: 9, DISCARD: 13, WRITE_ZEROES: 14 } as const;
export const BLK_T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, DISCARD: 11, WRITE_ZEROES: 13 } as const;
export const BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
export const BLK_WRITE_ZEROES_F_UNMAP = 1;

// Layouts from section 5.2.4 and 5.2.6; test/virtio/blk.test.ts checks them against <linux/virtio_blk.h>.
export const virtioBlkConfig = defineStruct('virtio_blk_config', 'struct virtio_blk_config', 72, {
  capacity: { offset: 0, type: 'u64' }, sizeMax: { offset: 8, type: 'u32', c: 'size_max' },
  segMax: { offset: 12, type: 'u32', c: 'seg_max' }, blkSize: { offset: 20, type: 'u32', c: 'blk_size' },
  numQueues: { offset: 34, type: 'u16', c: 'num_queues' },
  maxDiscardSectors: { offset: 36, type: 'u32', c: 'max_discard_sectors' },
  maxDiscardSeg: { offset: 40, type: 'u32', c: 'max_discard_seg' },
  discardSectorAlignment: { offset: 44, type: 'u32', c: 'discard_sector_alignment' },
  maxWriteZeroesSectors: { offset: 48, type: 'u32', c: 'max_write_zeroes_sectors' },
  maxWriteZeroesSeg: { offset: 52, type: 'u32', c: 'max_write_zeroes_seg' },
  writeZeroesMayUnmap: { offset: 56, type: 'u8', c: 'write_zeroes_may_unmap' },
});

export const virtioBlkOuthdr = defineStruct('virtio_blk_outhdr', 'struct virtio_blk_outhdr', 16, {
  type: { offset: 0, type: 'u32' }, ioprio: { offset: 4, type: 'u32' }, sector: { offset: 8, type: 'u64' },
});

export const virtioBlkDiscardWriteZeroes = defineStruct('virtio_blk_discard_write_zeroes',
  'struct virtio_blk_discard_write_zeroes', 16, {
    sector: { offset: 0, type: 'u64' }, numSectors: { offset: 8, type: 'u32', c: 'num_sectors' },
    flags: { offset: 12, type: 'u32' },
  });

/** Where a disk's bytes live. Offsets and lengths are in bytes and already checked against the capacity. */
export interface BlockBackend {
  readonly sectors: number;
  readonly readOnly: boolean;
  read(into: Uint8Array, offset: number): void;
  write(from: Uint8Array, offset: number): void;
  /** Everything written so far reaches stable storage. */
  flush(): void;
  discard(offset: number, length: number): void;
  writeZeroes(offset: number, length: number, unmap: boolean): void;
}

export interface BlockDiskInfo {
  readonly sectors: number;
  readonly readOnly: boolean;
  /** What GET_ID returns (at most 20 bytes are used). */
  readonly serial: string;
  /** The open disk file, for the data path (which may run on another thread). */
  readonly fd: number;
}

export class VirtioBlock implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly features: bigint;
  readonly queueSizes = [BLK_QUEUE_SIZE];
  readonly dataPath: DataPathSpec;
  private readonly config = StructView.alloc(virtioBlkConfig);

  constructor(disk: BlockDiskInfo) {
    const bit = (n: number): bigint => 1n << BigInt(n);
    let features = RING_FEATURES | bit(BLK_F.SEG_MAX) | bit(BLK_F.BLK_SIZE) | bit(BLK_F.FLUSH);
    features |= disk.readOnly ? bit(BLK_F.RO) : bit(BLK_F.DISCARD) | bit(BLK_F.WRITE_ZEROES);
    this.features = features;
    this.config.set('capacity', disk.sectors).set('segMax', BLK_QUEUE_SIZE - 2).set('blkSize', SECTOR_SIZE)
      .set('numQueues', 1).set('maxDiscardSectors', MAX_DISCARD_SECTORS).set('maxDiscardSeg', MAX_DISCARD_SEGMENTS)
      .set('discardSectorAlignment', 1).set('maxWriteZeroesSectors', MAX_DISCARD_SECTORS)
      .set('maxWriteZeroesSeg', MAX_DISCARD_SEGMENTS).set('writeZeroesMayUnmap', 1);
    this.dataPath = { kind: 'blk', fd: disk.fd, readOnly: disk.readOnly, sectors: disk.sectors, serial: disk.serial };
  }

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.config.bytes(), offset, size);
  }

  writeConfig(): void {} // nothing in it is writable without VIRTIO_BLK_F_CONFIG_WCE
}

function malformed(detail: string): never {
  throw new VirtqueueError('MalformedRequest', detail);
}

class IoRefused extends Error {
  constructor(readonly status: number) {
    super(`block status ${status}`);
  }
}

export class BlockDataPath implements DataPath {
  /** Requests completed, and those that ended with IOERR because the backend failed (not the guest's fault). */
  readonly counters = { requests: 0, ioErrors: 0 };
  lastIoError: string | undefined;
  private readonly serial: Uint8Array;
  private readonly backlog = new Backlog();

  constructor(
    private readonly mem: DeviceMemory,
    private readonly queues: readonly (SplitQueue | undefined)[],
    _features: bigint,
    private readonly disk: BlockBackend,
    serial: string,
  ) {
    this.serial = new Uint8Array(BLK_ID_BYTES);
    this.serial.set(new TextEncoder().encode(serial).subarray(0, BLK_ID_BYTES));
  }

  process(index: number): boolean {
    const queue = this.queues[index];
    if (!queue) return false;
    return this.backlog.serve(index, queue, (chain) => {
      const written = this.serve(chain);
      this.counters.requests++;
      return written;
    });
  }

  unfinished(index: number): boolean {
    return this.backlog.has(index);
  }

  /** Does one request and writes its status; returns the bytes written into the chain. */
  private serve(chain: DescriptorChain): number {
    if (chain.readableBytes < virtioBlkOuthdr.size) malformed(`request ${chain.head} has no 16-byte header`);
    if (chain.writableBytes < 1) malformed(`request ${chain.head} has no status byte`);
    const header = new StructView(virtioBlkOuthdr, gather(this.mem, chain.readable, 0, virtioBlkOuthdr.size));
    const type = header.get('type');
    const sector = header.get64('sector');
    const dataIn = chain.writableBytes - 1;
    const dataOut = chain.readableBytes - virtioBlkOuthdr.size;
    let status: number = BLK_S.OK;
    let written = 0;
    try {
      switch (type) {
        case BLK_T.IN:
          this.transfer(chain.writable, 0, dataIn, sector, false);
          written = dataIn;
          break;
        case BLK_T.OUT:
          this.transfer(chain.readable, virtioBlkOuthdr.size, dataOut, sector, true);
          break;
        case BLK_T.FLUSH:
          this.disk.flush();
          break;
        case BLK_T.GET_ID: {
          const n = Math.min(dataIn, BLK_ID_BYTES);
          scatter(this.mem, chain.writable, 0, this.serial.subarray(0, n));
          written = n;
          break;
        }
        case BLK_T.DISCARD:
        case BLK_T.WRITE_ZEROES:
          this.discardOrZero(chain, dataOut, type === BLK_T.DISCARD);
          break;
        default:
          status = BLK_S.UNSUPP;
      }
    } catch (e) {
      if (e instanceof IoRefused) {
        status = e.status;
      } else {
        // The backend failed (EIO, ENOSPC...): the guest sees IOERR, as from a real disk.
        status = BLK_S.IOERR;
        this.counters.ioErrors++;
        this.lastIoError = e instanceof Error ? e.message : String(e);
      }
    }
    scatter(this.mem, chain.writable, chain.writableBytes - 1, Uint8Array.of(status));
    return written + 1;
  }

  /** Checks that `bytes` from `sector` are inside the disk. */
  private checkRange(sector: bigint, bytes: number): number {
    const end = sector * BigInt(SECTOR_SIZE) + BigInt(bytes);
    if (bytes % SECTOR_SIZE !== 0 || end > BigInt(this.disk.sectors) * BigInt(SECTOR_SIZE)) throw new IoRefused(BLK_S.IOERR);
    return Number(sector) * SECTOR_SIZE;
  }

  private transfer(buffers: readonly GuestBuffer[], skip: number, length: number, sector: bigint, toDisk: boolean): void {
    if (toDisk && this.disk.readOnly) throw new IoRefused(BLK_S.IOERR);
    let offset = this.checkRange(sector, length);
    for (const r of ranges(buffers, skip, length)) {
      const view = this.mem.slice(r.addr, r.len);
      if (toDisk) this.disk.write(view, offset);
      else this.disk.read(view, offset);
      offset += r.len;
    }
  }

  private discardOrZero(chain: DescriptorChain, length: number, discard: boolean): void {
    const size = virtioBlkDiscardWriteZeroes.size;
    if (this.disk.readOnly) throw new IoRefused(BLK_S.IOERR);
    if (length === 0 || length % size !== 0 || length / size > MAX_DISCARD_SEGMENTS) throw new IoRefused(BLK_S.UNSUPP);
    const all = gather(this.mem, chain.readable, virtioBlkOuthdr.size, length);
    const segments: Array<{ offset: number; bytes: number; unmap: boolean }> = [];
    for (let at = 0; at < length; at += size) {
      const seg = new StructView(virtioBlkDiscardWriteZeroes, all, at);
      const sectors = seg.get('numSectors');
      const flags = seg.get('flags');
      // Unknown flags, or unmap on a discard, are reserved (section 5.2.6.2).
      if (sectors > MAX_DISCARD_SECTORS || flags & ~BLK_WRITE_ZEROES_F_UNMAP || (discard && flags !== 0)) {
        throw new IoRefused(BLK_S.UNSUPP);
      }
      const bytes = sectors * SECTOR_SIZE;
      segments.push({ offset: this.checkRange(seg.get64('sector'), bytes), bytes, unmap: flags !== 0 });
    }
    for (const s of segments) {
      if (discard) this.disk.discard(s.offset, s.bytes);
      else this.disk.writeZeroes(s.offset, s.bytes, s.unmap);
    }
  }
}
