// Block benchmarks: a disk inside the guest, Azote against Debian's QEMU on the same kernel, initramfs, disk file and
// cache mode. The guest runs guest/bench/blkbench (O_DIRECT on /dev/vda: sequential 1 MiB reads and writes, random
// 4 KiB reads and writes, and a system call's cost as a yardstick) and prints its figures; each variant boots it
// BENCH_BLOCK_RUNS (BENCH_CARD_RUNS) times, interleaved.
//   block: `azote run --disk scratch.img` (virtio-blk over virtio-mmio, data path on the VM's I/O thread, host page
//          cache, a guest flush is fdatasync) beside QEMU's `-device virtio-blk-device` with cache=writeback and
//          aio=threads.
//   card:  the same disk through Azote's block card (`azote run --volume`), through Azote's own device, and through
//          QEMU's `-device vhost-user-blk` with qemu-storage-daemon's vhost-user-blk export.
// QEMU runs `-M microvm,acpi=off -accel tcg` with virtio-mmio.force-legacy=false: without ACPI it names its
// virtio-mmio devices on the kernel command line (our kernel has no ACPI), modern virtio as Azote's; under TCG
// because its KVM mode cannot boot Linux on this machine (nested kvm_pvm), which the figures say. Its init build
// reports the exit status on port 0xf4 (isa-debug-exit).
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
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
const AZOTE_CARD = 'azote + block card (KVM)';
const QEMU = 'qemu microvm (TCG)';
const QEMU_QSD = 'qemu (TCG) + qemu-storage-daemon';

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

interface Variant {
  readonly name: string;
  run(): Promise<Figures>;
}

export const runBlock = (): Promise<BlockReport> => blockBench('block');
export const runCard = (): Promise<BlockReport> => blockBench('card');

/**
 * `block`: Azote's in-hypervisor virtio-blk beside QEMU's. `card`: the same disk through Azote's block card
 * (`azote run --volume`), through the in-hypervisor device, and through QEMU + qemu-storage-daemon over vhost-user.
 */
async function blockBench(mode: 'block' | 'card'): Promise<BlockReport> {
  const root = projectRoot();
  const qemu = process.env['QEMU'] || 'qemu-system-x86_64';
  const runs = envInt(mode === 'card' ? 'BENCH_CARD_RUNS' : 'BENCH_BLOCK_RUNS', 3);
  const host = { qemu: qemuVersion(qemu), kvmFlavour: detectKvmFlavour(), node: process.version };
  if (!existsSync(path.join(cacheDir(), 'kernel', kernelKey(), 'version'))) {
    say(`\n${mode}: SKIP: the guest kernel is not built yet; run \`node bin/azote.js setup\` first`);
    return { host, metrics: [], skipped: [mode] };
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

    const azoteJs = path.join(root, 'bin', 'azote.js');
    const azoteRun = (attach: string[]): string[] => [process.execPath, azoteJs, 'run', '--mem', String(MEM_MIB),
      '--initrd', azoteInitrd, ...attach, '--', ...command];
    const qemuRun = (attach: string[], machine = ''): string[] => [qemu, '-M', `microvm,acpi=off${machine}`, '-accel', 'tcg',
      '-m', String(MEM_MIB), '-smp', '1', '-kernel', kernel, '-initrd', qemuInitrd, '-append', guestCmdline({ nestedPvm: false, quiet: true }),
      '-display', 'none', '-monitor', 'none', '-nodefaults', '-serial', 'stdio', '-no-reboot',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=1', '-global', 'virtio-mmio.force-legacy=false', ...attach];
    // Both backends serve the disk on `socket`: the card names it <base>:<volume>.
    const cardBase = path.join(tmp, 'card.sock');
    const socket = mode === 'card' ? `${cardBase}:bench` : path.join(tmp, 'backend.sock');
    /** Runs `fn` while a vhost-user backend serves the disk on `socket`. */
    const withBackend = (cmd: string[], label: string, fn: () => Promise<Figures>): Promise<Figures> =>
      withChild(cmd, { label, timeoutMs: TIMEOUT_MS }, async (b) => {
        for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(100);
        if (!existsSync(socket)) throw b.error('made no socket');
        try {
          return await fn();
        } finally {
          await b.stop();
          rmSync(socket, { force: true });
        }
      });
    const azoteOnce = (attach: string[]): Promise<Figures> =>
      withChild(azoteRun(attach), { label: 'azote blkbench', timeoutMs: TIMEOUT_MS }, async (c) => {
        await c.expectExit(0);
        return parse(c.output('stdout'), 'azote');
      });
    // isa-debug-exit ends QEMU with (status << 1) | 1: 1 for blkbench's 0.
    const qemuOnce = (attach: string[], machine?: string): Promise<Figures> =>
      withChild(qemuRun(attach, machine), { label: 'qemu blkbench (TCG)', timeoutMs: TIMEOUT_MS }, async (c) => {
        await c.expectExit(1);
        return parse(c.output('stdout'), 'qemu');
      });
    const variants: Variant[] = [{ name: AZOTE, run: () => azoteOnce(['--disk', disk]) }];
    if (mode === 'card') {
      variants.unshift({
        name: AZOTE_CARD,
        run: () => withBackend([process.execPath, azoteJs, 'card', 'block', '--socket', cardBase, '--volume', `bench=${disk}`],
          'azote block card', () => azoteOnce(['--volume', socket])),
      });
      variants.push({
        name: QEMU_QSD,
        run: () => withBackend(['qemu-storage-daemon', '--blockdev', `driver=file,node-name=file0,filename=${disk},cache.direct=off`,
          '--export', `type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path=${socket},writable=on`],
        'qemu-storage-daemon', () => qemuOnce(['-object', `memory-backend-memfd,id=mem,size=${MEM_MIB}M,share=on`,
          '-chardev', `socket,id=c0,path=${socket}`, '-device', 'vhost-user-blk,chardev=c0'], ',memory-backend=mem')),
      });
    } else {
      variants.push({
        name: QEMU,
        run: () => qemuOnce(['-drive', `id=d0,file=${disk},format=raw,if=none,cache=writeback,aio=threads`, '-device', 'virtio-blk-device,drive=d0']),
      });
    }
    const baseline = mode === 'card' ? QEMU_QSD : QEMU;

    const samples = new Map<string, Figures[]>(variants.map((v) => [v.name, []]));
    say(`\n${mode} benchmark: azote vs ${host.qemu}; KVM ${host.kvmFlavour}; ${runs} interleaved runs`);
    say(`  guest: 1 vCPU, ${MEM_MIB} MiB, blkbench on /dev/vda (O_DIRECT, first ${SPAN_MIB} MiB of a ${DISK_MIB} MiB raw file)`);
    for (let i = 0; i < runs; i++) {
      for (const v of rotated(variants, i)) samples.get(v.name)?.push(await v.run());
      say(`  run ${i + 1}/${runs}: ${variants.map((v) => `${v.name} ${samples.get(v.name)?.at(-1)?.join(' / ') ?? '-'}`).join('; ')}`);
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
        id: mode === 'card' ? id.replace('block-', 'card-') : id, title, unit, baseline,
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
