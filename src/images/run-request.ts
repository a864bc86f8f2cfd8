// The run request: the command and environment `azote run` asks the guest's init to use (guest/init/init.c).
// Two NUL-separated lists, argv and env. With an initramfs they ride in a small cpio archive appended to it
// (azote/argv, azote/env); a guest booted from a disk image gets them base64-encoded on the kernel command line
// (azote.argv=, azote.env=), which the kernel keeps away from init's own arguments because the names hold a dot.
import { AzoteError } from '../base/errors.js';
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
