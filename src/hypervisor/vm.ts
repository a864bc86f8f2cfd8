// One microVM: the engine's machine (isolation/machine.ts: the KVM VM, guest memory, vCPU threads) and the device
// models that answer its vCPUs' port and MMIO exits, from start to end. Devices run on this (main) thread.
import type { SyscallAllowlist } from '../sys/seccomp.js';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import { detectKvmFlavour, type KvmFlavour } from '../kvm/kvm.js';
import type { VcpuState } from '../kvm/vcpu-state.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { BootPlan } from '../boot/loader.js';
import { Machine } from '../isolation/machine.js';
import { protectionParams, type MemoryProtection } from '../isolation/memory-protection.js';
import type { VcpuAccess, VcpuStop, Vcpus } from '../isolation/vcpus.js';
import { validateVmShape } from './vm-shape.js';
import type { BusCounters } from './bus.js';
import { COM1_IRQ } from './devices/uart.js';
import { adoptDisk, closeDisk, openDisk } from '../virtio/raw-file.js';
import type { CardLink } from './card-link.js';
import type { Tap } from './tap.js';
import { DeviceManager, type GuestNetwork } from './device-manager.js';
import { DisposableStore, OwnedFd } from '../base/disposable.js';
import { readSnapshot, writeSnapshot, type SnapshotWritten } from './snapshot/format.js';
import { cpuidDigest, machineRecord, parseMachineRecord, type MachineShape } from './snapshot/machine-state.js';

export type { GuestNetwork } from './device-manager.js';

export interface VmConfig {
  readonly kernel: Uint8Array;
  readonly initrd?: Uint8Array | undefined;
  readonly cmdline: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  /**
   * What guest memory is (the host's choice, isolation/memory-protection.ts): a sealed memfd when not given. A guest
   * that must run without kvmclock on it is told so on its command line.
   */
  readonly memory?: Pick<MemoryProtection, 'kind' | 'noKvmclock'> | undefined;
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
   * Given by a hypervisor that took its process's seccomp filter (instance-main.ts): the I/O thread adds its role's
   * narrower list (seccomp-roles.ts) once set up.
   */
  readonly confineIo?: SyscallAllowlist;
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
  /**
   * Continue from this snapshot (docs/snapshot-format.md) instead of booting `kernel`: a readable fd the caller
   * keeps, and the digest the host verified with its MAC (readSnapshot refuses another).
   */
  readonly restore?: { readonly fd: number; readonly expectDigest?: Uint8Array | undefined } | undefined;
  /**
   * The guest's init waits for its run request on the run-request ports (giveRunRequest) instead of finding it in
   * its initramfs, network settings included (azote.request=port): a snapshot taken while it waits serves every run.
   */
  readonly runRequestByPort?: boolean;
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

const STOP_GRACE_MS = 5000;
/** Host input queued beyond this makes input() ask the sender to pause. */
const INPUT_HIGH_WATER = 64 * 1024;

export class MicroVm {
  /** The engine's part: the KVM VM, guest memory and the vCPU threads. */
  private readonly machine: Machine;
  private readonly mem: GuestMemory;
  private readonly plan: BootPlan | undefined;
  /** Each vCPU's state from the snapshot this VM continues, if it does. */
  private readonly restoredVcpus: readonly VcpuState[] | undefined;
  private readonly devices: DeviceManager;
  private vcpus: Vcpus | undefined;
  /** A snapshot is being taken. */
  private saving = false;
  private readonly log: Logger;
  /** What the VM was handed or opened that a stuck vCPU does not use: released once the devices stopped. */
  private readonly handles = new DisposableStore();
  private end: VmEnd | undefined;
  private shutdownRequested = false;
  private resolveEnd: ((e: VmEnd) => void) | undefined;
  private quirks = 0;
  private closed = false;
  /** The guest's address and gateway on its network (a TAP or a network card); its init configures eth0 so. */
  readonly network: GuestNetwork | undefined;
  readonly flavour: KvmFlavour;

