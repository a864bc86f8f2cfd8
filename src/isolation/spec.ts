// The isolation engine's specification, as z3 terms: its state over unbounded arrays, every hypercall as a
// transition (a precondition and the state after), the invariants every transition must keep, and the frame
// condition of a call made for one VM. proofs.ts asks z3 to prove them; engine.ts is the code they describe, call for
// call, with each precondition below one of its named refusals.
//
// Memory is specified by host page, as Hyperkernel does: the engine's calls on a region of n pages (memoryDonate,
// memoryReclaim, memoryCarve) are n of the page steps below, each of which must keep the invariants; the engine books
// a region where this books its pages. Identifiers are integers: VM 0 and account 0 name nothing, pages are numbered
// from 0, a page's owner is FREE, ENGINE or a VM, a guest frame maps a page or NONE.
import type { Arith, ArithSort, Bool, BoolSort, Context, SMTArray } from 'z3-solver';

export type Z = Context<'main'>;
export type Int = Arith<'main'>;
export type B = Bool<'main'>;
type IntSort = ArithSort<'main'>;
/** An array indexed by one integer (a page, a VM, a core, a card). */
export type Arr1<R extends IntSort | BoolSort<'main'>> = SMTArray<'main', [IntSort], R>;
/** An array indexed by two integers (a page and a card, a VM and a guest frame, ...). */
export type Arr2<R extends IntSort | BoolSort<'main'>> = SMTArray<'main', [IntSort, IntSort], R>;

/** A page's owner when it is in the pool. */
export const FREE = 0;
/** A page's owner when it is the engine's own: never a guest's, never shared. */
export const ENGINE = -1;
/** What a guest frame maps when it maps nothing. */
export const NONE = -1;
/** A core's owner when no account has it. */
export const NO_ACCOUNT = 0;
export const SLOTS = 16;
export const Life = { UNUSED: 0, CREATED: 1, RUNNING: 2, PAUSED: 3, DYING: 4 } as const;
export const Kind = { INSTANCE: 0, ENCLAVE: 1 } as const;

export interface State {
  /** page: FREE, ENGINE or the VM that owns it. */
  readonly owner: Arr1<IntSort>;
  /** page: the engine's own at start-up; no call changes it, so the engine's pages stay its own. */
  readonly engine: Arr1<BoolSort<'main'>>;
  /** page: holds nothing of a previous owner. */
  readonly scrubbed: Arr1<BoolSort<'main'>>;
  /** page, card: the card may map the page. */
  readonly shared: Arr2<BoolSort<'main'>>;
  /** VM, guest frame: the page mapped there, or NONE (the engine's KVM memory slots). */
  readonly gmap: Arr2<IntSort>;
  /** page: the guest frame where its owner maps it. */
  readonly gfn: Arr1<IntSort>;
  /** page: the VM it goes back to when reclaimed (an enclave's page goes back to its parent), or 0. */
  readonly carvedFrom: Arr1<IntSort>;
  /** page: the guest frame it goes back to. */
  readonly carvedGfn: Arr1<IntSort>;
  /** VM: how many pages it owns, with `perm` and `idx` a bijection between 0..nr-1 and those pages. */
  readonly nr: Arr1<IntSort>;
  readonly perm: Arr2<IntSort>;
  readonly idx: Arr1<IntSort>;
  readonly life: Arr1<IntSort>;
  readonly account: Arr1<IntSort>;
  readonly parent: Arr1<IntSort>;
  readonly kind: Arr1<IntSort>;
  /** card: admitted (verified and started by the controller), so it may be given shares. */
  readonly card: Arr1<BoolSort<'main'>>;
  /** core: the account that owns it, or NO_ACCOUNT. */
  readonly coreOwner: Arr1<IntSort>;
  readonly coreClean: Arr1<BoolSort<'main'>>;
  /** VM, core: the VM's vCPUs may run on the core. */
  readonly pinned: Arr2<BoolSort<'main'>>;
  /** VM, slot: the slot's eventfds are bound to the VM. */
  readonly slot: Arr2<BoolSort<'main'>>;
}

