// Host programs some tests compare against; a test without them is skipped with a loud line, never weakened.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { skipLoudly } from './kvm.js';

/** False when the host has `cpio`; otherwise the reason to skip, already announced on stderr. */
export function skipWithoutCpio(what: string): false | string {
  try {
    execFileSync('cpio', ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    const reason = 'the host has no cpio (apt-get install cpio)';
    process.stderr.write(`SKIPPING ${what}: ${reason}\n`);
    return reason;
  }
}

/** Skips loudly unless this process may create network devices (CAP_NET_ADMIN, bit 12 of the effective set). */
export function requireNetAdmin(t: TestContext): boolean {
  const eff = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  return ((BigInt(`0x${eff}`) >> 12n) & 1n) === 1n || skipLoudly(t, 'creating a TAP device needs CAP_NET_ADMIN');
}

/** Skips loudly unless Debian's QEMU is installed (the interoperability tests run it). */
export function requireQemu(t: TestContext): boolean {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return skipLoudly(t, 'qemu-system-x86_64 is not installed: apt-get install qemu-system-x86');
  }
}

/** Debian's AWS CLI v2 (an older `aws` elsewhere on PATH may shadow it, so it is called by its path). */
export const AWS_CLI = '/usr/bin/aws';

/** Skips loudly unless Debian's AWS CLI is installed. */
export function requireAwsCli(t: TestContext): boolean {
  try {
    execFileSync(AWS_CLI, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return skipLoudly(t, `${AWS_CLI} is not installed: apt-get install awscli`);
  }
}
