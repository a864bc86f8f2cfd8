// A VM's devices: the legacy devices on the port bus, and each virtio device in its virtio-mmio slot with its
// transport (registers, answered on the main thread through MMIO exits) and its runner (queues, served on the I/O
// thread through ioeventfds and irqfds, or in a card over vhost-user). It owns the I/O thread and the runners, and
// releases them; the fds it was given (disks, a TAP, a vsock socket) stay with the VM that opened them.
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import type { SyscallAllowlist } from '../sys/seccomp.js';
import type { DeviceSlots } from '../isolation/machine.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { MmioTransport } from '../virtio/mmio-transport.js';
import type { QueueRunner, VirtioDevice } from '../virtio/device.js';
import { VirtioRng } from '../virtio/rng.js';
import { BLK_QUEUE_SIZE, VIRTIO_ID_BLOCK, VirtioBlock, type BlockDiskInfo } from '../virtio/blk.js';
import { NET_QUEUE_SIZE, VIRTIO_ID_NET, VirtioNet } from '../virtio/net.js';
import { formatMac } from '../virtio/net-addressing.js';
import { VirtioVsock } from '../virtio/vsock.js';
import { Bus } from './bus.js';
import { attachLegacyDevices, type LegacyDeviceHooks, type LegacyDevices } from './legacy-devices.js';
import type { Uart16550 } from './devices/uart.js';
import type { MmioTransportState } from '../virtio/mmio-transport.js';
import { MAX_VIRTIO_DEVICES, virtioSlot, VIRTIO_MMIO_WINDOW, type VirtioSlot } from './virtio-mmio-slots.js';
import { IoThread, ThreadedRunner } from './io-thread-host.js';
import { CardDevice, VhostUserRunner } from './vhost-user-device.js';
import type { CardLink } from './card-link.js';

/** The guest's vsock address (2 is the host's; guest/ABI.md). */
export const GUEST_VSOCK_CID = 3;

/** The guest's network: its MAC, and, on a TAP link (where no DHCP server answers), the address its init sets. */
export interface GuestNetwork {
  readonly mac: string;
  readonly fixed?: { readonly ip: string; readonly prefix: number; readonly gateway: string } | undefined;
}

/** The virtio devices of a VM, in slot order: rng, disks, volumes, a TAP's or a card's network, vsock. */
export interface DeviceSet {
  readonly rng: boolean;
  readonly disks: readonly BlockDiskInfo[];
  readonly volumes: readonly CardLink[];
  readonly tap?: { readonly fd: number; readonly mac: Uint8Array; readonly hostIp: string; readonly guestIp: string; readonly prefix: number } | undefined;
  readonly netCard?: CardLink | undefined;
  readonly vsock?: { readonly listenFd: number } | undefined;
}

export interface DeviceManagerOptions {
  readonly log: Logger;
  /** The list the I/O thread narrows its system calls to, if any. */
  readonly confineIo: SyscallAllowlist | undefined;
  /** A data path failed in a way that is not the guest's doing, or a card took the guest's MAC away: the VM ends. */
  readonly crashed: (why: string) => void;
  /** vsock: a connection to the host program at `hostPort`, or undefined when nobody listens there. */
  readonly connectHost: (hostPort: number) => Promise<number | undefined>;
}

type Runner = QueueRunner & { close(): void };

interface Slotted {
  readonly name: string;
  readonly slot: VirtioSlot;
  readonly device: VirtioDevice;
  readonly transport: MmioTransport;
  readonly runner: Runner;
}

/** Every device's saved state: the legacy devices', then each virtio transport's in slot order. */
export interface DevicesState {
  readonly uart: unknown;
  readonly rtc: unknown;
  readonly i8042: unknown;
  readonly azote: unknown;
  readonly virtio: readonly unknown[];
}

export class DeviceManager {
  readonly bus = new Bus();
  private readonly legacy: LegacyDevices;
  /** The guest's address and gateway on its network (a TAP or a network card). */
  readonly network: GuestNetwork | undefined;
  private readonly slotted: Slotted[] = [];
  /** Started only for a VM with virtio devices (it costs a worker: memory and start-up time). */
  private ioThread: IoThread | undefined;
  private closed = false;

