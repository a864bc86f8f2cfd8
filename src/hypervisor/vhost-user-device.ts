// A virtio device whose data path runs in a card: the transport stays here (registers, features, configuration
// space fetched from the card), and at DRIVER_OK the rings are handed to the card over vhost-user. The guest's
// queue notifications go from KVM's ioeventfd straight to the card (the kick fds are the ioeventfds); the card's
// completions come back on call eventfds that the I/O thread turns into INT_VRING and the device's IRQ.
// A card that dies does not take the VM with it: the runner notices its socket close, connects again as soon as the
// card is back (its link gives a new connection), and hands it the rings from the used index the guest has seen. Requests the old
// card took but never completed are after that index, so the new card serves them again; a write the guest saw
// completed was completed by the old card (and, after a flush, is on disk).
import { errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import type { DeviceSlots } from '../isolation/machine.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { readConfigBytes, type DataPathSpec, type QueueRunner, type RunnerEvents, type VirtioDevice } from '../virtio/device.js';
import type { QueueConfig } from '../virtio/split-queue.js';
import { VhostUserFrontend } from '../vhost-user/frontend.js';
import { ProtocolError } from '../vhost-user/messages.js';
import type { IoThread } from './io-thread-host.js';
import { REG } from '../virtio/mmio-transport.js';
import type { CardLink } from './card-link.js';

/** How much configuration space is fetched from the card (virtio-blk's is the largest Azote attaches). */
const CONFIG_BYTES = 60;

/** How often a card's socket is checked, and a gone card looked for again. */
const WATCH_MS = 200;
/**
 * How long a card that came back may refuse the configuration the guest relies on. After a restart each new
 * attachment holds the card's first free address until it claims its own, so a claim can meet another's for a moment;
 * an address still held after this long was given to someone else.
 */
export const RECLAIM_MS = 30_000;

/** Configuration a card assigned that the guest relies on (a network attachment's MAC, which says its address). */
export interface KeptConfig {
  readonly bytes: Uint8Array;
  /** How the bytes read in logs and errors. */
  describe(bytes: Uint8Array): string;
  /** A card that came back would not give them back for RECLAIM_MS (it offers `given`): the guest's view is wrong for good. */
  lost(given: Uint8Array): void;
}

export class CardDevice implements VirtioDevice {
  readonly features: bigint;
  readonly dataPath: DataPathSpec;
  private readonly config: Uint8Array;

  constructor(readonly deviceId: number, readonly queueSizes: readonly number[], frontend: VhostUserFrontend,
    callFds: readonly number[]) {
    this.features = frontend.deviceFeatures;
    this.config = frontend.hasConfig ? frontend.getConfig(CONFIG_BYTES) : new Uint8Array(0);
    this.dataPath = { kind: 'relay', callFds };
  }

  readConfig(offset: number, size: number): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(): void {}
}

export class VhostUserRunner implements QueueRunner {
  readonly notifyFds: number[];
  readonly callFds: number[] = [];
  private readonly irqFd: number;
  private started: Array<{ index: number; q: QueueConfig }> = [];
  private frontend: VhostUserFrontend | undefined;
  private features = 0n;
  private watch: NodeJS.Timeout | undefined;
  /** Asked for again (and read back) from a card that comes back, before it gets the rings. */
  keepConfig: KeptConfig | undefined;
  /** Since when a card that came back has been refusing keepConfig. */
  private refusedSince: number | undefined;

  constructor(
    slots: DeviceSlots,
    private readonly mem: GuestMemory,
    private readonly io: IoThread,
    private readonly index: number,
    queueCount: number,
    mmioBase: number,
    irq: number,
    private readonly isr: Int32Array,
    private readonly log: Logger,
  ) {
    // The queues' notify eventfds become the card's kick fds.
    ({ notifyFds: this.notifyFds, irqFd: this.irqFd } = slots.bindDevice(index, mmioBase + REG.QUEUE_NOTIFY, queueCount, irq));
    for (let q = 0; q < queueCount; q++) this.callFds.push(libc.eventfd(0, libc.EFD_NONBLOCK));
  }

  private link: CardLink | undefined;

  /** Connects to the card through `link`; the device model is then made from what it offers. */
  connect(link: CardLink): VhostUserFrontend {
    this.link = link;
    this.frontend = VhostUserFrontend.over(link.connect());
    return this.frontend;
  }

  /** The guest's memory for the card: each region of the memfd, at the address this process maps it. */
  private memTable(f: VhostUserFrontend): void {
    const regions = this.mem.regions.map((r) => ({
      guestAddr: BigInt(r.gpa), size: BigInt(r.size), userAddr: this.mem.address + BigInt(r.offset), mmapOffset: BigInt(r.offset),
    }));
    f.setMemTable(regions, regions.map(() => this.mem.fd));
  }

  private userAddr(gpa: number): bigint {
    const r = this.mem.regions.find((x) => gpa >= x.gpa && gpa < x.gpa + x.size);
    if (!r) throw new ProtocolError(`ring address 0x${gpa.toString(16)} is outside guest memory`);
    return this.mem.address + BigInt(r.offset + (gpa - r.gpa));
  }

  /** Hands the started rings to the card, each from `base(ring)` in its available ring. */
  private handOver(f: VhostUserFrontend, base: (q: QueueConfig) => number): void {
    f.setFeatures(this.features);
    this.memTable(f);
    for (const { index: i, q } of this.started) {
      f.setVringNum(i, q.size);
      f.setVringBase(i, base(q));
      f.setVringAddr({ index: i, flags: 0, desc: this.userAddr(q.descAddr), used: this.userAddr(q.usedAddr), avail: this.userAddr(q.availAddr), log: 0n });
      f.setVringCall(i, this.callFds[i]);
      f.setVringKick(i, this.notifyFds[i] ?? -1);
      f.setVringEnable(i, true);
    }
  }

  start(queues: readonly (QueueConfig | undefined)[], features: bigint, events: RunnerEvents): void {
    const f = this.frontend;
    if (!f) return;
    this.features = features;
    this.started = queues.flatMap((q, index) => (q ? [{ index, q }] : []));
    try {
      this.handOver(f, (q) => q.startIndex ?? 0);
    } catch (e) {
      this.started = [];
      this.log.error('the card did not take the device\'s rings', { device: this.index, why: (e as Error).message });
      events.failed(`the card did not take the rings: ${(e as Error).message}`);
      return;
    }
    // The I/O thread relays the card's completions; the kicks are the card's alone.
    this.io.start(this.index, { kind: 'relay', callFds: this.callFds }, [], features, [], this.irqFd, this.isr, events);
    this.watch ??= setInterval(() => this.checkCard(), WATCH_MS).unref();
  }

  /** Notices a card that went away and, once its link gives a connection again, gives it the rings. */
  private checkCard(): void {
    const link = this.link;
    if (!link) return;
    if (this.frontend) {
      if (!this.frontend.backendGone()) return;
      this.frontend.close();
      this.frontend = undefined;
      this.log.warn('the card went away; the device waits for it to come back', { device: this.index, card: link.name });
    }
    let f: VhostUserFrontend;
    try {
      f = VhostUserFrontend.over(link.connect());
    } catch {
      return; // not back yet
    }
    try {
      if (this.keepConfig && !this.reclaim(f, this.keepConfig, link.name)) {
        f.close();
        return;
      }
      // From what the guest has seen completed: everything after it is served (again) by the new card.
      this.handOver(f, (q) => this.mem.readU16(q.usedAddr + 2));
      this.frontend = f;
      this.log.info('the card is back; its rings are handed over again', { device: this.index, card: link.name });
    } catch (e) {
      f.close();
      this.log.warn('a card at the path did not take the rings; trying again', { device: this.index, why: (e as Error).message });
    }
  }

  /**
   * Writes the kept configuration back and reads it back: whether the card now gives the guest what it had. A
   * refusal comes as a negative acknowledgement, or (without REPLY_ACK) not at all: the read-back is what counts.
   * Refused for RECLAIM_MS, the configuration is lost. Throws when the connection fails (the card is not back).
   */
  private reclaim(f: VhostUserFrontend, keep: KeptConfig, card: string): boolean {
    let why = '';
    try {
      f.setConfig(0, keep.bytes);
    } catch (e) {
      why = errorMessage(e);
    }
    const now = f.getConfig(keep.bytes.length);
    if (now.every((b, i) => b === keep.bytes[i])) {
      if (this.refusedSince !== undefined) this.log.info('the card gave the device\'s configuration back', { device: this.index, card, kept: keep.describe(keep.bytes) });
      this.refusedSince = undefined;
      return true;
    }
    const fields = { device: this.index, card, kept: keep.describe(keep.bytes), given: keep.describe(now), why };
    if (this.refusedSince === undefined) {
      this.refusedSince = Date.now();
      this.log.warn('the card that came back refused the device\'s configuration; asking again', fields);
    }
    if (Date.now() - this.refusedSince < RECLAIM_MS) return false;
    this.log.error('the card that came back kept refusing the device\'s configuration: the guest\'s view of it is wrong', fields);
    this.refusedSince = undefined;
    clearInterval(this.watch);
    this.watch = undefined;
    keep.lost(now);
    return false;
  }

  notify(index: number): void {
    const fd = this.notifyFds[index];
    if (fd !== undefined) libc.eventfdSignal(fd);
  }

  /**
   * Holds the rings for a snapshot: the card stops serving them (GET_VRING_BASE) and touches guest memory no more
   * until resumeRings(). What it took but had not completed is after the used index the guest sees, which is where
   * the rings start again, here or in a VM restored from the snapshot: those requests are served again.
   */
  pauseRings(): void {
    clearInterval(this.watch);
    this.watch = undefined;
    for (const { index } of this.started) {
      try {
        this.frontend?.getVringBase(index);
      } catch (e) {
        this.log.warn('the card did not stop a ring for a snapshot', { device: this.index, ring: index, why: errorMessage(e) });
      }
    }
  }

  /** Gives the card its rings again after pauseRings(), from the used index the guest has seen. */
  resumeRings(): void {
    if (this.started.length === 0) return;
    const f = this.frontend;
    try {
      if (f) this.handOver(f, (q) => this.mem.readU16(q.usedAddr + 2));
    } catch (e) {
      // As after a card restart: the watch connects again and hands the rings over.
      this.log.warn('the card did not take its rings back after a snapshot; connecting again', { device: this.index, why: errorMessage(e) });
      f?.close();
      this.frontend = undefined;
    }
    this.watch ??= setInterval(() => this.checkCard(), WATCH_MS).unref();
  }

  stop(): void {
    const f = this.frontend;
    for (const { index } of this.started) {
      try {
        f?.getVringBase(index);
      } catch (e) {
        this.log.warn('the card did not stop a ring', { device: this.index, ring: index, why: (e as Error).message });
      }
    }
    if (this.started.length > 0) this.io.stop(this.index);
    this.started = [];
    clearInterval(this.watch);
    this.watch = undefined;
  }

  close(): void {
    clearInterval(this.watch);
    this.frontend?.close();
    this.frontend = undefined;
    for (const fd of [...this.notifyFds, ...this.callFds, this.irqFd]) libc.close(fd);
  }
}
