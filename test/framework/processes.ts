// What tests look for among the host's processes (the hypervisors and cards a controller started): found by their
// command lines, their status and what their root holds; and a poll that waits for a condition with a deadline that
// only detects a hang.
import assert from 'node:assert/strict';
import { lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface HostProcess {
  readonly pid: number;
  readonly args: readonly string[];
}

/** Every process whose command line can be read now (a zombie's is empty, so it never matches below). */
export function hostProcesses(): HostProcess[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).flatMap((p) => {
    try {
      return [{ pid: Number(p), args: readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0') }];
    } catch {
      return []; // gone meanwhile
    }
  });
}

/** The pids whose command line has, for each of `parts`, an argument containing it. */
export function pidsWith(...parts: string[]): number[] {
  return hostProcesses().filter((p) => parts.every((part) => p.args.some((a) => a.includes(part)))).map((p) => p.pid);
}

/**
 * Of those, the node processes themselves: a jailed hypervisor or card, not the jail's tools above it (unshare stays
 * its parent), whose arguments name the entry too.
 */
export function nodePidsWith(...parts: string[]): number[] {
  return hostProcesses().filter((p) => p.args[0] === process.execPath && parts.every((part) => p.args.some((a) => a.includes(part))))
    .map((p) => p.pid);
}

/** Calls `probe` every `everyMs` until it gives a value; fails naming `what` after `tries` calls. */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined,
  { tries, everyMs }: { tries: number; everyMs: number }): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(everyMs);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A field of /proc/PID/status ("Uid", "NoNewPrivs", ...), as written there; empty when absent. */
export function procStatus(pid: number | string, field: string): string {
  return new RegExp(`^${field}:[ \\t]*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
}

/** A jail's /proc: its own process, pid 1 of its pid namespace, and nothing of the system. */
export const JAILED_PROC = ['1', 'self', 'thread-self'];

/**
 * Every path under `root` (a process's /proc/PID/root), as "/a/b", not descending into `skip`, through links or into
 * /proc (which shows processes, not files: JAILED_PROC says what a jail's holds).
 */
export function rootTree(root: string, skip: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel))) {
      const r = `${rel}/${name}`;
      out.push(r);
      const link = lstatSync(path.join(root, r), { throwIfNoEntry: false })?.isSymbolicLink() ?? false;
      if (r !== skip && r !== '/proc' && !link && statSync(path.join(root, r), { throwIfNoEntry: false })?.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}
