// Boot benchmark: Azote against Debian's QEMU (`qemu-system-x86_64 -M microvm`) on the same guest, memory and vCPUs.
//
//   1. Test guest under KVM (guest/test exit.elf, exit status 7): time from process start to the process's exit,
//      which follows the guest's write to the exit port right after it starts. Interleaved runs of
//      `azote run` (the CLI, through `node bin/azote.js`), the bare MicroVm (bench/azote-vmm.ts: no CLI, no
//      initramfs) and QEMU/KVM.
//   2. VMM memory under KVM: each VMM runs hello.elf with `halt` (it prints its lines and parks), 1 and then 4 at
//      once; once all said "halting", /proc/PID/smaps of every process serving each VM gives its private memory
//      (Private_Clean + Private_Dirty), per VM; the VMM's own is that minus the private pages of the guest RAM
//      mapping (Azote: memfd "azote-guest-ram"; QEMU: a memory-backend-memfd).
//   3. Linux reference: QEMU cannot boot Linux under KVM on this machine, so Azote's kernel and initramfs under
//      Azote/KVM stand beside the same kernel and initramfs under QEMU TCG: time from process start to the guest
//      init's boot marker. Azote reports it on stderr (--boot-time); for QEMU the initramfs gets init's QEMU build
//      (marker on port 0xf5, guest/init/Makefile) and an isa-debug-exit device on 0xf5 ends QEMU at the marker.
//
// Environment: BENCH_RUNS (10) pairs of timing runs, BENCH_MEM_RUNS (5) memory runs, BENCH_LINUX_RUNS (3) Linux
// runs, BENCH_SKIP_LINUX=1 to leave Linux out, QEMU to use another qemu-system-x86_64.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/base/log.js';
import { cacheDir } from '../src/images/cache.js';
import { guestCmdline } from '../src/images/cmdline.js';
import { CpioWriter } from '../src/images/cpio.js';
import { ensureBaseInitramfs } from '../src/images/initramfs.js';
import { runRequestArchive } from '../src/images/run-request.js';
import { ensureKernel, kernelKey } from '../src/images/kernel.js';
import { projectRoot } from '../src/images/paths.js';
import { detectKvmFlavour } from '../src/kvm/kvm.js';
import { BenchError, makeTempDir, processTree, readPrivate, removeTempDir, runSync, TimedChild, withChild, type PrivateSplit } from './proc.js';
import { renderMetric, type Metric, type MetricResult } from './stats.js';
import { envInt, kvmProblem, progress, qemuVersion, rotated, say } from './common.js';

const VCPUS = 1;
const MEM_MIB = 64;
const LINUX_MEM_MIB = 256;
const TEST_TIMEOUT_MS = 30_000;
const LINUX_TIMEOUT_MS = 300_000;
/** What exit.elf reports; Azote exits with it, QEMU's isa-debug-exit with (status << 1) | 1. */
const EXIT_STATUS = 7;
/** Time the VMM is left idle after the guest has parked, before its memory is read. */
const SETTLE_MS = 500;
const MiB = 1024 * 1024;
const QEMU_KVM = 'qemu microvm (KVM)';
const NODE_REF = 'node -e "" (reference)';
const AZOTE_RUN_HYPERVISOR = 'azote run: its hypervisor (jailed)';
/** VMs of a kind run at once for the second memory figure. */
const VMS_SIDE_BY_SIDE = 4;

/** The command Linux runs in the guest (a shell builtin: the image has few applet links). */
const LINUX_COMMAND = ['/bin/sh', '-c', 'true'];

export interface BootReport {
  readonly config: Record<string, unknown>;
  readonly host: Record<string, unknown>;
  readonly metrics: MetricResult[];
  readonly skipped: string[];
}

/** One way of running a guest: its command and what its exit status should be. */
interface Variant {
  readonly name: string;
  readonly command: string[];
  readonly status: number;
  /** Name pattern of the guest RAM mapping in /proc/PID/smaps. */
  readonly guestMapping: RegExp;
}

