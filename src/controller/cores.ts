// The host's cores as placement sees them: groups of hardware threads that share a physical core (SMT siblings,
// from sysfs). An instance gets whole groups, never shared with another instance, so two accounts never run on the
// same physical core and an instance's vCPUs are pinned to its groups.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** "0-3,8" -> [0, 1, 2, 3, 8] */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',').filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let c = a; c <= (b ?? a); c++) out.push(c);
  }
  return out;
}

const CPU_DIR = '/sys/devices/system/cpu';

/** Sibling groups of the CPUs this process may use, in order of their first CPU. */
export function coreGroups(): number[][] {
  const allowed = new Set(process.platform === 'linux' && existsSync('/proc/self/status')
    ? parseCpuList(/^Cpus_allowed_list:\s*(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '')
    : Array.from({ length: availableParallelism() }, (_, i) => i));
  const groups = new Map<string, number[]>();
  const cpus = existsSync(CPU_DIR) ? readdirSync(CPU_DIR).map((n) => /^cpu(\d+)$/.exec(n)?.[1]).filter((n): n is string => n !== undefined).map(Number) : [];
  for (const cpu of cpus.sort((a, b) => a - b)) {
    if (!allowed.has(cpu)) continue;
    const file = `${CPU_DIR}/cpu${cpu}/topology/thread_siblings_list`;
    const siblings = existsSync(file) ? parseCpuList(readFileSync(file, 'utf8')).filter((c) => allowed.has(c)) : [cpu];
    const key = siblings.join(',');
    if (!groups.has(key)) groups.set(key, siblings);
  }
  return [...groups.values()];
}

/** Whole groups, from the free ones, with at least `threads` hardware threads; undefined if they are not there. */
export function pickGroups(free: readonly number[][], threads: number): number[] | undefined {
  const picked: number[] = [];
  for (const g of free) {
    if (picked.length >= threads) break;
    picked.push(...g);
  }
  return picked.length >= threads ? picked : undefined;
}
