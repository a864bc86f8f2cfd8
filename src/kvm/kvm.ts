// A typed layer over /dev/kvm: Kvm (the system fd) -> Vm (a VM fd) -> Vcpu (a vCPU fd and its kvm_run page).
import { existsSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import { StructView } from '../base/struct.js';
import * as libc from '../sys/libc.js';
import * as K from './ioctls.js';
import {
  kvmClockData, kvmCpuid2, kvmCpuidEntry2, kvmDebugregs, kvmFpu, kvmIoeventfd, kvmIrqchip, kvmIrqfd, kvmIrqLevel,
  kvmLapicState, kvmMpState, kvmMsrEntry, kvmMsrList, kvmMsrs, kvmPitConfig, kvmPitState2, kvmRegs, kvmRun, kvmSregs,
  kvmUserspaceMemoryRegion, kvmVcpuEvents, kvmXcrs,
} from './structs.js';
import { decodeExit, KVM_EXIT, type VcpuExit } from './exit.js';

export const KVM_DEVICE = '/dev/kvm';

export interface CpuidEntry {
  function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number;
}

/** How this host runs KVM: ordinary hardware virtualization, or the nested paravirtual kvm_pvm module. */
export type KvmFlavour = 'hardware' | 'nested-pvm';

export function detectKvmFlavour(): KvmFlavour {
  return existsSync('/sys/module/kvm_pvm') ? 'nested-pvm' : 'hardware';
}

export class Kvm {
  private constructor(readonly fd: number) {}

  static open(path = KVM_DEVICE): Kvm {
    let fd: number;
    try {
      fd = libc.open(path, libc.O_RDWR);
    } catch (e) {
      const err = e as libc.SysError;
      if (err.errno === 2) {
        throw new AzoteError('NoKvm', `${path} does not exist`, 'run on a Linux host with KVM enabled (load kvm_intel or kvm_amd, or enable nested virtualization)');
      }
      if (err.errno === 13 || err.errno === 1) {
        throw new AzoteError('KvmAccess', `${path} is not readable and writable by this user`, `add the user to the 'kvm' group or run as root (sudo setfacl -m u:$USER:rw ${path})`);
      }
      throw new AzoteError('KvmOpen', `cannot open ${path}: ${err.message}`, 'check that KVM works on this host');
    }
    return Kvm.adopt(fd);
  }

  /** /dev/kvm opened by someone else (a jailed process has no /dev); checked like an opened one. */
  static adopt(fd: number): Kvm {
    const kvm = new Kvm(fd);
    const version = libc.ioctl(fd, K.KVM_GET_API_VERSION);
    if (version !== K.KVM_API_VERSION) {
      kvm.close();
      throw new AzoteError('KvmVersion', `KVM API version ${version}, expected ${K.KVM_API_VERSION}`, 'use a Linux kernel with the stable KVM API');
    }
    for (const [cap, name] of [[K.KVM_CAP_IRQCHIP, 'IRQCHIP'], [K.KVM_CAP_USER_MEMORY, 'USER_MEMORY'],
      [K.KVM_CAP_PIT2, 'PIT2'], [K.KVM_CAP_IMMEDIATE_EXIT, 'IMMEDIATE_EXIT'],
      [K.KVM_CAP_IOEVENTFD, 'IOEVENTFD'], [K.KVM_CAP_IRQFD, 'IRQFD']] as const) {
      if (kvm.checkExtension(cap) <= 0) {
        kvm.close();
        throw new AzoteError('KvmCapability', `KVM lacks KVM_CAP_${name}`, 'use a newer host kernel');
      }
    }
    return kvm;
  }

  checkExtension(cap: number): number {
    return libc.ioctl(this.fd, K.KVM_CHECK_EXTENSION, cap);
  }

  vcpuMmapSize(): number {
    return libc.ioctl(this.fd, K.KVM_GET_VCPU_MMAP_SIZE);
  }

  supportedCpuid(): CpuidEntry[] {
    const max = 256;
    const buf = new Uint8Array(kvmCpuid2.size + max * kvmCpuidEntry2.size);
    new StructView(kvmCpuid2, buf).set('nent', max);
    libc.ioctlBuf(this.fd, K.KVM_GET_SUPPORTED_CPUID, buf);
    const n = new StructView(kvmCpuid2, buf).get('nent');
    const entries: CpuidEntry[] = [];
    for (let i = 0; i < n; i++) {
      const e = new StructView(kvmCpuidEntry2, buf, kvmCpuid2.size + i * kvmCpuidEntry2.size);
      entries.push({
        function: e.get('function'), index: e.get('index'), flags: e.get('flags'),
        eax: e.get('eax'), ebx: e.get('ebx'), ecx: e.get('ecx'), edx: e.get('edx'),
      });
    }
    return entries;
  }

  /** Every MSR KVM can save and restore on this host (a vCPU may still refuse some: see savableMsrs). */
  msrIndexList(): number[] {
    const probe = StructView.alloc(kvmMsrList);
    // With too small an nmsrs KVM fails with E2BIG and writes the count it needs.
    try {
      libc.ioctlBuf(this.fd, K.KVM_GET_MSR_INDEX_LIST, probe.bytes());
    } catch (e) {
      if ((e as libc.SysError).errno !== libc.E2BIG) throw e;
    }
    const n = probe.get('nmsrs');
    const buf = new Uint8Array(kvmMsrList.size + 4 * n);
    new StructView(kvmMsrList, buf).set('nmsrs', n);
    libc.ioctlBuf(this.fd, K.KVM_GET_MSR_INDEX_LIST, buf);
    const dv = new DataView(buf.buffer, kvmMsrList.size);
    return Array.from({ length: new StructView(kvmMsrList, buf).get('nmsrs') }, (_, i) => dv.getUint32(i * 4, true));
  }

  createVm(): Vm {
    return new Vm(libc.ioctl(this.fd, K.KVM_CREATE_VM, 0), this);
  }

  close(): void {
    libc.close(this.fd);
  }

  /** A handle on an fd opened by another thread of this process. */
  static fromFd(fd: number): Kvm {
    return new Kvm(fd);
  }
}

export class Vm {
  constructor(readonly fd: number, readonly kvm: Kvm) {}

  setUserMemoryRegion(slot: number, guestPhysAddr: number, size: number, userspaceAddr: bigint): void {
    const r = StructView.alloc(kvmUserspaceMemoryRegion);
    r.set('slot', slot).set('flags', 0).set('guestPhysAddr', guestPhysAddr).set('memorySize', size)
      .set('userspaceAddr', userspaceAddr);
    libc.ioctlBuf(this.fd, K.KVM_SET_USER_MEMORY_REGION, r.bytes());
  }

  setTssAddr(addr: number): void {
    libc.ioctl(this.fd, K.KVM_SET_TSS_ADDR, addr);
  }

  /** The TSC frequency new vCPUs get, in kHz (a VM ioctl since Linux 6.0: KVM_CAP_VM_TSC_CONTROL). */
  getTscKhz(): number {
    return libc.ioctl(this.fd, K.KVM_GET_TSC_KHZ);
  }

  setIdentityMapAddr(addr: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(addr), true);
    libc.ioctlBuf(this.fd, K.KVM_SET_IDENTITY_MAP_ADDR, b);
  }

  createIrqchip(): void {
    libc.ioctl(this.fd, K.KVM_CREATE_IRQCHIP);
  }

  /** A capability as this VM sees it (some, like KVM_CAP_XSAVE2, answer per VM). */
  checkExtension(cap: number): number {
    return libc.ioctl(this.fd, K.KVM_CHECK_EXTENSION, cap);
  }

  /** The 512-byte state of in-kernel chip `chipId` (K.KVM_IRQCHIP_*). */
  getIrqchip(chipId: number): Uint8Array {
    const c = StructView.alloc(kvmIrqchip).set('chipId', chipId);
    libc.ioctlBuf(this.fd, K.KVM_GET_IRQCHIP, c.bytes());
    return c.field('chip').slice();
  }

  setIrqchip(chipId: number, chip: Uint8Array): void {
    const c = StructView.alloc(kvmIrqchip).set('chipId', chipId);
    c.field('chip').set(chip);
    libc.ioctlBuf(this.fd, K.KVM_SET_IRQCHIP, c.bytes());
  }

  /** The in-kernel PIT's struct kvm_pit_state2. */
  getPit2(): Uint8Array {
    const p = StructView.alloc(kvmPitState2);
    libc.ioctlBuf(this.fd, K.KVM_GET_PIT2, p.bytes());
    return p.bytes();
  }

  setPit2(state: Uint8Array): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_PIT2, state);
  }

  /** kvmclock as the guest reads it now, in ns. */
  getClock(): bigint {
    const c = StructView.alloc(kvmClockData);
    libc.ioctlBuf(this.fd, K.KVM_GET_CLOCK, c.bytes());
    return c.get64('clock');
  }

  /** Makes kvmclock read `ns` now (flags 0: KVM_CLOCK_REALTIME would add the host's elapsed wall time). */
  setClock(ns: bigint): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_CLOCK, StructView.alloc(kvmClockData).set('clock', ns).bytes());
  }

  createPit2(): void {
    const p = StructView.alloc(kvmPitConfig).set('flags', K.KVM_PIT_SPEAKER_DUMMY);
    libc.ioctlBuf(this.fd, K.KVM_CREATE_PIT2, p.bytes());
  }

  irqLine(irq: number, level: boolean): void {
    const l = StructView.alloc(kvmIrqLevel).set('irq', irq).set('level', level ? 1 : 0);
    libc.ioctlBuf(this.fd, K.KVM_IRQ_LINE, l.bytes());
  }

  /**
   * Makes a guest write of `length` bytes to MMIO address `addr` signal eventfd `fd` inside KVM instead of exiting;
   * with `datamatch`, only writes of that value. `assign: false` undoes the binding.
   */
  ioeventfd(fd: number, addr: number, length: number, datamatch: number | undefined, assign = true): void {
    const e = StructView.alloc(kvmIoeventfd).set('addr', addr).set('len', length).set('fd', fd)
      .set('datamatch', datamatch ?? 0)
      .set('flags', (datamatch === undefined ? 0 : K.KVM_IOEVENTFD_FLAG_DATAMATCH) | (assign ? 0 : K.KVM_IOEVENTFD_FLAG_DEASSIGN));
    libc.ioctlBuf(this.fd, K.KVM_IOEVENTFD, e.bytes());
  }

  /** Makes a write to eventfd `fd` raise interrupt line `gsi` (an edge) inside KVM; `assign: false` undoes it. */
  irqfd(fd: number, gsi: number, assign = true): void {
    const r = StructView.alloc(kvmIrqfd).set('fd', fd).set('gsi', gsi).set('flags', assign ? 0 : K.KVM_IRQFD_FLAG_DEASSIGN);
    libc.ioctlBuf(this.fd, K.KVM_IRQFD, r.bytes());
  }

  /** Creates vCPU `id` and maps its kvm_run page. */
  createVcpu(id: number): Vcpu {
    const fd = libc.ioctl(this.fd, K.KVM_CREATE_VCPU, id);
    const run = libc.mmap(this.kvm.vcpuMmapSize(), libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, 0);
    return new Vcpu(id, fd, run, this.xsaveArea());
  }

  private xsaveArea(): { size: number; getRequest: number } {
    const xsave2 = this.checkExtension(K.KVM_CAP_XSAVE2);
    return xsave2 > 0 ? { size: xsave2, getRequest: K.KVM_GET_XSAVE2 } : { size: K.KVM_XSAVE_LEGACY_SIZE, getRequest: K.KVM_GET_XSAVE };
  }

  close(): void {
    libc.close(this.fd);
  }
}

