// The engine's side of one VM: the KVM VM with its in-kernel interrupt controllers and PIT, guest memory and its
// memory slots, the eventfds KVM signals for a device's queues and its interrupt, the vCPU threads, and the VM-wide
// and per-vCPU state a snapshot saves. Nothing outside src/isolation creates VMs, registers memory slots or binds
// eventfds (the lint says so); the device models ask through a Machine. Each of those steps is booked in the
// process's IsolationEngine (engine.ts), whose preconditions refuse what must not happen.
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { Kvm, type CpuidEntry, type KvmFlavour, type Vm } from '../kvm/kvm.js';
import type { VcpuState } from '../kvm/vcpu-state.js';
import { restoreVmState, saveVmState, type VmState } from '../kvm/vm-state.js';
import { GuestMemory, MiB } from '../memory/guest-memory.js';
import { KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR } from '../boot/layout.js';
import { loadGuest, type BootConfig, type BootPlan } from '../boot/loader.js';
import { IsolationEngine, PAGE_BYTES, type VmId } from './engine.js';
import type { GuestMemoryKind } from './memory-protection.js';
import { withoutPvHypercalls } from './pvm-quirks.js';
import { Vcpus, type VcpuEvents } from './vcpus.js';

/**
 * The eventfds of one virtio-mmio slot: KVM signals `notifyFds[q]` when the guest notifies queue q, and raises the
 * slot's interrupt when `irqFd` is signalled. The caller owns them once given.
 */
export interface DeviceEventfds {
  readonly notifyFds: number[];
  readonly irqFd: number;
}

/** What device models ask of the engine for a VM: their slot's eventfds bound, and interrupt lines set. */
export interface DeviceSlots {
  bindDevice(slot: number, notifyAddress: number, queueCount: number, irq: number): DeviceEventfds;
  irqLine(irq: number, level: boolean): void;
}

export interface MachineSpec {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly memory: GuestMemoryKind;
  readonly flavour: KvmFlavour;
  /** /dev/kvm opened by the parent (a jailed process opens nothing), else opened here at `kvmDevice`. */
  readonly kvmFd?: number | undefined;
  readonly kvmDevice?: string | undefined;
}

/** The books of the VMs this process runs: a process runs one VM today, the host's engine will run them all. */
let books: IsolationEngine | undefined;
const ACCOUNT = 'this-process';

function engineBooks(): IsolationEngine {
  // Its pool is the host's memory in pages; cores are the jail's business until the engine runs every VM.
  books ??= new IsolationEngine(Math.floor(Number.MAX_SAFE_INTEGER / PAGE_BYTES), 0);
  return books;
}

export class Machine implements DeviceSlots {
  private readonly kvm: Kvm;
  private readonly vm: Vm;
  readonly memory: GuestMemory;
  /** The CPUID every vCPU gets (the host's, less what this KVM cannot give). */
  readonly cpuid: CpuidEntry[];
  private readonly id: VmId;
  private readonly boundSlots = new Set<number>();
  private vcpus: Vcpus | undefined;
  private closed = false;

  constructor(readonly spec: MachineSpec) {
    const closers: Array<() => void> = [];
    try {
      this.kvm = spec.kvmFd === undefined ? Kvm.open(spec.kvmDevice) : Kvm.adopt(spec.kvmFd);
      closers.push(() => this.kvm.close());
      this.vm = this.kvm.createVm();
      closers.push(() => this.vm.close());
      this.vm.setTssAddr(KVM_TSS_ADDR);
      this.vm.setIdentityMapAddr(KVM_IDENTITY_MAP_ADDR);
      this.vm.createIrqchip();
      this.vm.createPit2();
      this.memory = GuestMemory.create(spec.memoryMiB * MiB, undefined, { secret: spec.memory === 'secret' });
      closers.push(() => this.memory.close());
      const engine = engineBooks();
      this.id = engine.vmCreate(ACCOUNT);
      closers.push(() => this.forget());
      this.memory.regions.forEach((r, slot) => {
        engine.memoryDonate(this.id, r.gpa, r.size / PAGE_BYTES);
        this.vm.setUserMemoryRegion(slot, r.gpa, r.size, this.memory.address + BigInt(r.offset));
      });
      const supported = this.kvm.supportedCpuid();
      this.cpuid = spec.flavour === 'nested-pvm' ? withoutPvHypercalls(supported) : supported;
    } catch (e) {
      for (const close of closers.reverse()) close();
      throw e;
    }
  }

