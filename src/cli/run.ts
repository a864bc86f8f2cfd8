// `azote run`: boot a microVM on our kernel and initramfs (or the user's), run one command or a shell in it,
// and leave with the command's exit status. Everything the VM needs is opened or made here (run-inputs.ts) and
// handed to a hypervisor process in the controller's jail (run-jail.ts, run-hypervisor.ts): the guest runs the
// user's code, and its hypervisor, next to it, can open nothing, connect nowhere and start no program.
import { closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { defaultDataDir } from '../controller/data-dir.js';
import { detectKvmFlavour } from '../kvm/kvm.js';
import { chooseProtection, rememberedProbe, type GuestMemoryKind, type MemoryProtection } from '../isolation/memory-protection.js';
import { MEMLOCK_OVERHEAD_MIB, memlockLimit } from '../controller/jail.js';
import { GUEST_SHUTDOWN_GRACE_MS } from '../hypervisor/devices/azote-ports.js';
import type { DiskSpec } from '../hypervisor/vm.js';
import { validateVmShape } from '../hypervisor/vm-shape.js';
import { ensureKernel } from '../images/kernel.js';
import { ensureBaseInitramfs } from '../images/initramfs.js';
import { runRequestArchive, runRequestBytes, runRequestParams } from '../images/run-request.js';
import { forgetSnapshot, useSnapshot, type SnapshotMachine, type SnapshotUse } from './run-snapshots.js';
import { findImage, instanceCopy } from '../images/rootfs.js';
import { guestCmdline } from '../images/cmdline.js';
import { attachConsole, type ConsoleInput } from './console.js';
import { stageHypervisor, type StagedHypervisor } from './hypervisor-files.js';
import { openInputs, type RunInputs } from './run-inputs.js';
import { RunHypervisor, type HypervisorOutcome } from './run-hypervisor.js';
import { chooseJail, jailedHypervisor, lockableBytes, unjailedHypervisor, userNamespaceProblem, type HypervisorCommand } from './run-jail.js';

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
  /** False with --no-jail: the hypervisor runs unjailed (for debugging). */
  readonly jail: boolean;
  /** --cold: boot the guest even where a snapshot of the booted machine could be continued. */
  readonly cold: boolean;
  /** --guest-memory: secret memory where this host lets guests run on it (auto), always (secret), or never (memfd). */
  readonly guestMemory: GuestMemoryKind | 'auto';
}

/** Exit status when the VM itself ended abnormally (not the guest command); main.ts uses the same for its errors. */
export const EXIT_VM_FAILED = 125;
export const EXIT_INTERRUPTED = 130;
/** How much console output is kept to find a panic message in. */
const CONSOLE_TAIL_BYTES = 8192;

