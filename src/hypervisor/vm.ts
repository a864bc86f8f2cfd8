// One microVM: its KVM VM, guest memory, boot image, legacy devices and vCPU threads, from start to end.
// Devices run on this (main) thread; vCPUs run on worker threads and ask for device accesses (vcpu-protocol.ts).
import type { SyscallAllowlist } from '../sys/seccomp.js';
import { Worker } from 'node:worker_threads';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import { detectKvmFlavour, Kvm, type KvmFlavour, type Vm } from '../kvm/kvm.js';
import { GuestMemory, MiB } from '../memory/guest-memory.js';
import { loadGuest, type BootPlan } from '../boot/loader.js';
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR } from '../boot/layout.js';
import { validateVmShape } from './vm-shape.js';
import { protectionParams, type MemoryProtection } from '../isolation/memory-protection.js';
import type { BusCounters } from './bus.js';
import { withoutPvHypercalls } from './pvm-quirks.js';
import { COM1_IRQ } from './devices/uart.js';
import { adoptDisk, closeDisk, openDisk } from '../virtio/raw-file.js';
import type { CardLink } from './card-link.js';
import type { Tap } from './tap.js';
import { DeviceManager, type GuestNetwork } from './device-manager.js';
import { DisposableStore, OwnedFd } from '../base/disposable.js';
import type { CpuidEntry } from '../kvm/kvm.js';
import { saveVcpuState, type VcpuState } from '../kvm/vcpu-state.js';
import { restoreVmState, saveVmState } from '../kvm/vm-state.js';
import { readSnapshot, writeSnapshot, type SnapshotWritten } from './snapshot/format.js';
import { cpuidDigest, machineRecord, parseMachineRecord, type MachineShape } from './snapshot/machine-state.js';
import {
  CTL, CTL_WORDS, KIND, STATE, WAKE_SIGNAL, type VcpuMessage, type VcpuStop, type VcpuThreadInit,
} from './vcpu-protocol.js';
import { kvmRun } from '../kvm/structs.js';

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

interface VcpuHandle {
  readonly index: number;
  readonly worker: Worker;
  readonly control: Int32Array;
  runPage?: Uint8Array;
  tid?: number;
  /** From `ready`: what saving its state needs. */
  saving?: { readonly fd: number; readonly runAddress: bigint; readonly runSize: number; readonly msrs: readonly number[] };
  exited: boolean;
}

const STOP_GRACE_MS = 5000;
/** Host input queued beyond this makes input() ask the sender to pause. */
const INPUT_HIGH_WATER = 64 * 1024;
let wakeSignalInstalled = false;

