// The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register file a guest driver programs to
// negotiate features, place queues and start a device. Every register write comes from the guest: a queue it
// describes badly, or a chain the device then finds malformed, puts the device in DEVICE_NEEDS_RESET (with a
// configuration-change interrupt once the driver is running) and the queues stop until the driver resets it.
// Pure: the hypervisor maps it at an MMIO window and turns `interrupt` into an IRQ; tests drive it directly. The
// queues are served by a QueueRunner, which may live on another thread: the interrupt status is then shared memory
// that the runner's side sets (INT_VRING) while this side reads and acknowledges it.
// Its saved state (MmioTransportState) holds the registers, the interrupt status and where each queue's data path
// was; a restored transport whose driver had started the device starts its runner from there.
import { AzoteError } from '../base/errors.js';
import { parseState, type StateReader } from '../base/state-record.js';
import { SplitQueue, VirtqueueError, type QueueConfig, type QueueMemory, type QueuePosition } from './split-queue.js';
import {
  VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1, type QueueRunner, type VirtioDevice,
} from './device.js';

export const VIRTIO_MMIO_MAGIC = 0x74726976; // "virt"
export const VIRTIO_MMIO_VERSION = 2;
/** "AZOT": the vendor register only tells drivers who made the device. */
export const AZOTE_VENDOR_ID = 0x544f5a41;

// Register offsets; test/virtio/mmio-transport.test.ts checks them against <linux/virtio_mmio.h>.
export const REG = {
  MAGIC_VALUE: 0x000, VERSION: 0x004, DEVICE_ID: 0x008, VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010, DEVICE_FEATURES_SEL: 0x014, DRIVER_FEATURES: 0x020, DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030, QUEUE_NUM_MAX: 0x034, QUEUE_NUM: 0x038, QUEUE_READY: 0x044, QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060, INTERRUPT_ACK: 0x064, STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080, QUEUE_DESC_HIGH: 0x084, QUEUE_AVAIL_LOW: 0x090, QUEUE_AVAIL_HIGH: 0x094,
  QUEUE_USED_LOW: 0x0a0, QUEUE_USED_HIGH: 0x0a4, CONFIG_GENERATION: 0x0fc, CONFIG: 0x100,
} as const;

export const STATUS = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, NEEDS_RESET: 0x40, FAILED: 0x80 } as const;
export const INT_VRING = 1, INT_CONFIG = 2;

interface QueueRegs {
  num: number;
  ready: boolean;
  desc: number;
  avail: number;
  used: number;
}

export const MMIO_STATE_KIND = 'virtio-mmio', MMIO_STATE_VERSION = 1;
/** The longest failure reason a saved state holds. */
const MAX_FAILURE_LENGTH = 4096;

export interface MmioQueueState {
  readonly num: number;
  readonly ready: boolean;
  /** Guest addresses as decimal strings (a driver may write any 64-bit value to a queue it has not made ready). */
  readonly desc: string;
  readonly avail: string;
  readonly used: string;
  /** Where the data path was; 0 for a queue nobody was serving. */
  readonly nextAvail: number;
  readonly nextUsed: number;
}

export interface MmioTransportState {
  readonly kind: typeof MMIO_STATE_KIND;
  readonly version: typeof MMIO_STATE_VERSION;
  readonly status: number;
  readonly deviceFeaturesSel: number;
  readonly driverFeaturesSel: number;
  /** A decimal string: 64 feature bits. */
  readonly driverFeatures: string;
  readonly queueSel: number;
  readonly configGeneration: number;
  readonly interruptStatus: number;
  readonly failure?: string;
  readonly queues: readonly MmioQueueState[];
}

const U32 = 0xffffffff, U16 = 0xffff, U64 = 2n ** 64n - 1n;

const lo = (v: number): number => v % 2 ** 32;
const withLow = (v: number, low: number): number => Math.floor(v / 2 ** 32) * 2 ** 32 + (low >>> 0);
const withHigh = (v: number, high: number): number => (high >>> 0) * 2 ** 32 + lo(v);

export class MmioTransport {
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  private queueSel = 0;
  private configGeneration = 0;
  private regs: QueueRegs[] = [];
  /** Why the device asked for a reset, if it did; for the hypervisor's log. */
  failure: string | undefined;