class BootBench {
  private readonly root = projectRoot();
  private readonly node = process.execPath;
  private readonly azoteJs = path.join(this.root, 'bin', 'azote.js');
  private readonly vmmJs = fileURLToPath(new URL('./azote-vmm.js', import.meta.url));
  private readonly qemu = process.env['QEMU'] || 'qemu-system-x86_64';
  private readonly runs = envInt('BENCH_RUNS', 10);
  private readonly memRuns = envInt('BENCH_MEM_RUNS', 5);
  private readonly linuxRuns = envInt('BENCH_LINUX_RUNS', 3);
  private readonly skipLinux = process.env['BENCH_SKIP_LINUX'] === '1';
  private readonly metrics: MetricResult[] = [];
  private readonly skipped: string[] = [];

  async run(): Promise<BootReport> {
    const qemuVer = qemuVersion(this.qemu);
    const flavour = detectKvmFlavour();
    const host = {
      node: process.version, qemu: qemuVer, kvmFlavour: flavour, cpu: cpus()[0]?.model ?? 'unknown',
      cpus: cpus().length, loadavg: loadavg().map((l) => Number(l.toFixed(2))),
    };
    const config = {
      vcpus: VCPUS, memMiB: MEM_MIB, linuxMemMiB: LINUX_MEM_MIB, runs: this.runs, memRuns: this.memRuns,
      linuxRuns: this.skipLinux ? 0 : this.linuxRuns,
    };
    say(`boot benchmark: azote vs ${qemuVer}`);
    say(`  host: ${host.cpu}, ${host.cpus} cpus, load ${host.loadavg.join(' ')}, KVM ${flavour}, node ${host.node}`);
    say(`  guests: ${VCPUS} vCPU, ${MEM_MIB} MiB (Linux: ${LINUX_MEM_MIB} MiB); ${this.runs} interleaved timing runs, `
      + `${this.memRuns} memory runs, ${this.skipLinux ? 'no' : this.linuxRuns} Linux runs`);

    const noKvm = kvmProblem();
    if (noKvm) {
      const msg = `SKIP: ${noKvm}: the KVM parts (test guest boot time, VMM memory, Linux under Azote) are skipped`;
      say(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}`);
      this.skipped.push('test-guest-time', 'vmm-memory', 'linux-boot');
      return { config, host, metrics: this.metrics, skipped: this.skipped };
    }

    say('\nbuilding the test guests (make -C guest/test, make -C guest/test qemu)');
    const testDir = path.join(this.root, 'guest', 'test');
    runSync(['make', '-s', '-C', testDir], 'building the test guests');
    runSync(['make', '-s', '-C', testDir, 'qemu'], 'building the QEMU test guests');
    const azoteGuest = (name: string): string => path.join(testDir, 'build', `${name}.elf`);
    const qemuGuest = (name: string): string => path.join(testDir, 'build', 'qemu', `${name}.elf`);

    await this.testGuestTime(azoteGuest('exit'), qemuGuest('exit'));
    await this.vmmMemory(azoteGuest('hello'), qemuGuest('hello'));
    if (this.skipLinux) {
      say('\nLinux: skipped (BENCH_SKIP_LINUX=1)');
      this.skipped.push('linux-boot');
    } else {
      await this.linux();
    }
    return { config, host, metrics: this.metrics, skipped: this.skipped };
  }

  private show(m: Metric, digits = 1): void {
    const { text, result } = renderMetric(m, digits);
    say(`\n${text}`);
    this.metrics.push(result);
  }

  private azoteCli(kernel: string, cmdline: string, mem: number): string[] {
    return [this.node, this.azoteJs, 'run', '--kernel', kernel, '--cmdline', cmdline, '--vcpus', String(VCPUS),
      '--mem', String(mem)];
  }

  private azoteApi(kernel: string, cmdline: string, mem: number): string[] {
    return [this.node, this.vmmJs, kernel, cmdline, String(VCPUS), String(mem)];
  }

  private qemuKvm(kernel: string, cmdline: string, mem: number, memfd: boolean): string[] {
    const memory = memfd
      ? ['-object', `memory-backend-memfd,id=mem,size=${mem}M`, '-machine', 'memory-backend=mem', '-m', String(mem)]
      : ['-m', String(mem)];
    return [this.qemu, '-M', 'microvm', '-accel', 'kvm', ...memory, '-smp', String(VCPUS), '-kernel', kernel,
      '-append', cmdline, '-display', 'none', '-monitor', 'none', '-nodefaults', '-serial', 'stdio', '-no-reboot',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=4'];
  }

  /** Start -> exit of exit.elf, which writes its status to the exit port as soon as it runs. */
  private async testGuestTime(azoteElf: string, qemuElf: string): Promise<void> {
    const cmdline = `status=${EXIT_STATUS}`;
    const azoteRam = /^\/memfd:azote-guest-ram/;
    const variants: Variant[] = [
      { name: 'azote run (CLI)', command: this.azoteCli(azoteElf, cmdline, MEM_MIB), status: EXIT_STATUS, guestMapping: azoteRam },
      { name: 'azote MicroVm (no CLI)', command: this.azoteApi(azoteElf, cmdline, MEM_MIB), status: EXIT_STATUS, guestMapping: azoteRam },
      { name: QEMU_KVM, command: this.qemuKvm(qemuElf, cmdline, MEM_MIB, false), status: (EXIT_STATUS << 1) | 1, guestMapping: /^$/ },
    ];
    const once = (v: Variant): Promise<number> => withChild(v.command, { label: v.name, timeoutMs: TEST_TIMEOUT_MS }, async (c) => {
      const e = await c.expectExit(v.status);
      if (!c.output('stdout').includes(`exit: status ${EXIT_STATUS}`)) throw c.error('did not print the exit guest\'s line');
      return e.ms;
    });
    say('\ntest guest: one warm-up run each, then timing');
    for (const v of variants) await once(v);
    // Reference: start -> exit of a node process that does nothing (the floor under both azote rows).
    const nodeRef: Variant = { name: NODE_REF, command: [this.node, '-e', ''], status: 0, guestMapping: /^$/ };
    const nodeOnce = (): Promise<number> => withChild(nodeRef.command, { label: nodeRef.name, timeoutMs: TEST_TIMEOUT_MS },
      async (c) => (await c.expectExit(0)).ms);
    const samples = new Map([...variants, nodeRef].map((v) => [v.name, [] as number[]]));
    for (let i = 0; i < this.runs; i++) {
      for (const v of rotated(variants, i)) samples.get(v.name)!.push(await once(v));
      samples.get(NODE_REF)!.push(await nodeOnce());
      progress(`  run ${i + 1}/${this.runs}`);
    }
    this.show({
      id: 'test-guest-time', title: `Test guest (exit.elf) under KVM: process start -> exit port -> process exit`, unit: 'ms',
      rows: [...variants, nodeRef].map((v) => ({ name: v.name, samples: samples.get(v.name)! })),
      baseline: QEMU_KVM,
      notes: [
        'azote run = node bin/azote.js run --kernel exit.elf (the CLI still loads and appends its initramfs)',
        'azote MicroVm = node dist/bench/azote-vmm.js: the library\'s MicroVm, no initramfs',
        'node -e "" = start-up and exit of an empty node process, the floor under both azote rows',
      ],
    });
  }

  /**
   * Private memory per VM while hello.elf is parked (smaps Private_Clean + Private_Dirty, summed over every process
   * that serves the VM: `azote run`'s jailed hypervisor is a grandchild of the CLI), split into guest pages and the
   * VMMs' own, with 1 and with VMS_SIDE_BY_SIDE VMs of a kind running at once (divided by their number).
   */
  private async vmmMemory(azoteElf: string, qemuElf: string): Promise<void> {
    const cmdline = 'halt';
    const azoteRam = /^\/memfd:azote-guest-ram\b/;
    interface Kind {
      readonly command: string[];
      readonly guestMapping: RegExp;
      /** The rows it gives: a name and which processes of its tree (the first is the launched one) count. */
      readonly rows: ReadonlyArray<{ readonly name: string; readonly pids: (tree: number[]) => number[] }>;
    }
    const all = (tree: number[]): number[] => tree;
    const kinds: Kind[] = [
      {
        command: this.azoteCli(azoteElf, cmdline, MEM_MIB), guestMapping: azoteRam,
        rows: [{ name: AZOTE_RUN_HYPERVISOR, pids: (tree) => tree.slice(1) }, { name: 'azote run, its CLI included', pids: all }],
      },
      { command: this.azoteApi(azoteElf, cmdline, MEM_MIB), guestMapping: azoteRam, rows: [{ name: 'azote MicroVm (one process, no CLI)', pids: all }] },
      {
        command: this.qemuKvm(qemuElf, cmdline, MEM_MIB, true), guestMapping: /^\/memfd:memory-backend-memfd\b/,
        rows: [{ name: QEMU_KVM, pids: all }],
      },
    ];
    /** Starts `count` VMs of a kind at once; once all parked, each row's private memory per VM. */
    const measure = async (kind: Kind, count: number): Promise<Map<string, PrivateSplit>> => {
      const children = Array.from({ length: count }, (_, n) => TimedChild.start(kind.command, { label: `${kind.rows[0]?.name ?? ''} #${n + 1}`, timeoutMs: TEST_TIMEOUT_MS }));
      try {
        await Promise.all(children.map((c) => c.waitFor('stdout', /\nhalting/)));
        await sleep(SETTLE_MS);
        const trees = children.map((c) => processTree(c.pid));
        const found = readPrivate(trees.flat(), kind.guestMapping).guestMapped;
        if (found !== count * MEM_MIB * MiB) {
          throw new BenchError(`found ${found / MiB} MiB of mappings matching ${kind.guestMapping} in the smaps of ${count} VMs' processes, `
            + `expected ${count} x ${MEM_MIB} MiB of guest RAM`);
        }
        return new Map(kind.rows.map((r) => {
          const split = readPrivate(trees.flatMap(r.pids), kind.guestMapping);
          return [r.name, { private: split.private / count, guest: split.guest / count, own: split.own / count, guestMapped: split.guestMapped / count }];
        }));
      } finally {
        await Promise.all(children.map((c) => c.stop('SIGTERM')));
      }
    };
    say(`\nVMM memory: hello.elf with "halt", smaps of every process serving each VM read once all have parked (1 and ${VMS_SIDE_BY_SIDE} VMs)`);
    const rows = kinds.flatMap((k) => k.rows.map((r) => r.name));
    for (const count of [1, VMS_SIDE_BY_SIDE]) {
      const own = new Map(rows.map((r) => [r, [] as number[]]));
      const guest = new Map(rows.map((r) => [r, [] as number[]]));
      for (let i = 0; i < this.memRuns; i++) {
        for (const kind of rotated(kinds, i)) {
          for (const [name, split] of await measure(kind, count)) {
            own.get(name)?.push(split.own / MiB);
            guest.get(name)?.push(split.guest / MiB);
          }
        }
        progress(`  ${count} VM${count > 1 ? 's' : ''}: run ${i + 1}/${this.memRuns}`);
      }
      this.show({
        id: `vmm-private-${count}`, unit: 'MiB',
        title: `Private memory per VM, guest RAM left out (Private_Clean + Private_Dirty of every process serving it; ${count} VM${count > 1 ? 's' : ''} running)`,
        rows: rows.map((name) => ({ name, samples: own.get(name) ?? [] })), baseline: QEMU_KVM,
        notes: [
          `${AZOTE_RUN_HYPERVISOR}: the jail's unshare and the hypervisor process; the CLI attends the console, as a terminal does QEMU's`,
          'QEMU runs with -object memory-backend-memfd so that its guest RAM mapping can be told apart',
        ],
      });
      this.show({
        id: `guest-private-${count}`, title: `Private guest RAM per VM (same runs; the CLI copies its initramfs into the guest)`, unit: 'MiB',
        rows: rows.map((name) => ({ name, samples: guest.get(name) ?? [] })),
      }, 2);
    }
  }

