// The isolation engine's ownership core: which VM owns which guest memory, which cards may map it, which account
// owns which core and which VM runs on it, which device slots have their eventfds bound, and where each VM is in its
// life. Every change goes through one of the hypercalls below; each checks its preconditions and refuses with a
// named IsolationError, changing nothing. The process that runs the engine does the matching system work (KVM
// memory slots, ioeventfds and irqfds, memfds, affinity) only after the call accepted it.
//
// Memory is tracked by region (a page-aligned extent of one memfd, mapped at one guest address), not by page: each
// VM's memory lives on memfds of its own, which the kernel keeps apart, so a page-level table (a million entries for
// 4 GiB) would record nothing a region does not; carving splits a region at page boundaries instead. The host's
// memory for guests is a pool counted in pages: a region's pages leave it when donated and come back, scrubbed
// (the memfd closed: the kernel frees and zeroes them), when reclaimed.
import { AzoteError } from '../base/errors.js';

export const PAGE_BYTES = 4096;
/** Device slots per VM: one per virtio-mmio device (the IOAPIC inputs the hypervisor gives them). */
export const SLOTS_PER_VM = 16;

export type VmId = number;
export type RegionId = number;
export type VmKind = 'instance' | 'enclave';
/**
 * created: built, never run; running: its vCPUs may run; paused: held outside KVM_RUN (a snapshot, a carve);
 * dying: its vCPUs stopped for good, its resources being given back.
 */
export type VmLife = 'created' | 'running' | 'paused' | 'dying';

export type IsolationErrorCode =
  | 'NoSuchVm' | 'VmDying' | 'VmRunning' | 'VmNotRunning' | 'VmNotDying' | 'VmNotEmpty' | 'VmHasNoMemory'
  | 'BadRange' | 'RangeInUse' | 'OutOfMemory'
  | 'NoSuchRegion' | 'RegionNotOwned' | 'RegionShared' | 'AlreadyShared' | 'NotShared' | 'NotCarved'
  | 'NoSuchCore' | 'CoreOwned' | 'CoreNotOwned' | 'CoreInUse' | 'CorePinned' | 'CoreNotPinned'
  | 'BadSlot' | 'SlotBound' | 'SlotNotBound' | 'BadParent' | 'NoSuchCard' | 'CardAdmitted';

export class IsolationError extends AzoteError {
  declare readonly code: IsolationErrorCode;
  constructor(code: IsolationErrorCode, message: string) {
    super(code, message);
    this.name = 'IsolationError';
  }
}

export interface Region {
  readonly id: RegionId;
  readonly owner: VmId;
  /** Guest physical address of its first page in its owner. */
  readonly gpa: number;
  readonly pages: number;
  /** Cards that may map it. */
  readonly shares: ReadonlySet<string>;
  /** Carved out of another VM's region: where its pages go back to (if that VM is still there). */
  readonly carvedFrom: { readonly vm: VmId; readonly gpa: number } | undefined;
}

export interface VmRecord {
  readonly id: VmId;
  readonly kind: VmKind;
  readonly account: string;
  readonly life: VmLife;
  /** The VM it was carved from (an enclave's parent). */
  readonly parent: VmId | undefined;
  readonly regions: ReadonlySet<RegionId>;
  readonly cores: ReadonlySet<number>;
  readonly slots: ReadonlySet<number>;
}

export interface CoreRecord {
  /** The account whose VMs may run on it; undefined: free. */
  readonly owner: string | undefined;
  /** Nothing of a previous owner is left in it (flushed on release); a free core is always clean. */
  readonly clean: boolean;
  readonly pinned: ReadonlySet<VmId>;
}

interface MutableRegion {
  id: RegionId;
  owner: VmId;
  gpa: number;
  pages: number;
  shares: Set<string>;
  carvedFrom: { vm: VmId; gpa: number } | undefined;
}

interface MutableVm {
  id: VmId;
  kind: VmKind;
  account: string;
  life: VmLife;
  parent: VmId | undefined;
  regions: Set<RegionId>;
  cores: Set<number>;
  slots: Set<number>;
}

interface MutableCore {
  owner: string | undefined;
  clean: boolean;
  pinned: Set<VmId>;
}

/** What a region's removal means for the system side: close (scrub) its memfd, or hand its pages to another VM. */
export type RegionEnd = { readonly kind: 'scrubbed' } | { readonly kind: 'returned'; readonly to: VmId; readonly region: RegionId };

