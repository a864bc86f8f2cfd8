// Random hypercalls for the engine's model-based tests: each call's numbers pick among what exists, so sequences
// reach carves, returns and destroys, and now and then name another VM's memory, as a hostile caller would.
import fc from 'fast-check';
import { IsolationEngine, PAGE_BYTES } from '../../src/isolation/engine.js';

export type Call =
  | { op: 'vmCreate'; account: string; enclave: boolean; parent: number }
  | { op: 'vmRun' | 'vmPause' | 'vmBeginDestroy' | 'vmFinishDestroy'; vm: number }
  | { op: 'memoryDonate'; vm: number; gpaPage: number; pages: number }
  | { op: 'memoryReclaim'; vm: number; region: number }
  | { op: 'memoryShare' | 'memoryUnshare'; vm: number; region: number; card: string }
  | { op: 'cardAdmit' | 'cardRevokeAll'; card: string }
  | { op: 'memoryCarve'; parent: number; region: number; offset: number; pages: number; child: number; gpaPage: number }
  | { op: 'coreAssign'; core: number; account: string }
  | { op: 'coreRelease'; core: number }
  | { op: 'corePin' | 'coreUnpin'; vm: number; core: number }
  | { op: 'slotBind' | 'slotUnbind'; vm: number; slot: number };

const vmId = fc.integer({ min: 1, max: 6 });
const regionId = fc.integer({ min: 1, max: 24 });
/** Region numbers above this name any VM's region. */
const HOSTILE_FROM = 20;
const account = fc.constantFrom('a', 'b');
const card = fc.constantFrom('blk', 'net');
const core = fc.integer({ min: -1, max: 3 });
const small = fc.integer({ min: 0, max: 12 });

export const call: fc.Arbitrary<Call> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('vmCreate' as const), account, enclave: fc.boolean(), parent: fc.integer({ min: 0, max: 6 }) }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constantFrom('vmRun' as const, 'vmPause' as const, 'vmBeginDestroy' as const, 'vmFinishDestroy' as const), vm: vmId }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('memoryDonate' as const), vm: vmId, gpaPage: small, pages: fc.integer({ min: 0, max: 6 }) }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('memoryReclaim' as const), vm: vmId, region: regionId }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constantFrom('memoryShare' as const, 'memoryUnshare' as const), vm: vmId, region: regionId, card }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constantFrom('cardAdmit' as const, 'cardRevokeAll' as const), card }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('memoryCarve' as const), parent: vmId, region: regionId, offset: fc.integer({ min: 0, max: 4 }), pages: fc.integer({ min: 0, max: 3 }), child: vmId, gpaPage: small }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('coreAssign' as const), core, account }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('coreRelease' as const), core }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constantFrom('corePin' as const, 'coreUnpin' as const), vm: vmId, core }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constantFrom('slotBind' as const, 'slotUnbind' as const), vm: vmId, slot: fc.integer({ min: -1, max: 16 }) }), weight: 1 },
);

/**
 * Numbers in a generated call pick among what exists (0 names something that does not): a VM among the VMs, a
 * region among that VM's regions, a carve's child among the parent's enclaves; so that sequences reach carves and
 * returns instead of mostly naming nothing.
 */
export function resolve(e: IsolationEngine, c: Call): Call {
  const pick = <T>(list: readonly T[], k: number, none: T): T => (k === 0 || list.length === 0 ? none : list[(k - 1) % list.length] ?? none);
  const vms = e.allVms().map((v) => v.id).sort((a, b) => a - b);
  const vm = (k: number): number => pick(vms, k, 999);
  const regionOf = (owner: number, k: number): number => pick([...e.vmRecord(owner)?.regions ?? []].sort((a, b) => a - b), k, 999);
  // The highest numbers name any VM's region: another VM's memory, as a hostile caller would.
  const hostile = (owner: number, k: number): number => (k > HOSTILE_FROM ? pick(e.allRegions().map((r) => r.id).sort((a, b) => a - b), k, 999) : regionOf(owner, k));
  switch (c.op) {
    case 'vmCreate': {
      // Mostly the parent's own account, so that enclaves get made; the other account is refused (BadParent).
      const parent = c.parent === 0 ? 0 : vm(c.parent);
      const own = e.vmRecord(parent)?.account;
      return { ...c, parent, account: own !== undefined && c.account === 'a' ? own : c.account };
    }
    case 'memoryReclaim': case 'memoryShare': case 'memoryUnshare': {
      const owner = vm(c.vm);
      return { ...c, vm: owner, region: hostile(owner, c.region) };
    }
    case 'memoryCarve': {
      const parent = vm(c.parent);
      const enclaves = e.allVms().filter((v) => v.parent === parent).map((v) => v.id);
      return { ...c, parent, region: hostile(parent, c.region), child: pick(enclaves, c.child, vm(c.child)) };
    }
    case 'cardAdmit': case 'cardRevokeAll': case 'coreAssign': case 'coreRelease': return c;
    default: return { ...c, vm: vm(c.vm) };
  }
}

export function apply(e: IsolationEngine, c: Call): unknown {
  switch (c.op) {
    case 'vmCreate': e.vmCreate(c.account, c.enclave ? 'enclave' : 'instance', c.parent === 0 ? undefined : c.parent); return;
    case 'vmRun': case 'vmPause': case 'vmBeginDestroy': case 'vmFinishDestroy': e[c.op](c.vm); return;
    case 'memoryDonate': e.memoryDonate(c.vm, c.gpaPage * PAGE_BYTES, c.pages); return;
    case 'memoryReclaim': return e.memoryReclaim(c.vm, c.region);
    case 'memoryShare': case 'memoryUnshare': e[c.op](c.vm, c.region, c.card); return;
    case 'cardAdmit': e.cardAdmit(c.card); return;
    case 'cardRevokeAll': e.cardRevokeAll(c.card); return;
    case 'memoryCarve': e.memoryCarve(c.parent, c.region, c.offset, c.pages, c.child, c.gpaPage * PAGE_BYTES); return;
    case 'coreAssign': e.coreAssign(c.core, c.account); return;
    case 'coreRelease': e.coreRelease(c.core); return;
    case 'corePin': case 'coreUnpin': e[c.op](c.vm, c.core); return;
    case 'slotBind': case 'slotUnbind': e[c.op](c.vm, c.slot); return;
  }
}

