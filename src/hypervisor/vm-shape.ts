// A VM's shape as a caller asks for it, checked before anything is made: in the hypervisor, and in `azote run`
// before it starts one (this module stays small: the CLI loads it on every run).
import { readFileSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import { MAX_MPTABLE_CPUS } from '../boot/mptable.js';

const MIN_MEMORY_MIB = 16;

export function hostAvailableMemoryMiB(): number {
  let meminfo: string;
  try {
    meminfo = readFileSync('/proc/meminfo', 'utf8');
  } catch {
    return Number.MAX_SAFE_INTEGER; // a jailed hypervisor sees no /proc: its parent (the controller, azote run) checked
  }
  const m = /MemAvailable:\s+(\d+) kB/.exec(meminfo);
  return m ? Math.floor(Number(m[1]) / 1024) : Number.MAX_SAFE_INTEGER;
}

export function validateVmShape(vcpus: number, memoryMiB: number): void {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_MPTABLE_CPUS) {
    throw new AzoteError('BadVcpus', `--vcpus ${vcpus} is out of range`, `use 1 to ${MAX_MPTABLE_CPUS}`);
  }
  if (!Number.isInteger(memoryMiB) || memoryMiB < MIN_MEMORY_MIB) {
    throw new AzoteError('BadMemory', `--mem ${memoryMiB} is too small`, `use at least ${MIN_MEMORY_MIB} (MiB)`);
  }
  const available = hostAvailableMemoryMiB();
  if (memoryMiB > available) {
    throw new AzoteError('MemoryTooLarge', `--mem ${memoryMiB} MiB is more than this host can give (${available} MiB available)`,
      `use --mem ${Math.max(MIN_MEMORY_MIB, Math.floor(available / 2))} or less`);
  }
}
