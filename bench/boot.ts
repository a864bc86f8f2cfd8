// Boot benchmark: Azote against Debian's QEMU (`qemu-system-x86_64 -M microvm`) on the same guest, memory and vCPUs.
//
//   1. Test guest under KVM (guest/test exit.elf, exit status 7): time from process start to the process's exit,
//      which follows the guest's write to the exit port right after it starts. Interleaved runs of
//      `azote run` (the CLI, through `node bin/azote.js`), the bare MicroVm (bench/azote-vmm.ts: no CLI, no
//      initramfs) and QEMU/KVM.
//   2. VMM memory under KVM: each VMM runs hello.elf with `halt` (it prints its lines and parks); once it has said
//      "halting", /proc/PID/smaps gives the resident set; the VMM's own memory is that minus the resident pages of
//      the guest RAM mapping (Azote: memfd "azote-guest-ram"; QEMU: a memory-backend-memfd).
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
import { makeTempDir, readRss, removeTempDir, runSync, withChild, type RssSplit } from './proc.js';
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

  /** Resident memory of each VMM while hello.elf is parked, split into guest pages and the VMM's own. */
  private async vmmMemory(azoteElf: string, qemuElf: string): Promise<void> {
    const cmdline = 'halt';
    const azoteRam = /^\/memfd:azote-guest-ram\b/;
    const variants: Variant[] = [
      { name: 'azote run (CLI)', command: this.azoteCli(azoteElf, cmdline, MEM_MIB), status: 130, guestMapping: azoteRam },
      { name: 'azote MicroVm (no CLI)', command: this.azoteApi(azoteElf, cmdline, MEM_MIB), status: 130, guestMapping: azoteRam },
      {
        name: QEMU_KVM, command: this.qemuKvm(qemuElf, cmdline, MEM_MIB, true), status: 0,
        guestMapping: /^\/memfd:memory-backend-memfd\b/,
      },
    ];
    const once = (v: Variant): Promise<RssSplit> => withChild(v.command, { label: v.name, timeoutMs: TEST_TIMEOUT_MS }, async (c) => {
      await c.waitFor('stdout', /\nhalting/);
      await sleep(SETTLE_MS);
      const rss = readRss(c.pid, v.guestMapping);
      if (rss.guestMapped !== MEM_MIB * MiB) {
        throw c.error(`found ${rss.guestMapped / MiB} MiB of mappings matching ${v.guestMapping} in /proc/${c.pid}/smaps, `
          + `expected the ${MEM_MIB} MiB of guest RAM`);
      }
      await c.stop('SIGTERM');
      return rss;
    });
    say('\nVMM memory: hello.elf with "halt", smaps read once it has parked');
    const own = new Map(variants.map((v) => [v.name, [] as number[]]));
    const total = new Map(variants.map((v) => [v.name, [] as number[]]));
    const guest = new Map(variants.map((v) => [v.name, [] as number[]]));
    for (let i = 0; i < this.memRuns; i++) {
      for (const v of rotated(variants, i)) {
        const r = await once(v);
        own.get(v.name)!.push(r.own / MiB);
        total.get(v.name)!.push(r.total / MiB);
        guest.get(v.name)!.push(r.guest / MiB);
      }
      progress(`  run ${i + 1}/${this.memRuns}`);
    }
    this.show({
      id: 'vmm-own-rss', title: 'VMM own memory under KVM: RSS minus resident guest RAM (hello.elf, parked)', unit: 'MiB',
      rows: variants.map((v) => ({ name: v.name, samples: own.get(v.name)! })), baseline: QEMU_KVM,
      notes: ['QEMU runs here with -object memory-backend-memfd so that its guest RAM mapping can be told apart'],
    });
    this.show({
      id: 'vmm-total-rss', title: 'Whole process RSS, guest pages included (same runs)', unit: 'MiB',
      rows: variants.map((v) => ({ name: v.name, samples: total.get(v.name)! })), baseline: QEMU_KVM,
    }, 1);
    this.show({
      id: 'guest-rss', title: 'Resident guest RAM (same runs; the CLI copies its initramfs into the guest)', unit: 'MiB',
      rows: variants.map((v) => ({ name: v.name, samples: guest.get(v.name)! })),
    }, 2);
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
