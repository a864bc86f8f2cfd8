// Block benchmark: a disk inside the guest, Azote against Debian's QEMU on the same kernel, initramfs, disk file and
// cache mode. The guest runs guest/bench/blkbench (O_DIRECT on /dev/vda: sequential 1 MiB reads and writes, random
// 4 KiB reads and writes) and prints its figures; each VMM boots it BENCH_BLOCK_RUNS times, interleaved.
//   Azote: `azote run --disk scratch.img` (virtio-blk over virtio-mmio, data path on the VM's I/O thread; the
//          host page cache is used and a guest flush is fdatasync: QEMU's cache=writeback).
//   QEMU:  `-M microvm,acpi=off -accel tcg` (without ACPI it names its virtio-mmio devices on the kernel command
//          line, which our ACPI-less kernel needs), `-device virtio-blk-device` (virtio-mmio too) with cache=writeback and aio=threads.
//          QEMU cannot boot Linux under KVM on this machine (nested kvm_pvm), so it runs under TCG: say so beside
//          the figures. Its init build reports the exit status on port 0xf4 (isa-debug-exit).
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import path from 'node:path';
import { createLogger } from '../src/base/log.js';
import { cacheDir } from '../src/images/cache.js';
import { guestCmdline } from '../src/images/cmdline.js';
import { CpioWriter } from '../src/images/cpio.js';
import { ensureBaseInitramfs } from '../src/images/initramfs.js';
import { runRequestArchive } from '../src/images/run-request.js';
import { ensureKernel, kernelKey } from '../src/images/kernel.js';
import { projectRoot } from '../src/images/paths.js';
import { detectKvmFlavour } from '../src/kvm/kvm.js';
import { envInt, qemuVersion, rotated, say } from './common.js';
import { makeTempDir, removeTempDir, runSync, withChild } from './proc.js';
import { renderMetric, type MetricResult } from './stats.js';

const MEM_MIB = 256;
const DISK_MIB = 256;
/** The part of the disk blkbench reads and writes. */
const SPAN_MIB = 64;
const TIMEOUT_MS = 600_000;
const FIGURES = /blkbench seq-read-mibs=([\d.]+) seq-write-mibs=([\d.]+) rand-read-iops=([\d.]+) rand-write-iops=([\d.]+) syscall-us=([\d.]+)/;
const AZOTE = 'azote (KVM)';
const QEMU = 'qemu microvm (TCG)';

type Figures = [seqRead: number, seqWrite: number, randRead: number, randWrite: number, syscallUs: number];

export interface BlockReport {
  readonly host: Record<string, unknown>;
  readonly metrics: MetricResult[];
  readonly skipped: string[];
}

