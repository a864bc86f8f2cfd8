// The isolation engine's proofs, run by z3 (src/isolation/spec.ts, proofs.ts): every invariant for every transition,
// the frame condition, a witness run that takes every transition (so no proof is vacuous), and the planted bugs,
// each of which must break the clause it names on a concrete state, so that the proofs are seen to be able to fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  concreteArgs, counterexample, openProver, proveSpecification, witnessIndex, witnessState, type Check, type Prover,
} from '../../src/isolation/proofs.js';
import { allInvariants, frame, INVARIANTS, TRANSITIONS, Terms, type State } from '../../src/isolation/spec.js';
import { PLANTED_BUGS } from './planted-bugs.js';

/** Generous: each check takes milliseconds; this only stops a solver that went astray. */
const TIMEOUT_MS = 120_000;

let prover: Prover | undefined;
async function z3(): Promise<Prover> {
  prover ??= await openProver(TIMEOUT_MS);
  return prover;
}
test.after(async () => {
  await prover?.close();
});

function line(c: Check): string {
  return `${c.verdict.padEnd(7)} ${c.ms.toFixed(0).padStart(6)} ms  ${c.what}`;
}

test('z3 proves every invariant kept by every transition, each frame condition, and a witness run taking every transition', { timeout: 300_000 }, async (t) => {
  const p = await z3();
  const report = await proveSpecification(p);
  const slowest = [...report.checks].sort((a, b) => b.ms - a.ms).slice(0, 3);
  t.diagnostic(`proofs: ${report.checks.length} checks (${TRANSITIONS.length} transitions, ${INVARIANTS.length} invariants) in ${(report.ms / 1000).toFixed(1)} s`);
  for (const c of slowest) t.diagnostic(`  slowest: ${line(c)}`);
  assert.deepEqual(report.failed.map(line), [], 'every obligation proved');
  const proved = report.checks.filter((c) => c.what.includes(' keeps (')).length;
  assert.equal(proved, TRANSITIONS.length * INVARIANTS.reduce((n, inv) => n + inv.clauses(p.t, witnessState(p, 0)).length, 0), 'each clause of each invariant, for each transition');
});

test('each planted bug breaks the clause it names: z3 confirms a counterexample from the witness run', { timeout: 120_000 }, async (ctx) => {
  const p = await z3();
  const t = new Terms(p.z);
  let caught = 0;
  for (const bug of PLANTED_BUGS) {
    const s = witnessState(p, witnessIndex(bug.before.transition, bug.before.args));
    const a = concreteArgs(p, bug.args);
    // Else the counterexample would hold for want of a state meeting the invariants.
    const start = await p.check(`${bug.transition.name}: its state meets every invariant and its precondition`, p.z.Not(p.z.And(allInvariants(t, s), bug.transition.pre(t, s, a))));
    assert.equal(start.verdict, 'unsat', start.what);
    const broken = bug.breaks === 'frame'
      ? (after: State) => frame(t, s, after, bug.transition.touches?.(a, s) ?? [])
      : (after: State) => {
        const inv = INVARIANTS.find((i) => i.id === bug.breaks) ?? assert.fail(`no invariant ${bug.breaks}`);
        return inv.clauses(t, after)[bug.clause - 1] ?? assert.fail(`(${bug.breaks}) has no clause ${bug.clause}`);
      };
    const c = await counterexample(p, `${bug.transition.name} breaks (${bug.breaks}.${bug.clause})`, bug.transition, s, a, broken);
    assert.equal(c.verdict, 'unsat', `${c.what}: the counterexample is confirmed`);
    ctx.diagnostic(`planted bug caught in ${c.ms.toFixed(0)} ms: ${bug.says} -> breaks (${bug.breaks}.${bug.clause})`);
    caught++;
  }
  ctx.diagnostic(`planted bugs: ${caught} of ${PLANTED_BUGS.length} caught`);
  assert.deepEqual(new Set(PLANTED_BUGS.map((b) => b.breaks)), new Set([...INVARIANTS.map((i) => i.id), 'frame']), 'a planted bug for every invariant and the frame condition');
});
