// Wrong transitions, one for each invariant and one for the frame condition: each is a transition of spec.ts with
// one check or one update left out, as a slip in engine.ts would. The proofs must fail on each, or they would prove
// nothing: each comes with a state of the witness run (proofs.ts) and arguments from which it breaks the clause named.
import type { WitnessStep } from '../../src/isolation/proofs.js';
import { Life, NONE, TRANSITIONS, type Args, type Transition } from '../../src/isolation/spec.js';

export interface PlantedBug {
  readonly says: string;
  /** The invariant it must break ("frame": the frame condition), and which of its clauses (from 1). */
  readonly breaks: string;
  readonly clause: number;
  readonly transition: Transition;
  /** The counterexample: the witness run's state before this step, and the wrong transition's arguments. */
  readonly before: { readonly transition: string; readonly args: WitnessStep['args'] };
  readonly args: Partial<Record<keyof Args, number>>;
}

function base(name: string): Transition {
  const tr = TRANSITIONS.find((t) => t.name === name);
  if (!tr) throw new Error(`no transition ${name}`);
  return tr;
}

interface Counterexample {
  readonly breaks: string;
  readonly clause: number;
  readonly before: PlantedBug['before'];
  readonly args: PlantedBug['args'];
}

function planted(says: string, name: string, change: Partial<Pick<Transition, 'pre' | 'post'>>, c: Counterexample): PlantedBug {
  return { says, ...c, transition: { ...base(name), ...change, name: `${name} [${says}]` } };
}

export const PLANTED_BUGS: readonly PlantedBug[] = [
  planted('reclaim does not scrub the page', 'memoryReclaim (scrubbed)', {
    post: (t, s, a) => ({ ...base('memoryReclaim (scrubbed)').post(t, s, a), scrubbed: s.scrubbed }),
  }, { breaks: 'a', clause: 1, before: { transition: 'memoryReclaim (scrubbed)', args: { v: 1, p: 0 } }, args: { v: 1, p: 0 } }),
  planted('revoking a card forgets its shares', 'cardRevokeAll', {
    post: (t, s, { c }) => ({ ...s, card: s.card.store(c, false) }),
  }, { breaks: 'b', clause: 1, before: { transition: 'cardRevokeAll', args: { c: 3 } }, args: { c: 3 } }),
  planted('carving leaves the page mapped in the parent', 'memoryCarve', {
    post: (t, s, a) => ({ ...base('memoryCarve').post(t, s, a), gmap: s.gmap.store(a.child, a.g, a.p) }),
  }, { breaks: 'c', clause: 1, before: { transition: 'memoryCarve', args: { parent: 1, p: 1, child: 2, g: 0 } }, args: { parent: 1, p: 1, child: 2, g: 0 } }),
  planted('donation takes any page no VM owns, the engine\'s included', 'memoryDonate', {
    pre: (t, s, { v, p, g }) => t.z.And(t.live(s, v), p.ge(0), s.owner.select(p).le(0), g.ge(0), s.gmap.select(v, g).eq(NONE)),
  }, { breaks: 'd', clause: 1, before: { transition: 'memoryDonate', args: { v: 1, p: 0, g: 0 } }, args: { v: 1, p: 100, g: 5 } }),
  planted('reclaim forgets the count', 'memoryReclaim (scrubbed)', {
    post: (t, s, a) => ({ ...base('memoryReclaim (scrubbed)').post(t, s, a), nr: s.nr, perm: s.perm, idx: s.idx }),
  }, { breaks: 'e', clause: 3, before: { transition: 'memoryReclaim (scrubbed)', args: { v: 1, p: 0 } }, args: { v: 1, p: 0 } }),
  planted('a VM is forgotten with slots still bound', 'vmFinishDestroy', {
    pre: (t, s, { v }) => {
      const [k, w] = [t.z.Int.const('k!bug'), t.z.Int.const('w!bug')];
      return t.z.And(v.gt(0), s.life.select(v).eq(Life.DYING), s.nr.select(v).eq(0), t.z.ForAll([k], t.z.Not(s.pinned.select(v, k))),
        t.z.ForAll([w], t.z.Implies(s.life.select(w).neq(Life.UNUSED), s.parent.select(w).neq(v))));
    },
  }, { breaks: 'f', clause: 3, before: { transition: 'slotUnbind', args: { v: 2, slot: 0 } }, args: { v: 2 } }),
  planted('a VM is pinned to another account\'s core', 'corePin', {
    pre: (t, s, { v, k }) => t.z.And(t.live(s, v), t.z.Not(s.pinned.select(v, k))),
  }, { breaks: 'g', clause: 1, before: { transition: 'memoryDonate', args: { v: 1, p: 0, g: 0 } }, args: { v: 1, k: 5 } }),
  planted('a parent is forgotten while its enclave lives', 'vmFinishDestroy', {
    pre: (t, s, { v }) => {
      const [k, x] = [t.z.Int.const('k!bug'), t.z.Int.const('s!bug')];
      return t.z.And(v.gt(0), s.life.select(v).eq(Life.DYING), s.nr.select(v).eq(0), t.z.ForAll([k], t.z.Not(s.pinned.select(v, k))),
        t.z.ForAll([x], t.z.Not(s.slot.select(v, x))));
    },
  }, { breaks: 'h', clause: 1, before: { transition: 'vmBeginDestroy', args: { v: 3 } }, args: { v: 1 } }),
  planted('memory is taken from a running VM', 'memoryReclaim (scrubbed)', {
    pre: (t, s, { v, p }) => t.z.And(t.exists(s, v), s.owner.select(p).eq(v), t.unshared(s, p), s.carvedFrom.select(p).eq(0)),
  }, { breaks: 'i', clause: 4, before: { transition: 'memoryDonate', args: { v: 1, p: 1, g: 1 } }, args: { v: 1, p: 0 } }),
  planted('unsharing does not check whose page it is', 'memoryUnshare', {
    pre: (t, s, { v, p, c }) => t.z.And(t.exists(s, v), s.shared.select(p, c)),
  }, { breaks: 'frame', clause: 1, before: { transition: 'memoryUnshare', args: { v: 1, p: 0, c: 3 } }, args: { v: 2, p: 0, c: 3 } }),
];
