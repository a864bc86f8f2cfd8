// `azote run`'s hypervisor process (hypervisor/instance-main.ts, jailed or not) seen from the CLI: it is started with
// everything its VM needs already open here and inherited (/dev/kvm, the kernel, the initramfs, the disks, a TAP, a
// vsock's listening socket), its card connections and its launch sent on its channel, and its requests answered
// (a card's new connection, a guest's vsock connection to a host program). The guest's console comes on its stdout
// and goes in on its stdin; its stderr (its log, the jail tools' complaints) is passed on to ours. It runs in a
// session of its own, out of reach of the terminal's signals: the CLI decides what Ctrl-C and SIGTERM do.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { errorMessage } from '../base/errors.js';
import { Channel, channelPair } from '../protocols/channel.js';
import {
  hypervisorMessage, INHERITED_FDS, type ControllerMessage, type HypervisorMessage, type InstanceLaunch, type LaunchSnapshot,
} from '../protocols/instance.js';
import * as libc from '../sys/libc.js';
import { JAIL_PATH, jailedExit } from '../controller/jail.js';
import { threadPoolEnv } from '../isolation/vcpus.js';
import type { Tap } from '../hypervisor/tap.js';
import { formatMac } from '../virtio/net-addressing.js';
import type { HypervisorCommand } from './run-jail.js';

/** How long a hypervisor told to stop its VM gets before it is killed (as the controller waits). */
const STOP_GRACE_MS = 10_000;
/** How long the channel may take to say its last messages once the process is gone. */
const CHANNEL_DRAIN_MS = 2_000;
/** Lines of its stderr kept to say why it died. */
const STDERR_LINES = 8;
/** What unshare says when its child was killed with SIGKILL (jail.ts jailedExit): ours to explain, not to pass on. */
const UNSHARE_KILLED = /^unshare: sigprocmask unblock failed/;

/** A card the VM uses: its first connection, made already, and how to make another when the hypervisor asks. */
export interface RunCard {
  readonly name: string;
  readonly fd: number;
  readonly reconnect: () => number;
}

/** What the hypervisor is given. start() closes every descriptor here once inherited or sent, but the vsock's. */
export interface Handover {
  readonly launch: Pick<InstanceLaunch, 'flavour' | 'cmdline' | 'vcpus' | 'memoryMiB' | 'memory' | 'rng'>;
  readonly kvmFd: number;
  readonly kernelFd: number;
  readonly initrdFd: number | undefined;
  readonly disks: ReadonlyArray<{ readonly fd: number; readonly name: string; readonly readOnly: boolean }>;
  readonly tap: Tap | undefined;
  readonly netCard: RunCard | undefined;
  readonly volumes: readonly RunCard[];
  /** Lent: the caller keeps its listening socket (and removes its path at the end); guest connections go to PATH_PORT. */
  readonly vsock: { readonly listenFd: number; readonly path: string } | undefined;
  /** A snapshot to save or continue (its fd is handed over like the others), and the run request for the ports. */
  readonly snapshot?: { readonly use: LaunchSnapshot; readonly runRequest: Uint8Array } | undefined;
}

export interface HypervisorEvents {
  /** Guest console output. */
  output(bytes: Uint8Array): void;
  /** The stdin pipe took what was queued: input() may be called again. */
  inputReady(): void;
  /** The VM exists; `mac` is its network card's address, if any. */
  created(mac: string | undefined): void;
  /** The guest's init started (or, continuing a snapshot, runs again). */
  booted(): void;
  /** The snapshot of a `save` launch is written: seal it. */
  snapshotSaved(m: Extract<HypervisorMessage, { kind: 'snapshot-saved' }>): void;
  snapshotFailed(detail: string): void;
}

export type HypervisorOutcome =
  /** The hypervisor said how its VM ended. */
  | { readonly kind: 'ended'; readonly end: Extract<HypervisorMessage, { kind: 'ended' }> }
  /** It ended without saying: killed, or failed before it could (`how` as jailedExit says it). */
  | { readonly kind: 'died'; readonly how: string; readonly lastLine: string };

