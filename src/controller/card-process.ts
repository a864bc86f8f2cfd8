// A card process the controller runs and supervises: started from its component's entry, which the security chip
// verifies and measures before every start; ready once its socket exists; restarted whenever it dies until the
// controller stops it (the VMs using it reconnect to the new one). A card dies with the controller (`--controller`,
// src/cards/main-args.ts) and is written down in its pid files until it ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import type { PidFiles } from './pid-files.js';

const READY_POLL_MS = 50;
const READY_TIMEOUT_MS = 10_000;
const RESTART_MS = 500;

export class CardProcess {
  private child: ChildProcess | undefined;
  private stopped = false;
  private output = '';

  private constructor(readonly name: string, private readonly admit: () => string, private readonly args: readonly string[],
    readonly socket: string, private readonly pids: PidFiles, private readonly log: Logger) {}

  /** Starts the entry `admit` gives (after verifying it) with `args`, and resolves once `socket` exists. */
  static async start(name: string, admit: () => string, args: readonly string[], socket: string, pids: PidFiles, log: Logger): Promise<CardProcess> {
    const card = new CardProcess(name, admit, args, socket, pids, log);
    await card.spawn();
    return card;
  }

  private async spawn(): Promise<void> {
    // A socket left by a card that died would look ready before the new card listens on it.
    rmSync(this.socket, { force: true });
    // Spawned from the main thread (as Node does): the card's parent-death signal follows the thread that forked it.
    const child = spawn(process.execPath, [this.admit(), ...this.args, '--controller', String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    const pidName = `card ${this.name}`;
    if (child.pid !== undefined) this.pids.record(pidName, child.pid);
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      this.output = (this.output + s).slice(-4096);
      for (const line of s.split('\n').filter(Boolean)) this.log.debug('card', { card: this.name, line });
    });
    child.on('exit', (code, signal) => {
      if (child.pid !== undefined) this.pids.forget(pidName, child.pid);
      if (this.stopped || this.child !== child) return;
      this.log.warn('a card died; restarting it', { card: this.name, code, signal, log: this.output.slice(-300) });
      setTimeout(() => {
        if (this.stopped) return;
        this.spawn().catch((e: unknown) => this.log.error('a card did not restart', { card: this.name, why: (e as Error).message }));
      }, RESTART_MS);
    });
    for (let waited = 0; waited < READY_TIMEOUT_MS && !existsSync(this.socket); waited += READY_POLL_MS) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    if (!existsSync(this.socket)) {
      this.stop();
      throw new AzoteError('CardStart', `the ${this.name} card did not start: ${this.output.trim().split('\n').slice(-2).join(' ') || 'no output'}`);
    }
  }

  stop(): void {
    this.stopped = true;
    this.child?.kill('SIGTERM');
  }
}
