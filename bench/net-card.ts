// Network card benchmark (part of `npm run bench -- card`): TCP stream throughput from one guest to another,
// BENCH_NET_RUNS times per variant, interleaved. Both guests run guest/bench/tcpperf (the receiver reports the rate,
// first byte to end of file, by its own clock). Variants:
//   azote VMs through the net card: two `azote run --net card:SOCKET` on one `azote card net`;
//   QEMU VMs through the net card: two QEMU microvms (TCG) with `-netdev vhost-user` on one `azote card net`;
//   QEMU VMs through QEMU's own link: `-netdev socket` (listen/connect), a user-space Ethernet link in QEMU itself:
//   the baseline, a real peer that involves no Azote code.
// QEMU runs under TCG for the reason bench/block.ts gives; its guests get the card's MACs (QEMU keeps its own MAC
// for a vhost-user netdev) and their addresses on the kernel command line.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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
import { formatMac, ipToString, macForAddress, parseSubnet, subnetRange } from '../src/virtio/net-addressing.js';
import { envInt, qemuVersion, rotated, say } from './common.js';
import { makeTempDir, removeTempDir, runSync, withChild, type TimedChild } from './proc.js';
import { renderMetric, type MetricResult } from './stats.js';

const MEM_MIB = 256;
const PORT = 7000;
const TIMEOUT_MS = 900_000;
const SUBNET = '10.66.0.0/24';
const FIGURES = /tcpperf received-mibs=([\d.]+) bytes=(\d+)/;
const AZOTE_CARD = 'azote VMs + net card (KVM)';
const QEMU_CARD = 'qemu VMs (TCG) + net card';
const QEMU_SOCKET = 'qemu VMs (TCG), -netdev socket';

export interface NetCardReport {
  readonly metrics: MetricResult[];
  readonly skipped: string[];
}

