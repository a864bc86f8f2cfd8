// Tests that need /dev/kvm run whenever it is usable, and say so loudly when it is not.
import { accessSync, constants } from 'node:fs';
import type { TestContext } from 'node:test';

export function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Skips the test with a line on stderr that nobody can miss. */
export function skipLoudly(t: TestContext, why: string): false {
  const msg = `SKIP (${why}): ${t.name}`;
  process.stderr.write(`\n*** ${msg} ***\n`);
  t.skip(msg);
  return false;
}

/** Skips the test loudly when /dev/kvm is missing; returns whether the test may go on. */
export function requireKvm(t: TestContext): boolean {
  return kvmUsable() || skipLoudly(t, 'no usable /dev/kvm');
}
