// The real engine against its specification, run as a model (fast-check commands): each hypercall is taken by the
// engine and, as the page steps spec.ts specifies, by PageModel; the engine must accept exactly the calls whose every
// page step meets its precondition, and after each call the two must describe the same VMs, memory (each guest frame:
// its shares, where it goes back to), cards and cores. On sampled states z3 checks that the model agrees with
// spec.ts itself: every invariant holds there, and the spec's preconditions say what the model's say.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IsolationEngine, IsolationError, PAGE_BYTES, type VmLife } from '../../src/isolation/engine.js';
import { concreteArgs, constant1, constant2, openProver, type Prover } from '../../src/isolation/proofs.js';
import { FREE, INVARIANTS, Kind, Life, NO_ACCOUNT, NONE, TRANSITIONS, type State } from '../../src/isolation/spec.js';
import { apply, call, resolve, type Call } from './calls.js';
import { PageModel, type Step } from './page-model.js';

const POOL = 40;
const CORES = 4;
const SEQUENCES = 10_000;
/** One sequence in this many is checked against spec.ts by z3 (each check takes tens of milliseconds). */
const Z3_SAMPLE = 400;

const ACCOUNTS: Readonly<Record<string, number>> = { a: 1, b: 2 };
const CARDS: Readonly<Record<string, number>> = { blk: 1, net: 2 };
const LIVES: Readonly<Record<VmLife, number>> = { created: Life.CREATED, running: Life.RUNNING, paused: Life.PAUSED, dying: Life.DYING };

/** Calls made and taken, by kind, across all sequences: the sequences must reach carves, returns and destroys. */
const made = new Map<string, number>();
const taken = new Map<string, number>();
const bump = (m: Map<string, number>, k: string): void => { m.set(k, (m.get(k) ?? 0) + 1); };

interface World {
  readonly engine: IsolationEngine;
  model: PageModel;
  nextVm: number;
  /** The last call's page steps, for the z3 sample. */
  lastSteps: readonly Step[];
}

const frames = (gpa: number, pages: number, from = 0): number[] => Array.from({ length: pages }, (_, i) => gpa / PAGE_BYTES + from + i);

/**
 * The page steps spec.ts takes for an engine call, or undefined where the engine refuses it on its arguments alone
 * (an empty or unaligned range, a core the host does not have, a region the VM does not own).
 */
function stepsOf(w: World, c: Call): Step[] | undefined {
  const { engine: e, model: m } = w;
  const regionOf = (vm: number, id: number): { gpa: number; pages: number } | undefined => {
    const r = e.region(id);
    return r && r.owner === vm ? r : undefined;
  };
  const pagesAt = (vm: number, gfns: number[]): number[] => gfns.map((g) => m.map(vm, g));
  switch (c.op) {
    case 'vmCreate':
      return [{ transition: 'vmCreate', args: { v: w.nextVm, account: ACCOUNTS[c.account] ?? 0, kind: c.enclave ? Kind.ENCLAVE : Kind.INSTANCE, parent: c.parent } }];
    case 'vmRun': case 'vmPause': case 'vmBeginDestroy': case 'vmFinishDestroy':
      return [{ transition: c.op, args: { v: c.vm } }];
    case 'memoryDonate': {
      const free = m.freePages();
      if (c.pages <= 0 || free.length < c.pages) return undefined;
      return frames(c.gpaPage * PAGE_BYTES, c.pages).map((g, i) => ({ transition: 'memoryDonate', args: { v: c.vm, p: free[i] ?? -1, g } }));
    }
    case 'memoryReclaim': {
      const r = regionOf(c.vm, c.region);
      if (!r) return undefined;
      const pages = pagesAt(c.vm, frames(r.gpa, r.pages));
      // The engine returns a region whole or not at all: every page goes back, or every page is scrubbed.
      const back = pages.map((p) => ({ transition: 'memoryReclaim (returned)', args: { v: c.vm, p } }));
      const probe = m.copy();
      return probe.take(back) ? back : pages.map((p) => ({ transition: 'memoryReclaim (scrubbed)', args: { v: c.vm, p } }));
    }
    case 'memoryShare': case 'memoryUnshare': {
      const r = regionOf(c.vm, c.region);
      if (!r) return undefined;
      return pagesAt(c.vm, frames(r.gpa, r.pages)).map((p) => ({ transition: c.op, args: { v: c.vm, p, c: CARDS[c.card] ?? 0 } }));
    }
    case 'cardAdmit': case 'cardRevokeAll':
      return [{ transition: c.op, args: { c: CARDS[c.card] ?? 0 } }];
    case 'memoryCarve': {
      const r = regionOf(c.parent, c.region);
      if (!r || c.offset < 0 || c.pages <= 0 || c.offset + c.pages > r.pages) return undefined;
      const child = frames(c.gpaPage * PAGE_BYTES, c.pages);
      return pagesAt(c.parent, frames(r.gpa, c.pages, c.offset)).map((p, i) => ({ transition: 'memoryCarve', args: { parent: c.parent, p, child: c.child, g: child[i] ?? -1 } }));
    }
    case 'coreAssign':
      return c.core >= CORES ? undefined : [{ transition: 'coreAssign', args: { k: c.core, account: ACCOUNTS[c.account] ?? 0 } }];
    case 'coreRelease':
      return [{ transition: 'coreRelease', args: { k: c.core } }];
    case 'corePin': case 'coreUnpin':
      return [{ transition: c.op, args: { v: c.vm, k: c.core } }];
    case 'slotBind': case 'slotUnbind':
      return [{ transition: c.op, args: { v: c.vm, slot: c.slot } }];
  }
}