export class IsolationEngine {
  private readonly vms = new Map<VmId, MutableVm>();
  private readonly regions = new Map<RegionId, MutableRegion>();
  private readonly cores: MutableCore[];
  /** Cards the controller started after the chip verified them: only these may be given guest memory. */
  private readonly cards = new Set<string>();
  private freePages: number;
  private nextVm = 1;
  private nextRegion = 1;

  /** `poolPages`: the host's memory for guests, in pages; `cores`: how many host cores it hands out. */
  constructor(readonly poolPages: number, coreCount: number) {
    if (!Number.isSafeInteger(poolPages) || poolPages < 0) throw new RangeError(`a pool of ${poolPages} pages`);
    if (!Number.isSafeInteger(coreCount) || coreCount < 0) throw new RangeError(`${coreCount} cores`);
    this.freePages = poolPages;
    this.cores = Array.from({ length: coreCount }, () => ({ owner: undefined, clean: true, pinned: new Set<VmId>() }));
  }

  // ---- VMs ----

  vmCreate(account: string, kind: VmKind = 'instance', parent?: VmId): VmId {
    if (parent !== undefined) {
      const p = this.vm(parent);
      if (p.life === 'dying') throw new IsolationError('VmDying', `VM ${parent} is being destroyed: nothing is carved from it`);
      if (p.account !== account || kind !== 'enclave') throw new IsolationError('BadParent', `VM ${parent} can parent only an enclave of its own account`);
    }
    const id = this.nextVm++;
    this.vms.set(id, { id, kind, account, life: 'created', parent, regions: new Set(), cores: new Set(), slots: new Set() });
    return id;
  }

  vmRun(vm: VmId): void {
    const v = this.live(vm);
    if (v.life === 'running') throw new IsolationError('VmRunning', `VM ${vm} runs already`);
    if (v.regions.size === 0) throw new IsolationError('VmHasNoMemory', `VM ${vm} has no memory to run in`);
    v.life = 'running';
  }

  vmPause(vm: VmId): void {
    const v = this.live(vm);
    if (v.life !== 'running') throw new IsolationError('VmNotRunning', `VM ${vm} is not running`);
    v.life = 'paused';
  }

  /** Its vCPUs stop for good; from now on its resources can only be given back. */
  vmBeginDestroy(vm: VmId): void {
    this.live(vm).life = 'dying';
  }

  /** Forgets a dying VM that has given everything back. */
  vmFinishDestroy(vm: VmId): void {
    const v = this.vm(vm);
    if (v.life !== 'dying') throw new IsolationError('VmNotDying', `VM ${vm} is not being destroyed`);
    const children = [...this.vms.values()].filter((c) => c.parent === vm).length;
    if (v.regions.size || v.cores.size || v.slots.size || children) {
      throw new IsolationError('VmNotEmpty',
        `VM ${vm} still holds ${v.regions.size} regions, ${v.cores.size} cores, ${v.slots.size} bound slots and ${children} carved VMs`);
    }
    this.vms.delete(vm);
  }

  // ---- memory ----

  /** Fresh pages from the pool, mapped at `gpa` in `vm`. */
  memoryDonate(vm: VmId, gpa: number, pages: number): RegionId {
    const v = this.live(vm);
    this.checkRange(v, gpa, pages);
    if (pages > this.freePages) throw new IsolationError('OutOfMemory', `${pages} pages asked, ${this.freePages} free`);
    this.freePages -= pages;
    return this.addRegion(v, gpa, pages, undefined);
  }

  /** Takes a region back from a VM that is not running: its pages are scrubbed, or go back to the VM carved from. */
  memoryReclaim(vm: VmId, region: RegionId): RegionEnd {
    const v = this.vm(vm);
    if (v.life === 'running') throw new IsolationError('VmRunning', `VM ${vm} runs: pause it before taking memory from it`);
    const r = this.owned(v, region);
    if (r.shares.size) throw new IsolationError('RegionShared', `region ${region} is still shared with ${[...r.shares].join(', ')}`);
    this.removeRegion(v, r);
    const to = r.carvedFrom && this.vms.get(r.carvedFrom.vm);
    if (r.carvedFrom && to && to.life !== 'dying' && this.rangeFree(to, r.carvedFrom.gpa, r.pages)) {
      return { kind: 'returned', to: to.id, region: this.addRegion(to, r.carvedFrom.gpa, r.pages, undefined) };
    }
    this.freePages += r.pages;
    return { kind: 'scrubbed' };
  }

