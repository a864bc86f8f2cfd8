// The specification (src/isolation/spec.ts) as an executable model: the same state by host page and the same
// transitions, each precondition and update written as spec.ts writes it, on concrete values. The model-based test
// drives the real engine and this model with the same calls; it checks on samples that this model agrees with
// spec.ts itself (z3 evaluates the spec's preconditions and invariants on the model's state).
import { ENGINE, FREE, Kind, Life, NONE, NO_ACCOUNT, SLOTS } from '../../src/isolation/spec.js';

/** A page step, as spec.ts names its transitions, with integer arguments. */
export interface Step {
  readonly transition: string;
  readonly args: Readonly<Record<string, number>>;
}

export class PageModel {
  readonly owner: number[];
  readonly engine: boolean[];
  readonly scrubbed: boolean[];
  readonly shared = new Map<number, Set<number>>();
  readonly gmap = new Map<number, Map<number, number>>();
  readonly gfn: number[];
  readonly carvedFrom: number[];
  readonly carvedGfn: number[];
  readonly nr = new Map<number, number>();
  readonly perm = new Map<number, Map<number, number>>();
  readonly idx: number[];
  readonly life = new Map<number, number>();
  readonly account = new Map<number, number>();
  readonly parent = new Map<number, number>();
  readonly kind = new Map<number, number>();
  readonly card = new Set<number>();
  readonly coreOwner = new Map<number, number>();
  readonly coreClean = new Map<number, boolean>();
  readonly pinned = new Map<number, Set<number>>();
  readonly slot = new Map<number, Set<number>>();

  /** `pages` pool pages, all free; `enginePages` more after them, the engine's own. */
  constructor(readonly pages: number, readonly enginePages: number) {
    const n = pages + enginePages;
    this.owner = Array.from({ length: n }, (_, p) => (p < pages ? FREE : ENGINE));
    this.engine = Array.from({ length: n }, (_, p) => p >= pages);
    this.scrubbed = Array<boolean>(n).fill(true);
    this.gfn = Array<number>(n).fill(0);
    this.carvedFrom = Array<number>(n).fill(0);
    this.carvedGfn = Array<number>(n).fill(0);
    this.idx = Array<number>(n).fill(0);
  }

  copy(): PageModel {
    const m = new PageModel(this.pages, this.enginePages);
    for (const f of ['owner', 'engine', 'scrubbed', 'gfn', 'carvedFrom', 'carvedGfn', 'idx'] as const) (m[f] as unknown[]).splice(0, Infinity, ...this[f]);
    const nested = <T>(from: Map<number, T>, to: Map<number, T>, clone: (x: T) => T): void => { for (const [k, v] of from) to.set(k, clone(v)); };
    nested(this.shared, m.shared, (s) => new Set(s));
    nested(this.gmap, m.gmap, (x) => new Map(x));
    nested(this.perm, m.perm, (x) => new Map(x));
    nested(this.pinned, m.pinned, (s) => new Set(s));
    nested(this.slot, m.slot, (s) => new Set(s));
    for (const f of ['nr', 'life', 'account', 'parent', 'kind', 'coreOwner'] as const) nested(this[f], m[f], (x) => x);
    nested(this.coreClean, m.coreClean, (x) => x);
    for (const c of this.card) m.card.add(c);
    return m;
  }

  // ---- reading, with spec.ts's defaults ----
  lifeOf(v: number): number { return this.life.get(v) ?? Life.UNUSED; }
  nrOf(v: number): number { return this.nr.get(v) ?? 0; }
  map(v: number, g: number): number { return this.gmap.get(v)?.get(g) ?? NONE; }
  isShared(p: number, c: number): boolean { return this.shared.get(p)?.has(c) ?? false; }
  isPinned(v: number, k: number): boolean { return this.pinned.get(v)?.has(k) ?? false; }
  isBound(v: number, s: number): boolean { return this.slot.get(v)?.has(s) ?? false; }
  coreOwnerOf(k: number): number { return this.coreOwner.get(k) ?? NO_ACCOUNT; }
  ownerOf(p: number): number { return p >= 0 && p < this.owner.length ? this.owner[p] ?? FREE : FREE; }

