// The processes a controller starts (cards and hypervisors), each written down in DATA_DIR/pids/NAME as its pid and
// its start time (field 22 of /proc/PID/stat, in clock ticks since boot): the pair names one process for good, where
// a pid alone may have been given to another process since. A controller that starts kills every one still alive
// that a crashed predecessor left behind (a card from a controller older than the parent-death signal, a hypervisor
// whose parent is its jail's unshare): it must own the volumes' locks and the network before it starts anything.
import { constants } from 'node:os';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../base/log.js';

/** How long a starting controller waits for the processes it killed to be gone. */
const REAP_WAIT_MS = 10_000;

/** The start time of process `pid`, or undefined when there is no such process or it has ended (a zombie). */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[0] === 'Z' ? undefined : fields[19];
}

export class PidFiles {
  constructor(private readonly dir: string) {}

  private file(name: string): string {
    return path.join(this.dir, encodeURIComponent(name));
  }

  /** Writes down `pid` as the process `name` (a card or an instance's hypervisor). */
  record(name: string, pid: number): void {
    const start = processStartTime(pid);
    if (start === undefined) return; // it has ended already
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file(name)}.tmp`;
    writeFileSync(tmp, `${pid} ${start}\n`, { mode: 0o600 });
    renameSync(tmp, this.file(name));
  }

  /** Forgets `name` if it is still `pid` (it ended; a restarted card may have written its successor's). */
  forget(name: string, pid: number): void {
    if (this.read(this.file(name))?.pid === pid) rmSync(this.file(name), { force: true });
  }

  /**
   * Kills each written-down process that still runs as that same process and forgets them all; resolves once those
   * killed have ended (their locks and sockets released), with their pids.
   */
  async reapStale(log: Logger): Promise<number[]> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const killed: Array<{ pid: number; start: string }> = [];
    for (const name of names) {
      const file = path.join(this.dir, name);
      const entry = this.read(file);
      if (entry && processStartTime(entry.pid) === entry.start) {
        try {
          process.kill(entry.pid, constants.signals.SIGKILL);
          killed.push(entry);
          log.warn('a process left by a previous controller was killed', { process: decodeURIComponent(name), pid: entry.pid });
        } catch (e) {
          log.warn('a process left by a previous controller could not be killed', { process: decodeURIComponent(name), pid: entry.pid, why: (e as Error).message });
        }
      }
      rmSync(file, { force: true });
    }
    const deadline = Date.now() + REAP_WAIT_MS;
    while (killed.some((k) => processStartTime(k.pid) === k.start) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const k of killed.filter((x) => processStartTime(x.pid) === x.start)) log.error('a killed process has not ended', { pid: k.pid });
    return killed.map((k) => k.pid);
  }

  private read(file: string): { pid: number; start: string } | undefined {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    const m = /^([1-9]\d{0,9}) (\d{1,20})\n$/.exec(text);
    return m ? { pid: Number(m[1]), start: m[2] ?? '' } : undefined;
  }
}