/** The descriptors a VM holds, one list: what start() closes, whatever happens. */
function handedFds(h: Handover): number[] {
  return [h.kvmFd, h.kernelFd, ...(h.initrdFd === undefined ? [] : [h.initrdFd]), ...h.disks.map((d) => d.fd), ...(h.tap ? [h.tap.fd] : []),
    ...(h.netCard ? [h.netCard.fd] : []), ...h.volumes.map((v) => v.fd), ...(h.snapshot ? [h.snapshot.use.fd] : [])];
}

export class RunHypervisor {
  readonly outcome: Promise<HypervisorOutcome>;
  private resolveOutcome: (o: HypervisorOutcome) => void = () => undefined;
  private readonly channel: Channel<HypervisorMessage, ControllerMessage>;
  private readonly cards: Map<string, RunCard>;
  /** How it said its VM ended, its exit, and whether its channel has said everything. */
  private said: Extract<HypervisorMessage, { kind: 'ended' }> | undefined;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private channelEnded = false;
  private over = false;
  private stopTimer: NodeJS.Timeout | undefined;
  private readonly stderrTail: string[] = [];

  /** Starts `cmd` with `h` (its descriptors are closed here once inherited and sent) and launches its VM. */
  static start(cmd: HypervisorCommand, h: Handover, events: HypervisorEvents): RunHypervisor {
    const owned = handedFds(h);
    try {
      // Inherited in this order: channel, /dev/kvm, kernel (INHERITED_FDS), then the disks, initramfs, TAP and vsock.
      const [ours, theirs] = channelPair();
      const inherited = [theirs, h.kvmFd, h.kernelFd, ...h.disks.map((d) => d.fd)];
      const at = (fd: number): number => INHERITED_FDS.channel + inherited.push(fd) - 1;
      const launch: InstanceLaunch = {
        kind: 'launch', ...h.launch, kvmFd: INHERITED_FDS.kvm, kernelFd: INHERITED_FDS.kernel,
        disks: h.disks.map((d, i) => ({ fd: INHERITED_FDS.firstDisk + i, name: d.name, readOnly: d.readOnly })),
        ...(h.initrdFd === undefined ? {} : { initrdFd: at(h.initrdFd) }),
        ...(h.tap ? { tap: { fd: at(h.tap.fd), mac: formatMac(h.tap.mac), hostIp: h.tap.hostIp, guestIp: h.tap.guestIp, prefix: h.tap.prefix } } : {}),
        ...(h.vsock ? { vsockFd: at(h.vsock.listenFd) } : {}),
        ...(h.netCard ? { netCard: h.netCard.name } : {}), volumes: h.volumes.map((v) => v.name),
        ...(h.snapshot ? {
          snapshot: { ...h.snapshot.use, fd: at(h.snapshot.use.fd) },
          runRequest: Buffer.from(h.snapshot.runRequest).toString('base64'),
        } : {}),
      };
      const env: Record<string, string> = { PATH: JAIL_PATH, ...threadPoolEnv(h.launch.vcpus) };
      for (const name of ['AZOTE_LOG_LEVEL', 'AZOTE_LOG_FORMAT']) {
        const v = process.env[name];
        if (v !== undefined) env[name] = v;
      }
      let child: ChildProcess;
      try {
        child = spawn(cmd.command, [...cmd.args], { stdio: ['pipe', 'pipe', 'pipe', ...inherited], env, detached: true });
      } catch (e) {
        libc.close(ours);
        throw e;
      } finally {
        libc.close(theirs);
      }
      const hv = new RunHypervisor(child, ours, h, events);
      // The first connection to each card, then the launch: the channel keeps them in order.
      for (const card of [...(h.netCard ? [h.netCard] : []), ...h.volumes]) hv.channel.send({ kind: 'card', card: card.name }, [card.fd]);
      hv.channel.send(launch);
      return hv;
    } finally {
      for (const fd of owned) closeSync(fd);
    }
  }