  live(v: number): boolean { const l = this.lifeOf(v); return v > 0 && l >= Life.CREATED && l <= Life.PAUSED; }
  exists(v: number): boolean { return v > 0 && this.lifeOf(v) !== Life.UNUSED; }
  unshared(p: number): boolean { return (this.shared.get(p)?.size ?? 0) === 0; }
  freePages(): number[] { return this.owner.flatMap((o, p) => (o === FREE ? [p] : [])); }

  private removePage(v: number, p: number): void {
    const last = this.nrOf(v) - 1;
    const moved = this.perm.get(v)?.get(last) ?? 0;
    const i = this.idx[p] ?? 0;
    this.nr.set(v, last);
    this.setIn(this.perm, v, i, moved);
    this.idx[moved] = i;
  }

  private addPage(v: number, p: number): void {
    const n = this.nrOf(v);
    this.nr.set(v, n + 1);
    this.setIn(this.perm, v, n, p);
    this.idx[p] = n;
  }

  private setIn(m: Map<number, Map<number, number>>, a: number, b: number, x: number): void {
    const inner = m.get(a) ?? new Map<number, number>();
    inner.set(b, x);
    m.set(a, inner);
  }

  private flag(m: Map<number, Set<number>>, a: number, b: number, on: boolean): void {
    const inner = m.get(a) ?? new Set<number>();
    if (on) inner.add(b); else inner.delete(b);
    m.set(a, inner);
  }

  private returnsTo(p: number): boolean {
    const w = this.carvedFrom[p] ?? 0;
    return w !== 0 && this.live(w) && this.map(w, this.carvedGfn[p] ?? 0) === NONE;
  }

  private reclaimable(v: number, p: number): boolean {
    return this.exists(v) && this.lifeOf(v) !== Life.RUNNING && this.ownerOf(p) === v && this.unshared(p);
  }

  /** Whether the step's precondition holds (spec.ts's `pre`). */
  pre({ transition, args: a }: Step): boolean {
    const n = (k: string): number => a[k] ?? 0;
    const [v, p, g, c, k, slot] = [n('v'), n('p'), n('g'), n('c'), n('k'), n('slot')];
    switch (transition) {
      case 'vmCreate': {
        const [account, kind, parent] = [n('account'), n('kind'), n('parent')];
        return v > 0 && this.lifeOf(v) === Life.UNUSED && account !== 0 && (kind === Kind.INSTANCE || kind === Kind.ENCLAVE)
          && (parent === 0 || (this.live(parent) && this.account.get(parent) === account && kind === Kind.ENCLAVE));
      }
      case 'vmRun': return this.live(v) && this.lifeOf(v) !== Life.RUNNING && this.nrOf(v) > 0;
      case 'vmPause': return v > 0 && this.lifeOf(v) === Life.RUNNING;
      case 'vmBeginDestroy': return this.live(v);
      case 'vmFinishDestroy':
        return v > 0 && this.lifeOf(v) === Life.DYING && this.nrOf(v) === 0 && (this.pinned.get(v)?.size ?? 0) === 0
          && (this.slot.get(v)?.size ?? 0) === 0 && [...this.life].every(([w, l]) => l === Life.UNUSED || this.parent.get(w) !== v);
      case 'memoryDonate': return this.live(v) && p >= 0 && this.ownerOf(p) === FREE && g >= 0 && this.map(v, g) === NONE;
      case 'memoryReclaim (scrubbed)': return this.reclaimable(v, p);
      case 'memoryReclaim (returned)': return this.reclaimable(v, p) && this.returnsTo(p);
      case 'memoryShare': return this.live(v) && this.ownerOf(p) === v && this.card.has(c) && !this.isShared(p, c);
      case 'memoryUnshare': return this.exists(v) && this.ownerOf(p) === v && this.isShared(p, c);
      case 'cardAdmit': return !this.card.has(c);
      case 'cardRevokeAll': return this.card.has(c);
      case 'memoryCarve': {
        const [parent, child] = [n('parent'), n('child')];
        return this.live(parent) && this.lifeOf(parent) !== Life.RUNNING && this.ownerOf(p) === parent && this.live(child)
          && this.parent.get(child) === parent && this.unshared(p) && g >= 0 && this.map(child, g) === NONE;
      }
      case 'coreAssign': return k >= 0 && this.coreOwnerOf(k) === NO_ACCOUNT && n('account') !== NO_ACCOUNT;
      case 'coreRelease': return this.coreOwnerOf(k) !== NO_ACCOUNT && [...this.pinned.values()].every((s) => !s.has(k));
      case 'corePin': return this.live(v) && this.coreOwnerOf(k) === (this.account.get(v) ?? 0) && !this.isPinned(v, k);
      case 'coreUnpin': return this.exists(v) && this.isPinned(v, k);
      case 'slotBind': return this.live(v) && slot >= 0 && slot < SLOTS && !this.isBound(v, slot);
      case 'slotUnbind': return this.exists(v) && this.isBound(v, slot);
      default: throw new Error(`no transition ${transition}`);
    }
  }

