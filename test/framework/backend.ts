// Starts a vhost-user backend (a card, or a peer such as qemu-storage-daemon) as a child process for a test.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';

export interface Backend {
  stop(signal?: NodeJS.Signals): void;
  /** What it wrote to stderr so far (a card's log). */
  log(): string;
}

/** Starts `command` (a vhost-user backend) and waits for its socket; returns a function that stops it. */
export async function backend(command: string, args: string[], socket: string): Promise<Backend> {
  const p = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  p.stderr.setEncoding('utf8').on('data', (s: string) => { log += s; });
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(100);
  assert.ok(existsSync(socket), `${command} made its socket: ${log}`);
  return { stop: (signal = 'SIGTERM') => p.kill(signal), log: () => log };
}


/**
 * A frontend connected to the backend at `socket`, trying every 100 ms up to `attempts` times (a card that serves
 * one frontend at a time turns new ones away until it has seen the last one go); undefined if none was taken.
 */
export async function connectWhenTaken(socket: string, attempts: number): Promise<VhostUserFrontend | undefined> {
  for (let i = 0; i < attempts; i++) {
    try {
      return VhostUserFrontend.connect(socket);
    } catch {
      await sleep(100);
    }
  }
  return undefined;
}