  constructor(private readonly slots: DeviceSlots, private readonly mem: GuestMemory, devices: DeviceSet, legacy: LegacyDeviceHooks,
    private readonly o: DeviceManagerOptions) {
    this.legacy = attachLegacyDevices(this.bus, legacy);
    const tap = devices.tap;
    let network: GuestNetwork | undefined = tap
      ? { mac: formatMac(tap.mac), fixed: { ip: tap.guestIp, prefix: tap.prefix, gateway: tap.hostIp } }
      : undefined;
    // Each entry makes its device and runner once its slot is known.
    type Make = (index: number, slot: VirtioSlot, isr: Int32Array) => { device: VirtioDevice; runner: Runner };
    const local = (device: VirtioDevice): Make => (index, slot, isr) => ({
      device, runner: new ThreadedRunner(slots, this.io, index, device.dataPath, device.queueSizes.length, slot.base, slot.irq, isr),
    });
    const card = (what: string, link: CardLink, deviceId: number, queueSizes: readonly number[]): Make => (index, slot, isr) => {
      const runner = new VhostUserRunner(slots, mem, this.io, index, queueSizes.length, slot.base, slot.irq, isr, o.log);
      try {
        const device = new CardDevice(deviceId, queueSizes, runner.connect(link), runner.callFds);
        if (deviceId === VIRTIO_ID_NET) network = this.cardMac(device, runner);
        return { device, runner };
      } catch (e) {
        runner.close();
        if (e instanceof AzoteError && e.code === 'CardUnavailable') throw e;
        throw new AzoteError('CardUnavailable', `${what} at ${link.name} cannot be used: ${errorMessage(e)}`, 'see the card\'s log');
      }
    };
    const makes: Array<[string, Make]> = [];
    if (devices.rng) makes.push(['virtio-rng', local(new VirtioRng())]);
    devices.disks.forEach((d, i) => makes.push([`virtio-blk${i}`, local(new VirtioBlock(d))]));
    devices.volumes.forEach((link, i) => makes.push([`vhost-user-blk${i}`, card('the volume\'s card', link, VIRTIO_ID_BLOCK, [BLK_QUEUE_SIZE])]));
    if (tap) makes.push(['virtio-net0', local(new VirtioNet(tap.mac, { kind: 'net', tapFd: tap.fd }))]);
    if (devices.netCard) makes.push(['vhost-user-net0', card('the network card', devices.netCard, VIRTIO_ID_NET, [NET_QUEUE_SIZE, NET_QUEUE_SIZE])]);
    if (devices.vsock) {
      makes.push(['virtio-vsock0', local(new VirtioVsock(GUEST_VSOCK_CID, { kind: 'vsock', guestCid: GUEST_VSOCK_CID, listenFd: devices.vsock.listenFd }))]);
    }
    if (makes.length > MAX_VIRTIO_DEVICES) {
      throw new AzoteError('TooManyDevices', `${makes.length} virtio devices do not fit in ${MAX_VIRTIO_DEVICES} slots`, 'attach fewer disks or volumes');
    }
    try {
      makes.forEach(([name, make], index) => this.attach(name, index, make));
    } catch (e) {
      void this.close();
      throw e;
    }
    this.network = network;
  }

  private attach(name: string, index: number, make: (index: number, slot: VirtioSlot, isr: Int32Array) => { device: VirtioDevice; runner: Runner }): void {
    const slot = virtioSlot(index);
    const isr = new Int32Array(new SharedArrayBuffer(4));
    const { device, runner } = make(index, slot, isr);
    const transport = new MmioTransport(this.mem, device, runner, () => {
      this.slots.irqLine(slot.irq, true);
      this.slots.irqLine(slot.irq, false);
    }, isr, (why) => this.o.log.warn('virtio device needs a reset (the guest gave it something malformed)', { device: name, why }));
    this.slotted.push({ name, slot, device, transport, runner });
    this.bus.addMmio(name, slot.base, VIRTIO_MMIO_WINDOW, {
      read: (offset, size) => BigInt(transport.read(offset, size)),
      write: (offset, size, value) => transport.write(offset, size, Number(value & 0xffffffffn)),
    });
  }

  /** COM1, which also takes the host's input. */
  get uart(): Uart16550 {
    return this.legacy.uart;
  }

