// vsock benchmark: stream throughput between a host program and a guest program over Azote's virtio-vsock (hybrid
// Unix-socket host side), both ways, BENCH_VSOCK_RUNS boots. The guest runs guest/bench/vsockperf:
//   guest -> host: `vsockperf send 6000 MIB` connects to CID 2 port 6000 (the host's PATH_6000) and sends MIB MiB;
//   host -> guest: `vsockperf recv 5000` listens; this process connects to PATH, says CONNECT 5000 and sends MIB MiB.
// The guest reports both rates (its own clock, first byte to end of file).
// QEMU is not beside it: Debian's QEMU serves vsock only through the kernel's vhost-vsock (/dev/vhost-vsock), which
// this host may lack; the run says which. The reference row is a host Unix socket between two Node processes
// moving the same bytes: the ceiling of the host side's plumbing, not a peer VMM.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../src/base/log.js';
import { cacheDir } from '../src/images/cache.js';
import { CpioWriter } from '../src/images/cpio.js';
import { ensureBaseInitramfs } from '../src/images/initramfs.js';
import { kernelKey } from '../src/images/kernel.js';
import { projectRoot } from '../src/images/paths.js';
import { envInt, say } from './common.js';
import { runSync, withChild } from './proc.js';
import { renderMetric, type MetricResult } from './stats.js';

const MIB = 8;
const TIMEOUT_MS = 600_000;
const FIGURES_OUT = /vsockperf guest-to-host-mibs=([\d.]+)/;
const FIGURES_IN = /vsockperf host-to-guest-mibs=([\d.]+) bytes=(\d+)/;

export interface VsockReport {
  readonly metrics: MetricResult[];
  readonly skipped: string[];
}

/** Reads everything from connections to `sockPath`; resolves once it listens. */
function sink(sockPath: string): Promise<net.Server> {
  return new Promise((resolve) => {
    const s = net.createServer((c) => {
      c.on('data', () => undefined);
      c.on('end', () => c.end());
    }).listen(sockPath, () => resolve(s));
  });
}

/** Connects to the VM's socket until the guest accepts port `port`, then sends `bytes` and half-closes. */
async function sendToGuest(vmSock: string, port: number, bytes: number, deadline: number): Promise<void> {
  const payload = Buffer.alloc(bytes, 0x5a);
  while (Date.now() < deadline) {
    const sent = await new Promise<boolean>((resolve) => {
      const c = net.createConnection(vmSock);
      let ok = false;
      c.on('connect', () => c.write(`CONNECT ${port}\n`));
      c.on('data', () => {
        if (ok) return;
        ok = true;
        c.end(payload);
      });
      c.on('error', () => resolve(false));
      c.on('close', () => resolve(ok));
    });
    if (sent) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('the guest never accepted a vsock connection on its port');
}

/** Host Unix socket throughput between this process and a child Node process, in MiB/s. */
async function unixReference(dir: string): Promise<number> {
  const sock = path.join(dir, 'ref.sock');
  let started = 0;
  const done = new Promise<number>((resolve) => {
    const s = net.createServer((c) => {
      let n = 0;
      c.on('data', (d: Buffer) => {
        if (n === 0) started = performance.now();
        n += d.length;
      });
      c.on('end', () => {
        s.close();
        resolve(n / 2 ** 20 / ((performance.now() - started) / 1000));
      });
    }).listen(sock);
  });
  await new Promise((r) => setTimeout(r, 50));
  await withChild([process.execPath, '-e',
    `const c=require('net').createConnection(${JSON.stringify(sock)});c.on('connect',()=>c.end(Buffer.alloc(${MIB}<<20,1)));`],
  { label: 'unix socket reference', timeoutMs: 60_000 }, async (c) => { await c.expectExit(0); });
  return done;
}

export async function runVsock(): Promise<VsockReport> {
  const runs = envInt('BENCH_VSOCK_RUNS', 3);
  if (!existsSync(path.join(cacheDir(), 'kernel', kernelKey(), 'version'))) {
    say('\nvsock: SKIP: the guest kernel is not built yet; run `node bin/azote.js setup` first');
    return { metrics: [], skipped: ['vsock'] };
  }
  const root = projectRoot();
  const log = createLogger('bench');
  const base = readFileSync(await ensureBaseInitramfs(log));
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-bench-vsock-'));
  try {
    runSync(['make', '-s', '-C', path.join(root, 'guest', 'bench'), `OUT=${dir}`], 'building vsockperf');
    const initrd = path.join(dir, 'initrd.cpio');
    writeFileSync(initrd, Buffer.concat([base,
      new CpioWriter().file('bin/vsockperf', readFileSync(path.join(dir, 'vsockperf')), 0o755).finish()]));
    const qemuVsock = existsSync('/dev/vhost-vsock');
    say(`\nvsock benchmark: ${MIB} MiB each way per boot, ${runs} boots; QEMU: ${qemuVsock
      ? 'not run (its vsock is the kernel\'s vhost-vsock, a different design from a user-space device)'
      : 'cannot run here (Debian\'s QEMU serves vsock only through /dev/vhost-vsock, which this host lacks)'}`);
    const out: number[] = [], into: number[] = [], reference: number[] = [];
    for (let i = 0; i < runs; i++) {
      const vmSock = path.join(dir, `vm${i}.sock`);
      const server = await sink(`${vmSock}_6000`);
      try {
        const cmd = [process.execPath, path.join(root, 'bin', 'azote.js'), 'run', '--initrd', initrd, '--vsock', vmSock,
          '--', 'sh', '-c', `vsockperf send 6000 ${MIB} && vsockperf recv 5000`];
        await withChild(cmd, { label: 'azote vsockperf', timeoutMs: TIMEOUT_MS }, async (c) => {
          await c.waitFor('stdout', FIGURES_OUT);
          await sendToGuest(vmSock, 5000, MIB << 20, Date.now() + TIMEOUT_MS);
          await c.expectExit(0);
          const o = FIGURES_OUT.exec(c.output('stdout'));
          const n = FIGURES_IN.exec(c.output('stdout'));
          if (!o || !n || Number(n[2]) !== MIB << 20) throw c.error('vsockperf did not report both directions in full');
          out.push(Number(o[1]));
          into.push(Number(n[1]));
        });
      } finally {
        server.close();
      }
      reference.push(await unixReference(dir));
      say(`  run ${i + 1}/${runs}: guest->host ${out.at(-1)} MiB/s, host->guest ${into.at(-1)} MiB/s, `
        + `unix socket reference ${reference.at(-1)?.toFixed(0)} MiB/s`);
    }
    const metrics: MetricResult[] = [];
    for (const [id, title, samples] of [
      ['vsock-guest-to-host', 'vsock stream, guest -> host program (64 KiB writes)', out],
      ['vsock-host-to-guest', 'vsock stream, host program -> guest', into],
    ] as const) {
      const { text, result } = renderMetric({
        id, title, unit: 'MiB/s', baseline: 'host unix socket (reference)',
        rows: [{ name: 'azote (KVM)', samples: [...samples] }, { name: 'host unix socket (reference)', samples: reference }],
        notes: id === 'vsock-guest-to-host' ? [
          'higher is better; the reference is the host side alone (two Node processes on a Unix socket), not a VMM',
          'under this machine\'s nested kvm_pvm each guest system call costs about a millisecond (see `npm run bench -- block`)',
        ] : [],
      });
      say(`\n${text}`);
      metrics.push(result);
    }
    return { metrics, skipped: qemuVsock ? [] : ['vsock-qemu (no /dev/vhost-vsock)'] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