  constructor(private readonly cfg: VmConfig) {
    this.log = cfg.log;
    this.flavour = cfg.flavour ?? detectKvmFlavour();
    // What the caller handed over is the VM's from the start, released with the rest.
    const { tap, vsock } = cfg;
    if (tap) this.handles.add(new OwnedFd(tap.fd, libc.close));
    if (vsock) this.handles.add(new OwnedFd(vsock.listenFd, libc.close));
    let devices: DeviceManager | undefined;
    let machine: Machine | undefined;
    try {
      validateVmShape(cfg.vcpus, cfg.memoryMiB);
      // Disks first: a wrong path or a disk in use is the user's to fix, whatever the host can do.
      const disks = (cfg.disks ?? []).map((d) => {
        const disk = d.fd === undefined ? openDisk(d.path, d.readOnly) : adoptDisk(d.fd, d.path, d.readOnly);
        this.handles.defer(() => closeDisk(disk));
        return disk;
      });
      machine = new Machine({
        vcpus: cfg.vcpus, memoryMiB: cfg.memoryMiB, memory: cfg.memory?.kind ?? 'memfd', flavour: this.flavour,
        kvmFd: cfg.kvmFd, kvmDevice: cfg.kvmDevice,
      });
      this.machine = machine;
      this.mem = machine.memory;
      const slots = machine;
      devices = new DeviceManager(slots, this.mem, {
        rng: cfg.rng ?? false, disks, volumes: cfg.volumes ?? [], tap, netCard: cfg.netCard, vsock,
      }, {
        output: cfg.output,
        serialInterrupt: () => {
          slots.irqLine(COM1_IRQ, true);
          slots.irqLine(COM1_IRQ, false);
        },
        serialInputDrained: () => cfg.inputReady?.(),
        reset: () => this.finish({ kind: 'reset' }),
        exitStatus: (status) => this.finish({ kind: 'exit-status', status }),
        marker: (v) => cfg.onMarker?.(v),
        shutdownRequested: () => this.shutdownRequested,
      }, {
        log: this.log, confineIo: cfg.confineIo, crashed: (why) => this.finish({ kind: 'crashed', reason: why }),
        connectHost: vsock ? vsock.connect : () => Promise.resolve(undefined),
      });
      this.devices = devices;
      this.network = devices.network;
      if (cfg.restore) {
        // Everything is checked before anything runs: the digest over every byte, then each record by its model.
        const state = parseMachineRecord(readSnapshot(cfg.restore.fd, this.mem.bytes, { expectDigest: cfg.restore.expectDigest }), this.shape);
        machine.restoreState(state.vm);
        devices.restoreState(state.devices);
        this.restoredVcpus = state.vcpus;
      } else {
        // A card's guest gets its address by DHCP (the card serves it); a TAP's guest is told it.
        const request = cfg.runRequestByPort ? ['azote.request=port'] : [`azote.net=${this.netParam}`];
        const memory = cfg.memory ? protectionParams(cfg.memory, () => slots.tscKhz()) : [];
        const cmdline = [cfg.cmdline, ...request, ...memory, ...this.devices.kernelParams()].filter((p) => p && p !== 'azote.net=').join(' ');
        this.plan = machine.load({ kernel: cfg.kernel, initrd: cfg.initrd, cmdline, vcpus: cfg.vcpus });
      }
    } catch (e) {
      // The device manager released its own part if it failed; a later failure leaves it to close here.
      const closing = devices?.close() ?? Promise.resolve();
      this.handles.dispose();
      void closing.then(() => machine?.close());
      throw e;
    }
  }

  /** How the guest's init sets up eth0 (azote.net=, guest/ABI.md): empty without a network. */
  get netParam(): string {
    const fixed = this.network?.fixed;
    return fixed ? `${fixed.ip}/${fixed.prefix},${fixed.gateway}` : this.network ? 'dhcp' : '';
  }

  /** The run request for an init that waits for it on the ports (runRequestByPort, or a VM continued from such a snapshot). */
  giveRunRequest(bytes: Uint8Array): void {
    this.devices.giveRunRequest(bytes);
  }

  /** Where the guest was loaded; undefined for a VM that continues a snapshot. */
  get bootPlan(): BootPlan | undefined {
    return this.plan;
  }

  private get shape(): MachineShape {
    return {
      vcpus: this.cfg.vcpus, memoryMiB: this.cfg.memoryMiB, memory: this.mem.secret ? 'secret' : 'memfd', devices: this.devices.names,
      cpuid: cpuidDigest(this.machine.cpuid),
    };
  }