export const MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;

export class Vcpu {
  readonly run: StructView<keyof typeof kvmRun.fields>;

  constructor(readonly id: number, readonly fd: number, readonly runMapping: libc.Mapping,
    /** How big this VM's XSAVE area is and the request that reads all of it (KVM_GET_XSAVE2 when the kernel has it). */
    readonly xsave: { readonly size: number; readonly getRequest: number }) {
    this.run = new StructView(kvmRun, runMapping.buffer);
  }

  /** The raw run page, for reading I/O data at the exit's data offset. */
  runBytes(): Uint8Array {
    return new Uint8Array(this.runMapping.buffer);
  }

  /** Enters the guest until the next exit. Returns 'intr' when a signal interrupted it. */
  enter(): VcpuExit {
    const rc = libc.ioctlRaw(this.fd, K.KVM_RUN, 0);
    if (rc === -libc.EINTR || rc === -libc.EAGAIN) return { kind: 'intr' };
    if (rc < 0) throw new libc.SysError('KVM_RUN', -rc);
    return decodeExit(this.run);
  }

  /**
   * Enters the guest on one of libuv's pool threads (koffi's asynchronous call), so that no thread of this process
   * waits for the exit; `done` gets it on this thread. koffi gives no errno for such a call: KVM_RUN that failed
   * after a signal or with immediate_exit set is 'intr', any other failure an error that cannot say more.
   */
  enterAsync(done: (exit: VcpuExit | Error) => void): void {
    this.run.set('exitReason', KVM_EXIT.UNKNOWN);
    libc.ioctlAsync(this.fd, K.KVM_RUN, 0, (rc) => {
      if (rc >= 0) done(decodeExit(this.run));
      else if (this.run.get('exitReason') === KVM_EXIT.INTR || this.run.get('immediateExit') !== 0) done({ kind: 'intr' });
      else done(new Error('KVM_RUN failed (its errno is not reported when the call runs on the thread pool)'));
    });
  }

