// Asks z3 to prove the specification (spec.ts): the initial state satisfies every invariant; every transition, from
// any state that satisfies them all and meets its precondition, leads to a state that satisfies each of them and
// keeps the frame condition; and, so that none of this holds only because the assumptions contradict each other,
// each transition's assumptions can hold together: a witness run from the start-up state takes every transition from
// a state meeting every invariant (asking z3 for a model of the quantified invariants instead runs out of memory). A proof is z3 finding the negation unsatisfiable over unbounded
// arrays (no size is fixed); `check` with a wrong transition shows that a proof can fail (a counterexample).
import { init, killThreads } from 'z3-solver';
import {
  allInvariants, argsOf, ENGINE, frame, FREE, INVARIANTS, Kind, Life, NO_ACCOUNT, NONE, symbolicState, Terms,
  TRANSITIONS, type Args, type B, type Int, type Invariant, type State, type Transition, type Z,
} from './spec.js';

export type Verdict = 'unsat' | 'sat' | 'unknown';

export interface Check {
  /** What was asked, e.g. "memoryCarve keeps (c)". */
  readonly what: string;
  /** unsat: proved (or, for a vacuity check, the assumptions contradict); sat: a model (a counterexample). */
  readonly verdict: Verdict;
  readonly ms: number;
}

export interface Prover {
  readonly z: Z;
  readonly t: Terms;
  /** Whether `formulas` together have a model. */
  check(what: string, ...formulas: B[]): Promise<Check>;
  close(): Promise<void>;
}

/**
 * z3-solver frees its objects from a FinalizationRegistry, on the main thread, while `check` runs on a worker thread
 * of the same WebAssembly instance: a collection during a check then corrupts z3's memory now and then ("memory
 * access out of bounds"). The prover's registry only queues those frees, and runs them between checks.
 */
const deferredFrees: Array<() => void> = [];
const NativeRegistry = globalThis.FinalizationRegistry;

class DeferredRegistry<T> {
  private readonly inner: FinalizationRegistry<T>;
  constructor(free: (held: T) => void) {
    this.inner = new NativeRegistry<T>((held) => deferredFrees.push(() => free(held)));
  }
  register(target: object, held: T, token?: object): void {
    this.inner.register(target, held, token);
  }
  unregister(token: object): boolean {
    return this.inner.unregister(token);
  }
}

function runDeferredFrees(): void {
  for (const free of deferredFrees.splice(0)) free();
}

async function initDeferringFrees(): Promise<Awaited<ReturnType<typeof init>>> {
  globalThis.FinalizationRegistry = DeferredRegistry as unknown as FinalizationRegistryConstructor;
  try {
    return await init();
  } finally {
    globalThis.FinalizationRegistry = NativeRegistry;
  }
}

/** One z3 context for a run of checks; each check in a solver of its own with `timeoutMs`. */
export async function openProver(timeoutMs: number): Promise<Prover> {
  const api = await initDeferringFrees();
  const z = api.Context('main');
  const t = new Terms(z);
  return {
    z,
    t,
    async check(what, ...formulas) {
      runDeferredFrees();
      const solver = new z.Solver();
      solver.set('timeout', timeoutMs);
      solver.add(...formulas);
      const started = performance.now();
      const verdict = await solver.check();
      return { what, verdict, ms: performance.now() - started };
    },
    async close() {
      // z3's worker threads would keep the process alive.
      await killThreads(api.em);
    },
  };
}

/** The state the engine starts in: every page free (scrubbed) or the engine's, nothing mapped, shared or created. */
function initial(t: Terms, s: State): B {
  const { z } = t;
  const [p, c, v, g, k, x] = ['p', 'c', 'v', 'g', 'k', 'x'].map((n) => z.Int.const(`${n}!init`)) as [Int, Int, Int, Int, Int, Int];
  const owner = s.owner.select(p);
  return z.And(
    z.ForAll([p], z.And(z.Or(owner.eq(FREE), z.And(owner.eq(ENGINE), p.ge(0))), z.Eq(s.engine.select(p), owner.eq(ENGINE)),
      s.scrubbed.select(p), s.carvedFrom.select(p).eq(0))),
    z.ForAll([p, c], z.Not(s.shared.select(p, c))),
    z.ForAll([v, g], s.gmap.select(v, g).eq(NONE)),
    z.ForAll([v], z.And(s.life.select(v).eq(Life.UNUSED), s.nr.select(v).eq(0))),
    z.ForAll([c], z.Not(s.card.select(c))),
    z.ForAll([k], z.And(s.coreOwner.select(k).eq(NO_ACCOUNT), s.coreClean.select(k))),
    z.ForAll([v, k], z.Not(s.pinned.select(v, k))),
    z.ForAll([v, x], z.Not(s.slot.select(v, x))));
}