  /** The step's update (spec.ts's `post`); its precondition must hold. */
  post({ transition, args: a }: Step): void {
    const n = (k: string): number => a[k] ?? 0;
    const [v, p, g, c, k, slot] = [n('v'), n('p'), n('g'), n('c'), n('k'), n('slot')];
    switch (transition) {
      case 'vmCreate':
        this.life.set(v, Life.CREATED); this.account.set(v, n('account')); this.kind.set(v, n('kind')); this.parent.set(v, n('parent'));
        return;
      case 'vmRun': this.life.set(v, Life.RUNNING); return;
      case 'vmPause': this.life.set(v, Life.PAUSED); return;
      case 'vmBeginDestroy': this.life.set(v, Life.DYING); return;
      case 'vmFinishDestroy': this.life.set(v, Life.UNUSED); return;
      case 'memoryDonate':
        this.owner[p] = v; this.scrubbed[p] = false; this.setIn(this.gmap, v, g, p); this.gfn[p] = g; this.addPage(v, p);
        return;
      case 'memoryReclaim (scrubbed)':
        this.owner[p] = FREE; this.scrubbed[p] = true; this.setIn(this.gmap, v, this.gfn[p] ?? 0, NONE); this.carvedFrom[p] = 0;
        this.removePage(v, p);
        return;
      case 'memoryReclaim (returned)': {
        const w = this.carvedFrom[p] ?? 0;
        const back = this.carvedGfn[p] ?? 0;
        this.owner[p] = w; this.setIn(this.gmap, v, this.gfn[p] ?? 0, NONE); this.setIn(this.gmap, w, back, p); this.gfn[p] = back;
        this.carvedFrom[p] = 0; this.removePage(v, p); this.addPage(w, p);
        return;
      }
      case 'memoryShare': this.flag(this.shared, p, c, true); return;
      case 'memoryUnshare': this.flag(this.shared, p, c, false); return;
      case 'cardAdmit': this.card.add(c); return;
      case 'cardRevokeAll': for (const s of this.shared.values()) s.delete(c); this.card.delete(c); return;
      case 'memoryCarve': {
        const [parent, child] = [n('parent'), n('child')];
        const from = this.gfn[p] ?? 0;
        this.owner[p] = child; this.setIn(this.gmap, parent, from, NONE); this.setIn(this.gmap, child, g, p); this.gfn[p] = g;
        this.carvedFrom[p] = parent; this.carvedGfn[p] = from; this.removePage(parent, p); this.addPage(child, p);
        return;
      }
      case 'coreAssign': this.coreOwner.set(k, n('account')); this.coreClean.set(k, false); return;
      case 'coreRelease': this.coreOwner.set(k, NO_ACCOUNT); this.coreClean.set(k, true); return;
      case 'corePin': this.flag(this.pinned, v, k, true); return;
      case 'coreUnpin': this.flag(this.pinned, v, k, false); return;
      case 'slotBind': this.flag(this.slot, v, slot, true); return;
      case 'slotUnbind': this.flag(this.slot, v, slot, false); return;
      default: throw new Error(`no transition ${transition}`);
    }
  }

  /** Takes the steps in order if every precondition holds on the way; else changes nothing. Whether it took them. */
  take(steps: readonly Step[]): boolean {
    const trial = this.copy();
    for (const s of steps) {
      if (!trial.pre(s)) return false;
      trial.post(s);
    }
    Object.assign(this, trial);
    return true;
  }
}
