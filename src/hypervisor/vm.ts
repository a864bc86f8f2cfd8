// One microVM: its KVM VM, guest memory, boot image, legacy devices and vCPU threads, from start to end.
// Devices run on this (main) thread; vCPUs run on worker threads and ask for device accesses (vcpu-protocol.ts).
import type { SyscallAllowlist } from '../sys/seccomp.js';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import { detectKvmFlavour, Kvm, type KvmFlavour, type Vm } from '../kvm/kvm.js';
import { GuestMemory, MiB } from '../memory/guest-memory.js';
import { loadGuest, type BootPlan } from '../boot/loader.js';
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR } from '../boot/layout.js';
import { MAX_MPTABLE_CPUS } from '../boot/mptable.js';
import { Bus, type BusCounters } from './bus.js';
import { withoutPvHypercalls } from './pvm-quirks.js';
import { COM1_IRQ, type Uart16550 } from './devices/uart.js';
import { attachLegacyDevices } from './legacy-devices.js';
import { MAX_VIRTIO_DEVICES, virtioSlot, VIRTIO_MMIO_WINDOW, type VirtioSlot } from './virtio-mmio-slots.js';
import { MmioTransport } from '../virtio/mmio-transport.js';
import type { QueueRunner, VirtioDevice } from '../virtio/device.js';
import { VirtioRng } from '../virtio/rng.js';
import { BLK_QUEUE_SIZE, VIRTIO_ID_BLOCK, VirtioBlock, type BlockDiskInfo } from '../virtio/blk.js';
import { adoptDisk, closeDisk, openDisk } from '../virtio/raw-file.js';
import { IoThread, ThreadedRunner } from './io-thread-host.js';
import { CardDevice, VhostUserRunner } from './vhost-user-device.js';
import type { CardLink } from './card-link.js';
import { NET_QUEUE_SIZE, VIRTIO_ID_NET, VirtioNet } from '../virtio/net.js';
import { formatMac } from '../virtio/net-addressing.js';
import type { Tap } from './tap.js';
import { VirtioVsock } from '../virtio/vsock.js';
import {
  CTL, CTL_WORDS, KIND, STATE, WAKE_SIGNAL, type VcpuMessage, type VcpuStop, type VcpuThreadInit,
} from './vcpu-protocol.js';
import { kvmRun } from '../kvm/structs.js';

/** The guest's network: its MAC, and, on a TAP link (where no DHCP server answers), the address its init sets. */
export interface GuestNetwork {
  readonly mac: string;
  readonly fixed?: { readonly ip: string; readonly prefix: number; readonly gateway: string } | undefined;
}

export interface VmConfig {
  readonly kernel: Uint8Array;
  readonly initrd?: Uint8Array | undefined;
  readonly cmdline: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  /** Bytes the guest wrote to its serial port. */
  readonly output: (bytes: Uint8Array) => void;
  readonly log: Logger;
  /** Called when the guest writes the boot marker port. */
  readonly onMarker?: (value: number) => void;
  readonly flavour?: KvmFlavour;
  readonly kvmDevice?: string;
  /** /dev/kvm opened by someone else (the controller, for a jailed hypervisor); used instead of kvmDevice. */
  readonly kvmFd?: number;
  /** A virtio-rng device (entropy from the host's CSPRNG). */
  readonly rng?: boolean;
  /**
   * Given by a hypervisor that took its process's seccomp filter (instance-main.ts): each vCPU thread and the I/O
   * thread add their role's narrower list (seccomp-roles.ts) once set up.
   */
  readonly confineThreads?: { readonly vcpu: SyscallAllowlist; readonly io: SyscallAllowlist };
  /** Disks, in order: the first is /dev/vda in a Linux guest. Each is locked while the VM runs. */
  readonly disks?: readonly DiskSpec[];
  /**
   * A virtio-net device on this TAP (made by the caller: creating one needs CAP_NET_ADMIN), whose fd the VM owns
   * from now on; the guest's init configures eth0 with its addresses.
   */
  readonly tap?: TapAttachment;
  /** Volumes served by block cards (links to their vhost-user sockets), attached after the disks. */
  readonly volumes?: readonly CardLink[];
  /** A virtio-net device attached to the network card at this link to its vhost-user socket (instead of a TAP). */
  readonly netCard?: CardLink;
  /**
   * A virtio-vsock device (Firecracker's hybrid form) whose host programs connect to the listening Unix socket
   * `listenFd` (the VM owns it from now on); `connect` makes the guest's connections to host port P, resolving to a
   * connected socket (the VM's) or undefined when nobody listens there.
   */
  readonly vsock?: { readonly listenFd: number; readonly connect: (hostPort: number) => Promise<number | undefined> };
  /** After input() returned false (too much queued), called once the guest has taken all of it. */
  readonly inputReady?: () => void;
}

