// Binary struct layouts, declared once with their offsets and checked against C headers by tests.
// A layout names each field's offset and type; `StructView` reads and writes them over any byte buffer.

export type ScalarType = 'u8' | 'u16' | 'u32' | 'u64' | 'i32';

export interface FieldSpec {
  readonly offset: number;
  readonly type: ScalarType | { bytes: number };
  /** The field's C name when it differs from ours (e.g. "u.io.port"), for the layout test. */
  readonly c?: string;
}

export interface StructLayout<F extends string> {
  readonly name: string;
  /** The C type the layout mirrors, for the layout test (e.g. "struct kvm_regs"). */
  readonly cType: string | undefined;
  readonly size: number;
  readonly fields: Readonly<Record<F, FieldSpec>>;
}

export function scalarSize(t: ScalarType): number {
  switch (t) {
    case 'u8': return 1;
    case 'u16': return 2;
    case 'u32': case 'i32': return 4;
    case 'u64': return 8;
  }
}

export function fieldSize(f: FieldSpec): number {
  return typeof f.type === 'string' ? scalarSize(f.type) : f.type.bytes;
}

export function defineStruct<F extends string>(
  name: string, cType: string | undefined, size: number, fields: Record<F, FieldSpec>,
): StructLayout<F> {
  for (const [k, f] of Object.entries<FieldSpec>(fields)) {
    if (f.offset < 0 || f.offset + fieldSize(f) > size) {
      throw new RangeError(`${name}.${k} at ${f.offset} does not fit in ${size} bytes`);
    }
  }
  return { name, cType, size, fields };
}

/** Little-endian accessors for one struct instance inside a larger buffer. */
export class StructView<F extends string> {
  readonly dv: DataView;

  constructor(readonly layout: StructLayout<F>, buf: ArrayBufferLike | Uint8Array, byteOffset = 0) {
    if (buf instanceof Uint8Array) {
      this.dv = new DataView(buf.buffer, buf.byteOffset + byteOffset, layout.size);
    } else {
      this.dv = new DataView(buf, byteOffset, layout.size);
    }
  }

  static alloc<F extends string>(layout: StructLayout<F>): StructView<F> {
    return new StructView(layout, new Uint8Array(layout.size));
  }

  bytes(): Uint8Array {
    return new Uint8Array(this.dv.buffer, this.dv.byteOffset, this.layout.size);
  }

  get(field: F): number {
    const f = this.layout.fields[field];
    switch (f.type) {
      case 'u8': return this.dv.getUint8(f.offset);
      case 'u16': return this.dv.getUint16(f.offset, true);
      case 'u32': return this.dv.getUint32(f.offset, true);
      case 'i32': return this.dv.getInt32(f.offset, true);
      case 'u64': return Number(this.dv.getBigUint64(f.offset, true));
      default: throw new TypeError(`${this.layout.name}.${field} is a byte array`);
    }
  }

  get64(field: F): bigint {
    return this.dv.getBigUint64(this.layout.fields[field].offset, true);
  }

  set(field: F, value: number | bigint): this {
    const f = this.layout.fields[field];
    switch (f.type) {
      case 'u8': this.dv.setUint8(f.offset, Number(value)); break;
      case 'u16': this.dv.setUint16(f.offset, Number(value), true); break;
      case 'u32': this.dv.setUint32(f.offset, Number(value) >>> 0, true); break;
      case 'i32': this.dv.setInt32(f.offset, Number(value), true); break;
      case 'u64':
        // A negative number here is nearly always a 32-bit bit operation (0x80000000 | x) that would sign-extend.
        if (value < 0) throw new RangeError(`${this.layout.name}.${String(field)} = ${value}: negative (apply >>> 0 first)`);
        this.dv.setBigUint64(f.offset, BigInt(value), true);
        break;
      default: throw new TypeError(`${this.layout.name}.${field} is a byte array`);
    }
    return this;
  }

  /** The bytes of an array field. */
  field(field: F): Uint8Array {
    const f = this.layout.fields[field];
    return new Uint8Array(this.dv.buffer, this.dv.byteOffset + f.offset, fieldSize(f));
  }
}
