// Child processes for benchmarks: timed from just before spawn, watched for output, bounded by a timeout, and always
// killed when the benchmark leaves early (error, timeout, Ctrl-C).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A benchmark failure with a message meant for the terminal. */
export class BenchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BenchError';
  }
}

const live = new Set<ChildProcess>();

/** Kills (SIGKILL) every child still running. Safe to call from an 'exit' handler. */
export function killAllChildren(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch { /* already gone */ }
  }
  live.clear();
}

const tempDirs = new Set<string>();

/** A new temporary directory, removed by `removeTempDir` or, at the latest, when the process exits. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

process.on('exit', () => {
  killAllChildren();
  for (const d of [...tempDirs]) {
    try {
      removeTempDir(d);
    } catch { /* best effort */ }
  }
});

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Milliseconds from just before spawn to the process's exit. */
  readonly ms: number;
}

export interface StartOptions {
  /** Short name for messages, e.g. "azote exit.elf". */
  readonly label: string;
  readonly timeoutMs: number;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

type Stream = 'stdout' | 'stderr';

interface Watcher {
  readonly stream: Stream;
  readonly re: RegExp;
  readonly resolve: (v: { ms: number; match: RegExpExecArray }) => void;
  readonly reject: (e: Error) => void;
}

const TAIL_CHARS = 64 * 1024;

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // callers that never ask must not cause an unhandled rejection
  return { promise, resolve, reject };
}

export class TimedChild {
  private readonly child: ChildProcess;
  private readonly t0: bigint;
  private readonly out: Record<Stream, string> = { stdout: '', stderr: '' };
  private watchers: Watcher[] = [];
  private readonly done = deferred<ExitInfo>();
  private readonly timer: NodeJS.Timeout;
  private exitInfo: ExitInfo | undefined;
  private failure: Error | undefined;

  private constructor(readonly label: string, readonly command: string[], o: StartOptions) {
    const [file, ...args] = command;
    if (file === undefined) throw new BenchError(`${label}: empty command`);
    this.t0 = process.hrtime.bigint();
    this.child = spawn(file, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    for (const s of ['stdout', 'stderr'] as const) {
      const stream = this.child[s];
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => this.onData(s, chunk));
    }
    let exitMs: number | undefined;
    this.child.on('exit', () => {
      exitMs = this.elapsedMs();
      live.delete(this.child);
    });
    this.child.on('error', (e: NodeJS.ErrnoException) => {
      live.delete(this.child);
      this.fail(new BenchError(e.code === 'ENOENT'
        ? `${label}: cannot run ${file}: not found on PATH`
        : `${label}: cannot run ${file}: ${e.message}`));
    });
    // 'close': the process has exited and its output is fully read.
    this.child.on('close', (code, signal) => {
      clearTimeout(this.timer);
      if (this.failure) return;
      this.exitInfo = { code, signal, ms: exitMs ?? this.elapsedMs() };
      this.done.resolve(this.exitInfo);
      const w = this.watchers;
      this.watchers = [];
      for (const x of w) x.reject(this.error(`exited (${this.describeExit()}) before its ${x.stream} matched ${x.re}`));
    });
    this.timer = setTimeout(() => {
      this.kill();
      this.fail(this.error(`timed out after ${o.timeoutMs / 1000} s`));
    }, o.timeoutMs);
  }

  static start(command: string[], o: StartOptions): TimedChild {
    return new TimedChild(o.label, command, o);
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw this.failure ?? new BenchError(`${this.label}: the process did not start`);
    return pid;
  }

  /** Milliseconds since just before spawn. */
  elapsedMs(): number {
    return Number(process.hrtime.bigint() - this.t0) / 1e6;
  }

  output(stream: Stream): string {
    return this.out[stream];
  }

  /** Resolves with the time at which `stream`'s output first matched `re` (scanning the output seen so far too). */
  waitFor(stream: Stream, re: RegExp): Promise<{ ms: number; match: RegExpExecArray }> {
    if (this.failure) return Promise.reject(this.failure);
    const m = re.exec(this.out[stream]);
    if (m) return Promise.resolve({ ms: this.elapsedMs(), match: m });
    if (this.exitInfo) return Promise.reject(this.error(`exited (${this.describeExit()}) before its ${stream} matched ${re}`));
    return new Promise((resolve, reject) => this.watchers.push({ stream, re, resolve, reject }));
  }

  /** Resolves when the process has exited and its output is read; rejects on timeout or spawn failure. */
  exit(): Promise<ExitInfo> {
    return this.done.promise;
  }

  /** Waits for the exit and checks its status; the error shows the command's output. */
  async expectExit(code: number): Promise<ExitInfo> {
    const e = await this.exit();
    if (e.code !== code) throw this.error(`exited with ${this.describeExit()}, expected status ${code}`);
    return e;
  }