export const STATE_FIELDS = ['owner', 'engine', 'scrubbed', 'shared', 'gmap', 'gfn', 'carvedFrom', 'carvedGfn', 'nr', 'perm', 'idx',
  'life', 'account', 'parent', 'kind', 'card', 'coreOwner', 'coreClean', 'pinned', 'slot'] as const satisfies readonly (keyof State)[];

const TWO_D: ReadonlySet<keyof State> = new Set(['shared', 'gmap', 'perm', 'pinned', 'slot']);
const BOOLEAN: ReadonlySet<keyof State> = new Set(['engine', 'scrubbed', 'shared', 'card', 'coreClean', 'pinned', 'slot']);

/** A state of free variables named `prefix.field`. */
export function symbolicState(z: Z, prefix: string): State {
  const I = z.Int.sort();
  const Bs = z.Bool.sort();
  const out: Record<string, unknown> = {};
  for (const f of STATE_FIELDS) {
    const range = BOOLEAN.has(f) ? Bs : I;
    out[f] = TWO_D.has(f) ? z.Array.const(`${prefix}.${f}`, I, I, range) : z.Array.const(`${prefix}.${f}`, I, range);
  }
  return out as unknown as State;
}

/** Helpers that keep the transitions close to the engine's code. */
export class Terms {
  readonly zero: Int;
  constructor(readonly z: Z) {
    this.zero = z.Int.val(0);
  }
  int(n: number): Int {
    return this.z.Int.val(n);
  }
  /** VM `v` exists and is not being destroyed (the engine's `live`). */
  live(s: State, v: Int): B {
    const l = s.life.select(v);
    return this.z.And(v.gt(0), l.ge(Life.CREATED), l.le(Life.PAUSED));
  }
  /** VM `v` exists (the engine's `vm`). */
  exists(s: State, v: Int): B {
    return this.z.And(v.gt(0), s.life.select(v).neq(Life.UNUSED));
  }
  /** No card may map page `p`. */
  unshared(s: State, p: Int): B {
    const c = this.z.Int.const('c!unshared');
    return this.z.ForAll([c], this.z.Not(s.shared.select(p, c)));
  }
  /** Page `p` leaves its owner `v`: the last of v's pages takes its place in the count's bijection. */
  removePage(s: State, v: Int, p: Int): Pick<State, 'nr' | 'perm' | 'idx'> {
    const last = s.nr.select(v).sub(1);
    const moved = s.perm.select(v, last);
    const i = s.idx.select(p);
    return { nr: s.nr.store(v, last), perm: s.perm.store(v, i, moved), idx: s.idx.store(moved, i) };
  }
  /** Page `p` joins `v`'s pages as the last of its count. */
  addPage(x: Pick<State, 'nr' | 'perm' | 'idx'>, v: Int, p: Int): Pick<State, 'nr' | 'perm' | 'idx'> {
    const n = x.nr.select(v);
    return { nr: x.nr.store(v, n.add(1)), perm: x.perm.store(v, n, p), idx: x.idx.store(p, n) };
  }
}

/** Every argument a transition may take, as integers (each transition names the ones it reads). */
export interface Args {
  readonly v: Int;
  readonly p: Int;
  readonly g: Int;
  readonly c: Int;
  readonly k: Int;
  readonly slot: Int;
  readonly account: Int;
  readonly kind: Int;
  readonly parent: Int;
  readonly child: Int;
}

const ARG_NAMES = ['v', 'p', 'g', 'c', 'k', 'slot', 'account', 'kind', 'parent', 'child'] as const satisfies readonly (keyof Args)[];

/** One hypercall (or, for memory, one page of it) as a state transition. */
export interface Transition {
  readonly name: string;
  /** The arguments it reads. */
  readonly args: readonly (keyof Args)[];
  /** The VMs the call is made for (the only ones whose memory, cores, slots or life it may change); undefined: none. */
  touches?(a: Args, s: State): Int[];
  /** For a call made for no VM that still changes VMs' state (a card's revocation): what it leaves alone instead. */
  unchanged?(t: Terms, before: State, after: State, a: Args): B;
  pre(t: Terms, s: State, a: Args): B;
  post(t: Terms, s: State, a: Args): State;
}