function readInput(file: string, what: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AzoteError('BadPath', `cannot read the ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : code ?? String(e)}`,
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

/**
 * The machine whose booted snapshot this run can continue, if it can: our initramfs (its init reads the run request
 * from the ports) without disks, cards or a command line of the user's; a snapshot cannot carry those. Asking for the
 * kernel's boot messages (--verbose) boots, too.
 */
function snapshotMachine(o: RunOptions, kernel: string, initrd: Uint8Array, cmdline: string, flavour: string): Omit<SnapshotMachine, 'memory'> | undefined {
  if (o.cold || o.verbose || o.image || o.initrd || o.cmdline || o.disks.length > 0 || o.volumes.length > 0 || (o.net !== undefined && o.net !== 'tap')) return undefined;
  return { kernel, initrd, cmdline, vcpus: o.vcpus, memoryMiB: o.mem, rng: o.rng, tap: o.net === 'tap', vsock: o.vsock !== undefined, flavour };
}

/**
 * The guest's memory: what this host's KVM allows (asked once per host kernel, remembered in the data directory)
 * and the user asked for, on memory the hypervisor may lock all of (secret memory counts as locked).
 */
async function guestMemory(o: RunOptions, flavour: string, memlockBytes: number): Promise<MemoryProtection> {
  if (o.guestMemory === 'memfd') return chooseProtection({ usable: false, why: 'not asked for' }, 'memfd');
  const probe = await rememberedProbe(path.join(defaultDataDir(), 'guest-memory-probe.json'), flavour,
    async () => (await import('../isolation/secret-probe.js')).probeHostMemory());
  const protection = chooseProtection(probe, o.guestMemory);
  const needed = (o.mem + MEMLOCK_OVERHEAD_MIB) * 2 ** 20;
  if (protection.kind !== 'secret' || memlockBytes >= needed) return protection;
  const why = `the hypervisor may lock ${Math.floor(memlockBytes / 2 ** 20)} MiB, less than the guest's ${o.mem} MiB and ${MEMLOCK_OVERHEAD_MIB} MiB more`;
  if (o.guestMemory === 'secret') {
    throw new AzoteError('SecretMemoryUnavailable', `the guest cannot have secret memory: ${why}`,
      'raise the locked-memory limit (ulimit -l, or limits.conf memlock), run as root, or leave --guest-memory to auto');
  }
  return { kind: 'memfd', noKvmclock: false, why };
}

export async function runCommand(argv: string[], o: RunOptions, log: Logger, retried = false): Promise<number> {
  const flavour = detectKvmFlavour();
  const shell = argv.length === 0;
  const env = parseEnv(o.env);
  const disks = o.disks.map(parseDisk);
  if (o.net !== undefined && o.net !== 'tap' && !/^card:./.test(o.net)) {
    throw new AzoteError('BadNet', `--net ${o.net} is not a kind of network Azote has`, 'use --net tap or --net card:SOCKET');
  }
  // Checked here: the jailed hypervisor cannot see how much memory the host has.
  validateVmShape(o.vcpus, o.mem);
  const kernel = o.kernel ?? (await ensureKernel(log)).vmlinux;
  const base = guestCmdline({ nestedPvm: flavour === 'nested-pvm', quiet: !o.verbose });
  let initrd: Uint8Array | undefined;
  let cmdline: string;
  let root: { dir: string; path: string } | undefined;
  /** The machine, if a snapshot of it could be continued, but for its memory (known once the jail is). */
  let bootable: Omit<SnapshotMachine, 'memory'> | undefined;
  if (o.image) {
    if (o.initrd) throw new AzoteError('BadArguments', '--image and --initrd do not go together', 'use one of them');
    const image = findImage(o.image);
    root = await instanceCopy(image, tmpdir());
    disks.unshift({ path: root.path, readOnly: false });
    cmdline = o.cmdline ?? [base, 'root=/dev/vda', 'rw', 'rootfstype=ext4', ...runRequestParams(shell ? undefined : argv, env)].join(' ');
  } else {
    const initramfs = o.initrd ? readInput(o.initrd, 'initrd') : readFileSync(await ensureBaseInitramfs(log));
    cmdline = o.cmdline ?? base;
    bootable = snapshotMachine(o, kernel, initramfs, cmdline, flavour);
    if (bootable) {
      initrd = initramfs;
    } else {
      // Linux unpacks concatenated cpio archives: the run request rides after the base image, starting on a 4-byte
      // boundary (Linux looks for the next archive's magic only there; a user's compressed image may end anywhere).
      const request = runRequestArchive(shell ? undefined : argv, env);
      initrd = Buffer.concat([initramfs, Buffer.alloc((4 - (initramfs.length % 4)) % 4), request]);
    }
  }
  let staged: StagedHypervisor | undefined;
  let inputs: RunInputs | undefined;
  let snapshot: SnapshotUse | undefined;
  let handed = false;
  try {
    inputs = openInputs({ kernel, initrd, disks, tap: o.net === 'tap', netCard: o.net?.startsWith('card:') ? o.net.slice('card:'.length) : undefined,
      volumes: o.volumes, vsock: o.vsock });
    const choice = chooseJail({ noJail: !o.jail, root: process.getuid?.() === 0, userNamespaces: userNamespaceProblem });
    if (!choice.jail && choice.notice) process.stderr.write(`${choice.notice}\n`);
    // Secret memory counts as locked: the guest gets it only where its hypervisor may lock all of it.
    const lockable = (o.mem + MEMLOCK_OVERHEAD_MIB) * 2 ** 20;
    const memory = await guestMemory(o, flavour, lockableBytes(choice.jail, lockable));
    let cmd: HypervisorCommand;
    if (choice.jail) {
      const dataDir = defaultDataDir();
      staged = stageHypervisor(path.join(dataDir, 'run'));
      cmd = jailedHypervisor({ dataDir, staged, lockedMemory: memlockLimit(lockable, { ipcLock: memory.kind === 'secret' }), vsock: o.vsock !== undefined });
    } else {
      cmd = unjailedHypervisor(o.vsock !== undefined);
    }
    log.debug('starting the hypervisor', {
      msSinceStart: Math.round(performance.now()), jailed: choice.jail, uid: cmd.uid, vcpus: o.vcpus, memMiB: o.mem, flavour, cmdline,
      guestMemory: memory.kind, ...(memory.why ? { notSecretBecause: memory.why } : {}),
    });
    const { handover } = inputs;
    const machine: SnapshotMachine | undefined = bootable && { ...bootable, memory: { kind: memory.kind, noKvmclock: memory.noKvmclock } };
    if (machine) snapshot = useSnapshot(machine, path.join(defaultDataDir(), 'host'), log);
    const tap = handover.tap;
    const runRequest = snapshot ? runRequestBytes({
      argv: shell ? undefined : argv, env, net: tap ? `${tap.guestIp}/${tap.prefix},${tap.hostIp}` : '', mac: tap?.mac,
    }) : undefined;
    const guestConsole = new GuestConsole();
    handed = true; // RunHypervisor.start closes what it was handed, whatever happens
    const use = snapshot;
    const hv = RunHypervisor.start(cmd, {
      ...handover, launch: { flavour, cmdline, vcpus: o.vcpus, memoryMiB: o.mem, memory: { kind: memory.kind, noKvmclock: memory.noKvmclock }, rng: o.rng },
      snapshot: use && runRequest ? {
        use: use.mode === 'save' ? { mode: 'save', fd: use.fd } : { mode: 'restore', fd: use.fd, digest: use.digest }, runRequest,
      } : undefined,
    }, {
      output: (bytes) => guestConsole.output(bytes),
      inputReady: () => guestConsole.input?.resume(),
      created: (mac) => sayNetwork(handover, o, mac),
      booted: () => {
        if (o.bootTime) {
          const what = use?.mode === 'restore' ? 'the guest ran again from its snapshot' : 'init reached';
          process.stderr.write(`azote: ${what} ${performance.now().toFixed(1)} ms after process start\n`);
        }
      },
      snapshotSaved: (m) => {
        if (use?.mode === 'save') use.saved();
        log.debug('snapshot written', { bytes: m.bytes, pages: m.pages, heldMs: Math.round(m.ms) });
      },
      snapshotFailed: (detail) => log.warn('the booted machine could not be saved: the next run boots again', { why: detail }),
    });
    const outcome = await attend(hv, shell, guestConsole);
    // A snapshot this hypervisor refused (damaged, or from another version) is forgotten and the run boots cold,
    // once this run's TAP and files are released. Refused means it ended before its VM existed: nothing ran.
    if (use?.mode === 'restore' && machine && !retried && outcome.kind === 'ended' && outcome.end.end === 'failed') {
      log.warn('the saved snapshot was refused: booting cold and saving a new one', { why: outcome.end.detail });
      forgetSnapshot(machine);
    } else {
      return exitStatus(outcome, guestConsole.tail());
    }
  } finally {
    if (!handed) {
      inputs?.discard();
      if (snapshot) closeSync(snapshot.fd);
    }
    // A sealed snapshot was renamed into place already; what is left is a save that did not finish.
    snapshot?.discard();
    inputs?.release();
    staged?.remove();
    if (root) rmSync(root.dir, { recursive: true, force: true });
  }
  return runCommand(argv, o, log, true);
}

/** Where to reach the guest: the user needs it, so it is said whatever the log level. */
function sayNetwork(handover: RunInputs['handover'], o: RunOptions, mac: string | undefined): void {
  const tap = handover.tap;
  if (tap) {
    process.stderr.write(`azote: network: TAP ${tap.name}, host ${tap.hostIp}, guest ${tap.guestIp}/${tap.prefix}\n`);
    return;
  }
  if (handover.netCard && mac !== undefined) {
    process.stderr.write(`azote: network: card ${o.net?.slice('card:'.length) ?? ''}, MAC ${mac}, the guest's address by DHCP from the card\n`);
  }
}

/** The guest's console here: its output to stdout, the newest kept to find a panic in; the terminal's input, if attached. */
class GuestConsole {
  input: ConsoleInput | undefined;
  // Kept as it came (a byte per chunk, often) and decoded only if the VM fails.
  private readonly chunks: Uint8Array[] = [];
  private bytes = 0;

  output(b: Uint8Array): void {
    process.stdout.write(b);
    this.chunks.push(b);
    this.bytes += b.length;
    for (let first = this.chunks[0]; first && this.bytes - first.length >= CONSOLE_TAIL_BYTES; first = this.chunks[0]) {
      this.chunks.shift();
      this.bytes -= first.length;
    }
  }

  tail(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** Runs the VM with the terminal attached and the signals handled; its outcome once the hypervisor is gone. */
async function attend(hv: RunHypervisor, shell: boolean, guestConsole: GuestConsole): Promise<HypervisorOutcome> {
  if (shell || process.stdin.isTTY) guestConsole.input = attachConsole((b) => hv.input(b), () => hv.stop());
  else hv.endInput();
  // SIGINT stops the VM at once; SIGTERM asks the guest to shut down (it syncs and unmounts its disks) and stops
  // the VM after the grace time, or at a second SIGTERM.
  const onInterrupt = (): void => hv.stop();
  let grace: NodeJS.Timeout | undefined;
  const onTerminate = (): void => {
    if (grace) {
      hv.stop();
      return;
    }
    hv.requestShutdown();
    grace = setTimeout(() => hv.stop(), GUEST_SHUTDOWN_GRACE_MS);
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onTerminate);
  try {
    return await hv.outcome;
  } finally {
    clearTimeout(grace);
    // The terminal is given back however the hypervisor ended, killed included.
    guestConsole.input?.close();
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onTerminate);
  }
}

/** azote's exit status for how the hypervisor ended, and what is said about it on stderr. */
function exitStatus(outcome: HypervisorOutcome, consoleTail: string): number {
  if (outcome.kind === 'died') {
    process.stderr.write(`azote: the hypervisor ${outcome.how === 'SIGKILL' ? 'was killed (SIGKILL)' : `ended (${outcome.how})`} before its VM did`
      + `${outcome.lastLine ? `: ${outcome.lastLine}` : ''} (the guest is gone; run it again)\n`);
    return EXIT_VM_FAILED;
  }
  const end = outcome.end;
  switch (end.end) {
    case 'exit-status':
      return end.status ?? EXIT_VM_FAILED;
    case 'stopped':
    case 'hibernated': // `azote run` never asks for it: a stop
      return EXIT_INTERRUPTED;
    case 'failed':
      process.stderr.write(`azote: ${end.detail}\n`);
      return EXIT_VM_FAILED;
    case 'reset': {
      const panic = panicLine(consoleTail);
      process.stderr.write(panic
        ? `azote: the guest kernel panicked: ${panic}\n`
        : 'azote: the guest rebooted without reporting an exit status\n');
      return EXIT_VM_FAILED;
    }
    case 'crashed': {
      const panic = panicLine(consoleTail);
      process.stderr.write(`azote: the VM crashed: ${end.detail}${panic ? ` (${panic})` : ''}\n`);
      return EXIT_VM_FAILED;
    }
  }
}