  memoryShare(vm: VmId, region: RegionId, card: string): void {
    const r = this.owned(this.live(vm), region);
    if (!this.cards.has(card)) throw new IsolationError('NoSuchCard', `card ${card} is not admitted: the controller admits a card once the chip verified it`);
    if (r.shares.has(card)) throw new IsolationError('AlreadyShared', `region ${region} is shared with ${card} already`);
    r.shares.add(card);
  }

  memoryUnshare(vm: VmId, region: RegionId, card: string): void {
    const r = this.owned(this.vm(vm), region);
    if (!r.shares.delete(card)) throw new IsolationError('NotShared', `region ${region} is not shared with ${card}`);
  }

  /** A card the controller started, once the chip verified it: from now on it may be given guest memory. */
  cardAdmit(card: string): void {
    if (this.cards.has(card)) throw new IsolationError('CardAdmitted', `card ${card} is admitted already`);
    this.cards.add(card);
  }

  /** Every share a card holds ends and it is no longer admitted (it stopped or is distrusted); returns how many ended. */
  cardRevokeAll(card: string): number {
    if (!this.cards.delete(card)) throw new IsolationError('NoSuchCard', `card ${card} is not admitted`);
    let n = 0;
    for (const r of this.regions.values()) if (r.shares.delete(card)) n++;
    return n;
  }

