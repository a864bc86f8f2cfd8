// Restore benchmark: `azote run` continuing its booted snapshot, against the same run booting (--cold), and against
// QEMU restoring the same Linux guest from a saved migration stream (TCG), in one interleaved run.
//
//   Azote: the CLI (node bin/azote.js run --boot-time, 1 vCPU, 128 MiB) with a cache directory of the benchmark's
//   own (symlinks to the real cache's kernel, init, initramfs and packages, no snapshots), so its first run boots and
//   saves the snapshot and the later ones continue it. Each run is timed from just before spawn to
//     - "running again": the arrival of the CLI's --boot-time line, which it prints when the guest's init writes its
//       boot marker: 3 after a restore (init took its run request, set its clock and reseeded its generator),
//       1 in a boot (init started). The ms the CLI itself printed (from its own process start) are shown too.
//     - "command exit": the CLI's exit (the guest's command ended, the VM stopped, the hypervisor is gone).
//   Commands: `/bin/sh -c true` (a shell builtin), and `busybox uname -r`, whose extra time over `true` is the guest's
//   own fork + exec.
//
//   QEMU: qemu-system-x86_64 -M microvm under TCG (QEMU cannot run Linux under this machine's KVM), same kernel,
//   memory and vCPUs; the initramfs is ours with init's QEMU build (ports moved off QEMU's fw_cfg, guest/init/Makefile)
//   and a command that prints "~" without end (a shell builtin loop: no fork). QEMU boots it once; when the "~"s
//   come, QMP `migrate` to `exec:cat > FILE` saves the stream (QEMU 7.2 has no `file:` migration). The guest is not
//   `stop`ped first: the stream records the source's run state, and one saved from a stopped VM loads paused. Each
//   restore then starts the same QEMU command line with `-incoming 'exec:cat FILE'` (no -S: it runs once loaded) and
//   is timed from just before spawn to the 64th "~" on its console (only the guest's serial port writes to QEMU's
//   stdout). Not the first: the UART's saved state may hand out the bytes it held (FIFO 16, THR, TSR) as it loads,
//   before the guest runs; 64 can only come from a running guest, which writes them within a few ms (measured
//   here: 200 bytes within 10 ms of the first). There is no command exit to time for QEMU.
//
// Environment: BENCH_RUNS (7) restore runs of each kind, BENCH_COLD_RUNS (3) cold runs (each a Linux boot: 15-60 s
// here), QEMU to use another qemu-system-x86_64.
import { existsSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../src/base/log.js';
import { cacheDir } from '../src/images/cache.js';
import { guestCmdline } from '../src/images/cmdline.js';
import { CpioWriter } from '../src/images/cpio.js';
import { ensureBaseInitramfs } from '../src/images/initramfs.js';
import { ensureKernel, kernelKey } from '../src/images/kernel.js';
import { projectRoot } from '../src/images/paths.js';
import { runRequestArchive } from '../src/images/run-request.js';
import { detectKvmFlavour } from '../src/kvm/kvm.js';
import { envInt, kvmProblem, qemuVersion, rotated, say } from './common.js';
import { BenchError, makeTempDir, removeTempDir, runSync, withChild } from './proc.js';
import { Qmp } from './qmp.js';
import { ratio, renderMetric, summarize, type Metric, type MetricResult } from './stats.js';

const VCPUS = 1;
/** azote run's default memory. */
const MEM_MIB = 128;
const GOAL_MS = 300;
const BOOT_TIMEOUT_MS = 300_000;
const RESTORE_TIMEOUT_MS = 120_000;
const MIGRATE_POLL_MS = 100;

const TRUE_COMMAND = ['/bin/sh', '-c', 'true'];
const UNAME_COMMAND = ['busybox', 'uname', '-r'];
/** QEMU's guest command: "~" without end, from a shell builtin (no fork), so the first byte after a restore is seen at once. */
const QEMU_COMMAND = ['/bin/sh', '-c', 'while :; do echo -n "~"; done'];

const RAN_AGAIN = /azote: the guest ran again from its snapshot ([\d.]+) ms after process start/;
const INIT_REACHED = /azote: init reached ([\d.]+) ms after process start/;
/** The CLI's debug line just before it checks the snapshot and starts the hypervisor (AZOTE_LOG_FORMAT=json). */
const STARTING_HYPERVISOR = /"msg":"starting the hypervisor"/;

const RESTORE_TRUE = 'azote restore (sh -c true)';
const RESTORE_UNAME = 'azote restore (busybox uname -r)';
const COLD = 'azote cold (--cold, sh -c true)';
const QEMU_RESTORE = 'qemu restore (TCG)';

/** One timed `azote run`. */
interface AzoteSample {
  /** Spawn -> the --boot-time line arrived. */
  readonly runningMs: number;
  /** The figure in that line: from the CLI's own process start. */
  readonly selfMs: number;
  /** Spawn -> the CLI's debug line "starting the hypervisor". */
  readonly hypervisorMs: number;
  /** Spawn -> the CLI exited. */
  readonly exitMs: number;
}

export interface RestoreReport {
  readonly config: Record<string, unknown>;
  readonly host: Record<string, unknown>;
  readonly firstRun?: AzoteSample;
  readonly qemu: { readonly streamBytes: number; readonly bootToCommandMs: number } | { readonly problem: string };
  readonly metrics: MetricResult[];
  readonly ratios: Record<string, number | undefined>;
  readonly goal: { readonly underMs: number; readonly medianMs: number | undefined; readonly met: boolean; readonly aheadOfQemu: boolean | undefined };
  readonly skipped: string[];
}

/** A cache directory of the benchmark's own: the real one's built artefacts, linked, and none of its snapshots. */
function ownCache(): string {
  const real = cacheDir();
  const dir = makeTempDir('azote-bench-cache-');
  for (const entry of readdirSync(real)) {
    if (entry !== 'snapshots') symlinkSync(path.join(real, entry), path.join(dir, entry));
  }
  return dir;
}

class RestoreBench {
  private readonly root = projectRoot();
  private readonly azoteJs = path.join(this.root, 'bin', 'azote.js');
  private readonly qemu = process.env['QEMU'] || 'qemu-system-x86_64';
  private readonly runs = envInt('BENCH_RUNS', 7);
  private readonly coldRuns = envInt('BENCH_COLD_RUNS', 3);
  private readonly metrics: MetricResult[] = [];

  async run(): Promise<RestoreReport> {
    const qemuVer = qemuVersion(this.qemu);
    const flavour = detectKvmFlavour();
    const host = {
      node: process.version, qemu: qemuVer, kvmFlavour: flavour, cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length,
      loadavg: loadavg().map((l) => Number(l.toFixed(2))),
    };
    const config = { vcpus: VCPUS, memMiB: MEM_MIB, runs: this.runs, coldRuns: this.coldRuns, goalMs: GOAL_MS };
    say(`restore benchmark: azote run from its snapshot vs --cold vs ${qemuVer} -incoming (TCG)`);
    say(`  host: ${host.cpu}, ${host.cpus} cpus, load ${host.loadavg.join(' ')}, KVM ${flavour}, node ${host.node}`);
    say(`  guest: ${VCPUS} vCPU, ${MEM_MIB} MiB; ${this.runs} restore runs of each kind, ${this.coldRuns} cold runs, interleaved`);
    say('  the machine is shared: other VMs running beside these make the figures noisy (see the load above)');
    const noGoal = { underMs: GOAL_MS, medianMs: undefined, met: false, aheadOfQemu: undefined };

    const noKvm = kvmProblem();
    if (noKvm) {
      say(`\nSKIP: ${noKvm}: Azote's runs need it`);
      return { config, host, qemu: { problem: 'not run' }, metrics: [], ratios: {}, goal: noGoal, skipped: ['restore'] };
    }
    if (!existsSync(path.join(cacheDir(), 'kernel', kernelKey(), 'version'))) {
      say(`\nSKIP: the guest kernel (key ${kernelKey()}) is not built yet; run \`node bin/azote.js setup\` first (about ten minutes)`);
      return { config, host, qemu: { problem: 'not run' }, metrics: [], ratios: {}, goal: noGoal, skipped: ['restore'] };
    }
    const log = createLogger('bench');
    const kernel = (await ensureKernel(log)).vmlinux;
    const base = readFileSync(await ensureBaseInitramfs(log));
    const tmp = makeTempDir('azote-bench-restore-');
    try {
      const env = { ...process.env, AZOTE_CACHE_DIR: ownCache(), AZOTE_LOG_LEVEL: 'debug', AZOTE_LOG_FORMAT: 'json' };
      say('\nfirst azote run: boots and saves the snapshot');
      const firstRun = await this.azoteOnce(TRUE_COMMAND, 'boot', env, false);
      const snaps = readdirSync(path.join(env.AZOTE_CACHE_DIR, 'snapshots')).filter((f) => f.endsWith('.snap'));
      if (snaps.length !== 1) throw new BenchError(`the first run left ${snaps.length} snapshots in ${env.AZOTE_CACHE_DIR}/snapshots, expected 1`);
      say(`  init reached at ${firstRun.runningMs.toFixed(0)} ms, exited (snapshot saved) at ${firstRun.exitMs.toFixed(0)} ms`);

      let qemu: RestoreReport['qemu'];
      let qemuRestore: (() => Promise<number>) | undefined;
      try {
        const saved = await this.qemuSave(kernel, base, tmp);
        qemu = { streamBytes: saved.streamBytes, bootToCommandMs: saved.bootToCommandMs };
        qemuRestore = saved.restore;
        say(`  qemu: booted to its command in ${saved.bootToCommandMs.toFixed(0)} ms, migration stream ${(saved.streamBytes / 2 ** 20).toFixed(1)} MiB`);
      } catch (e) {
        const problem = e instanceof Error ? e.message : String(e);
        qemu = { problem };
        say(`\nQEMU restore: NOT MEASURED: ${problem}`);
      }

      const samples = new Map<string, AzoteSample[]>([[RESTORE_TRUE, []], [RESTORE_UNAME, []], [COLD, []]]);
      const qemuSamples: number[] = [];
      const rounds = Math.max(this.runs, this.coldRuns);
      say(`\n${rounds} interleaved rounds`);
      for (let i = 0; i < rounds; i++) {
        const steps: Array<() => Promise<void>> = [];
        if (i < this.runs) {
          steps.push(async () => { samples.get(RESTORE_TRUE)!.push(await this.azoteOnce(TRUE_COMMAND, 'restore', env, false)); });
          steps.push(async () => { samples.get(RESTORE_UNAME)!.push(await this.azoteOnce(UNAME_COMMAND, 'restore', env, false)); });
          const q = qemuRestore;
          if (q) steps.push(async () => { qemuSamples.push(await q()); });
        }
        if (i < this.coldRuns) steps.push(async () => { samples.get(COLD)!.push(await this.azoteOnce(TRUE_COMMAND, 'boot', env, true)); });
        for (const step of rotated(steps, i)) await step();
        const last = (name: string): string => samples.get(name)!.at(-1)?.runningMs.toFixed(0) ?? '-';
        say(`  round ${i + 1}/${rounds}: running again after: restore ${last(RESTORE_TRUE)} / ${last(RESTORE_UNAME)} ms, `
          + `cold ${i < this.coldRuns ? last(COLD) : '-'} ms, qemu ${i < this.runs ? (qemuSamples.at(-1)?.toFixed(0) ?? '-') : '-'} ms`);
      }
      return { config, host: { ...host, loadavgAfter: loadavg().map((l) => Number(l.toFixed(2))) }, firstRun, qemu,
        ...this.report(samples, qemuSamples, qemu), skipped: [] };
    } finally {
      removeTempDir(tmp);
    }
  }

  /** One `azote run --boot-time`, checked to have restored (or booted) as asked and to have exited 0. */
  private azoteOnce(command: string[], expect: 'restore' | 'boot', env: NodeJS.ProcessEnv, cold: boolean): Promise<AzoteSample> {
    const argv = [process.execPath, this.azoteJs, 'run', '--boot-time', '--vcpus', String(VCPUS), '--mem', String(MEM_MIB),
      ...(cold ? ['--cold'] : []), '--', ...command];
    const label = `azote ${expect === 'restore' ? 'restore' : 'boot'} (${command.join(' ')})`;
    const timeoutMs = expect === 'restore' ? RESTORE_TIMEOUT_MS : BOOT_TIMEOUT_MS;
    return withChild(argv, { label, timeoutMs, env }, async (c) => {
      const running = c.waitFor('stderr', expect === 'restore' ? RAN_AGAIN : INIT_REACHED);
      const starting = c.waitFor('stderr', STARTING_HYPERVISOR);
      running.catch(() => undefined);
      starting.catch(() => undefined);
      const exit = await c.expectExit(0);
      const wrong = expect === 'restore' ? INIT_REACHED : RAN_AGAIN;
      if (wrong.test(c.output('stderr'))) {
        throw c.error(expect === 'restore' ? 'booted instead of continuing its snapshot' : 'continued a snapshot instead of booting');
      }
      if (command === UNAME_COMMAND && !/^\d+\.\d+\S*\s*$/m.test(c.output('stdout'))) throw c.error('did not print a kernel release');
      const r = await running;
      return { runningMs: r.ms, selfMs: Number(r.match[1]), hypervisorMs: (await starting).ms, exitMs: exit.ms };
    });
  }

  /** Boots the QEMU guest to its command, saves its migration stream, and returns how to time one restore of it. */
  private async qemuSave(kernel: string, base: Uint8Array, tmp: string):
  Promise<{ streamBytes: number; bootToCommandMs: number; restore: () => Promise<number> }> {
    runSync(['make', '-s', '-C', path.join(this.root, 'guest', 'init'), 'qemu', `OUT=${tmp}`], 'building the guest init for QEMU');
    const qemuInit = new CpioWriter().file('init', readFileSync(path.join(tmp, 'qemu', 'init')), 0o755).finish();
    const initrd = path.join(tmp, 'initrd-qemu.cpio');
    writeFileSync(initrd, Buffer.concat([base, qemuInit, runRequestArchive(QEMU_COMMAND)]));
    const common = [this.qemu, '-M', 'microvm', '-accel', 'tcg', '-m', String(MEM_MIB), '-smp', String(VCPUS), '-kernel', kernel,
      '-initrd', initrd, '-append', guestCmdline({ nestedPvm: false, quiet: true }), '-display', 'none', '-monitor', 'none',
      '-nodefaults', '-serial', 'stdio', '-no-reboot'];
    const sock = path.join(tmp, 'qmp.sock');
    const stream = path.join(tmp, 'qemu.migration');
    say(`\nqemu: booting the guest (TCG) and saving its migration stream to ${stream}`);
    const bootToCommandMs = await withChild([...common, '-qmp', `unix:${sock},server=on,wait=off`],
      { label: 'qemu boot (TCG)', timeoutMs: BOOT_TIMEOUT_MS }, async (c) => {
        const seen = await c.waitFor('stdout', /~{16}/);
        const qmp = await Qmp.connect(sock, 10_000);
        try {
          await qmp.execute('migrate', { uri: `exec:cat > ${stream}` });
          for (;;) {
            const info = await qmp.execute('query-migrate');
            const status = typeof info === 'object' && info !== null && 'status' in info ? info.status : undefined;
            if (status === 'completed') break;
            if (status === 'failed' || status === 'cancelled') {
              const why = typeof info === 'object' && info !== null && 'error-desc' in info ? String(info['error-desc']) : String(status);
              throw c.error(`migration to ${stream} failed: ${why}`);
            }
            await sleep(MIGRATE_POLL_MS);
          }
          // QEMU waits for `cat` as it quits: once it has exited, the file is whole.
          await qmp.execute('quit').catch(() => undefined);
        } finally {
          qmp.close();
        }
        await c.exit();
        return seen.ms;
      });
    const streamBytes = statSync(stream).size;
    const restore = (): Promise<number> => withChild([...common, '-incoming', `exec:cat ${stream}`],
      { label: 'qemu restore (TCG)', timeoutMs: RESTORE_TIMEOUT_MS }, async (c) => (await c.waitFor('stdout', /~{64}/)).ms);
    say('  qemu: one trial restore');
    await restore();
    return { streamBytes, bootToCommandMs, restore };
  }

  private show(m: Metric, digits = 0): void {
    const { text, result } = renderMetric(m, digits);
    say(`\n${text}`);
    this.metrics.push(result);
  }

  private report(samples: Map<string, AzoteSample[]>, qemuSamples: number[], qemu: RestoreReport['qemu']):
  Pick<RestoreReport, 'metrics' | 'ratios' | 'goal'> {
    const of = (name: string, f: (s: AzoteSample) => number): number[] => samples.get(name)!.map(f);
    const qemuNote = 'problem' in qemu ? `qemu restore NOT MEASURED: ${qemu.problem}`
      : 'qemu: spawn -> 64th "~" its guest writes after the load of its migration stream (-incoming exec:cat FILE)';
    this.show({
      id: 'running-again', title: 'process start -> guest running again', unit: 'ms',
      rows: [
        { name: RESTORE_TRUE, samples: of(RESTORE_TRUE, (s) => s.runningMs) },
        { name: `${RESTORE_TRUE}, self-reported`, samples: of(RESTORE_TRUE, (s) => s.selfMs) },
        { name: RESTORE_UNAME, samples: of(RESTORE_UNAME, (s) => s.runningMs) },
        { name: COLD, samples: of(COLD, (s) => s.runningMs) },
        { name: QEMU_RESTORE, samples: qemuSamples },
      ],
      baseline: qemuSamples.length > 0 ? QEMU_RESTORE : undefined,
      notes: [
        'azote: spawn -> arrival of the --boot-time line (restore: init took its run request and reseeded, marker 3; cold: init started, marker 1)',
        'self-reported: the ms the CLI printed in that line, from its own process start', qemuNote,
      ],
    });
    this.show({
      id: 'command-exit', title: 'process start -> command exit (the CLI\'s exit)', unit: 'ms',
      rows: [RESTORE_TRUE, RESTORE_UNAME, COLD].map((name) => ({ name, samples: of(name, (s) => s.exitMs) })),
      baseline: COLD,
      notes: ['qemu has no row: its guest command never ends (it is what shows it runs again)'],
    });
    this.show({
      id: 'restore-phases', title: `where ${RESTORE_TRUE}'s time goes`, unit: 'ms',
      rows: [
        { name: 'CLI: start -> "starting the hypervisor"', samples: of(RESTORE_TRUE, (s) => s.hypervisorMs) },
        { name: 'snapshot check, hypervisor start, restore, init -> running again',
          samples: of(RESTORE_TRUE, (s) => s.runningMs - s.hypervisorMs) },
        { name: 'running again -> exit (sh -c true)', samples: of(RESTORE_TRUE, (s) => s.exitMs - s.runningMs) },
        { name: 'running again -> exit (busybox uname -r)', samples: of(RESTORE_UNAME, (s) => s.exitMs - s.runningMs) },
      ],
      notes: ['"starting the hypervisor" is the CLI\'s debug line before it checks the snapshot\'s MAC and spawns the jailed hypervisor'],
    });

    const median = (xs: number[]): number | undefined => (xs.length > 0 ? summarize(xs).median : undefined);
    const restoreRunning = median(of(RESTORE_TRUE, (s) => s.runningMs));
    const ratios = {
      restoreVsColdRunningAgain: ratio(restoreRunning, median(of(COLD, (s) => s.runningMs))),
      restoreVsColdCommandExit: ratio(median(of(RESTORE_TRUE, (s) => s.exitMs)), median(of(COLD, (s) => s.exitMs))),
      restoreVsQemuRestoreRunningAgain: ratio(restoreRunning, median(qemuSamples)),
    };
    const fmt = (r: number | undefined): string => (r === undefined ? 'n/a' : `${r.toFixed(3)}x`);
    say('\n== ratios (medians)');
    say(`  azote restore / azote cold, running again: ${fmt(ratios.restoreVsColdRunningAgain)}`);
    say(`  azote restore / azote cold, command exit:  ${fmt(ratios.restoreVsColdCommandExit)}`);
    say(`  azote restore / qemu restore (TCG), running again: ${fmt(ratios.restoreVsQemuRestoreRunningAgain)}`
      + `${'problem' in qemu ? ' (qemu not measured)' : ''}`);
    const met = restoreRunning !== undefined && restoreRunning < GOAL_MS;
    const qemuMedian = median(qemuSamples);
    const aheadOfQemu = restoreRunning === undefined || qemuMedian === undefined ? undefined : restoreRunning < qemuMedian;
    say(`\n== goal: under ${GOAL_MS} ms from process start to running again, and ahead of QEMU's restore`);
    say(`  azote restore median ${restoreRunning?.toFixed(0) ?? 'n/a'} ms: ${met ? 'MET' : 'NOT MET'}; `
      + `ahead of qemu restore (${qemuMedian?.toFixed(0) ?? 'n/a'} ms): ${aheadOfQemu === undefined ? 'n/a' : aheadOfQemu ? 'yes' : 'no'}`);
    return { metrics: this.metrics, ratios, goal: { underMs: GOAL_MS, medianMs: restoreRunning, met, aheadOfQemu } };
  }
}

export async function runRestore(): Promise<RestoreReport> {
  return new RestoreBench().run();
}
