// Routes port and MMIO accesses to devices. Accesses nothing claims read as all ones, writes are dropped, and
// both are counted: a guest probing for hardware must not be able to stop the VM.

export interface PortDevice {
  read(port: number, size: number): number;
  write(port: number, size: number, value: number): void;
}

export interface MmioDevice {
  read(offset: number, size: number): bigint;
  write(offset: number, size: number, value: bigint): void;
}

interface Range<D> {
  readonly start: number;
  readonly length: number;
  readonly device: D;
  readonly name: string;
}

export interface BusCounters {
  unknownPortReads: number;
  unknownPortWrites: number;
  unknownMmioReads: number;
  unknownMmioWrites: number;
}

function allOnes(size: number): number {
  return size >= 4 ? 0xffffffff : (1 << (size * 8)) - 1;
}

export class Bus {
  private readonly ports: Range<PortDevice>[] = [];
  private readonly mmio: Range<MmioDevice>[] = [];
  readonly counters: BusCounters = { unknownPortReads: 0, unknownPortWrites: 0, unknownMmioReads: 0, unknownMmioWrites: 0 };
  /** The last few unclaimed addresses, for diagnostics. */
  readonly recentUnknown: string[] = [];

  addPorts(name: string, start: number, length: number, device: PortDevice): void {
    this.claim(this.ports, { name, start, length, device });
  }

  addMmio(name: string, start: number, length: number, device: MmioDevice): void {
    this.claim(this.mmio, { name, start, length, device });
  }

  private claim<D>(list: Range<D>[], r: Range<D>): void {
    for (const o of list) {
      if (r.start < o.start + o.length && o.start < r.start + r.length) {
        throw new Error(`${r.name} at 0x${r.start.toString(16)} overlaps ${o.name}`);
      }
    }
    list.push(r);
  }

  private find<D>(list: Range<D>[], addr: number, size: number): Range<D> | undefined {
    for (const r of list) if (addr >= r.start && addr + size <= r.start + r.length) return r;
    return undefined;
  }

  private note(what: string): void {
    if (this.recentUnknown.length >= 16) this.recentUnknown.shift();
    this.recentUnknown.push(what);
  }

  // A port access belongs to the device that owns its first port: "out %eax, $0x510" is one 4-byte write to 0x510.
  portRead(port: number, size: number): number {
    const r = this.find(this.ports, port, 1);
    if (!r) {
      this.counters.unknownPortReads++;
      this.note(`in 0x${port.toString(16)}/${size}`);
      return allOnes(size);
    }
    return (r.device.read(port, size) & allOnes(size)) >>> 0; // unsigned: a 4-byte & gives a signed 32-bit number
  }

  portWrite(port: number, size: number, value: number): void {
    const r = this.find(this.ports, port, 1);
    if (!r) {
      this.counters.unknownPortWrites++;
      this.note(`out 0x${port.toString(16)}/${size}`);
      return;
    }
    r.device.write(port, size, value);
  }

  mmioRead(addr: number, size: number): bigint {
    const r = this.find(this.mmio, addr, size);
    if (!r) {
      this.counters.unknownMmioReads++;
      this.note(`read 0x${addr.toString(16)}/${size}`);
      return size >= 8 ? 0xffffffffffffffffn : BigInt(allOnes(size));
    }
    return r.device.read(addr - r.start, size);
  }

  mmioWrite(addr: number, size: number, value: bigint): void {
    const r = this.find(this.mmio, addr, size);
    if (!r) {
      this.counters.unknownMmioWrites++;
      this.note(`write 0x${addr.toString(16)}/${size}`);
      return;
    }
    r.device.write(addr - r.start, size, value);
  }
}
