// A card process the controller runs and supervises, in a jail of its own built as a hypervisor's (jail.ts): started
// from its component's entry, which the security chip verifies and measures before every start, as a uid never given
// before, in its own control group and namespaces (no network at all), with PATH as its whole environment and nothing
// of the host but what it is handed: its listening sockets, made here once and kept across its restarts (the VMs
// using it reconnect to the same path once it serves again), its volumes' files, opened here at each start, and
// what its owner keeps for it (a network card's uplink). Ready once it says so on its stdout (its volumes open and locked);
// restarted whenever it dies until the controller stops it. A card dies with the controller (the jail's parent-death
// signals) and is written down in its pid files until it ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { totalmem } from 'node:os';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { CARD_READY } from '../cards/main-args.js';
import { listenAtPath } from '../sys/unix-listen.js';
import { InstanceCgroup } from './cgroup.js';
import { JAIL_PATH, jailCommand, memlockLimit } from './jail.js';
import type { PidFiles } from './pid-files.js';

/** Generous: it only detects a card that hangs before serving (a loaded host starts Node slowly). */
const READY_TIMEOUT_MS = 30_000;
const RESTART_MS = 500;
/** The card's first inherited descriptor: its listening sockets, then its files (0 to 2 are its stdio). */
export const FIRST_CARD_FD = 3;

export interface CardJail {
  /** An empty directory the jail's root is mounted on (in the jail's own mount namespace). */
  readonly mountPoint: string;
  /** The host CPUs it may run on (with one core's time in all). */
  readonly cores: readonly number[];
  readonly memoryMiB: number;
  /** A uid for each start never given to another jail (undefined where the controller is not root), given back when it ends. */
  readonly uids: { take(): number | undefined; give(uid: number): void };
  /** Where ldd's answers are kept across jails (JailSpec.libraryCache). */
  readonly libraryCache?: string | undefined;
  /** The guests it serves have secret memory, which its mappings of it count as locked: it may lock all of it. */
  readonly secretGuestMemory?: boolean | undefined;
}

export interface CardSpec {
  /** How logs and pid files name it. */
  readonly name: string;
  /** Its control group's name (under azote/). */
  readonly group: string;
  /** Verifies and measures its component: where its files are, and its entry. */
  readonly admit: () => { readonly dir: string; readonly entryPath: string };
  /** The listening sockets made here: its descriptors FIRST_CARD_FD, FIRST_CARD_FD + 1, ... in order. */
  readonly sockets: readonly string[];
  /** Files opened for it at each start (read-only or not): its descriptors after the sockets', in order. */
  readonly files: readonly { readonly path: string; readonly readOnly: boolean }[];
  /** Descriptors its owner keeps open and hands it at each start (an uplink TAP): its descriptors after the files'. */
  readonly inherited?: readonly number[] | undefined;
  /** The entry's arguments, which name those descriptors. */
  readonly args: readonly string[];
  readonly jail: CardJail;
}

export class CardProcess {
  private child: ChildProcess | undefined;
  private stopped = false;
  /** Whether a card process said it serves and has not ended since. */
  private ready = false;
  private output = '';

  private constructor(private readonly spec: CardSpec, private readonly listening: readonly { fd: number; release(): void }[],
    private readonly cgroup: InstanceCgroup | undefined, private readonly pids: PidFiles, private readonly log: Logger) {}

  /** Makes its sockets and control group, starts it, and resolves once it serves. */
  static async start(spec: CardSpec, pids: PidFiles, log: Logger): Promise<CardProcess> {
    const listening: { fd: number; release(): void }[] = [];
    try {
      for (const socket of spec.sockets) listening.push(listenAtPath(socket, 'the card socket'));
    } catch (e) {
      for (const l of listening) l.release();
      throw e;
    }
    const card = new CardProcess(spec, listening, InstanceCgroup.forCard(spec.group, spec.jail.memoryMiB, spec.jail.cores, log), pids, log);
    try {
      await card.spawn();
    } catch (e) {
      card.stop();
      throw e;
    }
    return card;
  }

