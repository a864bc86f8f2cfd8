// A fixture for booting small guests in-process: builds guest/test once, runs one VM, returns its end and output.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { silentLogger } from '../../src/base/log.js';
import { MicroVm, type VmEnd, type VmStats } from '../../src/hypervisor/vm.js';
import { projectRoot } from '../../src/images/paths.js';

let built = false;

export function testGuest(name: string): string {
  const dir = path.join(projectRoot(), 'guest', 'test');
  if (!built) {
    execFileSync('make', ['-s', '-C', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    built = true;
  }
  return path.join(dir, 'build', `${name}.elf`);
}

export interface GuestRun {
  readonly end: VmEnd;
  readonly output: string;
  readonly stats: VmStats;
  readonly markers: number[];
}

export async function runGuest(kernel: string, opts: { cmdline?: string; vcpus?: number; memoryMiB?: number;
  initrd?: Uint8Array; stopAfterMs?: number } = {}): Promise<GuestRun> {
  let output = '';
  const markers: number[] = [];
  const vm = new MicroVm({
    kernel: readFileSync(kernel), initrd: opts.initrd, cmdline: opts.cmdline ?? '', vcpus: opts.vcpus ?? 1,
    memoryMiB: opts.memoryMiB ?? 64, log: silentLogger,
    output: (b) => { output += Buffer.from(b).toString('latin1'); },
    onMarker: (v) => markers.push(v),
  });
  const timer = opts.stopAfterMs ? setTimeout(() => vm.stop(), opts.stopAfterMs) : undefined;
  const end = await vm.run();
  if (timer) clearTimeout(timer);
  return { end, output, stats: vm.stats(), markers };
}