  /** Azote's kernel and initramfs: Azote under KVM beside QEMU under TCG, start -> init's boot marker. */
  private async linux(): Promise<void> {
    const key = kernelKey();
    if (!existsSync(path.join(cacheDir(), 'kernel', key, 'version'))) {
      say(`\nLinux: SKIP: the guest kernel (key ${key}) is not built yet; run \`node bin/azote.js setup\` first (about ten minutes)`);
      this.skipped.push('linux-boot');
      return;
    }
    const log = createLogger('bench');
    const kernel = (await ensureKernel(log)).vmlinux;
    const base = readFileSync(await ensureBaseInitramfs(log));
    const tmp = makeTempDir('azote-bench-');
    try {
      // QEMU's initramfs: the base image, then init's QEMU build over /init (Linux unpacks concatenated archives in
      // order, later entries replacing earlier ones), then the same run request the CLI appends.
      runSync(['make', '-s', '-C', path.join(this.root, 'guest', 'init'), 'qemu', `OUT=${tmp}`], 'building the guest init for QEMU');
      const qemuInit = new CpioWriter().file('init', readFileSync(path.join(tmp, 'qemu', 'init')), 0o755).finish();
      const initrd = path.join(tmp, 'initrd-qemu.cpio');
      writeFileSync(initrd, Buffer.concat([base, qemuInit, runRequestArchive(LINUX_COMMAND)]));
      const qemuCmdline = guestCmdline({ nestedPvm: false, quiet: true });

      const azoteCmd = [this.node, this.azoteJs, 'run', '--boot-time', '--vcpus', String(VCPUS), '--mem', String(LINUX_MEM_MIB),
        '--', ...LINUX_COMMAND];
      const qemuCmd = [this.qemu, '-M', 'microvm', '-accel', 'tcg', '-m', String(LINUX_MEM_MIB), '-smp', String(VCPUS),
        '-kernel', kernel, '-initrd', initrd, '-append', qemuCmdline, '-display', 'none', '-monitor', 'none', '-nodefaults',
        '-serial', 'stdio', '-no-reboot', '-device', 'isa-debug-exit,iobase=0xf5,iosize=1'];
      const marker = /azote: init reached ([\d.]+) ms after process start/;

      const azoteSamples: number[] = [];
      const azoteSelf: number[] = [];
      const qemuSamples: number[] = [];
      const azoteOnce = (): Promise<void> => withChild(azoteCmd, { label: 'azote Linux', timeoutMs: LINUX_TIMEOUT_MS }, async (c) => {
        const m = await c.waitFor('stderr', marker);
        await c.expectExit(0);
        azoteSamples.push(m.ms);
        azoteSelf.push(Number(m.match[1]));
      });
      // Marker 1 on 0xf5 makes isa-debug-exit end QEMU with (1 << 1) | 1.
      const qemuOnce = (): Promise<void> => withChild(qemuCmd, { label: 'qemu Linux (TCG)', timeoutMs: LINUX_TIMEOUT_MS }, async (c) => {
        qemuSamples.push((await c.expectExit(3)).ms);
      });
      say(`\nLinux: ${kernel}, ${this.linuxRuns} interleaved runs (no warm-up; each Azote boot takes a while here)`);
      for (let i = 0; i < this.linuxRuns; i++) {
        for (const f of rotated([azoteOnce, qemuOnce], i)) await f();
        say(`  run ${i + 1}/${this.linuxRuns}: azote ${azoteSamples.at(-1)?.toFixed(0)} ms, qemu tcg ${qemuSamples.at(-1)?.toFixed(0)} ms`);
      }
      this.show({
        id: 'linux-boot', title: `Linux (Azote's kernel + initramfs, ${LINUX_MEM_MIB} MiB): process start -> guest init's boot marker`,
        unit: 'ms',
        rows: [
          { name: 'azote (KVM)', samples: azoteSamples },
          { name: 'azote (KVM), self-reported', samples: azoteSelf },
          { name: 'qemu microvm (TCG)', samples: qemuSamples },
        ],
        baseline: 'qemu microvm (TCG)',
        notes: [
          'reference only: QEMU cannot boot Linux under KVM on this machine, so it runs under TCG here',
          'azote: time at which the CLI\'s --boot-time line arrived; self-reported = the ms the CLI printed (from its own process start)',
          'qemu: init\'s QEMU build writes the marker to 0xf5, where an isa-debug-exit device ends QEMU',
        ],
      }, 0);
    } finally {
      removeTempDir(tmp);
    }
  }
}

export async function runBoot(): Promise<BootReport> {
  return new BootBench().run();
}
