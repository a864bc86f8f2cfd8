// What must hold of the isolation engine's state after every hypercall, whatever the calls before it (the model-based
// tests check it after each call; the proofs are stated over the same properties):
//   1. pages are conserved: the free pool and every region add up to the pool, none counted twice;
//   2. ownership is a bijection: a region's owner exists and lists it, and a VM lists only regions it owns;
//   3. a VM's regions never overlap in its guest address space (a guest address resolves to one owned region);
//   4. a free core is clean and runs nothing; a pinned core belongs to the pinned VM's account, both sides agree;
//   5. a running VM has memory; a VM carved from another names one that still exists;
//   6. slots are within range.
//   7. a region is shared only with admitted cards.
// Shares need no other rule: they live on regions, so (2) keeps them on existing VMs' memory only.
import { PAGE_BYTES, SLOTS_PER_VM, type IsolationEngine } from './engine.js';

export function violations(e: IsolationEngine): string[] {
  const out: string[] = [];
  const vms = new Map(e.allVms().map((v) => [v.id, v]));
  const regions = e.allRegions();
  const held = regions.reduce((n, r) => n + r.pages, 0);
  if (e.free < 0 || e.free + held !== e.poolPages) out.push(`pages: ${e.free} free + ${held} held != pool ${e.poolPages}`);
  for (const r of regions) {
    if (!Number.isSafeInteger(r.pages) || r.pages <= 0 || r.gpa % PAGE_BYTES !== 0) out.push(`region ${r.id}: ${r.pages} pages at ${r.gpa}`);
    if (!vms.get(r.owner)?.regions.has(r.id)) out.push(`region ${r.id}: its owner ${r.owner} does not list it`);
    for (const card of r.shares) if (!e.admittedCards.has(card)) out.push(`region ${r.id} is shared with ${card}, which is not admitted`);
  }
  const byId = new Map(regions.map((r) => [r.id, r]));
  for (const v of vms.values()) {
    const own = [...v.regions].map((id) => byId.get(id));
    for (const [i, r] of own.entries()) {
      if (!r || r.owner !== v.id) {
        out.push(`VM ${v.id} lists region ${[...v.regions][i]}, which is not its own`);
        continue;
      }
      for (const o of own.slice(i + 1)) {
        if (o && r.gpa < o.gpa + o.pages * PAGE_BYTES && o.gpa < r.gpa + r.pages * PAGE_BYTES) out.push(`VM ${v.id}: regions ${r.id} and ${o.id} overlap`);
      }
    }
    if (v.life === 'running' && v.regions.size === 0) out.push(`VM ${v.id} runs without memory`);
    if (v.parent !== undefined && !vms.has(v.parent)) out.push(`VM ${v.id}'s parent ${v.parent} is gone`);
    for (const s of v.slots) if (!Number.isSafeInteger(s) || s < 0 || s >= SLOTS_PER_VM) out.push(`VM ${v.id}: slot ${s}`);
    for (const c of v.cores) {
      const core = e.coreRecord(c);
      if (!core?.pinned.has(v.id)) out.push(`VM ${v.id} is pinned to core ${c}, which does not say so`);
      else if (core.owner !== v.account) out.push(`VM ${v.id} runs on core ${c} of account ${String(core.owner)}`);
    }
  }
  for (let c = 0; c < e.coreCount; c++) {
    const core = e.coreRecord(c);
    if (!core) continue;
    if (core.owner === undefined && (!core.clean || core.pinned.size)) out.push(`core ${c} is free but not clean or still pinned`);
    for (const vm of core.pinned) if (!vms.get(vm)?.cores.has(c)) out.push(`core ${c} names VM ${vm}, which is not pinned to it`);
  }
  return out;
}