  get name(): string {
    return this.spec.name;
  }

  /**
   * Whether it serves now. While it is being restarted a connection to its socket would wait in the socket's queue
   * (the socket is kept) until the new card takes it: a hypervisor is told to ask again instead of waiting on it.
   */
  get serving(): boolean {
    return this.ready && !this.stopped;
  }

  /** Its (first) socket's path. */
  get socket(): string {
    return this.spec.sockets[0] ?? '';
  }

  private async spawn(): Promise<void> {
    const { spec } = this;
    const child = this.startJailed();
    this.child = child;
    const pidName = `card ${spec.name}`;
    if (child.pid !== undefined) this.pids.record(pidName, child.pid);
    // It reads nothing: its stdin ends at once.
    child.stdin?.end();
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      this.output = (this.output + s).slice(-4096);
      for (const line of s.split('\n').filter(Boolean)) this.log.debug('card', { card: spec.name, line });
    });
    const ready = new Promise<boolean>((resolve) => {
      let said = '';
      child.stdout?.setEncoding('utf8').on('data', (s: string) => {
        said = (said + s).slice(-256);
        if (!said.split('\n').includes(CARD_READY)) return;
        this.ready = true;
        resolve(true);
      });
      child.once('exit', () => resolve(false));
      child.once('error', (e) => {
        this.output += e.message;
        resolve(false);
      });
      setTimeout(() => resolve(false), READY_TIMEOUT_MS).unref();
    });
    child.once('exit', (code, signal) => {
      if (child.pid !== undefined) this.pids.forget(pidName, child.pid);
      if (this.child === child) this.ready = false;
      if (this.stopped) {
        void this.cgroup?.removeWhenEmpty();
        return;
      }
      if (this.child !== child) return;
      this.log.warn('a card died; restarting it', { card: spec.name, code, signal, log: this.output.slice(-300) });
      setTimeout(() => {
        if (this.stopped) return;
        this.spawn().catch((e: unknown) => {
          this.stop();
          this.log.error('a card did not restart', { card: spec.name, why: (e as Error).message });
        });
      }, RESTART_MS);
    });
    if (!await ready) {
      throw new AzoteError('CardStart', `the ${spec.name} card did not start: ${this.output.trim().split('\n').slice(-2).join(' ') || 'no output'}`);
    }
  }

  /** Starts the verified entry in its jail with its sockets and newly opened files (the copies here are closed). */
  private startJailed(): ChildProcess {
    const { spec } = this;
    const component = spec.admit();
    const opened: number[] = [];
    const uid = spec.jail.uids.take();
    try {
      for (const f of spec.files) opened.push(openSync(f.path, f.readOnly ? 'r' : 'r+'));
      const { command, args } = jailCommand({
        mountPoint: spec.jail.mountPoint, componentDir: component.dir, entry: component.entryPath, args: spec.args, cores: spec.jail.cores, uid,
        // A card maps the guest memory of the VMs it serves, which counts as locked where it is secret memory.
        cgroupProcs: this.cgroup?.procsFiles ?? [],
        lockedMemory: spec.jail.secretGuestMemory ? memlockLimit(totalmem(), { ipcLock: true }) : { bytes: 0, ipcLock: false },
        libraryCache: spec.jail.libraryCache,
      });
      const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe', ...this.listening.map((l) => l.fd), ...opened, ...spec.inherited ?? []], env: { PATH: JAIL_PATH } });
      if (uid !== undefined) child.once('exit', () => spec.jail.uids.give(uid)).once('error', () => spec.jail.uids.give(uid));
      return child;
    } catch (e) {
      if (uid !== undefined) spec.jail.uids.give(uid);
      throw e;
    } finally {
      for (const fd of opened) closeSync(fd);
    }
  }

  /** Kills it (the whole jail goes with the jail's first process) and closes its sockets. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const l of this.listening) l.release();
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    else void this.cgroup?.removeWhenEmpty();
  }
}
