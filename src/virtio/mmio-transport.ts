// The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register file a guest driver programs to
// negotiate features, place queues and start a device. Every register write comes from the guest: a queue it
// describes badly, or a chain the device then finds malformed, puts the device in DEVICE_NEEDS_RESET (with a
// configuration-change interrupt once the driver is running) and the queues stop until the driver resets it.
// Pure: the hypervisor maps it at an MMIO window and turns `interrupt` into an IRQ; tests drive it directly. The
// queues are served by a QueueRunner, which may live on another thread: the interrupt status is then shared memory
// that the runner's side sets (INT_VRING) while this side reads and acknowledges it.
import { SplitQueue, VirtqueueError, type QueueConfig, type QueueMemory } from './split-queue.js';
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
    const max = this.device.queueSizes[this.queueSel] ?? 0;
    if (q.num === 0 || q.num > max) {
      this.needsReset(`queue ${this.queueSel}: size ${q.num} is not 1 to ${max}`);
      return;
    }
    try {
      // Built now to check the geometry; the runner builds its own with the final features at DRIVER_OK.
      new SplitQueue(this.mem, this.queueConfig(q));
      q.ready = true;
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.needsReset(`queue ${this.queueSel}: ${e.message}`);
    }
  }

  private queueConfig(q: QueueRegs): QueueConfig {
    return {
      size: q.num, descAddr: q.desc, availAddr: q.avail, usedAddr: q.used,
      indirect: (this.driverFeatures >> VIRTIO_F_RING_INDIRECT_DESC & 1n) === 1n,
      eventIdx: (this.driverFeatures >> VIRTIO_F_RING_EVENT_IDX & 1n) === 1n,
    };
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.runner.stop();
      this.resetRegisters();
      this.configGeneration = (this.configGeneration + 1) >>> 0;
      return;
    }
    const adding = value & ~this.status;
    if (adding & STATUS.FEATURES_OK) {
      // Accepted only for a subset of what was offered that includes VERSION_1 (no legacy interface here).
      const ok = (this.driverFeatures & ~this.offered) === 0n && (this.driverFeatures >> VIRTIO_F_VERSION_1 & 1n) === 1n;
      if (!ok) value &= ~STATUS.FEATURES_OK;
    }
    this.status = (this.status & STATUS.NEEDS_RESET) | (value & 0xff & ~STATUS.NEEDS_RESET);
    if (adding & STATUS.DRIVER_OK && !(this.status & STATUS.NEEDS_RESET)) {
      if (!(this.status & STATUS.FEATURES_OK)) {
        this.needsReset('DRIVER_OK without FEATURES_OK');
        return;
      }
      try {
        const queues = this.regs.map((q) => (q.ready ? this.queueConfig(q) : undefined));
        this.runner.start(queues, this.driverFeatures, {
          usedBuffers: () => this.signal(INT_VRING),
          failed: (why) => this.needsReset(why),
        });
      } catch (e) {
        if (!(e instanceof VirtqueueError)) throw e;
        this.needsReset(e.message);
      }
    }
  }

  private notify(index: number): void {
    if (!(this.status & STATUS.DRIVER_OK) || this.status & STATUS.NEEDS_RESET || !this.regs[index]?.ready) return;
    this.runner.notify(index);
  }
}