/** A TAP device as the VM uses it (its name is the host's business). */
export type TapAttachment = Pick<Tap, 'fd' | 'mac' | 'hostIp' | 'guestIp' | 'prefix'>;

/** A disk file to open, or one opened already (`fd`, named by `path` in messages). */
export interface DiskSpec {
  readonly path: string;
  readonly readOnly: boolean;
  readonly fd?: number;
}

export type VmEnd =
  | { kind: 'exit-status'; status: number }
  | { kind: 'reset' }
  | { kind: 'stopped' }
  | { kind: 'crashed'; reason: string };

export interface VmStats {
  readonly ioExits: number;
  readonly bus: BusCounters;
  readonly quirks: number;
}

interface VcpuHandle {
  readonly worker: Worker;
  readonly control: Int32Array;
  runPage?: Uint8Array;
  tid?: number;
  exited: boolean;
}

const MIN_MEMORY_MIB = 16;
/** The guest's vsock address (2 is the host's; guest/ABI.md). */
const GUEST_VSOCK_CID = 3;
const STOP_GRACE_MS = 5000;
/** Host input queued beyond this makes input() ask the sender to pause. */
const INPUT_HIGH_WATER = 64 * 1024;
let wakeSignalInstalled = false;

export function hostAvailableMemoryMiB(): number {
  let meminfo: string;
  try {
    meminfo = readFileSync('/proc/meminfo', 'utf8');
  } catch {
    return Number.MAX_SAFE_INTEGER; // a jailed hypervisor sees no /proc: its parent (the controller, azote run) checked
  }
  const m = /MemAvailable:\s+(\d+) kB/.exec(meminfo);
  return m ? Math.floor(Number(m[1]) / 1024) : Number.MAX_SAFE_INTEGER;
}

export function validateVmShape(vcpus: number, memoryMiB: number): void {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_MPTABLE_CPUS) {
    throw new AzoteError('BadVcpus', `--vcpus ${vcpus} is out of range`, `use 1 to ${MAX_MPTABLE_CPUS}`);
  }
  if (!Number.isInteger(memoryMiB) || memoryMiB < MIN_MEMORY_MIB) {
    throw new AzoteError('BadMemory', `--mem ${memoryMiB} is too small`, `use at least ${MIN_MEMORY_MIB} (MiB)`);
  }
  const available = hostAvailableMemoryMiB();
  if (memoryMiB > available) {
    throw new AzoteError('MemoryTooLarge', `--mem ${memoryMiB} MiB is more than this host can give (${available} MiB available)`,
      `use --mem ${Math.max(MIN_MEMORY_MIB, Math.floor(available / 2))} or less`);
  }
}

export class MicroVm {
  private readonly kvm: Kvm;
  private readonly vm: Vm;
  private readonly mem: GuestMemory;
  private readonly plan: BootPlan;
  private readonly bus = new Bus();
  private readonly uart: Uart16550;
  private readonly vcpus: VcpuHandle[] = [];
  private readonly control: SharedArrayBuffer;
  private readonly log: Logger;
  private end: VmEnd | undefined;
  private shutdownRequested = false;
  private resolveEnd: ((e: VmEnd) => void) | undefined;
  private ioExits = 0;
  private quirks = 0;
  private closed = false;
  /** The I/O thread, started only for a VM with virtio devices (it costs a worker: memory and start-up time). */
  private ioThread: IoThread | undefined;
  private readonly runners: Array<{ close(): void }> = [];
  private readonly openDisks: BlockDiskInfo[] = [];
  /** The guest's address and gateway on its network (a TAP or a network card); its init configures eth0 so. */
  network: GuestNetwork | undefined;
  readonly flavour: KvmFlavour;