  /**
   * Completes the I/O access the vCPU last exited for (its IN data or MMIO read value must already be in the run
   * page), without running guest code: KVM_RUN with immediate_exit returns EINTR after finishing it. State read
   * before this would still be mid-instruction (RIP on the IN, RAX without its value).
   */
  completePendingIo(): void {
    this.run.set('immediateExit', 1);
    try {
      const rc = libc.ioctlRaw(this.fd, K.KVM_RUN, 0);
      if (rc !== -libc.EINTR) {
        throw new AzoteError('VcpuNotStopped', `KVM_RUN with immediate_exit returned ${rc < 0 ? `errno ${-rc}` : rc}, not EINTR`, 'stop the vCPU with immediate_exit before saving its state');
      }
    } finally {
      this.run.set('immediateExit', 0);
    }
  }

  getRegs(): StructView<keyof typeof kvmRegs.fields> {
    const r = StructView.alloc(kvmRegs);
    libc.ioctlBuf(this.fd, K.KVM_GET_REGS, r.bytes());
    return r;
  }

  setRegs(r: StructView<keyof typeof kvmRegs.fields>): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_REGS, r.bytes());
  }

  getSregs(): StructView<keyof typeof kvmSregs.fields> {
    const s = StructView.alloc(kvmSregs);
    libc.ioctlBuf(this.fd, K.KVM_GET_SREGS, s.bytes());
    return s;
  }

  setSregs(s: StructView<keyof typeof kvmSregs.fields>): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_SREGS, s.bytes());
  }

  getFpu(): StructView<keyof typeof kvmFpu.fields> {
    const f = StructView.alloc(kvmFpu);
    libc.ioctlBuf(this.fd, K.KVM_GET_FPU, f.bytes());
    return f;
  }

  setFpu(f: StructView<keyof typeof kvmFpu.fields>): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_FPU, f.bytes());
  }

  /** The XSAVE area, this.xsave.size bytes. */
  getXsave(): Uint8Array {
    const b = new Uint8Array(this.xsave.size);
    libc.ioctlBuf(this.fd, this.xsave.getRequest, b);
    return b;
  }

  /** KVM reads this.xsave.size bytes: a shorter area is refused rather than letting it read past the buffer. */
  setXsave(area: Uint8Array): void {
    if (area.length !== this.xsave.size) {
      throw new AzoteError('XsaveSize', `XSAVE area of ${area.length} bytes, this VM's is ${this.xsave.size}`, 'restore on a host with the same CPU features');
    }
    libc.ioctlBuf(this.fd, K.KVM_SET_XSAVE, area);
  }

  getXcrs(): Uint8Array {
    const x = StructView.alloc(kvmXcrs);
    libc.ioctlBuf(this.fd, K.KVM_GET_XCRS, x.bytes());
    return x.bytes();
  }

  setXcrs(xcrs: Uint8Array): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_XCRS, xcrs);
  }

  getDebugregs(): Uint8Array {
    const d = StructView.alloc(kvmDebugregs);
    libc.ioctlBuf(this.fd, K.KVM_GET_DEBUGREGS, d.bytes());
    return d.bytes();
  }

  setDebugregs(regs: Uint8Array): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_DEBUGREGS, regs);
  }

  /** The guest's TSC frequency in kHz. */
  getTscKhz(): number {
    return libc.ioctl(this.fd, K.KVM_GET_TSC_KHZ);
  }

  setTscKhz(khz: number): void {
    libc.ioctl(this.fd, K.KVM_SET_TSC_KHZ, khz);
  }

  setCpuid(entries: CpuidEntry[]): void {
    const buf = new Uint8Array(kvmCpuid2.size + entries.length * kvmCpuidEntry2.size);
    new StructView(kvmCpuid2, buf).set('nent', entries.length);
    entries.forEach((e, i) => {
      const v = new StructView(kvmCpuidEntry2, buf, kvmCpuid2.size + i * kvmCpuidEntry2.size);
      v.set('function', e.function).set('index', e.index).set('flags', e.flags)
        .set('eax', e.eax).set('ebx', e.ebx).set('ecx', e.ecx).set('edx', e.edx);
    });
    libc.ioctlBuf(this.fd, K.KVM_SET_CPUID2, buf);
  }

  /** Sets MSRs; returns how many KVM accepted (it stops at the first it refuses). */
  setMsrs(msrs: ReadonlyArray<readonly [index: number, value: bigint]>): number {
    const buf = new Uint8Array(kvmMsrs.size + msrs.length * kvmMsrEntry.size);
    new StructView(kvmMsrs, buf).set('nmsrs', msrs.length);
    msrs.forEach(([index, value], i) => {
      new StructView(kvmMsrEntry, buf, kvmMsrs.size + i * kvmMsrEntry.size).set('index', index).set('data', value);
    });
    return libc.ioctlBuf(this.fd, K.KVM_SET_MSRS, buf);
  }

  /** Reads MSRs; KVM stops at the first it refuses, so the result may be a prefix of `indices`. */
  getMsrs(indices: readonly number[]): Array<[index: number, value: bigint]> {
    const buf = new Uint8Array(kvmMsrs.size + indices.length * kvmMsrEntry.size);
    new StructView(kvmMsrs, buf).set('nmsrs', indices.length);
    indices.forEach((index, i) => new StructView(kvmMsrEntry, buf, kvmMsrs.size + i * kvmMsrEntry.size).set('index', index));
    const n = libc.ioctlBuf(this.fd, K.KVM_GET_MSRS, buf);
    return indices.slice(0, n).map((index, i) =>
      [index, new StructView(kvmMsrEntry, buf, kvmMsrs.size + i * kvmMsrEntry.size).get64('data')]);
  }

  getLapic(): Uint8Array {
    const s = StructView.alloc(kvmLapicState);
    libc.ioctlBuf(this.fd, K.KVM_GET_LAPIC, s.bytes());
    return s.bytes();
  }

  setLapic(regs: Uint8Array): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_LAPIC, regs);
  }

  getMpState(): number {
    const s = StructView.alloc(kvmMpState);
    libc.ioctlBuf(this.fd, K.KVM_GET_MP_STATE, s.bytes());
    return s.get('mpState');
  }

  setMpState(state: number): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_MP_STATE, StructView.alloc(kvmMpState).set('mpState', state).bytes());
  }

  getEvents(): StructView<keyof typeof kvmVcpuEvents.fields> {
    const e = StructView.alloc(kvmVcpuEvents);
    libc.ioctlBuf(this.fd, K.KVM_GET_VCPU_EVENTS, e.bytes());
    return e;
  }

  setEvents(e: StructView<keyof typeof kvmVcpuEvents.fields>): void {
    libc.ioctlBuf(this.fd, K.KVM_SET_VCPU_EVENTS, e.bytes());
  }

  close(): void {
    libc.munmap(this.runMapping);
    libc.close(this.fd);
  }
}
