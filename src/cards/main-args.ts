// The command line of a card process started by the controller: `--name value` pairs, some repeatable. (People
// start cards through `azote card`, which has its own help; this is the small parser the cards' own entries use, so
// that a card's signed bundle needs no command-line library.) The controller starts a card in its jail and gives it
// its listening sockets (`--listen-fd N`) and its files as descriptors; the card locks itself down before anything
// else.
import { writeSync } from 'node:fs';
import { constants } from 'node:os';
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { restrictProcess, type SyscallAllowlist } from '../sys/seccomp.js';

export function cardArgs(argv: readonly string[], known: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i] ?? '';
    const value = argv[i + 1];
    if (!name.startsWith('--') || !known.includes(name.slice(2)) || value === undefined) {
      throw new AzoteError('BadArguments', `unexpected argument ${JSON.stringify(name)}`, `give --NAME VALUE pairs among ${known.join(', ')}`);
    }
    out.set(name.slice(2), [...(out.get(name.slice(2)) ?? []), value]);
  }
  return out;
}

/** An inherited descriptor's number on the command line (`--listen-fd 3`, `fd:4`). */
export function inheritedFd(given: string, what: string): number {
  if (!/^([3-9]|[1-9]\d{1,3})$/.test(given)) {
    throw new AzoteError('BadArguments', `${what} ${JSON.stringify(given)} is not an inherited descriptor`, 'give a descriptor number of 3 or more');
  }
  return Number(given);
}

/** `--listen-fd N` (repeatable, at least one): the listening sockets the controller made and handed over, in order. */
export function listenFds(args: ReadonlyMap<string, string[]>): number[] {
  const fds = args.get('listen-fd')?.map((fd) => inheritedFd(fd, '--listen-fd')) ?? [];
  if (fds.length === 0) {
    throw new AzoteError('BadArguments', 'a card\'s entry is started by the controller, which hands it its sockets (--listen-fd)', 'run a card by hand with azote card');
  }
  return fds;
}

/**
 * What a card does first (it runs in its jail): it dies with its parent (the jail's unshare, which the controller's
 * death takes down; setpriv's uid change cleared the parent-death signal the jail set), is not dumpable (no ptrace or
 * /proc access to its memory by its own uid), and keeps only the system calls its kind of card was seen to make
 * (`allowlist`): with its sockets given, it never opens, binds, listens or connects a socket, and starts no program.
 */
export function lockDown(allowlist: SyscallAllowlist): void {
  libc.prctl(libc.PR_SET_PDEATHSIG, constants.signals.SIGKILL);
  libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
  libc.prctl(libc.PR_SET_DUMPABLE, 0);
  restrictProcess(allowlist);
}

/** Tells the controller that started the card (reading its stdout) that it serves: its volumes are open and locked. */
export function sayReady(): void {
  writeSync(1, `${CARD_READY}\n`);
}

/** The line a card started by the controller writes on its stdout once it serves. */
export const CARD_READY = 'azote-card-ready';