/** `memoryReclaim`'s page may go back to the VM it was carved from: that VM is live and its frame is still free. */
function returnsTo(t: Terms, s: State, p: Int): B {
  const w = s.carvedFrom.select(p);
  return t.z.And(w.neq(0), t.live(s, w), s.gmap.select(w, s.carvedGfn.select(p)).eq(NONE));
}

function reclaimable(t: Terms, s: State, v: Int, p: Int): B {
  return t.z.And(t.exists(s, v), s.life.select(v).neq(Life.RUNNING), s.owner.select(p).eq(v), t.unshared(s, p));
}

export const TRANSITIONS: readonly Transition[] = [
  {
    name: 'vmCreate', args: ['v', 'account', 'kind', 'parent'],
    touches: (a) => [a.v],
    // A fresh id (the engine counts them); a parent is live, of the same account, and the child an enclave.
    pre: (t, s, { v, account, kind, parent }) => t.z.And(v.gt(0), s.life.select(v).eq(Life.UNUSED), account.neq(0),
      t.z.Or(kind.eq(Kind.INSTANCE), kind.eq(Kind.ENCLAVE)),
      t.z.Or(parent.eq(0), t.z.And(t.live(s, parent), s.account.select(parent).eq(account), kind.eq(Kind.ENCLAVE)))),
    post: (t, s, { v, account, kind, parent }) => ({ ...s, life: s.life.store(v, Life.CREATED), account: s.account.store(v, account),
      kind: s.kind.store(v, kind), parent: s.parent.store(v, parent) }),
  },
  {
    name: 'vmRun', args: ['v'], touches: (a) => [a.v],
    pre: (t, s, { v }) => t.z.And(t.live(s, v), s.life.select(v).neq(Life.RUNNING), s.nr.select(v).gt(0)),
    post: (t, s, { v }) => ({ ...s, life: s.life.store(v, Life.RUNNING) }),
  },
  {
    name: 'vmPause', args: ['v'], touches: (a) => [a.v],
    pre: (t, s, { v }) => t.z.And(v.gt(0), s.life.select(v).eq(Life.RUNNING)),
    post: (t, s, { v }) => ({ ...s, life: s.life.store(v, Life.PAUSED) }),
  },
  {
    name: 'vmBeginDestroy', args: ['v'], touches: (a) => [a.v],
    pre: (t, s, { v }) => t.live(s, v),
    post: (t, s, { v }) => ({ ...s, life: s.life.store(v, Life.DYING) }),
  },
  {
    name: 'vmFinishDestroy', args: ['v'], touches: (a) => [a.v],
    pre: (t, s, { v }) => {
      const [k, x, w] = [t.z.Int.const('k!fin'), t.z.Int.const('s!fin'), t.z.Int.const('w!fin')];
      return t.z.And(v.gt(0), s.life.select(v).eq(Life.DYING), s.nr.select(v).eq(0),
        t.z.ForAll([k], t.z.Not(s.pinned.select(v, k))), t.z.ForAll([x], t.z.Not(s.slot.select(v, x))),
        t.z.ForAll([w], t.z.Implies(s.life.select(w).neq(Life.UNUSED), s.parent.select(w).neq(v))));
    },
    post: (t, s, { v }) => ({ ...s, life: s.life.store(v, Life.UNUSED) }),
  },
  {
    name: 'memoryDonate', args: ['v', 'p', 'g'], touches: (a) => [a.v],
    // A free page (OutOfMemory when there is none), at a guest frame the VM has free (RangeInUse).
    pre: (t, s, { v, p, g }) => t.z.And(t.live(s, v), p.ge(0), s.owner.select(p).eq(FREE), g.ge(0), s.gmap.select(v, g).eq(NONE)),
    post: (t, s, { v, p, g }) => ({ ...s, owner: s.owner.store(p, v), scrubbed: s.scrubbed.store(p, false), gmap: s.gmap.store(v, g, p),
      gfn: s.gfn.store(p, g), ...t.addPage(s, v, p) }),
  },
  {
    // Always allowed; the engine scrubs a region's pages when they cannot all go back (see the next).
    name: 'memoryReclaim (scrubbed)', args: ['v', 'p'], touches: (a) => [a.v],
    pre: (t, s, { v, p }) => reclaimable(t, s, v, p),
    post: (t, s, { v, p }) => ({ ...s, owner: s.owner.store(p, FREE), scrubbed: s.scrubbed.store(p, true),
      gmap: s.gmap.store(v, s.gfn.select(p), NONE), carvedFrom: s.carvedFrom.store(p, 0), ...t.removePage(s, v, p) }),
  },
  {
    name: 'memoryReclaim (returned)', args: ['v', 'p'], touches: (a, s) => [a.v, s.carvedFrom.select(a.p)],
    pre: (t, s, { v, p }) => t.z.And(reclaimable(t, s, v, p), returnsTo(t, s, p)),
    post: (t, s, { v, p }) => {
      const w = s.carvedFrom.select(p);
      const g = s.carvedGfn.select(p);
      return { ...s, owner: s.owner.store(p, w), gmap: s.gmap.store(v, s.gfn.select(p), NONE).store(w, g, p), gfn: s.gfn.store(p, g),
        carvedFrom: s.carvedFrom.store(p, 0), ...t.addPage(t.removePage(s, v, p), w, p) };
    },
  },
  {
    name: 'memoryShare', args: ['v', 'p', 'c'], touches: (a) => [a.v],
    pre: (t, s, { v, p, c }) => t.z.And(t.live(s, v), s.owner.select(p).eq(v), s.card.select(c), t.z.Not(s.shared.select(p, c))),
    post: (t, s, { p, c }) => ({ ...s, shared: s.shared.store(p, c, true) }),
  },
  {
    name: 'memoryUnshare', args: ['v', 'p', 'c'], touches: (a) => [a.v],
    pre: (t, s, { v, p, c }) => t.z.And(t.exists(s, v), s.owner.select(p).eq(v), s.shared.select(p, c)),
    post: (t, s, { p, c }) => ({ ...s, shared: s.shared.store(p, c, false) }),
  },
  {
    name: 'cardAdmit', args: ['c'],
    pre: (t, s, { c }) => t.z.Not(s.card.select(c)),
    post: (t, s, { c }) => ({ ...s, card: s.card.store(c, true) }),
  },
  {
    name: 'cardRevokeAll', args: ['c'],
    // Every VM's shares with this card end; nothing else changes, another card's shares least of all.
    unchanged: (t, before, after, { c }) => {
      const [q, d] = [t.z.Int.const('p!revoked'), t.z.Int.const('c!revoked')];
      return t.z.And(t.z.ForAll([q, d], t.z.Implies(d.neq(c), t.z.Eq(before.shared.select(q, d), after.shared.select(q, d)))),
        ...STATE_FIELDS.filter((f) => f !== 'shared' && f !== 'card').map((f) => t.z.Eq(before[f], after[f])));
    },
    pre: (t, s, { c }) => s.card.select(c),
    post: (t, s, { c }) => {
      const [q, d] = [t.z.Int.const('p!revoke'), t.z.Int.const('c!revoke')];
      const shared = t.z.Lambda([q, d], t.z.And(d.neq(c), s.shared.select(q, d))) as unknown as State['shared'];
      return { ...s, shared, card: s.card.store(c, false) };
    },
  },
  {
    name: 'memoryCarve', args: ['parent', 'p', 'child', 'g'], touches: (a) => [a.parent, a.child],
    // From a live parent that is not running, an unshared page of its own, to a live enclave made from it.
    pre: (t, s, { parent, p, child, g }) => t.z.And(t.live(s, parent), s.life.select(parent).neq(Life.RUNNING), s.owner.select(p).eq(parent),
      t.live(s, child), s.parent.select(child).eq(parent), t.unshared(s, p), g.ge(0), s.gmap.select(child, g).eq(NONE)),
    post: (t, s, { parent, p, child, g }) => ({ ...s, owner: s.owner.store(p, child),
      gmap: s.gmap.store(parent, s.gfn.select(p), NONE).store(child, g, p), gfn: s.gfn.store(p, g),
      carvedFrom: s.carvedFrom.store(p, parent), carvedGfn: s.carvedGfn.store(p, s.gfn.select(p)), ...t.addPage(t.removePage(s, parent, p), child, p) }),
  },
  {
    name: 'coreAssign', args: ['k', 'account'],
    pre: (t, s, { k, account }) => t.z.And(k.ge(0), s.coreOwner.select(k).eq(NO_ACCOUNT), account.neq(NO_ACCOUNT)),
    post: (t, s, { k, account }) => ({ ...s, coreOwner: s.coreOwner.store(k, account), coreClean: s.coreClean.store(k, false) }),
  },
  {
    name: 'coreRelease', args: ['k'],
    pre: (t, s, { k }) => {
      const v = t.z.Int.const('v!release');
      return t.z.And(s.coreOwner.select(k).neq(NO_ACCOUNT), t.z.ForAll([v], t.z.Not(s.pinned.select(v, k))));
    },
    post: (t, s, { k }) => ({ ...s, coreOwner: s.coreOwner.store(k, NO_ACCOUNT), coreClean: s.coreClean.store(k, true) }),
  },
  {
    name: 'corePin', args: ['v', 'k'], touches: (a) => [a.v],
    pre: (t, s, { v, k }) => t.z.And(t.live(s, v), s.coreOwner.select(k).eq(s.account.select(v)), t.z.Not(s.pinned.select(v, k))),
    post: (t, s, { v, k }) => ({ ...s, pinned: s.pinned.store(v, k, true) }),
  },
  {
    name: 'coreUnpin', args: ['v', 'k'], touches: (a) => [a.v],
    pre: (t, s, { v, k }) => t.z.And(t.exists(s, v), s.pinned.select(v, k)),
    post: (t, s, { v, k }) => ({ ...s, pinned: s.pinned.store(v, k, false) }),
  },
  {
    name: 'slotBind', args: ['v', 'slot'], touches: (a) => [a.v],
    pre: (t, s, { v, slot }) => t.z.And(t.live(s, v), slot.ge(0), slot.lt(SLOTS), t.z.Not(s.slot.select(v, slot))),
    post: (t, s, { v, slot }) => ({ ...s, slot: s.slot.store(v, slot, true) }),
  },
  {
    name: 'slotUnbind', args: ['v', 'slot'], touches: (a) => [a.v],
    pre: (t, s, { v, slot }) => t.z.And(t.exists(s, v), s.slot.select(v, slot)),
    post: (t, s, { v, slot }) => ({ ...s, slot: s.slot.store(v, slot, false) }),
  },
];