  constructor(private readonly cfg: VmConfig) {
    this.log = cfg.log;
    this.flavour = cfg.flavour ?? detectKvmFlavour();
    // Each resource, once acquired, is released in reverse order if a later step fails.
    const acquired: Array<{ close(): void }> = [];
    // What the caller handed over is the VM's from the start, released with the rest.
    const { tap, vsock } = cfg;
    if (tap) acquired.push({ close: () => libc.close(tap.fd) });
    if (vsock) acquired.push({ close: () => libc.close(vsock.listenFd) });
    try {
      validateVmShape(cfg.vcpus, cfg.memoryMiB);
      // Disks first: a wrong path or a disk in use is the user's to fix, whatever the host can do.
      for (const d of cfg.disks ?? []) {
        const disk = d.fd === undefined ? openDisk(d.path, d.readOnly) : adoptDisk(d.fd, d.path, d.readOnly);
        this.openDisks.push(disk);
        acquired.push({ close: () => closeDisk(disk) });
      }
      if (tap) this.network = { mac: formatMac(tap.mac), fixed: { ip: tap.guestIp, prefix: tap.prefix, gateway: tap.hostIp } };
      this.kvm = cfg.kvmFd === undefined ? Kvm.open(cfg.kvmDevice) : Kvm.adopt(cfg.kvmFd);
      acquired.push(this.kvm);
      this.vm = this.kvm.createVm();
      acquired.push(this.vm);
      this.vm.setTssAddr(KVM_TSS_ADDR);
      this.vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
      this.vm.createIrqchip();
      this.vm.createPit2();
      this.mem = GuestMemory.create(cfg.memoryMiB * MiB);
      acquired.push(this.mem);
      this.mem.regions.forEach((r, slot) => this.vm.setUserMemoryRegion(slot, r.gpa, r.size, this.mem.address + BigInt(r.offset)));
      acquired.push({ close: () => void this.ioThread?.close() });
      acquired.push({ close: () => this.runners.forEach((r) => r.close()) });
      // Like Firecracker, the hypervisor announces its virtio-mmio devices on the kernel command line itself.
      const slots = this.attachVirtio();
      // A card's guest gets its address by DHCP (the card serves it); a TAP's guest is told it.
      const fixed = this.network?.fixed;
      const network = fixed ? [`azote.net=${fixed.ip}/${fixed.prefix},${fixed.gateway}`] : this.network ? ['azote.net=dhcp'] : [];
      const cmdline = [cfg.cmdline, ...network, ...slots.map((slot) => slot.kernelParam)].filter(Boolean).join(' ');
      this.plan = loadGuest(this.mem, { kernel: cfg.kernel, initrd: cfg.initrd, cmdline, vcpus: cfg.vcpus });
    } catch (e) {
      for (const r of acquired.reverse()) r.close();
      throw e;
    }
    this.uart = attachLegacyDevices(this.bus, {
      output: cfg.output,
      serialInterrupt: () => {
        this.vm.irqLine(COM1_IRQ, true);
        this.vm.irqLine(COM1_IRQ, false);
      },
      serialInputDrained: () => cfg.inputReady?.(),
      reset: () => this.finish({ kind: 'reset' }),
      exitStatus: (status) => this.finish({ kind: 'exit-status', status }),
      marker: (v) => cfg.onMarker?.(v),
      shutdownRequested: () => this.shutdownRequested,
    });
    this.control = new SharedArrayBuffer(cfg.vcpus * CTL_WORDS * 4);
  }

  /**
   * Creates the configured virtio devices, each in its virtio-mmio slot: registers on the main thread (through MMIO
   * exits), queues on the I/O thread (ioeventfd in, irqfd out). Returns their slots for the kernel command line.
   */
  private get io(): IoThread {
    this.ioThread ??= new IoThread(this.mem, this.log, this.cfg.confineThreads?.io, (why) => this.finish({ kind: 'crashed', reason: why }),
      (device, hostPort) => this.connectHost(device, hostPort));
    return this.ioThread;
  }