function parse(out: string, who: string): Figures {
  const m = FIGURES.exec(out);
  if (!m) throw new Error(`${who}: blkbench printed no figures; its output ended with: ${out.slice(-400)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])];
}

function scratchDisk(file: string): void {
  const fd = openSync(file, 'w');
  try {
    const chunk = randomFillSync(new Uint8Array(1 << 20));
    for (let i = 0; i < DISK_MIB; i++) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}

export async function runBlock(): Promise<BlockReport> {
  const root = projectRoot();
  const qemu = process.env['QEMU'] || 'qemu-system-x86_64';
  const runs = envInt('BENCH_BLOCK_RUNS', 3);
  const host = { qemu: qemuVersion(qemu), kvmFlavour: detectKvmFlavour(), node: process.version };
  if (!existsSync(path.join(cacheDir(), 'kernel', kernelKey(), 'version'))) {
    say('\nblock: SKIP: the guest kernel is not built yet; run `node bin/azote.js setup` first');
    return { host, metrics: [], skipped: ['block'] };
  }
  const log = createLogger('bench');
  const kernel = (await ensureKernel(log)).vmlinux;
  const base = readFileSync(await ensureBaseInitramfs(log));
  const tmp = makeTempDir('azote-bench-block-');
  try {
    runSync(['make', '-s', '-C', path.join(root, 'guest', 'bench'), `OUT=${tmp}`], 'building blkbench');
    runSync(['make', '-s', '-C', path.join(root, 'guest', 'init'), 'qemu', `OUT=${tmp}`], 'building the guest init for QEMU');
    const tool = new CpioWriter().file('blkbench', readFileSync(path.join(tmp, 'blkbench')), 0o755).finish();
    const command = ['/blkbench', '/dev/vda', String(SPAN_MIB)];
    // Azote's CLI appends its own run request to --initrd; QEMU's gets init's QEMU build and the same request.
    const azoteInitrd = path.join(tmp, 'initrd-azote.cpio');
    writeFileSync(azoteInitrd, Buffer.concat([base, tool]));
    const qemuInitrd = path.join(tmp, 'initrd-qemu.cpio');
    const qemuInit = new CpioWriter().file('init', readFileSync(path.join(tmp, 'qemu', 'init')), 0o755).finish();
    writeFileSync(qemuInitrd, Buffer.concat([base, tool, qemuInit, runRequestArchive(command)]));
    const disk = path.join(tmp, 'scratch.img');
    scratchDisk(disk);

    const azoteCmd = [process.execPath, path.join(root, 'bin', 'azote.js'), 'run', '--mem', String(MEM_MIB),
      '--initrd', azoteInitrd, '--disk', disk, '--', ...command];
    const qemuCmd = [qemu, '-M', 'microvm,acpi=off', '-accel', 'tcg', '-m', String(MEM_MIB), '-smp', '1', '-kernel', kernel,
      '-initrd', qemuInitrd, '-append', guestCmdline({ nestedPvm: false, quiet: true }), '-display', 'none',
      '-monitor', 'none', '-nodefaults', '-serial', 'stdio', '-no-reboot', '-device', 'isa-debug-exit,iobase=0xf4,iosize=1',
      '-drive', `id=d0,file=${disk},format=raw,if=none,cache=writeback,aio=threads`, '-device', 'virtio-blk-device,drive=d0'];

    const samples = new Map<string, Figures[]>([[AZOTE, []], [QEMU, []]]);
    const azoteOnce = (): Promise<void> => withChild(azoteCmd, { label: 'azote blkbench', timeoutMs: TIMEOUT_MS }, async (c) => {
      await c.expectExit(0);
      samples.get(AZOTE)?.push(parse(c.output('stdout'), 'azote'));
    });
    // isa-debug-exit ends QEMU with (status << 1) | 1: 1 for blkbench's 0.
    const qemuOnce = (): Promise<void> => withChild(qemuCmd, { label: 'qemu blkbench (TCG)', timeoutMs: TIMEOUT_MS }, async (c) => {
      await c.expectExit(1);
      samples.get(QEMU)?.push(parse(c.output('stdout'), 'qemu'));
    });
    say(`\nblock benchmark: azote vs ${host.qemu}; KVM ${host.kvmFlavour}; ${runs} interleaved runs`);
    say(`  guest: 1 vCPU, ${MEM_MIB} MiB, blkbench on /dev/vda (O_DIRECT, first ${SPAN_MIB} MiB of a ${DISK_MIB} MiB raw file)`);
    for (let i = 0; i < runs; i++) {
      for (const f of rotated([azoteOnce, qemuOnce], i)) await f();
      const last = (n: string): string => samples.get(n)?.at(-1)?.join(' / ') ?? '-';
      say(`  run ${i + 1}/${runs}: azote ${last(AZOTE)}; qemu ${last(QEMU)}`);
    }
    const metrics: MetricResult[] = [];
    const titles: Array<[string, string, string]> = [
      ['block-seq-read', 'sequential read, 1 MiB O_DIRECT requests', 'MiB/s'],
      ['block-seq-write', 'sequential write, 1 MiB O_DIRECT requests, then fdatasync', 'MiB/s'],
      ['block-rand-read', 'random 4 KiB O_DIRECT reads', 'IOPS'],
      ['block-rand-write', 'random 4 KiB O_DIRECT writes, then fdatasync', 'IOPS'],
      ['guest-syscall', 'yardstick: one trivial system call (getppid) in the guest; lower is better', 'µs'],
    ];
    titles.forEach(([id, title, unit], k) => {
      const { text, result } = renderMetric({
        id, title, unit, baseline: QEMU,
        rows: [...samples].map(([name, figs]) => ({ name, samples: figs.map((f) => f[k] ?? 0) })),
        notes: k === 0 ? [
          'higher is better; ratio = azote / qemu',
          'QEMU runs under TCG: its KVM mode cannot boot Linux on this machine (nested kvm_pvm), where Azote\'s guest '
          + 'kernel code itself runs far slower than native (guest/kernel/README.md); both use the host page cache',
        ] : k === 4 ? [
          'every guest I/O costs several system calls and interrupts: where this row is far apart, so are the others, '
          + 'whatever the device does',
        ] : [],
      }, k === 4 ? 2 : 1);
      say(`\n${text}`);
      metrics.push(result);
    });
    return { host, metrics, skipped: [] };
  } finally {
    removeTempDir(tmp);
  }
}