  /** Sends `signal` if the process is still running. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        this.child.kill(signal);
      } catch { /* already gone */ }
    }
  }

  /** Sends `signal`, then SIGKILL if the process has not exited after `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<ExitInfo | undefined> {
    this.kill(signal);
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exit();
    } catch {
      return undefined;
    } finally {
      clearTimeout(t);
    }
  }

  /** An error naming the command, with the tail of its output. */
  error(what: string): BenchError {
    const tail = (s: string): string => s.trimEnd().split('\n').slice(-15).map((l) => `    | ${l}`).join('\n');
    const parts = [`${this.label}: ${what}`, `  command: ${this.command.join(' ')}`];
    if (this.out.stdout.trim()) parts.push(`  stdout (last lines):\n${tail(this.out.stdout)}`);
    if (this.out.stderr.trim()) parts.push(`  stderr (last lines):\n${tail(this.out.stderr)}`);
    return new BenchError(parts.join('\n'));
  }

  private describeExit(): string {
    const e = this.exitInfo;
    if (!e) return 'still running';
    return e.signal ? `signal ${e.signal}` : `status ${e.code}`;
  }

  private onData(s: Stream, chunk: string): void {
    this.out[s] = (this.out[s] + chunk).slice(-TAIL_CHARS);
    if (this.watchers.length === 0) return;
    const ms = this.elapsedMs();
    this.watchers = this.watchers.filter((w) => {
      if (w.stream !== s) return true;
      const m = w.re.exec(this.out[s]);
      if (!m) return true;
      w.resolve({ ms, match: m });
      return false;
    });
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    clearTimeout(this.timer);
    this.done.reject(e);
    const w = this.watchers;
    this.watchers = [];
    for (const x of w) x.reject(e);
  }
}

/** Runs `fn` with a started child and kills the child afterwards, whatever happened. */
export async function withChild<T>(command: string[], o: StartOptions, fn: (c: TimedChild) => Promise<T>): Promise<T> {
  const c = TimedChild.start(command, o);
  try {
    return await fn(c);
  } finally {
    c.kill('SIGKILL');
  }
}

/** Runs a short command to completion; throws with its output when it fails. */
export function runSync(command: string[], what: string, cwd?: string): string {
  const [file, ...args] = command;
  if (file === undefined) throw new BenchError(`${what}: empty command`);
  const r = spawnSync(file, args, { cwd, encoding: 'utf8', timeout: 300_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new BenchError(`${what}: cannot run ${file}: ${code === 'ENOENT' ? 'not found on PATH' : r.error.message}`);
  }
  if (r.status !== 0) {
    throw new BenchError(`${what}: \`${command.join(' ')}\` failed (${r.signal ? `signal ${r.signal}` : `status ${r.status}`})\n${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Private memory (smaps Private_Clean + Private_Dirty) of some processes, split into guest RAM and the rest. */
export interface PrivateSplit {
  /** Summed over the processes, bytes. */
  readonly private: number;
  /** Of which in guest RAM mappings (pages only one process maps). */
  readonly guest: number;
  /** private - guest: what the processes themselves hold. */
  readonly own: number;
  /** Summed size of the guest RAM mappings, bytes (to check that the right mappings were found). */
  readonly guestMapped: number;
}

const SMAPS_HEADER = /^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\S+\s*(.*)$/;

/** `pid` and every process below it (a jailed hypervisor is a grandchild of `azote run`), from /proc. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    children.set(ppid, [...children.get(ppid) ?? [], Number(name)]);
  }
  const tree: number[] = [];
  for (const queue = [pid]; queue.length > 0;) {
    const p = queue.shift() ?? 0;
    tree.push(p);
    queue.push(...children.get(p) ?? []);
  }
  return tree;
}

/** Reads /proc/PID/smaps of each process and sums its private memory, in and out of mappings matching `guestMapping`. */
export function readPrivate(pids: readonly number[], guestMapping: RegExp): PrivateSplit {
  let total = 0;
  let guest = 0;
  let guestMapped = 0;
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    } catch (e) {
      throw new BenchError(`cannot read /proc/${pid}/smaps: ${(e as Error).message}`);
    }
    let inGuest = false;
    for (const line of text.split('\n')) {
      const h = SMAPS_HEADER.exec(line);
      if (h) {
        inGuest = guestMapping.test(h[1] ?? '');
        continue;
      }
      const f = /^(Size|Private_Clean|Private_Dirty):\s+(\d+) kB/.exec(line);
      if (!f) continue;
      const bytes = Number(f[2]) * 1024;
      if (f[1] === 'Size') {
        if (inGuest) guestMapped += bytes;
      } else {
        total += bytes;
        if (inGuest) guest += bytes;
      }
    }
  }
  return { private: total, guest, own: total - guest, guestMapped };
}