/** What the engine says of VMs, memory by guest frame, cards and cores, in the model's numbers. */
function engineView(e: IsolationEngine): unknown {
  const vms = e.allVms().sort((a, b) => a.id - b.id).map((v) => ({
    id: v.id, life: LIVES[v.life], account: ACCOUNTS[v.account] ?? 0, parent: v.parent ?? 0, kind: v.kind === 'enclave' ? Kind.ENCLAVE : Kind.INSTANCE,
    cores: [...v.cores].sort(), slots: [...v.slots].sort(),
    frames: [...v.regions].flatMap((id) => {
      const r = e.region(id);
      if (!r) return [];
      const shares = [...r.shares].map((c) => CARDS[c] ?? 0).sort();
      return frames(r.gpa, r.pages).map((g, i) => [g, shares, r.carvedFrom ? [r.carvedFrom.vm, r.carvedFrom.gpa / PAGE_BYTES + i] : null]);
    }).sort((a, b) => (a[0] as number) - (b[0] as number)),
  }));
  const cores = Array.from({ length: CORES }, (_, k) => {
    const c = e.coreRecord(k);
    return [c?.owner === undefined ? NO_ACCOUNT : ACCOUNTS[c.owner] ?? 0, c?.clean ?? true];
  });
  return { free: e.free, vms, cards: [...e.admittedCards].map((c) => CARDS[c] ?? 0).sort(), cores };
}

/** The same, read off the model. */
function modelView(m: PageModel): unknown {
  const vms = [...m.life].filter(([, l]) => l !== Life.UNUSED).sort(([a], [b]) => a - b).map(([v, life]) => ({
    id: v, life, account: m.account.get(v) ?? 0, parent: m.parent.get(v) ?? 0, kind: m.kind.get(v) ?? 0,
    cores: [...m.pinned.get(v) ?? []].sort(), slots: [...m.slot.get(v) ?? []].sort(),
    frames: [...m.gmap.get(v) ?? []].filter(([, p]) => p !== NONE).sort(([a], [b]) => a - b).map(([g, p]) => {
      const from = m.carvedFrom[p] ?? 0;
      return [g, [...m.shared.get(p) ?? []].sort(), from === 0 ? null : [from, m.carvedGfn[p] ?? 0]];
    }),
  }));
  const cores = Array.from({ length: CORES }, (_, k) => [m.coreOwnerOf(k), m.coreClean.get(k) ?? true]);
  return { free: m.owner.filter((o) => o === FREE).length, vms, cards: [...m.card].sort(), cores };
}

class CallCommand implements fc.Command<World, World> {
  constructor(readonly generated: Call) {}
  check(): boolean {
    return true;
  }
  run(_: World, w: World): void {
    const c = resolve(w.engine, this.generated);
    const steps = stepsOf(w, c);
    const modelTook = steps !== undefined && w.model.take(steps);
    let engineTook = true;
    try {
      apply(w.engine, c);
    } catch (err) {
      if (!(err instanceof IsolationError)) throw err;
      engineTook = false;
    }
    assert.equal(engineTook, modelTook, `${JSON.stringify(c)}: the engine ${engineTook ? 'took' : 'refused'} it, the spec ${modelTook ? 'takes' : 'refuses'} ${JSON.stringify(steps)}`);
    if (c.op === 'vmCreate' && engineTook) w.nextVm++;
    bump(made, c.op);
    if (engineTook) bump(taken, steps?.[0]?.transition ?? c.op);
    w.lastSteps = steps ?? [];
    assert.deepEqual(engineView(w.engine), modelView(w.model), `after ${JSON.stringify(c)}`);
  }
  toString(): string {
    return JSON.stringify(this.generated);
  }
}

