// The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register file a guest driver programs to
// negotiate features, place queues and start a device. Every register write comes from the guest: a queue it
// describes badly, or a chain the device then finds malformed, puts the device in DEVICE_NEEDS_RESET (with a
// configuration-change interrupt once the driver is running) and the queues stop until the driver resets it.
// Pure: the hypervisor maps it at an MMIO window and turns `interrupt` into an IRQ; tests drive it directly.
import { SplitQueue, VirtqueueError, type QueueMemory } from './split-queue.js';

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
export const VIRTIO_F_VERSION_1 = 32n, VIRTIO_F_RING_INDIRECT_DESC = 28n, VIRTIO_F_RING_EVENT_IDX = 29n;

/** A device model: what it offers, its configuration space, and what it does with its queues. */
export interface VirtioDevice {
  readonly deviceId: number;
  /** Feature bits offered; VIRTIO_F_VERSION_1 is added by the transport. */
  readonly features: bigint;
  /** The largest size of each queue (a power of two); their number is the number of queues. */
  readonly queueSizes: readonly number[];
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
  /**
   * The driver set DRIVER_OK: the queues (by index; undefined where the driver left one unused) are in place and the
   * features final. `usedBuffers` raises the used-buffer interrupt.
   */
  activate(queues: readonly (SplitQueue | undefined)[], features: bigint, usedBuffers: () => void): void;
  /** The driver notified queue `index`. May throw VirtqueueError for a malformed chain. */
  notify(index: number): void;
  /** Back to the state before activate. */
  reset(): void;
}

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
  private interruptStatus = 0;
  private configGeneration = 0;
  private regs: QueueRegs[] = [];
  /** Why the device asked for a reset, if it did; for the hypervisor's log. */
  failure: string | undefined;

  constructor(
    private readonly mem: QueueMemory,
    private readonly device: VirtioDevice,
    private readonly interrupt: () => void,
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
    this.interruptStatus = 0;
    this.regs = this.device.queueSizes.map(() => ({ num: 0, ready: false, desc: 0, avail: 0, used: 0 }));
    this.failure = undefined;
  }

  /** Raises interrupt reasons (INT_VRING, INT_CONFIG); the device calls this after returning buffers. */
  signal(reasons: number): void {
    const before = this.interruptStatus;
    this.interruptStatus |= reasons;
    if (this.interruptStatus !== before) this.interrupt();
  }

  /** The device cannot go on (a malformed queue): DEVICE_NEEDS_RESET, and tell a running driver. */
  needsReset(why: string): void {
    if (this.status & STATUS.NEEDS_RESET) return;
    this.failure = why;
    this.status |= STATUS.NEEDS_RESET;
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
      case REG.INTERRUPT_STATUS: return this.interruptStatus;
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
      case REG.INTERRUPT_ACK: this.interruptStatus &= ~value; return;
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
      // Built now to check the geometry; rebuilt with the final features at DRIVER_OK.
      this.makeQueue(q);
      q.ready = true;
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.needsReset(`queue ${this.queueSel}: ${e.message}`);
    }
  }

  private makeQueue(q: QueueRegs): SplitQueue {
    return new SplitQueue(this.mem, {
      size: q.num, descAddr: q.desc, availAddr: q.avail, usedAddr: q.used,
      indirect: (this.driverFeatures >> VIRTIO_F_RING_INDIRECT_DESC & 1n) === 1n,
      eventIdx: (this.driverFeatures >> VIRTIO_F_RING_EVENT_IDX & 1n) === 1n,
    });
  }

  private setStatus(value: number): void {
    if (value === 0) {
      this.device.reset();
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
        const queues = this.regs.map((q) => (q.ready ? this.makeQueue(q) : undefined));
        this.device.activate(queues, this.driverFeatures, () => this.signal(INT_VRING));
      } catch (e) {
        if (!(e instanceof VirtqueueError)) throw e;
        this.needsReset(e.message);
      }
    }
  }

  private notify(index: number): void {
    if (!(this.status & STATUS.DRIVER_OK) || this.status & STATUS.NEEDS_RESET || !this.regs[index]?.ready) return;
    try {
      this.device.notify(index);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.needsReset(`queue ${index}: ${e.message}`);
    }
  }
}
