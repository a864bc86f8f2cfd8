// Which memory this host's guests get, decided once from what KVM does with it (secret-probe.ts): secret memory
// (memfd_secret: out of the kernel's direct map, readable by no other process, never in a dump) where guests run on
// it, else a sealed memfd kept out of dumps. It is a host's property: the controller measures it into the security
// chip at start-up and every launch on the host uses it; `azote run` asks once per host kernel and keeps the answer.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { AzoteError } from '../base/errors.js';
import type { MemoryProbe } from './secret-probe.js';

export type GuestMemoryKind = 'secret' | 'memfd';

export interface MemoryProtection {
  readonly kind: GuestMemoryKind;
  /** Guests run without kvmclock: KVM cannot write its page into secret memory (it reaches pages by GUP). */
  readonly noKvmclock: boolean;
  /** Why guests are not on secret memory, when they are not. */
  readonly why?: string;
}

/** What a probe of secret memory says guests get; `wanted` 'memfd' keeps them off it whatever the probe said. */
export function chooseProtection(probe: MemoryProbe, wanted: GuestMemoryKind | 'auto' = 'auto'): MemoryProtection {
  if (wanted === 'memfd') return { kind: 'memfd', noKvmclock: false, why: 'asked for' };
  if (probe.usable) return { kind: 'secret', noKvmclock: !probe.kvmclock };
  if (wanted === 'secret') {
    throw new AzoteError('SecretMemoryUnavailable', `guests cannot run on secret memory on this host: ${probe.why}`,
      'leave guest memory to the host (auto), or use memfd');
  }
  return { kind: 'memfd', noKvmclock: false, why: probe.why };
}

/**
 * The kernel parameters a guest on this memory needs. Without kvmclock a guest learns its TSC's frequency from
 * nowhere else here (no PIT or HPET to calibrate against: it marks the TSC unstable and keeps time by jiffies), so it
 * is told: `tscKhz`, what KVM gives its vCPUs.
 */
export function protectionParams(p: Pick<MemoryProtection, 'noKvmclock'>, tscKhz: () => number): string[] {
  return p.noKvmclock ? ['no-kvmclock', `tsc_early_khz=${tscKhz()}`] : [];
}

/** One line for people: what is hidden from whom. */
export function describeProtection(p: MemoryProtection): string {
  if (p.kind === 'secret') {
    return `secret (memfd_secret: guest RAM is out of the host kernel's direct map and unreadable by other processes${p.noKvmclock ? '; guests run without kvmclock' : ''})`;
  }
  return `memfd (sealed, out of dumps, in a non-dumpable process: readable by host root${p.why ? `; secret memory not used: ${p.why}` : ''})`;
}

/** The measurement of the level in force: the same protection always gives the same digest. */
export function protectionMeasurement(p: MemoryProtection): { name: string; version: string; build: number; digest: string } {
  const canonical = JSON.stringify({ kind: p.kind, noKvmclock: p.noKvmclock });
  return { name: 'guest-memory', version: p.kind, build: 0, digest: createHash('sha384').update(canonical).digest('hex') };
}

const CACHE_FORMAT = 1;

/** What a remembered probe is valid for: a new host kernel, KVM module or format asks again. */
function cacheKey(flavour: string): string {
  return JSON.stringify({ format: CACHE_FORMAT, kernel: release(), flavour });
}

function parseProbe(v: unknown): MemoryProbe | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (r.usable === true && typeof r.kvmclock === 'boolean') return { usable: true, kvmclock: r.kvmclock };
  if (r.usable === false && typeof r.why === 'string' && r.why.length <= 400) return { usable: false, why: r.why };
  return undefined;
}

/**
 * What a probe of secret memory found on this host, as `file` remembers it for this kernel and KVM, or else as
 * `probe` finds it now (then remembered). A damaged or foreign file is asked again, never trusted.
 */
export async function rememberedProbe(file: string, flavour: string, probe: () => Promise<MemoryProbe>): Promise<MemoryProbe> {
  const key = cacheKey(flavour);
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { key?: unknown; probe?: unknown };
    const found = parseProbe(saved.probe);
    if (saved.key === key && found) return found;
  } catch {
    // none yet, or unreadable: probe
  }
  const found = await probe();
  try {
    writeFileSync(`${file}.new`, JSON.stringify({ key, probe: found }), { mode: 0o600 });
    renameSync(`${file}.new`, file);
  } catch {
    // a read-only data directory only costs the next run a probe
  }
  return found;
}