  /** Owns `ours`, its end of the channel, from now on. */
  private constructor(private readonly child: ChildProcess, ours: number, private readonly h: Handover, private readonly events: HypervisorEvents) {
    this.outcome = new Promise((resolve) => { this.resolveOutcome = resolve; });
    this.cards = new Map([...(h.netCard ? [h.netCard] : []), ...h.volumes].map((c) => [c.name, c]));
    this.channel = new Channel(ours, hypervisorMessage, {
      message: (m) => this.receive(m),
      // Its closing is its exit (below); a breach of the protocol cuts it off.
      end: (error) => {
        if (error) {
          this.said = { kind: 'ended', end: 'failed', detail: `the hypervisor was cut off: ${error.message}` };
          child.kill('SIGKILL');
        }
        this.channelEnded = true;
        this.finish();
      },
    }, 'the hypervisor');
    child.on('close', (code, signal) => {
      this.exit = { code, signal };
      // Its last messages may still be on their way: the channel's end says they are all read.
      if (this.channelEnded) this.finish();
      else setTimeout(() => this.finish(), CHANNEL_DRAIN_MS).unref();
    });
    child.on('error', (e) => {
      this.exit = { code: null, signal: null };
      this.stderrTail.push(`the hypervisor could not be started: ${e.message}`);
      this.finish();
    });
    child.stdout?.on('data', (b: Buffer) => events.output(b));
    child.stdin?.on('drain', () => events.inputReady());
    child.stdin?.on('error', () => undefined); // a hypervisor gone takes no input; its exit says the rest
    this.passStderr(child);
  }

  private receive(m: HypervisorMessage): void {
    switch (m.kind) {
      case 'created':
        this.events.created(m.mac);
        return;
      case 'booted':
        this.events.booted();
        return;
      case 'snapshot-saved':
        this.events.snapshotSaved(m);
        return;
      case 'snapshot-failed':
        this.events.snapshotFailed(m.detail);
        return;
      case 'ended':
        this.said = m;
        return;
      case 'connect-card': {
        const card = this.cards.get(m.card);
        if (!card) return; // not one of its cards: nothing to give
        let fd: number;
        try {
          fd = card.reconnect();
        } catch (e) {
          this.channel.send({ kind: 'card-unavailable', card: m.card, why: errorMessage(e) });
          return;
        }
        this.handOver({ kind: 'card', card: m.card }, fd);
        return;
      }
      case 'connect-vsock': {
        let fd: number;
        try {
          if (!this.h.vsock) throw new Error('no vsock');
          fd = libc.connectUnix(`${this.h.vsock.path}_${m.port}`);
        } catch {
          this.channel.send({ kind: 'vsock-refused', port: m.port }); // nobody listens there
          return;
        }
        this.handOver({ kind: 'vsock', port: m.port }, fd);
      }
    }
  }

  /** Sends `fd` with `m`, and closes this copy. */
  private handOver(m: ControllerMessage, fd: number): void {
    try {
      this.channel.send(m, [fd]);
    } finally {
      libc.close(fd);
    }
  }

  /** Once it has exited and its channel said everything (or had the time to): how it ended. */
  private finish(): void {
    if (!this.exit || this.over) return;
    this.over = true;
    clearTimeout(this.stopTimer);
    this.channel.close();
    this.resolveOutcome(this.said ? { kind: 'ended', end: this.said } : { kind: 'died', ...jailedExit(this.exit.code, this.exit.signal, this.stderrTail) });
  }

  /** Its stderr, line by line, to ours; the last lines kept to say why it died. */
  private passStderr(child: ChildProcess): void {
    let partial = '';
    const line = (l: string): void => {
      this.stderrTail.push(l);
      if (this.stderrTail.length > STDERR_LINES) this.stderrTail.shift();
      if (!UNSHARE_KILLED.test(l)) process.stderr.write(`${l}\n`);
    };
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(line);
    });
    child.stderr?.on('end', () => {
      if (partial) line(partial);
      partial = '';
    });
  }

  /** Guest console input; false when the pipe is full: wait for inputReady. */
  input(bytes: Uint8Array): boolean {
    return this.child.stdin?.write(bytes) ?? false;
  }

  /** No console input will come. */
  endInput(): void {
    this.child.stdin?.end();
  }

  /** Asks the guest to shut down (its init syncs and unmounts its disks, then powers off). */
  requestShutdown(): void {
    this.channel.send({ kind: 'shutdown' });
  }

  /** Stops the VM now; a hypervisor that does not end in STOP_GRACE_MS is killed. */
  stop(): void {
    if (this.over || this.stopTimer) return;
    if (!this.channel.send({ kind: 'stop' })) this.child.kill('SIGKILL');
    this.stopTimer = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
  }
}
