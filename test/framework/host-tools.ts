// Host programs some tests compare against or drive. `npm test` provisions them first, so a test that cannot find
// one fails naming the package; it never skips.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { skipLoudly } from './kvm.js';

/** Skips loudly unless this process may create network devices (CAP_NET_ADMIN, bit 12 of the effective set). */
export function requireNetAdmin(t: TestContext): boolean {
  const eff = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return ((BigInt(`0x${eff}`) >> 12n) & 1n) === 1n || skipLoudly(t, 'creating a TAP device needs CAP_NET_ADMIN');
}

/** Fails the test unless `program --version` runs: `npm test` provisions every tool (azote setup --tests), so a missing one is a broken host. */
function requireTool(program: string, pkg: string): void {
  try {
    execFileSync(program, ['--version'], { stdio: 'ignore' });
  } catch (e) {
    throw new Error(`${program} cannot be run (${(e as Error).message}): npm test installs it (azote setup --tests); `
      + `or apt-get install ${pkg}`, { cause: e });
  }
}

/** Debian's QEMU, which the interoperability tests run. */
export function requireQemu(): void {
  requireTool('qemu-system-x86_64', 'qemu-system-x86');
}

/** Debian's AWS CLI v2 (an older `aws` elsewhere on PATH may shadow it, so it is called by its path). */
export const AWS_CLI = '/usr/bin/aws';

/** Debian's AWS CLI, which the EC2 API tests drive. */
export function requireAwsCli(): void {
  requireTool(AWS_CLI, 'awscli');
}

/** Boots our guest under QEMU (microvm, TCG, shared memfd memory for vhost-user) with `extra` devices; its status and output. */
export function runQemuGuest(kernel: string, initrd: string, append: string, extra: readonly string[], timeoutMs = 240_000): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const q = spawn('qemu-system-x86_64', ['-M', 'microvm,acpi=off,memory-backend=mem', '-object',
      'memory-backend-memfd,id=mem,size=256M,share=on', '-m', '256', '-accel', 'tcg', '-smp', '1', '-kernel', kernel,
      '-initrd', initrd, '-append', `console=ttyS0 reboot=k panic=-1 quiet ${append}`.trim(), ...extra,
      '-global', 'virtio-mmio.force-legacy=false', '-nodefaults', '-serial', 'stdio', '-display', 'none', '-no-reboot',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    q.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    q.stderr.setEncoding('utf8').on('data', (s: string) => { out += s; });
    const timer = setTimeout(() => q.kill('SIGKILL'), timeoutMs);
    q.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
  });
}
