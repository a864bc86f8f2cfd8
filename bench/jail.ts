// Jail benchmark: what the hypervisor's jail adds to starting a process. A probe (node loading a small component
// that reads its root and exits) is started BENCH_JAIL_RUNS times each way, interleaved:
//   node directly (the baseline); the earlier jail (taskset + unshare --net); the jail the controller uses now
//   (jailCommand: taskset, unshare --net --mount, the tmpfs root with its bind mounts and pivot_root, setpriv).
// Then what the seccomp list costs a vCPU's hot call (seccomp-child.ts).
// Needs root (as the controller does to jail as root); says so and measures nothing without it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jailCommand, JAIL_UID_BASE, memlockLimit } from '../src/controller/jail.js';
import { envInt, say } from './common.js';
import { makeTempDir, removeTempDir } from './proc.js';
import { renderMetric, type MetricResult } from './stats.js';

export interface JailReport {
  readonly metrics: MetricResult[];
}

function timed(command: string, args: readonly string[]): number {
  const t0 = performance.now();
  const r = spawnSync(command, args, { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
  const ms = performance.now() - t0;
  if (r.status !== 0 || !r.stdout.includes('probe ok')) throw new Error(`${command} ${args.slice(0, 3).join(' ')}...: status ${r.status}: ${r.stderr.slice(0, 300)}`);
  return ms;
}

/** What the seccomp list adds to a vCPU's hot call (seccomp-child.ts measures it in a process of its own). */
function seccompCost(): MetricResult {
  const calls = envInt('BENCH_SECCOMP_CALLS', 200_000);
  const child = fileURLToPath(new URL('./seccomp-child.js', import.meta.url));
  const r = spawnSync(process.execPath, [child, String(calls), '7'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`seccomp-child: status ${r.status}: ${r.stderr.slice(0, 300)}`);
  const seen = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { none: number[]; processList: number[] };
  say(`\nseccomp: ioctl(-1, KVM_RUN) ${calls} times per round, 7 rounds, on a worker thread`);
  const { text, result } = renderMetric({
    id: 'seccomp-ioctl', title: 'ioctl KVM_RUN under the hypervisor\'s list (EBADF at once)', unit: 'ns/call', baseline: 'no filter',
    rows: [{ name: 'no filter', samples: seen.none }, { name: 'process list', samples: seen.processList }],
    notes: ['koffi\'s cost of a call is in both rows; the difference between them is the filter\'s',
      'a real KVM_RUN costs a guest entry and exit on top (microseconds here)'],
  });
  say(`\n${text}`);
  return result;
}

export async function runJail(): Promise<JailReport> {
  if (process.getuid?.() !== 0) {
    say('\njail benchmark: not measured: the jail as the controller builds it needs root');
    return { metrics: [] };
  }
  const runs = envInt('BENCH_JAIL_RUNS', 10);
  const dir = makeTempDir('azote-bench-jail-');
  try {
    const component = path.join(dir, 'component');
    mkdirSync(component);
    const entry = path.join(component, 'probe.cjs');
    writeFileSync(entry, "require('fs').readdirSync('/'); console.log('probe ok');\n");
    const mountPoint = path.join(dir, 'root');
    mkdirSync(mountPoint);
    const ways: Array<[string, () => number]> = [
      ['node', () => timed(process.execPath, [entry])],
      ['taskset + unshare --net', () => timed('taskset', ['--cpu-list', '0', 'unshare', '--net', '--', process.execPath, entry])],
      ['jail (namespaces, root, uid, rlimit)', () => {
        const c = jailCommand({ mountPoint, componentDir: component, entry, args: [], cores: [0], uid: JAIL_UID_BASE + 99, cgroupProcs: [], lockedMemory: memlockLimit(64 * 2 ** 20) });
        return timed(c.command, c.args);
      }],
    ];
    const samples = new Map(ways.map(([name]) => [name, [] as number[]]));
    say(`\njail benchmark: a node probe started ${runs} times each way, interleaved`);
    for (let i = 0; i < runs; i++) for (const [name, run] of ways) samples.get(name)?.push(run());
    const { text, result } = renderMetric({
      id: 'jail-start', title: 'process start to exit, node probe', unit: 'ms', baseline: 'node',
      rows: ways.map(([name]) => ({ name, samples: samples.get(name) ?? [] })),
      notes: ['the jail row includes building its command (ldd of node, setpriv and the component\'s addons) as each launch does',
        'no peer jailer runs on this machine; the reference is the same process without a jail'],
    });
    say(`\n${text}`);
    return { metrics: [result, seccompCost()] };
  } finally {
    removeTempDir(dir);
  }
}