export class MicroVm {
  private readonly kvm: Kvm;
  private readonly vm: Vm;
  private readonly mem: GuestMemory;
  private readonly plan: BootPlan | undefined;
  /** The CPUID every vCPU gets (the host's, less what this KVM cannot give). */
  private readonly cpuid: CpuidEntry[];
  /** Each vCPU's state from the snapshot this VM continues, if it does. */
  private readonly restoredVcpus: readonly VcpuState[] | undefined;
  /** vCPUs that have yet to say `paused` while a snapshot is being taken, and who waits for them. */
  private pausing: { readonly waiting: Set<number>; readonly done: () => void } | undefined;
  private readonly devices: DeviceManager;
  private readonly vcpus: VcpuHandle[] = [];
  private readonly control: SharedArrayBuffer;
  private readonly log: Logger;
  /** What the VM was handed or opened that a stuck vCPU does not use: released once the devices stopped. */
  private readonly handles = new DisposableStore();
  /** KVM, the VM and guest memory: released only once every vCPU thread is gone (they map the memory). */
  private readonly core = new DisposableStore();
  private end: VmEnd | undefined;
  private shutdownRequested = false;
  private resolveEnd: ((e: VmEnd) => void) | undefined;
  private ioExits = 0;
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
    try {
      validateVmShape(cfg.vcpus, cfg.memoryMiB);
      // Disks first: a wrong path or a disk in use is the user's to fix, whatever the host can do.
      const disks = (cfg.disks ?? []).map((d) => {
        const disk = d.fd === undefined ? openDisk(d.path, d.readOnly) : adoptDisk(d.fd, d.path, d.readOnly);
        this.handles.defer(() => closeDisk(disk));
        return disk;
      });
      this.kvm = cfg.kvmFd === undefined ? Kvm.open(cfg.kvmDevice) : Kvm.adopt(cfg.kvmFd);
      this.core.defer(() => this.kvm.close());
      this.vm = this.kvm.createVm();
      this.core.defer(() => this.vm.close());
      this.vm.setTssAddr(KVM_TSS_ADDR);
      this.vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
      this.vm.createIrqchip();
      this.vm.createPit2();
      this.mem = GuestMemory.create(cfg.memoryMiB * MiB, undefined, { secret: cfg.memory?.kind === 'secret' });
      this.core.defer(() => this.mem.close());
      this.mem.regions.forEach((r, slot) => this.vm.setUserMemoryRegion(slot, r.gpa, r.size, this.mem.address + BigInt(r.offset)));
      devices = new DeviceManager(this.vm, this.mem, {
        rng: cfg.rng ?? false, disks, volumes: cfg.volumes ?? [], tap, netCard: cfg.netCard, vsock,
      }, {
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
      }, {
        log: this.log, confineIo: cfg.confineThreads?.io, crashed: (why) => this.finish({ kind: 'crashed', reason: why }),
        connectHost: vsock ? vsock.connect : () => Promise.resolve(undefined),
      });
      this.devices = devices;
      this.network = devices.network;
      const supported = this.kvm.supportedCpuid();
      this.cpuid = this.flavour === 'nested-pvm' ? withoutPvHypercalls(supported) : supported;
      if (cfg.restore) {
        // Everything is checked before anything runs: the digest over every byte, then each record by its model.
        const state = parseMachineRecord(readSnapshot(cfg.restore.fd, this.mem.bytes, { expectDigest: cfg.restore.expectDigest }), this.shape);
        restoreVmState(this.vm, state.vm);
        devices.restoreState(state.devices);
        this.restoredVcpus = state.vcpus;
      } else {
        // A card's guest gets its address by DHCP (the card serves it); a TAP's guest is told it.
        const request = cfg.runRequestByPort ? ['azote.request=port'] : [`azote.net=${this.netParam}`];
        const memory = cfg.memory ? protectionParams(cfg.memory, () => this.vm.getTscKhz()) : [];
        const cmdline = [cfg.cmdline, ...request, ...memory, ...this.devices.kernelParams()].filter((p) => p && p !== 'azote.net=').join(' ');
        this.plan = loadGuest(this.mem, { kernel: cfg.kernel, initrd: cfg.initrd, cmdline, vcpus: cfg.vcpus });
      }
    } catch (e) {
      // The device manager released its own part if it failed; a later failure leaves it to close here.
      void devices?.close();
      this.handles.dispose();
      this.core.dispose();
      throw e;
    }
    this.control = new SharedArrayBuffer(cfg.vcpus * CTL_WORDS * 4);
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
    return { vcpus: this.cfg.vcpus, memoryMiB: this.cfg.memoryMiB, memory: this.mem.secret ? 'secret' : 'memfd', devices: this.devices.names, cpuid: cpuidDigest(this.cpuid) };
  }

  /**
   * Writes a snapshot of the running VM to `fd` (docs/snapshot-format.md; the host seals it with its chip): the
   * vCPUs and the devices' data paths are held while their state and guest memory are saved, then let go, unless
   * `stop` says the VM ends there (hibernation). Refused, and the VM goes on, when a device cannot be saved now.
   */
  async snapshot(fd: number, o: { readonly stop?: boolean } = {}): Promise<SnapshotWritten> {
    if (this.end) throw new AzoteError('VmEnded', 'the VM has ended: there is nothing to save', 'save a VM while it runs');
    if (this.pausing) throw new AzoteError('SnapshotBusy', 'a snapshot of this VM is being taken already', 'wait for it to finish');
    if (this.vcpus.length < this.cfg.vcpus || this.vcpus.some((h) => !h.saving)) {
      throw new AzoteError('VmStarting', 'the VM\'s vCPUs are still starting', 'save it once the guest runs');
    }
    await this.devices.pause();
    try {
      await this.pauseVcpus();
      if (this.end) throw new AzoteError('VmEnded', 'the VM ended while it was being paused for a snapshot', 'save a VM while it runs');
      const vcpus = this.vcpus.map((h) => {
        const s = h.saving;
        if (!s) throw new Error(`vCPU ${h.index} is not set up`);
        return saveVcpuState(this.vm.borrowVcpu(h.index, s.fd, s.runAddress, s.runSize), s.msrs);
      });
      const state = machineRecord({ shape: this.shape, vm: saveVmState(this.vm), vcpus, devices: this.devices.saveState() });
      const written = writeSnapshot(fd, state, this.mem.bytes, this.mem.dataExtents());
      if (o.stop) this.finish({ kind: 'stopped' });
      return written;
    } finally {
      if (!this.end) {
        this.resumeVcpus();
        this.devices.resume();
      }
    }
  }

  /** Holds every vCPU outside KVM_RUN with its last I/O completed; resolves once all say so (or the VM ended). */
  private pauseVcpus(): Promise<void> {
    return new Promise((resolve) => {
      this.pausing = { waiting: new Set(this.vcpus.map((h) => h.index)), done: resolve };
      for (const h of this.vcpus) {
        // immediate_exit first: a thread that sees PAUSE clears it once its I/O is completed, and must not find it
        // set again afterwards (KVM_RUN would return at once forever).
        if (h.runPage) h.runPage[kvmRun.fields.immediateExit.offset] = 1;
        Atomics.store(h.control, CTL.PAUSE, 1);
        this.interrupt(h);
      }
    });
  }

  private resumeVcpus(): void {
    this.pausing = undefined;
    for (const h of this.vcpus) {
      Atomics.store(h.control, CTL.PAUSE, 0);
      Atomics.notify(h.control, CTL.PAUSE);
    }
  }

  /** Pulls a vCPU thread out of KVM_RUN. */
  private interrupt(h: VcpuHandle): void {
    if (h.tid === undefined || h.exited) return;
    try {
      libc.tgkill(libc.getpid(), h.tid, WAKE_SIGNAL);
    } catch {
      // The thread already left; nothing to interrupt.
    }
  }

  stats(): VmStats {
    return { ioExits: this.ioExits, bus: { ...this.devices.bus.counters }, quirks: this.quirks };
  }

  /** Starts every vCPU; resolves when the VM has ended and every resource is released. */
  run(): Promise<VmEnd> {
    if (!wakeSignalInstalled) {
      libc.installWakeSignal(WAKE_SIGNAL);
      wakeSignalInstalled = true;
    }
    const cpuid = this.cpuid;
    const done = new Promise<VmEnd>((resolve) => { this.resolveEnd = resolve; });
    const startGate = new SharedArrayBuffer(4);
    for (let index = 0; index < this.cfg.vcpus; index++) {
      const init: VcpuThreadInit = {
        index, vcpus: this.cfg.vcpus, kvmFd: this.kvm.fd, vmFd: this.vm.fd, memory: this.mem.share(),
        plan: this.plan, restore: this.restoredVcpus?.[index], cpuid, control: this.control, startGate, flavour: this.flavour, confine: this.cfg.confineThreads?.vcpu,
      };
      const worker = new Worker(new URL('./vcpu-thread.js', import.meta.url), { workerData: init });
      const handle: VcpuHandle = { index, worker, control: new Int32Array(this.control, index * CTL_WORDS * 4, CTL_WORDS), exited: false };
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

  private onMessage(h: VcpuHandle, m: VcpuMessage): void {
    switch (m.type) {
      case 'ready':
        h.tid = m.tid;
        h.saving = { fd: m.vcpuFd, runAddress: m.runAddress, runSize: m.runSize, msrs: m.msrs };
        // After the end the thread may already have unmapped its run page (it closes once told STOP).
        if (!this.end) h.runPage = new Uint8Array(libc.viewAt(m.runAddress, m.runSize));
        if (m.msrsRefused > 0) this.log.debug('KVM refused some boot MSRs', { vcpu: m.index, refused: m.msrsRefused });
        if (this.end) this.kick(h);
        return;
      case 'io':
        this.serve(h);
        return;
      case 'paused':
        this.pausing?.waiting.delete(m.index);
        if (this.pausing?.waiting.size === 0) this.pausing.done();
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
        if (write) this.devices.bus.portWrite(addr, size, Number(value & 0xffffffffn));
        else result = BigInt(this.devices.bus.portRead(addr, size));
      } else {
        if (write) this.devices.bus.mmioWrite(addr, size, value);
        else result = this.devices.bus.mmioRead(addr, size);
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
    this.interrupt(h);
    Atomics.store(h.control, CTL.STATE, STATE.STOP);
    Atomics.notify(h.control, CTL.STATE);
    Atomics.notify(h.control, CTL.PAUSE);
  }

  private finish(end: VmEnd): void {
    if (this.end) return;
    this.end = end;
    this.log.debug('VM ending', { end });
    for (const h of this.vcpus) this.kick(h);
    // A snapshot waiting for vCPUs to pause learns that the VM ended instead.
    this.pausing?.done();
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
    void this.devices.close().then(() => {
      this.handles.dispose();
      // vCPU threads still inside the kernel keep their own references; closing our fds is safe either way, but
      // their memory mapping must stay.
      if (this.vcpus.every((h) => h.exited)) this.core.dispose();
      this.resolveEnd?.(end);
    });
  }
}
