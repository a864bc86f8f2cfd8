// A minimal QMP client (QEMU's JSON machine protocol over a Unix socket) for the benchmarks: connect, negotiate,
// run commands one at a time. Events are skipped; every reply is checked before it is used.
import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchError } from './proc.js';

type Reply = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

/** One QMP message as received: a command's reply, or something to skip (greeting, event). */
function parseMessage(line: string): Reply | undefined {
  let m: unknown;
  try {
    m = JSON.parse(line);
  } catch {
    throw new BenchError(`QMP: not JSON: ${line.slice(0, 200)}`);
  }
  if (typeof m !== 'object' || m === null) throw new BenchError(`QMP: not an object: ${line.slice(0, 200)}`);
  if ('return' in m) return { ok: true, value: m.return };
  if ('error' in m) {
    const e = m.error;
    const desc = typeof e === 'object' && e !== null && 'desc' in e && typeof e.desc === 'string' ? e.desc : JSON.stringify(e);
    return { ok: false, error: desc };
  }
  if ('QMP' in m || 'event' in m) return undefined;
  throw new BenchError(`QMP: unexpected message: ${line.slice(0, 200)}`);
}

export class Qmp {
  private buffer = '';
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined;
  private closed: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const gone = (e?: Error): void => {
      this.closed = new BenchError(`QMP: the connection closed${e ? ` (${e.message})` : ''}`);
      this.waiting?.reject(this.closed);
      this.waiting = undefined;
    };
    socket.on('error', gone);
    socket.on('close', () => gone());
  }

  /** Connects to `path` (retrying while QEMU has not made it yet, up to `timeoutMs`) and leaves negotiation mode. */
  static async connect(path: string, timeoutMs: number): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path, () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) {
          throw new BenchError(`QMP: cannot connect to ${path}: ${(e as Error).message}`);
        }
        await sleep(50);
      }
    }
  }

  /** Runs one command; resolves with its return value, throws with QEMU's description of an error. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) throw this.closed;
    if (this.waiting) throw new BenchError('QMP: one command at a time');
    const reply = new Promise<Reply>((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
    this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const r = await reply;
    if (!r.ok) throw new BenchError(`QMP ${command}: ${r.error}`);
    return r.value;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let i = this.buffer.indexOf('\n'); i >= 0; i = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, i).trim();
      this.buffer = this.buffer.slice(i + 1);
      if (!line) continue;
      let r: Reply | undefined;
      try {
        r = parseMessage(line);
      } catch (e) {
        this.waiting?.reject(e as Error);
        this.waiting = undefined;
        continue;
      }
      if (!r) continue;
      const w = this.waiting;
      this.waiting = undefined;
      if (w) w.resolve(r);
    }
  }
}