  /** A vsock device's connection to a host program, made by the caller and given to the I/O thread. */
  private connectHost(device: number, hostPort: number): void {
    // Only the vsock device asks, and it exists only with cfg.vsock.
    const connect = this.cfg.vsock?.connect ?? (() => Promise.resolve(undefined));
    connect(hostPort).then((fd) => {
      if (this.closed) {
        if (fd !== undefined) libc.close(fd);
      } else {
        this.io.hostConnected(device, hostPort, fd);
      }
    }, (e: unknown) => {
      this.log.warn('a guest connection to the host could not be made', { hostPort, why: errorMessage(e) });
      if (!this.closed) this.io.hostConnected(device, hostPort, undefined);
    });
  }

  /** The MAC a network card gave the port, kept across the card's restarts (the card gives the port's address by DHCP). */
  private cardMac(device: CardDevice, runner: VhostUserRunner): GuestNetwork {
    const mac = Uint8Array.from({ length: 6 }, (_, i) => device.readConfig(i, 1));
    runner.keepConfig = {
      bytes: mac, describe: formatMac,
      // The guest keeps a MAC its card no longer gives it: it is off the network.
      lost: (given) => this.finish({
        kind: 'crashed',
        reason: `the network card restarted and would not give this VM its MAC ${formatMac(mac)} back (it offers ${formatMac(given)}): start it again`,
      }),
    };
    return { mac: formatMac(mac) };
  }

  private attachVirtio(): VirtioSlot[] {
    // Each entry makes its device and runner once its slot is known.
    type Make = (index: number, slot: VirtioSlot, isr: Int32Array) => { device: VirtioDevice; runner: QueueRunner & { close(): void } };
    const local = (device: VirtioDevice): Make => (index, slot, isr) => ({
      device, runner: new ThreadedRunner(this.vm, this.io, index, device.dataPath, device.queueSizes.length, slot.base, slot.irq, isr),
    });
    const card = (what: string, link: CardLink, deviceId: number, queueSizes: readonly number[]): Make => (index, slot, isr) => {
      const runner = new VhostUserRunner(this.vm, this.mem, this.io, index, queueSizes.length, slot.base, slot.irq, isr, this.log);
      const socket = link.name;
      try {
        const device = new CardDevice(deviceId, queueSizes, runner.connect(link), runner.callFds);
        if (deviceId === VIRTIO_ID_NET) this.network = this.cardMac(device, runner);
        return { device, runner };
      } catch (e) {
        runner.close();
        if (e instanceof AzoteError && e.code === 'CardUnavailable') throw e;
        throw new AzoteError('CardUnavailable', `${what} at ${socket} cannot be used: ${errorMessage(e)}`, 'see the card\'s log');
      }
    };
    const devices: Array<[string, Make]> = [];
    if (this.cfg.rng) devices.push(['virtio-rng', local(new VirtioRng())]);
    this.openDisks.forEach((d, i) => devices.push([`virtio-blk${i}`, local(new VirtioBlock(d))]));
    (this.cfg.volumes ?? []).forEach((link, i) => devices.push([`vhost-user-blk${i}`, card('the volume\'s card', link, VIRTIO_ID_BLOCK, [BLK_QUEUE_SIZE])]));
    const tap = this.cfg.tap;
    if (tap) devices.push(['virtio-net0', local(new VirtioNet(tap.mac, { kind: 'net', tapFd: tap.fd }))]);
    const netCard = this.cfg.netCard;
    if (netCard) devices.push(['vhost-user-net0', card('the network card', netCard, VIRTIO_ID_NET, [NET_QUEUE_SIZE, NET_QUEUE_SIZE])]);
    const vsock = this.cfg.vsock;
    if (vsock) devices.push(['virtio-vsock0', local(new VirtioVsock(GUEST_VSOCK_CID, { kind: 'vsock', guestCid: GUEST_VSOCK_CID, listenFd: vsock.listenFd }))]);
    if (devices.length > MAX_VIRTIO_DEVICES) {
      throw new AzoteError('TooManyDevices', `${devices.length} virtio devices do not fit in ${MAX_VIRTIO_DEVICES} slots`, 'attach fewer disks');
    }
    return devices.map(([name, make], index) => {
      const slot = virtioSlot(index);
      const isr = new Int32Array(new SharedArrayBuffer(4));
      const { device, runner } = make(index, slot, isr);
      this.runners.push(runner);
      const transport = new MmioTransport(this.mem, device, runner, () => {
        this.vm.irqLine(slot.irq, true);
        this.vm.irqLine(slot.irq, false);
      }, isr, (why) => this.log.warn('virtio device needs a reset (the guest gave it something malformed)', { device: name, why }));
      this.bus.addMmio(name, slot.base, VIRTIO_MMIO_WINDOW, {
        read: (offset, size) => BigInt(transport.read(offset, size)),
        write: (offset, size, value) => transport.write(offset, size, Number(value & 0xffffffffn)),
      });
      return slot;
    });
  }

