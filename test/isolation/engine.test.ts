// The isolation engine's ownership core: each hypercall's named refusals, and, over random sequences of calls
// (fast-check), the invariants after every call, a refused call changing nothing, and a call about one VM changing
// no other VM's memory, cores or slots (carving and giving back name both VMs they touch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IsolationEngine, IsolationError, PAGE_BYTES, type IsolationErrorCode } from '../../src/isolation/engine.js';
import { violations } from '../../src/isolation/invariants.js';
import { apply, call, resolve, type Call } from './calls.js';

function refused(f: () => unknown, code: IsolationErrorCode): void {
  assert.throws(f, (e: unknown) => e instanceof IsolationError && e.code === code, `refused with ${code}`);
}

const MiB = 256; // pages

test('a VM\'s life: memory, a run, a pause, and a destroy that waits for everything to come back', () => {
  const e = new IsolationEngine(4 * MiB, 2);
  const vm = e.vmCreate('acct');
  refused(() => e.vmRun(vm), 'VmHasNoMemory');
  const low = e.memoryDonate(vm, 0, MiB);
  refused(() => e.memoryDonate(vm, PAGE_BYTES * 10, 1), 'RangeInUse');
  refused(() => e.memoryDonate(vm, 123, 1), 'BadRange');
  refused(() => e.memoryDonate(vm, 64 * MiB * PAGE_BYTES, 4 * MiB), 'OutOfMemory');
  refused(() => e.memoryShare(vm, low, 'block'), 'NoSuchCard');
  e.cardAdmit('block');
  refused(() => e.cardAdmit('block'), 'CardAdmitted');
  e.memoryShare(vm, low, 'block');
  refused(() => e.memoryShare(vm, low, 'block'), 'AlreadyShared');
  e.slotBind(vm, 0);
  refused(() => e.slotBind(vm, 0), 'SlotBound');
  refused(() => e.slotBind(vm, 16), 'BadSlot');
  e.coreAssign(1, 'acct');
  refused(() => e.coreAssign(1, 'other'), 'CoreOwned');
  e.corePin(vm, 1);
  refused(() => e.coreRelease(1), 'CoreInUse');
  e.vmRun(vm);
  refused(() => e.memoryReclaim(vm, low), 'VmRunning');
  e.vmBeginDestroy(vm);
  refused(() => e.memoryDonate(vm, 2 * MiB * PAGE_BYTES, 1), 'VmDying');
  refused(() => e.vmFinishDestroy(vm), 'VmNotEmpty');
  refused(() => e.memoryReclaim(vm, low), 'RegionShared');
  assert.equal(e.cardRevokeAll('block'), 1);
  refused(() => e.cardRevokeAll('block'), 'NoSuchCard');
  assert.deepEqual(e.memoryReclaim(vm, low), { kind: 'scrubbed' });
  e.slotUnbind(vm, 0);
  e.coreUnpin(vm, 1);
  e.vmFinishDestroy(vm);
  e.coreRelease(1);
  assert.equal(e.free, 4 * MiB);
  assert.equal(e.coreRecord(1)?.clean, true);
  refused(() => e.vmRun(vm), 'NoSuchVm');
  assert.deepEqual(violations(e), []);
});

test('an enclave is carved from its paused parent and its memory goes back to it', () => {
  const e = new IsolationEngine(4 * MiB, 2);
  const parent = e.vmCreate('acct');
  const region = e.memoryDonate(parent, 0, 2 * MiB);
  refused(() => e.vmCreate('other', 'enclave', parent), 'BadParent');
  refused(() => e.vmCreate('acct', 'instance', parent), 'BadParent');
  const enclave = e.vmCreate('acct', 'enclave', parent);
  e.vmRun(parent);
  refused(() => e.memoryCarve(parent, region, MiB, MiB / 2, enclave, 0), 'VmRunning');
  e.vmPause(parent);
  refused(() => e.memoryCarve(parent, region, 2 * MiB - 1, 2, enclave, 0), 'BadRange');
  const carved = e.memoryCarve(parent, region, MiB, MiB / 2, enclave, 0);
  assert.equal(e.free, 2 * MiB, 'carving takes nothing from the pool');
  const parentRegions = [...e.vmRecord(parent)?.regions ?? []].map((id) => e.region(id));
  assert.deepEqual(parentRegions.map((r) => [r?.gpa, r?.pages]), [[0, MiB], [(MiB + MiB / 2) * PAGE_BYTES, MiB / 2]]);
  assert.deepEqual(e.region(carved)?.carvedFrom, { vm: parent, gpa: MiB * PAGE_BYTES });
  refused(() => e.memoryReclaim(parent, carved), 'RegionNotOwned');
  e.vmRun(enclave);
  refused(() => e.vmFinishDestroy(parent), 'VmNotDying');
  e.vmBeginDestroy(enclave);
  const back = e.memoryReclaim(enclave, carved);
  assert.equal(back.kind, 'returned');
  assert.deepEqual(back.kind === 'returned' && e.region(back.region), { id: back.kind === 'returned' ? back.region : 0, owner: parent, gpa: MiB * PAGE_BYTES, pages: MiB / 2, shares: new Set(), carvedFrom: undefined });
  e.vmFinishDestroy(enclave);
  assert.deepEqual(violations(e), []);
});