  giveRunRequest(bytes: Uint8Array): void {
    this.legacy.azote.giveRunRequest(bytes);
  }

  /** The virtio devices' names in slot order: a snapshot restores only into the same set. */
  get names(): string[] {
    return this.slotted.map((s) => s.name);
  }

  /**
   * Stops the devices' data paths for a snapshot: once this resolves, nothing of theirs touches guest memory until
   * resume(): the I/O thread serves nothing, and each card stops its rings. Refused (and resumed) for a device whose
   * state cannot be saved now (one holding live host connections).
   */
  async pause(): Promise<void> {
    const blockers = this.ioThread ? await this.ioThread.pause() : [];
    if (blockers.length > 0) {
      this.ioThread?.resume();
      throw new AzoteError('SnapshotUnsupported', `the VM cannot be saved now: ${blockers.join('; ')}`, 'close the connections first, then try again');
    }
    for (const s of this.slotted) if (s.runner instanceof VhostUserRunner) s.runner.pauseRings();
  }

  resume(): void {
    for (const s of this.slotted) if (s.runner instanceof VhostUserRunner) s.runner.resumeRings();
    this.ioThread?.resume();
  }

  /** Every device's state; call between pause() and resume(). */
  saveState(): DevicesState {
    const { uart, rtc, i8042, azote } = this.legacy;
    return {
      uart: uart.saveState(), rtc: rtc.saveState(), i8042: i8042.saveState(), azote: azote.saveState(),
      virtio: this.slotted.map((s): MmioTransportState => s.transport.saveState(s.transport.restingPositions())),
    };
  }

  /**
   * Takes saved state into devices made for the same set (same names in the same slots, checked by the caller):
   * started devices start serving again from their queues' saved positions. Each record is checked by its model
   * before anything of it is applied (BadSnapshotState).
   */
  restoreState(s: DevicesState): void {
    const { uart, rtc, i8042, azote } = this.legacy;
    uart.restoreState(s.uart);
    rtc.restoreState(s.rtc);
    i8042.restoreState(s.i8042);
    azote.restoreState(s.azote);
    this.slotted.forEach((slotted, i) => slotted.transport.restoreState(s.virtio[i]));
  }

  /** Like Firecracker, the hypervisor announces its virtio-mmio devices on the kernel command line itself. */
  kernelParams(): string[] {
    return this.slotted.map((s) => s.slot.kernelParam);
  }

  private get io(): IoThread {
    this.ioThread ??= new IoThread(this.mem, this.o.log, this.o.confineIo, (why) => this.o.crashed(why),
      (device, hostPort) => this.connectHost(device, hostPort));
    return this.ioThread;
  }

  /** A vsock device's connection to a host program, made by the VM's owner and given to the I/O thread. */
  private connectHost(device: number, hostPort: number): void {
    this.o.connectHost(hostPort).then((fd) => {
      if (this.closed) {
        if (fd !== undefined) libc.close(fd);
      } else {
        this.io.hostConnected(device, hostPort, fd);
      }
    }, (e: unknown) => {
      this.o.log.warn('a guest connection to the host could not be made', { hostPort, why: errorMessage(e) });
      if (!this.closed) this.io.hostConnected(device, hostPort, undefined);
    });
  }

  /** The MAC a network card gave the port, kept across the card's restarts (the card gives the port's address by DHCP). */
  private cardMac(device: CardDevice, runner: VhostUserRunner): GuestNetwork {
    const mac = Uint8Array.from({ length: 6 }, (_, i) => device.readConfig(i, 1));
    runner.keepConfig = {
      bytes: mac, describe: formatMac,
      // The guest keeps a MAC its card no longer gives it: it is off the network.
      lost: (given) => this.o.crashed(
        `the network card restarted and would not give this VM its MAC ${formatMac(mac)} back (it offers ${formatMac(given)}): start it again`),
    };
    return { mac: formatMac(mac) };
  }

  /**
   * Stops serving: the I/O thread goes first (it may be inside a disk write into guest memory), then the runners'
   * eventfds and card connections. Resolves once nothing of the devices touches guest memory any more.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.ioThread?.close();
    for (const s of this.slotted) s.runner.close();
  }
}
