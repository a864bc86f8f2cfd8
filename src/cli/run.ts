// `azote run`: boot a microVM on our kernel and initramfs (or the user's), run one command or a shell in it,
// and leave with the command's exit status.
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { detectKvmFlavour } from '../kvm/kvm.js';
import { GUEST_SHUTDOWN_GRACE_MS } from '../hypervisor/devices/azote-ports.js';
import { MicroVm, type DiskSpec, type VmEnd } from '../hypervisor/vm.js';
import { ensureKernel } from '../images/kernel.js';
import { ensureBaseInitramfs } from '../images/initramfs.js';
import { runRequestArchive, runRequestParams } from '../images/run-request.js';
import { findImage, instanceCopy } from '../images/rootfs.js';
import { guestCmdline } from '../images/cmdline.js';
import { attachConsole, type ConsoleInput } from './console.js';

export interface RunOptions {
  readonly vcpus: number;
  readonly mem: number;
  readonly kernel?: string | undefined;
  readonly initrd?: string | undefined;
  readonly cmdline?: string | undefined;
  readonly verbose: boolean;
  readonly bootTime: boolean;
  readonly env: string[];
  readonly rng: boolean;
  /** --disk values: PATH or PATH,ro. */
  readonly disks: string[];
  /** Boot from a fresh copy of this image (root=/dev/vda) instead of the initramfs. */
  readonly image?: string | undefined;
  /** --net: "tap", or "card:SOCKET" for a network card. */
  readonly net?: string | undefined;
  /** --vsock: the host end's Unix socket path. */
  readonly vsock?: string | undefined;
  /** --volume: block cards' vhost-user sockets. */
  readonly volumes: string[];
}

/** Exit status when the VM itself ended abnormally (not the guest command); main.ts uses the same for its errors. */
export const EXIT_VM_FAILED = 125;
export const EXIT_INTERRUPTED = 130;
/** How much console output is kept to find a panic message in. */
const CONSOLE_TAIL_BYTES = 8192;

function readInput(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AzoteError('BadPath', `cannot read the ${what} ${path}: ${code === 'ENOENT' ? 'no such file' : code ?? String(e)}`,
      `check the --${what} path`);
  }
}

function parseEnv(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const i = e.indexOf('=');
    if (i <= 0) throw new AzoteError('BadEnv', `--env ${e} is not KEY=VALUE`, 'write --env NAME=value');
    env[e.slice(0, i)] = e.slice(i + 1);
  }
  return env;
}

export function parseDisk(spec: string): DiskSpec {
  const parts = spec.split(',');
  const path = parts[0] ?? '';
  const flags = parts.slice(1);
  const bad = flags.find((f) => f !== 'ro' && f !== 'rw');
  if (!path || bad !== undefined) {
    throw new AzoteError('BadDisk', `--disk ${spec} is not PATH or PATH,ro`, 'write --disk ./data.img or --disk ./base.img,ro');
  }
  return { path, readOnly: flags.includes('ro') };
}

/** The last console line that says why a kernel gave up, if any. */
function panicLine(tail: string): string | undefined {
  const lines = tail.split(/\r?\n/).filter((l) => /Kernel panic|BUG:|Oops/.test(l));
  return lines.at(-1)?.replace(/^\[[\s\d.]+\]\s*/, '').trim();
}

export async function runCommand(argv: string[], o: RunOptions, log: Logger): Promise<number> {
  const flavour = detectKvmFlavour();
  const shell = argv.length === 0;
  const env = parseEnv(o.env);
  const disks = o.disks.map(parseDisk);
  if (o.net !== undefined && o.net !== 'tap' && !/^card:./.test(o.net)) {
    throw new AzoteError('BadNet', `--net ${o.net} is not a kind of network Azote has`, 'use --net tap or --net card:SOCKET');
  }
  const kernel = o.kernel ? readInput(o.kernel, 'kernel') : readFileSync((await ensureKernel(log)).vmlinux);
  const base = guestCmdline({ nestedPvm: flavour === 'nested-pvm', quiet: !o.verbose });
  let initrd: Uint8Array | undefined;
  let cmdline: string;
  let root: { dir: string; path: string } | undefined;
  if (o.image) {
    if (o.initrd) throw new AzoteError('BadArguments', '--image and --initrd do not go together', 'use one of them');
    const image = findImage(o.image);
    root = await instanceCopy(image, tmpdir());
    disks.unshift({ path: root.path, readOnly: false });
    cmdline = o.cmdline ?? [base, 'root=/dev/vda', 'rw', 'rootfstype=ext4', ...runRequestParams(shell ? undefined : argv, env)].join(' ');
  } else {
    const initramfs = o.initrd ? readInput(o.initrd, 'initrd') : readFileSync(await ensureBaseInitramfs(log));
    // Linux unpacks concatenated cpio archives: the run request rides after the base image, starting on a 4-byte
    // boundary (Linux looks for the next archive's magic only there; a user's compressed image may end anywhere).
    const request = runRequestArchive(shell ? undefined : argv, env);
    initrd = Buffer.concat([initramfs, Buffer.alloc((4 - (initramfs.length % 4)) % 4), request]);
    cmdline = o.cmdline ?? base;
  }
  try {
    return await boot(o, { kernel, initrd, cmdline, disks, shell, flavour }, log);
  } finally {
    if (root) rmSync(root.dir, { recursive: true, force: true });
  }
}