  /**
   * Writes a snapshot of the running VM to `fd` (docs/snapshot-format.md; the host seals it with its chip): the
   * vCPUs and the devices' data paths are held while their state and guest memory are saved, then let go, unless
   * `stop` says the VM ends there (hibernation). Refused, and the VM goes on, when a device cannot be saved now.
   */
  async snapshot(fd: number, o: { readonly stop?: boolean } = {}): Promise<SnapshotWritten> {
    if (this.end) throw new AzoteError('VmEnded', 'the VM has ended: there is nothing to save', 'save a VM while it runs');
    if (this.saving) throw new AzoteError('SnapshotBusy', 'a snapshot of this VM is being taken already', 'wait for it to finish');
    const vcpus = this.vcpus;
    if (!vcpus) throw new AzoteError('VmStarting', 'the VM\'s vCPUs are not running yet', 'save it once the guest runs');
    this.saving = true;
    try {
      await this.devices.pause();
      try {
        await vcpus.pause();
        if (this.end) throw new AzoteError('VmEnded', 'the VM ended while it was being paused for a snapshot', 'save a VM while it runs');
        const saved = this.machine.saveState();
        const state = machineRecord({ shape: this.shape, vm: saved.vm, vcpus: saved.vcpus, devices: this.devices.saveState() });
        const written = writeSnapshot(fd, state, this.mem.bytes, this.mem.dataExtents());
        if (o.stop) this.finish({ kind: 'stopped' });
        return written;
      } finally {
        if (!this.end) {
          vcpus.resume();
          this.devices.resume();
        }
      }
    } finally {
      this.saving = false;
    }
  }

  stats(): VmStats {
    return { ioExits: this.vcpus?.ioExits ?? 0, bus: { ...this.devices.bus.counters }, quirks: this.quirks };
  }

  /** Starts every vCPU; resolves when the VM has ended and every resource is released. */
  run(): Promise<VmEnd> {
    const done = new Promise<VmEnd>((resolve) => { this.resolveEnd = resolve; });
    try {
      this.startVcpus();
    } catch (e) {
      this.finish({ kind: 'crashed', reason: `the vCPUs cannot start: ${errorMessage(e)}` });
    }
    return done;
  }

  private startVcpus(): void {
    this.vcpus = this.machine.startVcpus({ plan: this.plan, restore: this.restoredVcpus }, {
      access: (a) => this.access(a),
      deviceFailed: (a, e) => {
        // A device model failed on what the guest did: that VM ends with the reason; the process and the host go on.
        const what = `${a.pio ? 'port' : 'MMIO'} ${a.write ? 'write' : 'read'} at 0x${a.addr.toString(16)}/${a.size}`;
        this.finish({ kind: 'crashed', reason: `device failure on a ${what}: ${errorMessage(e)}` });
      },
      ended: (index, stop) => this.onVcpuEnded(index, stop),
      quirk: (index, what) => {
        this.quirks++;
        this.log.debug('nested-KVM workaround', { vcpu: index, what });
      },
      msrsRefused: (index, count) => this.log.debug('KVM refused some boot MSRs', { vcpu: index, refused: count }),
      allExited: () => this.maybeClose(),
    });
  }

  /**
   * Host bytes for the guest's serial console, kept until the guest's driver receives. Returns false when so much
   * is queued that the sender should pause until inputReady.
   */
  input(bytes: Uint8Array): boolean {
    return this.end ? true : this.devices.uart.enqueueInput(bytes) < INPUT_HIGH_WATER;
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

  /** A vCPU's port or MMIO access, answered by the device models on the bus. */
  private access(a: VcpuAccess): bigint {
    const bus = this.devices.bus;
    if (a.pio) {
      if (a.write) {
        bus.portWrite(a.addr, a.size, Number(a.value & 0xffffffffn));
        return 0n;
      }
      return BigInt(bus.portRead(a.addr, a.size));
    }
    if (a.write) {
      bus.mmioWrite(a.addr, a.size, a.value);
      return 0n;
    }
    return bus.mmioRead(a.addr, a.size);
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

  private finish(end: VmEnd): void {
    if (this.end) return;
    this.end = end;
    this.log.debug('VM ending', { end });
    // Each vCPU leaves its loop; a snapshot waiting for them to pause learns that the VM ended instead.
    this.vcpus?.stop();
    const timer = setTimeout(() => {
      this.log.warn('vCPUs did not stop in time', { pending: this.vcpus?.pending ?? 0 });
      this.release();
    }, STOP_GRACE_MS);
    timer.unref();
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.end && (this.vcpus?.allExited ?? true)) this.release();
  }

  private release(): void {
    if (this.closed || !this.end) return;
    this.closed = true;
    const end = this.end;
    void this.devices.close().then(() => {
      this.handles.dispose();
      // A vCPU still inside KVM_RUN uses guest memory through this process's mapping: then it must stay.
      if (this.vcpus?.allExited ?? true) this.machine.close();
      this.resolveEnd?.(end);
    });
  }
}