  constructor(
    private readonly mem: QueueMemory,
    private readonly device: VirtioDevice,
    private readonly runner: QueueRunner,
    private readonly interrupt: () => void,
    /** InterruptStatus, shared with a runner on another thread. */
    private readonly isr = new Int32Array(new SharedArrayBuffer(4)),
    /** Told why, each time the device enters DEVICE_NEEDS_RESET. */
    private readonly onNeedsReset: (why: string) => void = () => undefined,
  ) {
    this.resetRegisters();
  }

  private get offered(): bigint {
    return this.device.features | (1n << VIRTIO_F_VERSION_1);
  }

  private resetRegisters(): void {
    this.status = 0;
    this.driverFeatures = 0n;
    this.deviceFeaturesSel = this.driverFeaturesSel = this.queueSel = 0;
    Atomics.store(this.isr, 0, 0);
    this.regs = this.device.queueSizes.map(() => ({ num: 0, ready: false, desc: 0, avail: 0, used: 0 }));
    this.failure = undefined;
  }

  /** Raises interrupt reasons (INT_VRING, INT_CONFIG); the device calls this after returning buffers. */
  signal(reasons: number): void {
    const before = Atomics.or(this.isr, 0, reasons);
    if ((before | reasons) !== before) this.interrupt();
  }

  /** The device cannot go on (a malformed queue): DEVICE_NEEDS_RESET, and tell a running driver. */
  needsReset(why: string): void {
    if (this.status & STATUS.NEEDS_RESET) return;
    this.failure = why;
    this.status |= STATUS.NEEDS_RESET;
    this.runner.stop();
    this.onNeedsReset(why);
    if (this.status & STATUS.DRIVER_OK) this.signal(INT_CONFIG);
  }

  read(offset: number, size: number): number {
    if (offset >= REG.CONFIG) return this.device.readConfig(offset - REG.CONFIG, size);
    if (size !== 4 || offset % 4 !== 0) return 0; // registers are 32-bit; anything else reads as zero
    const q = this.regs[this.queueSel];
    switch (offset) {
      case REG.MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
      case REG.VERSION: return VIRTIO_MMIO_VERSION;
      case REG.DEVICE_ID: return this.device.deviceId;
      case REG.VENDOR_ID: return AZOTE_VENDOR_ID;
      case REG.DEVICE_FEATURES:
        return this.deviceFeaturesSel > 1 ? 0 : Number((this.offered >> BigInt(32 * this.deviceFeaturesSel)) & 0xffffffffn);
      case REG.QUEUE_NUM_MAX: return q ? (this.device.queueSizes[this.queueSel] ?? 0) : 0;
      case REG.QUEUE_READY: return q?.ready ? 1 : 0;
      case REG.INTERRUPT_STATUS: return Atomics.load(this.isr, 0);
      case REG.STATUS: return this.status;
      case REG.CONFIG_GENERATION: return this.configGeneration;
      default: return 0;
    }
  }