/** `tr` from a state satisfying every invariant, under its precondition: the state after, and what is assumed. */
function step(p: Prover, tr: Transition): { before: State; after: State; assumed: B; frameHolds: B } {
  const { z, t } = p;
  const before = symbolicState(z, `${tr.name}.s`);
  const a = argsOf(z, tr);
  const after = tr.post(t, before, a);
  const touched = tr.touches?.(a, before) ?? [];
  const frameHolds = tr.unchanged ? tr.unchanged(t, before, after, a) : frame(t, before, after, touched);
  return { before, after, assumed: z.And(allInvariants(t, before), tr.pre(t, before, a)), frameHolds };
}

/** Whether `tr` keeps `inv`, clause by clause: unsat means proved, sat gives a counterexample. */
async function keeps(p: Prover, tr: Transition, inv: Invariant): Promise<Check[]> {
  const { assumed, after } = step(p, tr);
  const out: Check[] = [];
  for (const [i, clause] of inv.clauses(p.t, after).entries()) out.push(await p.check(`${tr.name} keeps (${inv.id}.${i + 1})`, assumed, p.z.Not(clause)));
  return out;
}

function keepsFrame(p: Prover, tr: Transition): Promise<Check> {
  const { assumed, frameHolds } = step(p, tr);
  return p.check(`${tr.name} leaves ${tr.unchanged ? 'all but its card' : 'other VMs'} alone`, assumed, p.z.Not(frameHolds));
}

/** An array indexed by one integer holding `v` everywhere (stores then write a concrete state's entries). */
export function constant1<T>(z: Z, v: number | boolean): T {
  const I = z.Int.sort();
  return (typeof v === 'boolean' ? z.Array.K(I, z.Bool.val(v)) : z.Array.K(I, z.Int.val(v))) as unknown as T;
}

/** The same, indexed by two integers. */
export function constant2<T>(z: Z, v: number | boolean): T {
  const [a, b] = [z.Int.const('a!k2'), z.Int.const('b!k2')];
  return (typeof v === 'boolean' ? z.Lambda([a, b], z.Bool.val(v)) : z.Lambda([a, b], z.Int.val(v))) as unknown as T;
}

/** The engine's state at start-up, as concrete arrays: page `enginePage` is the engine's, every other page free. */
function startState(p: Prover, enginePage: number): State {
  const k1 = <T>(v: number | boolean): T => constant1<T>(p.z, v);
  const k2 = <T>(v: number | boolean): T => constant2<T>(p.z, v);
  return {
    owner: k1<State['owner']>(FREE).store(enginePage, ENGINE), engine: k1<State['engine']>(false).store(enginePage, true),
    scrubbed: k1(true), shared: k2(false), gmap: k2(NONE), gfn: k1(0), carvedFrom: k1(0), carvedGfn: k1(0), nr: k1(0), perm: k2(0),
    idx: k1(0), life: k1(Life.UNUSED), account: k1(0), parent: k1(0), kind: k1(0), card: k1(false), coreOwner: k1(NO_ACCOUNT),
    coreClean: k1(true), pinned: k2(false), slot: k2(false),
  };
}

/** One step of a witness: a transition and its arguments (the ones it does not read are 0). */
export interface WitnessStep {
  readonly transition: string;
  readonly args: Partial<Record<keyof Args, number>>;
}

/**
 * A run from the start-up state that takes every transition at least once: the proof that each transition's
 * assumptions (every invariant and its precondition) can hold together, so no proof about it is vacuous. Each
 * step is checked to meet its precondition in a state that satisfies every invariant.
 */
const WITNESS: readonly WitnessStep[] = [
  { transition: 'vmCreate', args: { v: 1, account: 7, kind: Kind.INSTANCE, parent: 0 } },
  { transition: 'memoryDonate', args: { v: 1, p: 0, g: 0 } },
  { transition: 'vmRun', args: { v: 1 } },
  { transition: 'memoryDonate', args: { v: 1, p: 1, g: 1 } },
  { transition: 'cardAdmit', args: { c: 3 } },
  { transition: 'memoryShare', args: { v: 1, p: 0, c: 3 } },
  { transition: 'coreAssign', args: { k: 0, account: 7 } },
  { transition: 'corePin', args: { v: 1, k: 0 } },
  { transition: 'slotBind', args: { v: 1, slot: 2 } },
  { transition: 'vmPause', args: { v: 1 } },
  { transition: 'vmCreate', args: { v: 2, account: 7, kind: Kind.ENCLAVE, parent: 1 } },
  { transition: 'slotBind', args: { v: 2, slot: 0 } },
  { transition: 'memoryCarve', args: { parent: 1, p: 1, child: 2, g: 0 } },
  { transition: 'memoryUnshare', args: { v: 1, p: 0, c: 3 } },
  { transition: 'memoryShare', args: { v: 1, p: 0, c: 3 } },
  { transition: 'cardRevokeAll', args: { c: 3 } },
  { transition: 'memoryReclaim (returned)', args: { v: 2, p: 1 } },
  { transition: 'memoryReclaim (scrubbed)', args: { v: 1, p: 0 } },
  { transition: 'coreUnpin', args: { v: 1, k: 0 } },
  { transition: 'coreRelease', args: { k: 0 } },
  { transition: 'slotUnbind', args: { v: 1, slot: 2 } },
  { transition: 'vmBeginDestroy', args: { v: 2 } },
  { transition: 'slotUnbind', args: { v: 2, slot: 0 } },
  { transition: 'vmFinishDestroy', args: { v: 2 } },
  { transition: 'memoryReclaim (scrubbed)', args: { v: 1, p: 1 } },
  { transition: 'vmCreate', args: { v: 3, account: 7, kind: Kind.ENCLAVE, parent: 1 } },
  { transition: 'vmBeginDestroy', args: { v: 1 } },
  { transition: 'vmBeginDestroy', args: { v: 3 } },
  { transition: 'vmFinishDestroy', args: { v: 3 } },
  { transition: 'vmFinishDestroy', args: { v: 1 } },
];

