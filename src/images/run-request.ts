// The run request: the command and environment `azote run` asks the guest's init to use (guest/init/init.c).
// Two NUL-separated lists, argv and env. A guest continued from a snapshot reads them (with its clock, entropy and
// network) from the run-request ports (runRequestBytes). With an initramfs they ride in a small cpio archive appended to it
// (azote/argv, azote/env); a guest booted from a disk image gets them base64-encoded on the kernel command line
// (azote.argv=, azote.env=), which the kernel keeps away from init's own arguments because the names hold a dot.
import { randomBytes } from 'node:crypto';
import { AzoteError } from '../base/errors.js';
import { defineStruct, StructView } from '../base/struct.js';
import { CpioWriter } from './cpio.js';

const ENV_NAME = /^[^=\0]+$/;

interface RunRequestLists {
  /** Absent: the guest starts an interactive shell. */
  readonly argv?: Buffer;
  /** Absent when there is no variable to set. */
  readonly env?: Buffer;
}

function lists(argv: string[] | undefined, env: Record<string, string>): RunRequestLists {
  if (argv !== undefined && argv.length === 0) {
    throw new AzoteError('BadArgument', 'the command to run is empty', 'give a command, or none for a shell');
  }
  for (const a of argv ?? []) {
    if (a.includes('\0')) throw new AzoteError('BadArgument', `command argument ${JSON.stringify(a)} contains a NUL byte`);
  }
  const entries = Object.entries(env).map(([k, v]) => {
    if (!ENV_NAME.test(k)) {
      throw new AzoteError('BadEnv', `environment variable name ${JSON.stringify(k)} is empty or has "=" or NUL`);
    }
    if (v.includes('\0')) throw new AzoteError('BadEnv', `the value of environment variable ${k} contains a NUL byte`);
    return `${k}=${v}`;
  });
  const list = (items: string[]): Buffer => Buffer.from(items.map((i) => `${i}\0`).join(''), 'utf8');
  return {
    ...(argv !== undefined ? { argv: list(argv) } : {}),
    ...(entries.length > 0 ? { env: list(entries) } : {}),
  };
}

/**
 * The run request as an archive to append to an initramfs: azote/argv (each argument followed by a NUL) and
 * azote/env (KEY=VALUE entries, each followed by a NUL). With argv undefined there is no azote/argv and the guest
 * starts an interactive shell; with no env either, it is an empty archive. The azote/ directory comes from the
 * base image.
 */
export function runRequestArchive(argv: string[] | undefined, env: Record<string, string> = {}): Buffer {
  const l = lists(argv, env);
  const w = new CpioWriter();
  if (l.argv) w.file('azote/argv', l.argv, 0o644);
  if (l.env) w.file('azote/env', l.env, 0o644);
  return w.finish();
}

/** The run request as kernel parameters, for a guest booted without an initramfs. */
export function runRequestParams(argv: string[] | undefined, env: Record<string, string> = {}): string[] {
  const l = lists(argv, env);
  return [
    ...(l.argv ? [`azote.argv=${l.argv.toString('base64')}`] : []),
    ...(l.env ? [`azote.env=${l.env.toString('base64')}`] : []),
  ];
}

/**
 * The run request as the guest's init reads it through the run-request ports (guest/ABI.md, "Run request"), when it
 * continues a snapshot: this header, then three fields each led by its u32 length: the azote.net= value (empty: no
 * network), argv and env (NUL-separated, as above).
 */
export const runRequestHeader = defineStruct('run request header', undefined, 104, {
  magic: { offset: 0, type: 'u32' },
  version: { offset: 4, type: 'u32' },
  flags: { offset: 8, type: 'u32' },
  /** The host's time, Unix seconds and nanoseconds: the guest's clock stood still in the snapshot. */
  seconds: { offset: 16, type: 'u64' },
  nanoseconds: { offset: 24, type: 'u32' },
  /** From the host's CSPRNG, mixed into the guest's pool before anything runs. */
  entropy: { offset: 32, type: { bytes: 64 } },
  /** eth0's MAC for this run; all zero keeps the snapshot's. */
  mac: { offset: 96, type: { bytes: 6 } },
});
export const RUN_REQUEST_MAGIC = 0x51525a41; // "AZRQ"
export const RUN_REQUEST_VERSION = 1;
export const RUN_REQUEST_HAS_COMMAND = 1;

export interface PortRunRequest {
  readonly argv: string[] | undefined;
  readonly env: Record<string, string>;
  /** azote.net='s value: GUEST/PREFIX,HOST, dhcp, or empty. */
  readonly net: string;
  readonly mac?: Uint8Array | undefined;
  readonly now?: Date;
}

export function runRequestBytes(r: PortRunRequest): Buffer {
  const l = lists(r.argv, r.env);
  const header = StructView.alloc(runRequestHeader);
  const now = r.now ?? new Date();
  header.set('magic', RUN_REQUEST_MAGIC).set('version', RUN_REQUEST_VERSION).set('flags', l.argv ? RUN_REQUEST_HAS_COMMAND : 0)
    .set('seconds', BigInt(Math.floor(now.getTime() / 1000))).set('nanoseconds', (now.getTime() % 1000) * 1_000_000);
  header.field('entropy').set(randomBytes(64));
  if (r.mac) header.field('mac').set(r.mac);
  const field = (b: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(b.length);
    return Buffer.concat([length, b]);
  };
  const bytes = Buffer.concat([header.bytes(), field(Buffer.from(r.net, 'utf8')), field(l.argv ?? Buffer.alloc(0)), field(l.env ?? Buffer.alloc(0))]);
  if (bytes.length > MAX_PORT_RUN_REQUEST) {
    throw new AzoteError('RunRequestTooLarge', `the command and environment take ${bytes.length} bytes, more than the guest reads (${MAX_PORT_RUN_REQUEST})`,
      'pass a shorter command or environment, or boot cold (--cold)');
  }
  return bytes;
}

/** The most the guest's init reads (guest/init/init.c RUN_REQUEST_MAX). */
export const MAX_PORT_RUN_REQUEST = 65536;