  get bootPlan(): BootPlan {
    return this.plan;
  }

  stats(): VmStats {
    return { ioExits: this.ioExits, bus: { ...this.bus.counters }, quirks: this.quirks };
  }

  /** Starts every vCPU; resolves when the VM has ended and every resource is released. */
  run(): Promise<VmEnd> {
    if (!wakeSignalInstalled) {
      libc.installWakeSignal(WAKE_SIGNAL);
      wakeSignalInstalled = true;
    }
    const supported = this.kvm.supportedCpuid();
    const cpuid = this.flavour === 'nested-pvm' ? withoutPvHypercalls(supported) : supported;
    const done = new Promise<VmEnd>((resolve) => { this.resolveEnd = resolve; });
    const startGate = new SharedArrayBuffer(4);
    for (let index = 0; index < this.cfg.vcpus; index++) {
      const init: VcpuThreadInit = {
        index, vcpus: this.cfg.vcpus, kvmFd: this.kvm.fd, vmFd: this.vm.fd, memory: this.mem.share(),
        plan: this.plan, cpuid, control: this.control, startGate, flavour: this.flavour, confine: this.cfg.confineThreads?.vcpu,
      };
      const worker = new Worker(new URL('./vcpu-thread.js', import.meta.url), { workerData: init });
      const handle: VcpuHandle = { worker, control: new Int32Array(this.control, index * CTL_WORDS * 4, CTL_WORDS), exited: false };
      this.vcpus.push(handle);
      worker.on('message', (m: VcpuMessage) => this.onMessage(handle, m));
      worker.on('error', (e) => this.finish({ kind: 'crashed', reason: `vCPU ${index} thread failed: ${e.message}` }));
      worker.on('exit', () => {
        handle.exited = true;
        this.maybeClose();
      });
    }
    return done;
  }

  /**
   * Host bytes for the guest's serial console, kept until the guest's driver receives. Returns false when so much
   * is queued that the sender should pause until inputReady.
   */
  input(bytes: Uint8Array): boolean {
    return this.end ? true : this.uart.enqueueInput(bytes) < INPUT_HIGH_WATER;
  }

  /**
   * Asks the guest to shut down: its init, polling the shutdown-request port, ends its processes, syncs and unmounts
   * its disks and powers off (an exit status). The caller decides how long to wait before stop().
   */
  requestShutdown(): void {
    this.shutdownRequested = true;
  }

  /** Stops the VM from the host side. */
  stop(): void {
    this.finish({ kind: 'stopped' });
  }

  private onMessage(h: VcpuHandle, m: VcpuMessage): void {
    switch (m.type) {
      case 'ready':
        h.tid = m.tid;
        // After the end the thread may already have unmapped its run page (it closes once told STOP).
        if (!this.end) h.runPage = new Uint8Array(libc.viewAt(m.runAddress, m.runSize));
        if (m.msrsRefused > 0) this.log.debug('KVM refused some boot MSRs', { vcpu: m.index, refused: m.msrsRefused });
        if (this.end) this.kick(h);
        return;
      case 'io':
        this.serve(h);
        return;
      case 'quirk':
        this.quirks++;
        this.log.debug('nested-KVM workaround', { vcpu: m.index, what: m.what });
        return;
      case 'ended':
        this.onVcpuEnded(m.index, m.stop);
        return;
    }
  }