/** The page the witness run starts with as the engine's own. */
const ENGINE_PAGE = 100;

function transition(name: string): Transition {
  const tr = TRANSITIONS.find((x) => x.name === name);
  if (!tr) throw new Error(`no transition ${name}`);
  return tr;
}

/** Concrete arguments: the ones given, the rest 0. */
export function concreteArgs(p: Prover, args: Readonly<Partial<Record<keyof Args, number>>>): Args {
  return Object.fromEntries(Object.keys(argsOf(p.z, transition('vmRun'))).map((k) => [k, p.z.Int.val(args[k as keyof Args] ?? 0)])) as unknown as Args;
}

/** The witness run's state after its first `steps` steps. */
export function witnessState(p: Prover, steps: number): State {
  let s = startState(p, ENGINE_PAGE);
  for (const w of WITNESS.slice(0, steps)) s = transition(w.transition).post(p.t, s, concreteArgs(p, w.args));
  return s;
}

/** The index in WITNESS of the first step taking `name` with these arguments (the state before it: witnessState(i)). */
export function witnessIndex(name: string, args: WitnessStep['args']): number {
  const i = WITNESS.findIndex((w) => w.transition === name && JSON.stringify(w.args) === JSON.stringify(args));
  if (i < 0) throw new Error(`the witness has no step ${name} ${JSON.stringify(args)}`);
  return i;
}

/** Each witness step as a check: unsat means its state satisfies every invariant and the step's precondition. */
async function checkWitness(p: Prover, steps: readonly WitnessStep[], record: (c: Check) => void): Promise<void> {
  const { z, t } = p;
  let s = startState(p, ENGINE_PAGE);
  for (const [i, w] of steps.entries()) {
    const tr = transition(w.transition);
    const a = concreteArgs(p, w.args);
    record(await p.check(`witness step ${i + 1}: ${tr.name} is taken from a state meeting every invariant`,
      z.Not(z.And(allInvariants(t, s), tr.pre(t, s, a)))));
    s = tr.post(t, s, a);
  }
}

/**
 * Whether `tr` from the concrete state `s` with arguments `a` is a counterexample: every invariant holds before, its
 * precondition holds, and `broken` (a clause of the state after, or the frame condition) does not. Unsat: it is.
 */
export function counterexample(p: Prover, what: string, tr: Transition, s: State, a: Args, broken: (after: State) => B): Promise<Check> {
  const { z, t } = p;
  return p.check(what, z.Not(z.And(allInvariants(t, s), tr.pre(t, s, a), z.Not(broken(tr.post(t, s, a))))));
}

export interface ProofReport {
  readonly checks: readonly Check[];
  readonly failed: readonly Check[];
  readonly ms: number;
}

/** Every obligation of the specification: the initial state, each transition against each invariant, frames, vacuity. */
export async function proveSpecification(p: Prover, progress: (c: Check) => void = () => undefined): Promise<ProofReport> {
  const started = performance.now();
  const checks: Check[] = [];
  const failed: Check[] = [];
  const record = (c: Check, expected: Verdict): void => {
    checks.push(c);
    if (c.verdict !== expected) failed.push(c);
    progress(c);
  };
  const s0 = symbolicState(p.z, 'init');
  for (const inv of INVARIANTS) {
    for (const [i, clause] of inv.clauses(p.t, s0).entries()) record(await p.check(`the initial state satisfies (${inv.id}.${i + 1})`, initial(p.t, s0), p.z.Not(clause)), 'unsat');
  }
  await checkWitness(p, WITNESS, (c) => record(c, 'unsat'));
  const missing = TRANSITIONS.filter((tr) => !WITNESS.some((w) => w.transition === tr.name));
  if (missing.length) throw new Error(`the witness never takes ${missing.map((tr) => tr.name).join(', ')}`);
  for (const tr of TRANSITIONS) {
    for (const inv of INVARIANTS) for (const c of await keeps(p, tr, inv)) record(c, 'unsat');
    record(await keepsFrame(p, tr), 'unsat');
  }
  return { checks, failed, ms: performance.now() - started };
}