/** A property of a state that every transition keeps. */
export interface Invariant {
  readonly id: string;
  readonly says: string;
  /** What it says, clause by clause (each proved on its own: smaller questions are easier for z3). */
  clauses(t: Terms, s: State): B[];
}

export const INVARIANTS: readonly Invariant[] = [
  {
    id: 'a', says: 'a free page is scrubbed, unshared, unmapped and goes back nowhere',
    clauses: (t, s) => {
      const { z } = t;
      const [p, c, v, g] = [z.Int.const('p'), z.Int.const('c'), z.Int.const('v'), z.Int.const('g')];
      return [
        z.ForAll([p], z.Implies(s.owner.select(p).eq(FREE), z.And(s.scrubbed.select(p), s.carvedFrom.select(p).eq(0)))),
        z.ForAll([p, c], z.Implies(s.owner.select(p).eq(FREE), z.Not(s.shared.select(p, c)))),
        z.ForAll([v, g], z.Implies(s.gmap.select(v, g).neq(NONE), s.owner.select(s.gmap.select(v, g)).neq(FREE)))];
    },
  },
  {
    id: 'b', says: 'a shared page belongs to a live or dying VM and is shared with an admitted card',
    clauses: (t, s) => {
      const { z } = t;
      const [p, c] = [z.Int.const('p'), z.Int.const('c')];
      return [z.ForAll([p, c], z.Implies(s.shared.select(p, c), z.And(t.exists(s, s.owner.select(p)), s.card.select(c))))];
    },
  },
  {
    id: 'c', says: 'a guest frame mapped in VM v resolves to a page v owns, and every page a VM owns is mapped once',
    clauses: (t, s) => {
      const { z } = t;
      const [p, v, g] = [z.Int.const('p'), z.Int.const('v'), z.Int.const('g')];
      const q = s.gmap.select(v, g);
      return [
        z.ForAll([v, g], z.Implies(q.neq(NONE), z.And(v.gt(0), s.owner.select(q).eq(v), s.gfn.select(q).eq(g)))),
        z.ForAll([p], z.Implies(s.owner.select(p).gt(0), z.And(s.gfn.select(p).ge(0), s.gmap.select(s.owner.select(p), s.gfn.select(p)).eq(p))))];
    },
  },
  {
    id: 'd', says: 'the engine\'s pages stay its own, and are never mapped into a VM or shared',
    clauses: (t, s) => {
      const { z } = t;
      const [p, c] = [z.Int.const('p'), z.Int.const('c')];
      return [
        z.ForAll([p], z.Eq(s.engine.select(p), s.owner.select(p).eq(ENGINE))),
        z.ForAll([p, c], z.Implies(s.engine.select(p), z.Not(s.shared.select(p, c))))];
    },
  },
  {
    id: 'e', says: 'each VM\'s page count equals the pages it owns (a bijection between 0..count-1 and them)',
    clauses: (t, s) => {
      const { z } = t;
      const [p, v, i] = [z.Int.const('p'), z.Int.const('v'), z.Int.const('i')];
      const o = s.owner.select(p);
      const q = s.perm.select(v, i);
      return [
        z.ForAll([v], s.nr.select(v).ge(0)),
        z.ForAll([p], z.Implies(o.gt(0), z.And(s.idx.select(p).ge(0), s.idx.select(p).lt(s.nr.select(o)), s.perm.select(o, s.idx.select(p)).eq(p)))),
        z.ForAll([v, i], z.Implies(z.And(i.ge(0), i.lt(s.nr.select(v))), z.And(s.owner.select(q).eq(v), s.idx.select(q).eq(i))))];
    },
  },
  {
    id: 'f', says: 'a VM that does not exist owns nothing: no page, mapping, core or slot',
    clauses: (t, s) => {
      const { z } = t;
      const [p, v, k, x] = [z.Int.const('p'), z.Int.const('v'), z.Int.const('k'), z.Int.const('x')];
      const dead = z.Not(t.exists(s, v));
      return [
        z.ForAll([v], z.Implies(dead, z.And(s.nr.select(v).eq(0), s.life.select(v).eq(Life.UNUSED)))),
        z.ForAll([v, k], z.Implies(dead, z.Not(s.pinned.select(v, k)))),
        z.ForAll([v, x], z.Implies(dead, z.Not(s.slot.select(v, x)))),
        z.ForAll([p], z.Implies(s.owner.select(p).gt(0), t.exists(s, s.owner.select(p)))),
        z.ForAll([p], z.Or(s.owner.select(p).ge(FREE), s.owner.select(p).eq(ENGINE))),
        // Pages are numbered from 0, so no page is NONE.
        z.ForAll([p], z.Implies(s.owner.select(p).neq(FREE), p.ge(0)))];
    },
  },
  {
    id: 'g', says: 'a core belongs to at most one account, and is pinned only to existing VMs of it; a free core is clean',
    clauses: (t, s) => {
      const { z } = t;
      const [v, k] = [z.Int.const('v'), z.Int.const('k')];
      return [
        z.ForAll([v, k], z.Implies(s.pinned.select(v, k),
          z.And(t.exists(s, v), s.coreOwner.select(k).neq(NO_ACCOUNT), s.coreOwner.select(k).eq(s.account.select(v))))),
        z.ForAll([k], z.Implies(s.coreOwner.select(k).eq(NO_ACCOUNT), s.coreClean.select(k)))];
    },
  },
  {
    id: 'h', says: 'carving: an enclave\'s parent exists and shares its account; a carved page goes back to its owner\'s parent, at a frame',
    clauses: (t, s) => {
      const { z } = t;
      const [p, w] = [z.Int.const('p'), z.Int.const('w')];
      const from = s.carvedFrom.select(p);
      const par = s.parent.select(w);
      return [
        z.ForAll([w], z.Implies(z.And(t.exists(s, w), par.neq(0)),
          z.And(t.exists(s, par), s.kind.select(w).eq(Kind.ENCLAVE), s.account.select(par).eq(s.account.select(w))))),
        z.ForAll([p], z.Implies(from.neq(0), z.And(s.owner.select(p).gt(0), s.parent.select(s.owner.select(p)).eq(from), s.carvedGfn.select(p).ge(0))))];
    },
  },
  {
    id: 'i', says: 'lives are in range, VM 0 never exists, an existing VM has an account, and a running VM has memory',
    clauses: (t, s) => {
      const { z } = t;
      const v = z.Int.const('v');
      const l = s.life.select(v);
      return [
        z.ForAll([v], z.And(l.ge(Life.UNUSED), l.le(Life.DYING))),
        z.ForAll([v], z.Implies(v.le(0), l.eq(Life.UNUSED))),
        z.ForAll([v], z.Implies(t.exists(s, v), s.account.select(v).neq(0))),
        z.ForAll([v], z.Implies(l.eq(Life.RUNNING), s.nr.select(v).gt(0)))];
    },
  },
];