  private serve(h: VcpuHandle): void {
    const c = h.control;
    if (Atomics.load(c, CTL.STATE) !== STATE.REQUEST) return;
    this.ioExits++;
    const addr = ((c[CTL.ADDR_HI] ?? 0) >>> 0) * 0x100000000 + ((c[CTL.ADDR_LO] ?? 0) >>> 0);
    const size = c[CTL.SIZE] ?? 0;
    const write = c[CTL.WRITE] === 1;
    const value = (BigInt((c[CTL.VAL_HI] ?? 0) >>> 0) << 32n) | BigInt((c[CTL.VAL_LO] ?? 0) >>> 0);
    const pio = c[CTL.KIND] === KIND.PIO;
    let result = 0n;
    try {
      if (pio) {
        if (write) this.bus.portWrite(addr, size, Number(value & 0xffffffffn));
        else result = BigInt(this.bus.portRead(addr, size));
      } else {
        if (write) this.bus.mmioWrite(addr, size, value);
        else result = this.bus.mmioRead(addr, size);
      }
    } catch (e) {
      // A device model failed on what the guest did: that VM ends with the reason; the process and the host go on.
      const what = `${pio ? 'port' : 'MMIO'} ${write ? 'write' : 'read'} at 0x${addr.toString(16)}/${size}`;
      this.finish({ kind: 'crashed', reason: `device failure on a ${what}: ${errorMessage(e)}` });
    }
    c[CTL.VAL_LO] = Number(result & 0xffffffffn) | 0;
    c[CTL.VAL_HI] = Number((result >> 32n) & 0xffffffffn) | 0;
    // A device may have ended the VM during this access; then the vCPU is told to stop instead.
    if (Atomics.compareExchange(c, CTL.STATE, STATE.REQUEST, this.end ? STATE.STOP : STATE.DONE) === STATE.REQUEST) {
      Atomics.notify(c, CTL.STATE);
    }
  }

  private onVcpuEnded(index: number, stop: VcpuStop): void {
    switch (stop.kind) {
      case 'stopped': return;
      case 'triple-fault':
        this.finish({ kind: 'crashed', reason: `vCPU ${index} triple-faulted (the guest reset itself by crashing)` });
        return;
      case 'system-event':
        this.finish(stop.type === 1 ? { kind: 'reset' } : { kind: 'crashed', reason: `guest system event ${stop.type}` });
        return;
      case 'hlt':
        this.finish({ kind: 'crashed', reason: `vCPU ${index} halted with interrupts off` });
        return;
      default:
        this.finish({ kind: 'crashed', reason: `vCPU ${index}: ${stop.detail}` });
    }
  }

  private kick(h: VcpuHandle): void {
    if (h.runPage) h.runPage[kvmRun.fields.immediateExit.offset] = 1;
    if (h.tid !== undefined && !h.exited) {
      try {
        libc.tgkill(libc.getpid(), h.tid, WAKE_SIGNAL);
      } catch {
        // The thread already left; nothing to interrupt.
      }
    }
    Atomics.store(h.control, CTL.STATE, STATE.STOP);
    Atomics.notify(h.control, CTL.STATE);
  }

  private finish(end: VmEnd): void {
    if (this.end) return;
    this.end = end;
    this.log.debug('VM ending', { end });
    for (const h of this.vcpus) this.kick(h);
    const timer = setTimeout(() => {
      this.log.warn('vCPU threads did not stop in time', { pending: this.vcpus.filter((h) => !h.exited).length });
      this.release();
    }, STOP_GRACE_MS);
    timer.unref();
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.end && this.vcpus.every((h) => h.exited)) this.release();
  }

  private release(): void {
    if (this.closed || !this.end) return;
    this.closed = true;
    const end = this.end;
    // The I/O thread goes first: it may be inside a disk write into guest memory.
    void (this.ioThread?.close() ?? Promise.resolve()).then(() => {
      for (const d of this.openDisks) closeDisk(d);
      if (this.cfg.tap) libc.close(this.cfg.tap.fd);
      if (this.cfg.vsock) libc.close(this.cfg.vsock.listenFd);
      // vCPU threads still inside the kernel keep their own references; closing our fds is safe either way, but
      // their memory mapping must stay.
      if (this.vcpus.every((h) => h.exited)) {
        this.mem.close();
        this.vm.close();
        for (const r of this.runners) r.close();
        this.kvm.close();
      }
      this.resolveEnd?.(end);
    });
  }
}
