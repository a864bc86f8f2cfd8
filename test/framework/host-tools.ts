// Host programs some tests compare against; a test without them is skipped with a loud line, never weakened.
import { execFileSync } from 'node:child_process';

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