  write(offset: number, size: number, value: number): void {
    if (offset >= REG.CONFIG) {
      this.device.writeConfig(offset - REG.CONFIG, size, value);
      return;
    }
    if (size !== 4 || offset % 4 !== 0) return;
    value >>>= 0;
    const q = this.regs[this.queueSel];
    // Queue registers only change while the queue is not live (section 4.2.2.3).
    const queueWritable = q !== undefined && !q.ready;
    switch (offset) {
      case REG.DEVICE_FEATURES_SEL: this.deviceFeaturesSel = value; return;
      case REG.DRIVER_FEATURES_SEL: this.driverFeaturesSel = value; return;
      case REG.DRIVER_FEATURES:
        if (this.driverFeaturesSel > 1 || this.status & STATUS.FEATURES_OK) return;
        {
          const shift = BigInt(32 * this.driverFeaturesSel);
          this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) | (BigInt(value) << shift);
        }
        return;
      case REG.QUEUE_SEL: this.queueSel = value; return;
      case REG.QUEUE_NUM: if (queueWritable) q.num = value; return;
      case REG.QUEUE_DESC_LOW: if (queueWritable) q.desc = withLow(q.desc, value); return;
      case REG.QUEUE_DESC_HIGH: if (queueWritable) q.desc = withHigh(q.desc, value); return;
      case REG.QUEUE_AVAIL_LOW: if (queueWritable) q.avail = withLow(q.avail, value); return;
      case REG.QUEUE_AVAIL_HIGH: if (queueWritable) q.avail = withHigh(q.avail, value); return;
      case REG.QUEUE_USED_LOW: if (queueWritable) q.used = withLow(q.used, value); return;
      case REG.QUEUE_USED_HIGH: if (queueWritable) q.used = withHigh(q.used, value); return;
      case REG.QUEUE_READY: this.setQueueReady(value === 1); return;
      case REG.QUEUE_NOTIFY: this.notify(value); return;
      case REG.INTERRUPT_ACK: Atomics.and(this.isr, 0, ~value); return;
      case REG.STATUS: this.setStatus(value); return;
      default: return;
    }
  }

  private setQueueReady(ready: boolean): void {
    const q = this.regs[this.queueSel];
    if (!q) return;
    if (!ready) {
      q.ready = false;
      return;
    }
    const fault = this.queueFault(this.queueSel, q);
    if (fault === undefined) q.ready = true;
    else this.needsReset(fault);
  }

  /** Why queue `index` cannot be made ready as the registers describe it; undefined when it can. */
  private queueFault(index: number, q: QueueRegs): string | undefined {
    const max = this.device.queueSizes[index] ?? 0;
    if (q.num === 0 || q.num > max) return `queue ${index}: size ${q.num} is not 1 to ${max}`;
    try {
      // Built now to check the geometry; the runner builds its own with the final features at DRIVER_OK.
      new SplitQueue(this.mem, this.queueConfig(q, this.driverFeatures));
      return undefined;
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      return `queue ${index}: ${e.message}`;
    }
  }

  private queueConfig(q: QueueRegs, features: bigint, position?: QueuePosition): QueueConfig {
    return {
      size: q.num, descAddr: q.desc, availAddr: q.avail, usedAddr: q.used,
      indirect: (features >> VIRTIO_F_RING_INDIRECT_DESC & 1n) === 1n,
      eventIdx: (features >> VIRTIO_F_RING_EVENT_IDX & 1n) === 1n,
      ...(position && { startIndex: position.nextAvail, startUsed: position.nextUsed }),
    };
  }

  /** Whether the driver may accept `features`: a subset of what was offered that includes VERSION_1 (no legacy interface). */
  private acceptable(features: bigint): boolean {
    return (features & ~this.offered) === 0n && (features >> VIRTIO_F_VERSION_1 & 1n) === 1n;
  }

  /** Whether the driver started the device and it has not failed since: its runner serves the queues. */
  private get running(): boolean {
    return (this.status & STATUS.DRIVER_OK) !== 0 && (this.status & STATUS.NEEDS_RESET) === 0;
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.runner.stop();
      this.resetRegisters();
      this.configGeneration = (this.configGeneration + 1) >>> 0;
      return;
    }
    const adding = value & ~this.status;
    if (adding & STATUS.FEATURES_OK && !this.acceptable(this.driverFeatures)) value &= ~STATUS.FEATURES_OK;
    // Bits stay set until a reset (a driver must not clear them, section 2.1.2): features are fixed once FEATURES_OK
    // is, and a started device cannot be started again, so a saved state describes the running data path.
    this.status |= value & 0xff & ~STATUS.NEEDS_RESET;
    if (adding & STATUS.DRIVER_OK && !(this.status & STATUS.NEEDS_RESET)) {
      if (!(this.status & STATUS.FEATURES_OK)) {
        this.needsReset('DRIVER_OK without FEATURES_OK');
        return;
      }
      this.startRunner(this.regs.map(() => undefined));
    }
  }

  private startRunner(positions: readonly (QueuePosition | undefined)[]): void {
    try {
      const queues = this.regs.map((q, i) => (q.ready ? this.queueConfig(q, this.driverFeatures, positions[i]) : undefined));
      this.runner.start(queues, this.driverFeatures, {
        usedBuffers: () => this.signal(INT_VRING),
        failed: (why) => this.needsReset(why),
      });
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.needsReset(e.message);
    }
  }

  /**
   * Where each served queue's data path stands once it is quiescent (every chain it took was returned, as after the
   * I/O thread paused): at the used index the guest sees. Undefined for queues nobody serves.
   */
  restingPositions(): (QueuePosition | undefined)[] {
    return this.regs.map((q) => {
      if (!this.running || !q.ready) return undefined;
      const used = this.mem.readU16(q.used + 2);
      return { nextAvail: used, nextUsed: used };
    });
  }

  /**
   * The transport's state, with `positions[i]` where queue i's data path is (SplitQueue.position, taken while it is
   * quiescent); needed for every ready queue of a running device.
   */
  saveState(positions: readonly (QueuePosition | undefined)[]): MmioTransportState {
    const queues = this.regs.map((q, i): MmioQueueState => {
      const served = this.running && q.ready;
      const position = positions[i];
      if (served && !position) {
        throw new AzoteError('QueuePositionMissing', `the data path's position in queue ${i} is needed to save a running virtio device`,
          'pass SplitQueue.position of every ready queue to MmioTransport.saveState');
      }
      return {
        num: q.num, ready: q.ready, desc: BigInt(q.desc).toString(), avail: BigInt(q.avail).toString(), used: BigInt(q.used).toString(),
        nextAvail: served && position ? position.nextAvail & U16 : 0, nextUsed: served && position ? position.nextUsed & U16 : 0,
      };
    });
    return {
      kind: MMIO_STATE_KIND, version: MMIO_STATE_VERSION, status: this.status, deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel, driverFeatures: this.driverFeatures.toString(), queueSel: this.queueSel,
      configGeneration: this.configGeneration, interruptStatus: Atomics.load(this.isr, 0),
      ...(this.failure !== undefined && { failure: this.failure.slice(0, MAX_FAILURE_LENGTH) }), queues,
    };
  }

  /**
   * Takes a saved state, checked first as the registers check a driver (BadSnapshotState, and nothing changed, for a
   * record this transport would not have reached). A started device starts its runner again, each queue from where
   * its data path was. Raises no interrupt: a pending one is the interrupt controller's saved state.
   */
  restoreState(record: unknown): void {
    const device = `virtio-mmio device (id ${this.device.deviceId})`;
    const s = parseState(device, record, MMIO_STATE_KIND, MMIO_STATE_VERSION, (r) => this.readState(r));
    if (this.running) this.runner.stop();
    ({ status: this.status, deviceFeaturesSel: this.deviceFeaturesSel, driverFeaturesSel: this.driverFeaturesSel } = s);
    ({ driverFeatures: this.driverFeatures, queueSel: this.queueSel, configGeneration: this.configGeneration } = s);
    Atomics.store(this.isr, 0, s.interruptStatus);
    this.failure = s.failure;
    this.regs = s.queues.map((q) => q.regs);
    if (this.running) this.startRunner(s.queues.map((q) => q.position));
  }

  private readState(r: StateReader) {
    const status = r.int('status', 0, 0xff);
    const driverFeatures = r.bigint('driverFeatures', 0n, U64);
    const address = (q: StateReader, name: string): number => {
      const v = q.bigint(name, 0n, U64);
      // The registers hold numbers: only a value one of them can hold is one this transport saved.
      if (BigInt(Number(v)) !== v) q.fail(`${name} ${v} is not an address the queue registers hold`);
      return Number(v);
    };
    const running = (status & STATUS.DRIVER_OK) !== 0 && (status & STATUS.NEEDS_RESET) === 0;
    const count = this.device.queueSizes.length;
    const queues = r.list('queues', count, count, (q, i) => {
      const regs: QueueRegs = {
        num: q.int('num', 0, U32), ready: q.bool('ready'), desc: address(q, 'desc'), avail: address(q, 'avail'), used: address(q, 'used'),
      };
      const position = { nextAvail: q.int('nextAvail', 0, U16), nextUsed: q.int('nextUsed', 0, U16) };
      const fault = regs.ready ? this.queueFault(i, regs) : undefined;
      if (fault !== undefined) q.fail(`${fault}, yet the record says it is ready`);
      const served = running && regs.ready;
      if (!served && (position.nextAvail !== 0 || position.nextUsed !== 0)) q.fail('a queue nobody serves has a position');
      return { regs, position: served ? position : undefined };
    });
    const state = {
      status, driverFeatures, queues,
      deviceFeaturesSel: r.int('deviceFeaturesSel', 0, U32), driverFeaturesSel: r.int('driverFeaturesSel', 0, U32),
      queueSel: r.int('queueSel', 0, U32), configGeneration: r.int('configGeneration', 0, U32),
      interruptStatus: r.int('interruptStatus', 0, INT_VRING | INT_CONFIG),
      failure: r.optionalString('failure', MAX_FAILURE_LENGTH),
    };
    if (status & STATUS.FEATURES_OK && !this.acceptable(driverFeatures)) {
      r.fail(`FEATURES_OK with features ${driverFeatures} that this device does not offer (or without VERSION_1)`);
    }
    if (running && !(status & STATUS.FEATURES_OK)) r.fail('DRIVER_OK without FEATURES_OK and not NEEDS_RESET');
    return state;
  }

  private notify(index: number): void {
    if (!(this.status & STATUS.DRIVER_OK) || this.status & STATUS.NEEDS_RESET || !this.regs[index]?.ready) return;
    this.runner.notify(index);
  }
}
