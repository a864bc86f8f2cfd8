// Helpers every benchmark uses: settings from the environment, output, QEMU's version, /dev/kvm, run order.
import { accessSync, constants } from 'node:fs';
import { BenchError, runSync } from './proc.js';

export function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new BenchError(`${name}=${v} is not a positive integer`);
  return n;
}

export function qemuVersion(qemu: string): string {
  let out: string;
  try {
    out = runSync([qemu, '--version'], 'checking QEMU');
  } catch (e) {
    throw new BenchError(`${(e as Error).message}\n  the benchmarks compare with QEMU: install qemu-system-x86 `
      + `(apt-get install -y qemu-system-x86), or set QEMU=/path/to/qemu-system-x86_64`);
  }
  return out.split('\n')[0]?.trim() ?? 'unknown';
}

/** Why /dev/kvm cannot be used, or undefined when it can. */
export function kvmProblem(): string | undefined {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? '/dev/kvm does not exist' : `/dev/kvm is not usable (${code ?? String(e)})`;
  }
}

/** Rotates the order of `items` by `i`, so each variant takes each position in turn (interleaving). */
export function rotated<T>(items: readonly T[], i: number): T[] {
  const k = i % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A transient progress line, on a terminal only. */
export function progress(line: string): void {
  if (process.stderr.isTTY) process.stderr.write(`${line}\x1b[K\r`);
}