export async function runNetCard(): Promise<NetCardReport> {
  const root = projectRoot();
  const qemu = process.env['QEMU'] || 'qemu-system-x86_64';
  const runs = envInt('BENCH_NET_RUNS', 3);
  const mib = envInt('BENCH_NET_MIB', 8);
  if (!existsSync(path.join(cacheDir(), 'kernel', kernelKey(), 'version'))) {
    say('\nnet card: SKIP: the guest kernel is not built yet; run `node bin/azote.js setup` first');
    return { metrics: [], skipped: ['net-card'] };
  }
  const log = createLogger('bench');
  const kernel = (await ensureKernel(log)).vmlinux;
  const base = readFileSync(await ensureBaseInitramfs(log));
  const subnet = parseSubnet(SUBNET);
  if (!subnet) throw new Error(`bad benchmark subnet ${SUBNET}`);
  const range = subnetRange(subnet);
  // The receiver attaches first and gets the first address; the sender the second.
  const [receiverIp, senderIp] = [range.first, range.first + 1];
  const tmp = makeTempDir('azote-bench-net-');
  try {
    runSync(['make', '-s', '-C', path.join(root, 'guest', 'bench'), `OUT=${tmp}`], 'building tcpperf');
    runSync(['make', '-s', '-C', path.join(root, 'guest', 'init'), 'qemu', `OUT=${tmp}`], 'building the guest init for QEMU');
    const tool = new CpioWriter().file('bin/tcpperf', readFileSync(path.join(tmp, 'tcpperf')), 0o755).finish();
    const serve = ['tcpperf', 'serve', String(PORT)];
    const send = ['tcpperf', 'send', ipToString(receiverIp), String(PORT), String(mib)];
    const azoteInitrd = path.join(tmp, 'initrd-azote.cpio');
    writeFileSync(azoteInitrd, Buffer.concat([base, tool]));
    const qemuInit = new CpioWriter().file('init', readFileSync(path.join(tmp, 'qemu', 'init')), 0o755).finish();
    const qemuInitrd = (role: string, command: string[]): string => {
      const file = path.join(tmp, `initrd-qemu-${role}.cpio`);
      writeFileSync(file, Buffer.concat([base, tool, qemuInit, runRequestArchive(command)]));
      return file;
    };
    const qemuServe = qemuInitrd('serve', serve), qemuSend = qemuInitrd('send', send);

    const azoteJs = path.join(root, 'bin', 'azote.js');
    const socket = path.join(tmp, 'net.sock');
    const azoteVm = (command: string[]): string[] => [process.execPath, azoteJs, 'run', '--mem', String(MEM_MIB),
      '--initrd', azoteInitrd, '--net', `card:${socket}`, '--', ...command];
    const qemuVm = (initrd: string, ip: number, netdev: string, shared: boolean): string[] => [qemu,
      '-M', `microvm,acpi=off${shared ? ',memory-backend=mem' : ''}`, '-accel', 'tcg', '-m', String(MEM_MIB), '-smp', '1',
      ...(shared ? ['-object', `memory-backend-memfd,id=mem,size=${MEM_MIB}M,share=on`] : []),
      '-kernel', kernel, '-initrd', initrd,
      '-append', `${guestCmdline({ nestedPvm: false, quiet: true })} azote.net=${ipToString(ip)}/${subnet.prefix},${ipToString(range.gateway)}`,
      '-display', 'none', '-monitor', 'none', '-nodefaults', '-serial', 'stdio', '-no-reboot',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=1', '-global', 'virtio-mmio.force-legacy=false',
      '-netdev', netdev, '-device', `virtio-net-device,netdev=n0,mac=${formatMac(macForAddress(ip, subnet.prefix))}`];
    const viaCard = (chardev: string): string => `vhost-user,id=n0,chardev=${chardev}`;
    const cardSocket = (id: string): string[] => ['-chardev', `socket,id=${id},path=${socket}`];

    /** Receiver then sender, each started once the previous is attached; the receiver's figure. */
    const pair = async (
      receiver: string[], sender: string[], okStatus: number, attached: (c: TimedChild | undefined, n: number) => Promise<void>,
    ): Promise<number> => withChild(receiver, { label: 'tcpperf receiver', timeoutMs: TIMEOUT_MS }, async (r) => {
      await attached(r, 1);
      return withChild(sender, { label: 'tcpperf sender', timeoutMs: TIMEOUT_MS }, async (s) => {
        await attached(s, 2);
        await s.expectExit(okStatus);
        await r.expectExit(okStatus);
        const m = FIGURES.exec(r.output('stdout'));
        if (!m || Number(m[2]) !== mib << 20) throw r.error(`tcpperf did not report ${mib} MiB received`);
        return Number(m[1]);
      });
    });
    const withCard = <T>(fn: (card: TimedChild) => Promise<T>): Promise<T> =>
      withChild([process.execPath, azoteJs, 'card', 'net', '--socket', socket, '--subnet', SUBNET],
        { label: 'azote net card', timeoutMs: TIMEOUT_MS }, async (card) => {
          await card.waitFor('stderr', /network card serving/);
          try {
            return await fn(card);
          } finally {
            await card.stop();
          }
        });
    const attachedTo = (card: TimedChild) => async (_: TimedChild | undefined, n: number): Promise<void> => {
      await card.waitFor('stderr', new RegExp(`network port attached port=port${n} `));
    };
    let socketPort = 17000;
    const variants = [
      { name: AZOTE_CARD, run: () => withCard((card) => pair(azoteVm(serve), azoteVm(send), 0, attachedTo(card))) },
      {
        name: QEMU_CARD,
        run: () => withCard((card) => pair(qemuVm(qemuServe, receiverIp, viaCard('c0'), true).concat(cardSocket('c0')),
          qemuVm(qemuSend, senderIp, viaCard('c0'), true).concat(cardSocket('c0')), 1, attachedTo(card))),
      },
      {
        name: QEMU_SOCKET,
        run: () => {
          const port = socketPort++;
          return pair(qemuVm(qemuServe, receiverIp, `socket,id=n0,listen=127.0.0.1:${port}`, false),
            qemuVm(qemuSend, senderIp, `socket,id=n0,connect=127.0.0.1:${port}`, false), 1,
            async (_, n) => { if (n === 1) await sleep(1000); }); // the listener is up before the connector starts
        },
      },
    ];
    const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
    say(`\nnet card benchmark: guest-to-guest TCP, ${mib} MiB per run, ${runs} interleaved runs; ${qemuVersion(qemu)}`);
    say(`  guests: 1 vCPU, ${MEM_MIB} MiB each; tcpperf (64 KiB writes) from ${ipToString(senderIp)} to ${ipToString(receiverIp)}`);
    for (let i = 0; i < runs; i++) {
      for (const v of rotated(variants, i)) samples.get(v.name)?.push(await v.run());
      say(`  run ${i + 1}/${runs}: ${variants.map((v) => `${v.name} ${samples.get(v.name)?.at(-1) ?? '-'} MiB/s`).join('; ')}`);
    }
    const { text, result } = renderMetric({
      id: 'card-net-guest-to-guest', title: 'TCP stream, guest -> guest', unit: 'MiB/s', baseline: QEMU_SOCKET,
      rows: [...samples].map(([name, s]) => ({ name, samples: s })),
      notes: [
        'higher is better; the baseline is two QEMU guests on QEMU\'s own user-space link, no Azote code involved',
        'the middle row is the same two QEMU guests through Azote\'s net card: the card against QEMU\'s link',
        'Azote\'s guests run under this machine\'s nested kvm_pvm, where every guest interrupt and system call is slow '
        + '(see the guest-syscall row of `npm run bench -- block`)',
      ],
    });
    say(`\n${text}`);
    return { metrics: [result], skipped: [] };
  } finally {
    removeTempDir(tmp);
  }
}