// ---- random sequences ----

/** The VMs a call may change: the one it names (both, for a carve; the parent too, when memory goes back). */
function touched(e: IsolationEngine, c: Call): Set<number> | undefined {
  switch (c.op) {
    case 'vmCreate': case 'cardAdmit': case 'cardRevokeAll': case 'coreAssign': case 'coreRelease': return undefined;
    case 'memoryCarve': return new Set([c.parent, c.child]);
    case 'memoryReclaim': {
      const from = e.region(c.region)?.carvedFrom?.vm;
      return new Set([c.vm, ...(from === undefined ? [] : [from])]);
    }
    default: return new Set([c.vm]);
  }
}

function picture(e: IsolationEngine): string {
  const sets = (_: string, v: unknown): unknown => (v instanceof Set ? [...v as Set<unknown>].sort() : v);
  const cores = Array.from({ length: e.coreCount }, (_, i) => e.coreRecord(i));
  return JSON.stringify({ free: e.free, vms: e.allVms(), regions: e.allRegions(), cores, cards: e.admittedCards }, sets);
}

function vmPicture(e: IsolationEngine, vm: number): string {
  const v = e.vmRecord(vm);
  const sets = (_: string, x: unknown): unknown => (x instanceof Set ? [...x as Set<unknown>].sort() : x);
  return JSON.stringify({ v, regions: [...v?.regions ?? []].map((id) => e.region(id)) }, sets);
}

test('random hypercall sequences: invariants hold, refusals change nothing, a call leaves other VMs alone', () => {
  fc.assert(fc.property(fc.array(call, { minLength: 20, maxLength: 100, size: 'max' }), (calls) => {
    const e = new IsolationEngine(40, 4);
    let accepted = 0;
    for (const generated of calls) {
      const c = resolve(e, generated);
      const before = picture(e);
      const others = e.allVms().map((v) => v.id).filter((id) => !touched(e, c)?.has(id) && touched(e, c) !== undefined);
      const otherBefore = others.map((id) => vmPicture(e, id));
      try {
        apply(e, c);
        accepted++;
      } catch (err) {
        if (!(err instanceof IsolationError)) throw err;
        assert.equal(picture(e), before, `refused ${JSON.stringify(c)} (${err.code}) changed nothing`);
      }
      assert.deepEqual(violations(e), [], `after ${JSON.stringify(c)}`);
      assert.deepEqual(others.map((id) => vmPicture(e, id)), otherBefore, `${JSON.stringify(c)} left other VMs alone`);
    }
    return accepted >= 0;
  }), { numRuns: 400 });
});

test('random sequences reach the interesting states (the generator is not vacuous)', () => {
  let carved = 0, returned = 0, finished = 0;
  fc.assert(fc.property(fc.array(call, { minLength: 40, maxLength: 120, size: 'max' }), (calls) => {
    const e = new IsolationEngine(40, 4);
    for (const generated of calls) {
      const c = resolve(e, generated);
      const vms = e.allVms().length;
      try {
        const result = apply(e, c);
        if (c.op === 'memoryCarve') carved++;
        if (c.op === 'vmFinishDestroy' && e.allVms().length < vms) finished++;
        if (c.op === 'memoryReclaim' && (result as { kind: string }).kind === 'returned') returned++;
      } catch (err) {
        if (!(err instanceof IsolationError)) throw err;
      }
    }
  }), { numRuns: 300 });
  assert.ok(carved > 0 && finished > 0 && returned > 0, `carves ${carved}, finished VMs ${finished}, reclaims ${returned}`);
});