interface BootInputs {
  readonly kernel: Uint8Array;
  readonly initrd: Uint8Array | undefined;
  readonly cmdline: string;
  readonly disks: DiskSpec[];
  readonly shell: boolean;
  readonly flavour: ReturnType<typeof detectKvmFlavour>;
}

async function boot(o: RunOptions, { kernel, initrd, cmdline, disks, shell, flavour }: BootInputs, log: Logger): Promise<number> {
  log.debug('starting VM', { vcpus: o.vcpus, memMiB: o.mem, flavour, cmdline });

  // The newest console output, kept as it came (a byte per chunk, often) and decoded only if the VM fails.
  const tail: Uint8Array[] = [];
  let tailBytes = 0;
  // The console is attached once the VM exists; the VM wakes it when the guest has taken queued input.
  const host: { console?: ConsoleInput | undefined } = {};
  const vm = new MicroVm({
    kernel, initrd, cmdline, vcpus: o.vcpus, memoryMiB: o.mem, log, flavour, rng: o.rng, disks, net: o.net === 'tap', volumes: o.volumes,
    ...(o.net?.startsWith('card:') ? { netCard: o.net.slice('card:'.length) } : {}),
    ...(o.vsock !== undefined ? { vsock: o.vsock } : {}),
    output: (bytes) => {
      process.stdout.write(bytes);
      tail.push(bytes);
      tailBytes += bytes.length;
      for (let first = tail[0]; first && tailBytes - first.length >= CONSOLE_TAIL_BYTES; first = tail[0]) {
        tail.shift();
        tailBytes -= first.length;
      }
    },
    inputReady: () => host.console?.resume(),
    onMarker: (v) => {
      if (o.bootTime && v === 1) process.stderr.write(`azote: init reached ${performance.now().toFixed(1)} ms after process start\n`);
    },
  });
  // Where to reach the guest: the user needs it, so it is said whatever the log level.
  if (vm.tap) process.stderr.write(`azote: network: TAP ${vm.tap.name}, host ${vm.tap.hostIp}, guest ${vm.tap.guestIp}/${vm.tap.prefix}\n`);
  else if (vm.network) {
    process.stderr.write(`azote: network: card ${o.net?.slice('card:'.length) ?? ''}, guest ${vm.network.ip}/${vm.network.prefix} `
      + `(MAC ${vm.network.mac}), gateway ${vm.network.gateway}\n`);
  }
  host.console = shell || process.stdin.isTTY ? attachConsole((b) => vm.input(b), () => vm.stop()) : undefined;
  // SIGINT stops the VM at once; SIGTERM asks the guest to shut down (it syncs and unmounts its disks) and stops
  // the VM after the grace time, or at a second SIGTERM.
  const onInterrupt = (): void => vm.stop();
  let grace: NodeJS.Timeout | undefined;
  const onTerminate = (): void => {
    if (grace) {
      vm.stop();
      return;
    }
    vm.requestShutdown();
    grace = setTimeout(() => vm.stop(), GUEST_SHUTDOWN_GRACE_MS);
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onTerminate);
  let end: VmEnd;
  try {
    end = await vm.run();
  } finally {
    clearTimeout(grace);
    host.console?.close();
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onTerminate);
  }
  log.debug('VM ended', { end, stats: vm.stats() });
  switch (end.kind) {
    case 'exit-status':
      return end.status;
    case 'stopped':
      return EXIT_INTERRUPTED;
    case 'reset': {
      const panic = panicLine(Buffer.concat(tail).toString('utf8'));
      process.stderr.write(panic
        ? `azote: the guest kernel panicked: ${panic}\n`
        : 'azote: the guest rebooted without reporting an exit status\n');
      return EXIT_VM_FAILED;
    }
    case 'crashed': {
      const panic = panicLine(Buffer.concat(tail).toString('utf8'));
      process.stderr.write(`azote: the VM crashed: ${end.reason}${panic ? ` (${panic})` : ''}\n`);
      return EXIT_VM_FAILED;
    }
  }
}