  /** The TSC frequency vCPUs get, in kHz (a guest without kvmclock is told it). */
  tscKhz(): number {
    return this.vm.getTscKhz();
  }

  /** Loads a guest to boot into guest memory; where it starts is the plan the vCPUs are given. */
  load(image: BootConfig): BootPlan {
    return loadGuest(this.memory, image);
  }

  /** Sets or clears an interrupt line of the in-kernel interrupt controllers. */
  irqLine(irq: number, level: boolean): void {
    this.vm.irqLine(irq, level);
  }

  /**
   * Binds a virtio-mmio slot's eventfds: one per queue, signalled by KVM when the guest writes that queue's index to
   * the notify register at `notifyAddress`, and one that raises `irq`. A slot is bound once.
   */
  bindDevice(slot: number, notifyAddress: number, queueCount: number, irq: number): DeviceEventfds {
    engineBooks().slotBind(this.id, slot);
    this.boundSlots.add(slot);
    const made: number[] = [];
    const eventfd = (): number => {
      const fd = libc.eventfd(0, libc.EFD_NONBLOCK);
      made.push(fd);
      return fd;
    };
    try {
      const notifyFds = Array.from({ length: queueCount }, (_, q) => {
        const fd = eventfd();
        this.vm.ioeventfd(fd, notifyAddress, 4, q);
        return fd;
      });
      const irqFd = eventfd();
      this.vm.irqfd(irqFd, irq);
      return { notifyFds, irqFd };
    } catch (e) {
      for (const fd of made) libc.close(fd);
      throw e;
    }
  }

  /** Starts the vCPUs: booting at `plan`, or continuing `restore`. */
  startVcpus(o: { plan: BootPlan | undefined; restore: readonly VcpuState[] | undefined }, events: VcpuEvents): Vcpus {
    if (this.vcpus) throw new AzoteError('VcpusStarted', 'this VM\'s vCPUs run already');
    engineBooks().vmRun(this.id);
    const vcpus = new Vcpus({
      count: this.spec.vcpus, kvm: this.kvm, vm: this.vm, memory: this.memory, plan: o.plan, restore: o.restore,
      cpuid: this.cpuid, flavour: this.spec.flavour,
    }, events);
    vcpus.start();
    this.vcpus = vcpus;
    return vcpus;
  }

  /** Loads a snapshot's VM-wide state, before any vCPU runs. */
  restoreState(state: VmState): void {
    restoreVmState(this.vm, state);
  }

  /** The VM-wide state and each vCPU's, all vCPUs paused (Vcpus.pause). */
  saveState(): { vm: VmState; vcpus: VcpuState[] } {
    if (!this.vcpus) throw new AzoteError('VmStarting', 'the VM\'s vCPUs are not running', 'save it once the guest runs');
    // vCPUs first, as a restore sets them: reading a vCPU's MP state delivers its pending INIT/SIPI.
    const vcpus = this.vcpus.saveStates();
    return { vm: saveVmState(this.vm), vcpus };
  }

  /**
   * Releases the VM, its memory and KVM. Call once every vCPU has ended (a vCPU in KVM_RUN uses the memory); the
   * device eventfds are their holders' to close.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.forget();
    this.vm.close();
    this.memory.close();
    this.kvm.close();
  }

  /** The books let go of the VM: its slots unbound, its memory scrubbed (the memfd is closed), the VM gone. */
  private forget(): void {
    const engine = engineBooks();
    for (const slot of this.boundSlots) engine.slotUnbind(this.id, slot);
    engine.vmBeginDestroy(this.id);
    for (const r of engine.vmRecord(this.id)?.regions ?? []) engine.memoryReclaim(this.id, r);
    engine.vmFinishDestroy(this.id);
  }
}