  /**
   * Moves `pages` pages at `offset` pages into `region` of a paused `parent` to `child` (its enclave), at `childGpa`;
   * the parent keeps the pages before and after as regions of their own. Returns the child's new region.
   */
  memoryCarve(parent: VmId, region: RegionId, offset: number, pages: number, child: VmId, childGpa: number): RegionId {
    const p = this.live(parent);
    if (p.life === 'running') throw new IsolationError('VmRunning', `VM ${parent} runs: pause it before carving its memory`);
    const r = this.owned(p, region);
    const c = this.live(child);
    if (c.parent !== parent) throw new IsolationError('BadParent', `VM ${child} was not created from VM ${parent}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(pages) || offset < 0 || pages <= 0 || offset + pages > r.pages) {
      throw new IsolationError('BadRange', `pages ${offset}+${pages} are not inside region ${region} (${r.pages} pages)`);
    }
    if (r.shares.size) throw new IsolationError('RegionShared', `region ${region} is shared with ${[...r.shares].join(', ')}: unshare it first`);
    this.checkRange(c, childGpa, pages);
    this.removeRegion(p, r);
    if (offset > 0) this.addRegion(p, r.gpa, offset, r.carvedFrom);
    const after = r.pages - offset - pages;
    if (after > 0) this.addRegion(p, r.gpa + (offset + pages) * PAGE_BYTES, after, r.carvedFrom && { vm: r.carvedFrom.vm, gpa: r.carvedFrom.gpa + (offset + pages) * PAGE_BYTES });
    return this.addRegion(c, childGpa, pages, { vm: parent, gpa: r.gpa + offset * PAGE_BYTES });
  }

  // ---- cores ----

  coreAssign(core: number, account: string): void {
    const c = this.core(core);
    if (c.owner !== undefined) throw new IsolationError('CoreOwned', `core ${core} belongs to another account or this one already`);
    c.owner = account;
    c.clean = false;
  }

  /** The core goes back to the pool, flushed (clean), once no VM is pinned to it. */
  coreRelease(core: number): void {
    const c = this.core(core);
    if (c.owner === undefined) throw new IsolationError('CoreNotOwned', `core ${core} is free`);
    if (c.pinned.size) throw new IsolationError('CoreInUse', `core ${core} still runs VMs ${[...c.pinned].join(', ')}`);
    c.owner = undefined;
    c.clean = true;
  }

  corePin(vm: VmId, core: number): void {
    const v = this.live(vm);
    const c = this.core(core);
    if (c.owner !== v.account) throw new IsolationError('CoreNotOwned', `core ${core} is not VM ${vm}'s account's`);
    if (v.cores.has(core)) throw new IsolationError('CorePinned', `VM ${vm} is pinned to core ${core} already`);
    v.cores.add(core);
    c.pinned.add(vm);
  }

  coreUnpin(vm: VmId, core: number): void {
    const v = this.vm(vm);
    const c = this.core(core);
    if (!v.cores.delete(core)) throw new IsolationError('CoreNotPinned', `VM ${vm} is not pinned to core ${core}`);
    c.pinned.delete(vm);
  }

  // ---- device slots ----

  /** The slot's notify (ioeventfd) and interrupt (irqfd) eventfds are bound to the VM. */
  slotBind(vm: VmId, slot: number): void {
    const v = this.live(vm);
    this.checkSlot(slot);
    if (v.slots.has(slot)) throw new IsolationError('SlotBound', `slot ${slot} of VM ${vm} is bound already`);
    v.slots.add(slot);
  }

  slotUnbind(vm: VmId, slot: number): void {
    const v = this.vm(vm);
    this.checkSlot(slot);
    if (!v.slots.delete(slot)) throw new IsolationError('SlotNotBound', `slot ${slot} of VM ${vm} is not bound`);
  }

  // ---- reading ----

  get free(): number {
    return this.freePages;
  }

  vmRecord(vm: VmId): VmRecord | undefined {
    const v = this.vms.get(vm);
    return v && { ...v, regions: new Set(v.regions), cores: new Set(v.cores), slots: new Set(v.slots) };
  }

  allVms(): VmRecord[] {
    return [...this.vms.keys()].flatMap((id) => this.vmRecord(id) ?? []);
  }

  region(id: RegionId): Region | undefined {
    const r = this.regions.get(id);
    return r && { ...r, shares: new Set(r.shares), carvedFrom: r.carvedFrom && { ...r.carvedFrom } };
  }

  allRegions(): Region[] {
    return [...this.regions.keys()].flatMap((id) => this.region(id) ?? []);
  }

  get admittedCards(): ReadonlySet<string> {
    return new Set(this.cards);
  }

  coreRecord(core: number): CoreRecord | undefined {
    const c = this.cores[core];
    return c && { ...c, pinned: new Set(c.pinned) };
  }

  get coreCount(): number {
    return this.cores.length;
  }

  // ---- checks ----

  private vm(vm: VmId): MutableVm {
    const v = this.vms.get(vm);
    if (!v) throw new IsolationError('NoSuchVm', `there is no VM ${vm}`);
    return v;
  }

  /** A VM that is not being destroyed. */
  private live(vm: VmId): MutableVm {
    const v = this.vm(vm);
    if (v.life === 'dying') throw new IsolationError('VmDying', `VM ${vm} is being destroyed`);
    return v;
  }

  private owned(v: MutableVm, region: RegionId): MutableRegion {
    const r = this.regions.get(region);
    if (!r) throw new IsolationError('NoSuchRegion', `there is no region ${region}`);
    if (r.owner !== v.id) throw new IsolationError('RegionNotOwned', `region ${region} is not VM ${v.id}'s`);
    return r;
  }

  private core(core: number): MutableCore {
    const c = Number.isSafeInteger(core) ? this.cores[core] : undefined;
    if (!c) throw new IsolationError('NoSuchCore', `there is no core ${core} (0 to ${this.cores.length - 1})`);
    return c;
  }

  private checkSlot(slot: number): void {
    if (!Number.isSafeInteger(slot) || slot < 0 || slot >= SLOTS_PER_VM) throw new IsolationError('BadSlot', `slot ${slot} is not 0 to ${SLOTS_PER_VM - 1}`);
  }

  private checkRange(v: MutableVm, gpa: number, pages: number): void {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(pages) || gpa < 0 || pages <= 0 || gpa % PAGE_BYTES !== 0
      || !Number.isSafeInteger(gpa + pages * PAGE_BYTES)) {
      throw new IsolationError('BadRange', `${pages} pages at 0x${gpa.toString(16)} is not a page-aligned range`);
    }
    if (!this.rangeFree(v, gpa, pages)) throw new IsolationError('RangeInUse', `VM ${v.id} has memory at 0x${gpa.toString(16)}+${pages} pages already`);
  }

  private rangeFree(v: MutableVm, gpa: number, pages: number): boolean {
    const end = gpa + pages * PAGE_BYTES;
    return [...v.regions].every((id) => {
      const r = this.regions.get(id);
      return !r || r.gpa + r.pages * PAGE_BYTES <= gpa || end <= r.gpa;
    });
  }

  private addRegion(v: MutableVm, gpa: number, pages: number, carvedFrom: MutableRegion['carvedFrom']): RegionId {
    const id = this.nextRegion++;
    this.regions.set(id, { id, owner: v.id, gpa, pages, shares: new Set(), carvedFrom });
    v.regions.add(id);
    return id;
  }

  private removeRegion(v: MutableVm, r: MutableRegion): void {
    this.regions.delete(r.id);
    v.regions.delete(r.id);
  }
}