/**
 * The frame condition of a call made for the VMs `touched`: every other VM keeps its pages (the same pages, with the
 * same shares and mappings), its cores, its slots and its life. Not non-interference: a VM may still learn that the
 * pool ran out, and nothing here speaks of timing.
 */
export function frame(t: Terms, before: State, after: State, touched: readonly Int[]): B {
  const { z } = t;
  const [b, p, c, g, k, x] = ['b', 'p', 'c', 'g', 'k', 'x'].map((n) => z.Int.const(`${n}!frame`)) as [Int, Int, Int, Int, Int, Int];
  const other = z.And(b.gt(0), ...touched.map((v) => b.neq(v)));
  const owns = (s: State): B => s.owner.select(p).eq(b);
  return z.ForAll([b], z.Implies(other, z.And(
    z.ForAll([p], z.And(z.Eq(owns(before), owns(after)),
      z.Implies(owns(before), z.And(z.Eq(before.scrubbed.select(p), after.scrubbed.select(p)), before.gfn.select(p).eq(after.gfn.select(p)))))),
    z.ForAll([p, c], z.Implies(owns(before), z.Eq(before.shared.select(p, c), after.shared.select(p, c)))),
    z.ForAll([g], before.gmap.select(b, g).eq(after.gmap.select(b, g))),
    z.ForAll([k], z.Eq(before.pinned.select(b, k), after.pinned.select(b, k))),
    z.ForAll([x], z.Eq(before.slot.select(b, x), after.slot.select(b, x))),
    before.life.select(b).eq(after.life.select(b)),
    before.nr.select(b).eq(after.nr.select(b)))));
}

/** All invariants at once: what every proof assumes of the state before. */
export function allInvariants(t: Terms, s: State): B {
  return t.z.And(...INVARIANTS.flatMap((i) => i.clauses(t, s)));
}

/** Fresh arguments for a transition. */
export function argsOf(z: Z, tr: Transition): Args {
  return Object.fromEntries(ARG_NAMES.map((a) => [a, z.Int.const(`${tr.name}.${a}`)])) as unknown as Args;
}