/** The model's state as z3 arrays: constant arrays with a store for each entry it holds. */
function modelState(p: Prover, m: PageModel): State {
  type A1 = State['owner'];
  type B1 = State['engine'];
  const ints1 = (dflt: number, entries: Iterable<[number, number]>): A1 => {
    let arr = constant1<A1>(p.z, dflt);
    for (const [k, v] of entries) arr = arr.store(k, v);
    return arr;
  };
  const bools1 = (dflt: boolean, entries: Iterable<[number, boolean]>): B1 => {
    let arr = constant1<B1>(p.z, dflt);
    for (const [k, v] of entries) arr = arr.store(k, v);
    return arr;
  };
  const ints2 = (dflt: number, nested: Map<number, Map<number, number>>): State['gmap'] => {
    let arr = constant2<State['gmap']>(p.z, dflt);
    for (const [k, inner] of nested) for (const [j, v] of inner) arr = arr.store(k, j, v);
    return arr;
  };
  const bools2 = (nested: Map<number, Set<number>>): State['shared'] => {
    let arr = constant2<State['shared']>(p.z, false);
    for (const [k, inner] of nested) for (const j of inner) arr = arr.store(k, j, true);
    return arr;
  };
  // Only the entries that differ from the array's default: fewer stores, smaller questions.
  const list = <T>(xs: readonly T[], dflt: T): Array<[number, T]> => xs.flatMap((x, i): Array<[number, T]> => (x === dflt ? [] : [[i, x]]));
  return {
    owner: ints1(FREE, list(m.owner, FREE)), engine: bools1(false, list(m.engine, false)), scrubbed: bools1(true, list(m.scrubbed, true)),
    shared: bools2(m.shared), gmap: ints2(NONE, m.gmap), gfn: ints1(0, list(m.gfn, 0)), carvedFrom: ints1(0, list(m.carvedFrom, 0)),
    carvedGfn: ints1(0, list(m.carvedGfn, 0)), nr: ints1(0, m.nr), perm: ints2(0, m.perm), idx: ints1(0, list(m.idx, 0)), life: ints1(Life.UNUSED, m.life), account: ints1(0, m.account),
    parent: ints1(0, m.parent), kind: ints1(0, m.kind), card: bools1(false, [...m.card].map((c): [number, boolean] => [c, true])),
    coreOwner: ints1(NO_ACCOUNT, m.coreOwner), coreClean: bools1(true, m.coreClean), pinned: bools2(m.pinned), slot: bools2(m.slot),
  };
}

test(`the engine against the specification as a model: ${SEQUENCES} random sequences, hostile calls included`, { timeout: 600_000 }, async (t) => {
  const p = await openProver(60_000);
  try {
    const samples: World[] = [];
    let runs = 0;
    const started = performance.now();
    fc.assert(fc.property(fc.commands([call.map((c) => new CallCommand(c))], { maxCommands: 60, size: 'max' }), (cmds) => {
      const w: World = { engine: new IsolationEngine(POOL, CORES), model: new PageModel(POOL, 1), nextVm: 1, lastSteps: [] };
      fc.modelRun(() => ({ model: w, real: w }), cmds);
      if (runs++ % Z3_SAMPLE === 0) samples.push(w);
    }), { numRuns: SEQUENCES });
    const calls = [...made.values()].reduce((a, b) => a + b, 0);
    t.diagnostic(`${runs} sequences, ${calls} calls (${[...taken.values()].reduce((a, b) => a + b, 0)} taken) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    t.diagnostic(`taken: ${[...taken].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
    for (const tr of TRANSITIONS) assert.ok((taken.get(tr.name) ?? 0) > 0, `the sequences take ${tr.name}`);

    let agreed = 0;
    const { z } = p;
    for (const w of samples) {
      const s = modelState(p, w.model);
      for (const inv of INVARIANTS) {
        for (const [i, clause] of inv.clauses(p.t, s).entries()) {
          const c = await p.check(`the model's state meets (${inv.id}.${i + 1})`, z.Not(clause));
          assert.equal(c.verdict, 'unsat', c.what);
        }
      }
      // The last call's steps, and each transition with small arguments: spec.ts's precondition says what the model's does.
      const probes: Step[] = [...w.lastSteps, ...TRANSITIONS.map((tr) => ({ transition: tr.name, args: { v: 1, p: 0, g: 0, c: 1, k: 0, slot: 0, account: 1, kind: Kind.ENCLAVE, parent: 1, child: 2 } }))];
      for (const step of probes) {
        const tr = TRANSITIONS.find((x) => x.name === step.transition) ?? assert.fail(`no transition ${step.transition}`);
        const args = concreteArgs(p, step.args);
        const says = w.model.pre(step);
        const pre = tr.pre(p.t, s, args);
        const c = await p.check(`${step.transition} ${JSON.stringify(step.args)}: spec.ts's precondition is ${says}`, says ? z.Not(pre) : pre);
        assert.equal(c.verdict, 'unsat', c.what);
        agreed++;
      }
    }
    t.diagnostic(`z3: ${samples.length} sampled states meet every invariant; ${agreed} preconditions agree with spec.ts`);
  } finally {
    await p.close();
  }
});
