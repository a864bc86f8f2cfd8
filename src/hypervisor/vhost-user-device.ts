// A virtio device whose data path runs in a card: the transport stays here (registers, features, configuration
// space fetched from the card), and at DRIVER_OK the rings are handed to the card over vhost-user. The guest's
// queue notifications go from KVM's ioeventfd straight to the card (the kick fds are the ioeventfds); the card's
// completions come back on call eventfds that the I/O thread turns into INT_VRING and the device's IRQ.
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import type { Vm } from '../kvm/kvm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { readConfigBytes, type DataPathSpec, type QueueRunner, type RunnerEvents, type VirtioDevice } from '../virtio/device.js';
import { REG } from '../virtio/mmio-transport.js';
import type { QueueConfig } from '../virtio/split-queue.js';
import { VhostUserFrontend } from '../vhost-user/frontend.js';
import { ProtocolError } from '../vhost-user/messages.js';
import type { IoThread } from './io-thread-host.js';

/** How much configuration space is fetched from the card (virtio-blk's is the largest Azote attaches). */
const CONFIG_BYTES = 60;

export class CardDevice implements VirtioDevice {
  readonly features: bigint;
  readonly dataPath: DataPathSpec;
  private readonly config: Uint8Array;

  constructor(readonly deviceId: number, readonly queueSizes: readonly number[], readonly frontend: VhostUserFrontend,
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
  readonly notifyFds: number[] = [];
  readonly callFds: number[] = [];
  private readonly irqFd: number;
  private started: number[] = [];
  private device: CardDevice | undefined;

  constructor(
    private readonly vm: Vm,
    private readonly mem: GuestMemory,
    private readonly io: IoThread,
    private readonly index: number,
    queueCount: number,
    mmioBase: number,
    irq: number,
    private readonly isr: Int32Array,
    private readonly log: Logger,
  ) {
    for (let q = 0; q < queueCount; q++) {
      const kick = libc.eventfd(0, libc.EFD_NONBLOCK);
      this.notifyFds.push(kick);
      vm.ioeventfd(kick, mmioBase + REG.QUEUE_NOTIFY, 4, q);
      this.callFds.push(libc.eventfd(0, libc.EFD_NONBLOCK));
    }
    this.irqFd = libc.eventfd(0, libc.EFD_NONBLOCK);
    vm.irqfd(this.irqFd, irq);
  }

  attach(device: CardDevice): void {
    this.device = device;
  }

  /** The guest's memory for the card: each region of the memfd, at the address this process maps it. */
  private memTable(): void {
    const f = this.device?.frontend;
    if (!f) return;
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

  start(queues: readonly (QueueConfig | undefined)[], features: bigint, events: RunnerEvents): void {
    const f = this.device?.frontend;
    if (!f) return;
    try {
      f.setFeatures(features);
      this.memTable();
      this.started = [];
      queues.forEach((q, i) => {
        if (!q) return;
        f.setVringNum(i, q.size);
        f.setVringBase(i, q.startIndex ?? 0);
        f.setVringAddr({ index: i, flags: 0, desc: this.userAddr(q.descAddr), used: this.userAddr(q.usedAddr), avail: this.userAddr(q.availAddr), log: 0n });
        f.setVringCall(i, this.callFds[i]);
        f.setVringKick(i, this.notifyFds[i] ?? -1);
        f.setVringEnable(i, true);
        this.started.push(i);
      });
    } catch (e) {
      this.log.error('the card did not take the device\'s rings', { device: this.index, why: (e as Error).message });
      events.failed(`the card did not take the rings: ${(e as Error).message}`);
      return;
    }
    // The I/O thread relays the card's completions; the kicks are the card's alone.
    this.io.start(this.index, { kind: 'relay', callFds: this.callFds }, [], features, [], this.irqFd, this.isr, events);
  }

  notify(index: number): void {
    const fd = this.notifyFds[index];
    if (fd !== undefined) libc.eventfdSignal(fd);
  }

  stop(): void {
    const f = this.device?.frontend;
    for (const i of this.started) {
      try {
        f?.getVringBase(i);
      } catch (e) {
        this.log.warn('the card did not stop a ring', { device: this.index, ring: i, why: (e as Error).message });
      }
    }
    if (this.started.length > 0) this.io.stop(this.index);
    this.started = [];
  }

  close(): void {
    this.device?.frontend.close();
    for (const fd of [...this.notifyFds, ...this.callFds, this.irqFd]) libc.close(fd);
  }
}
