// Tests that send packets (to guests, cards, TAPs, instances) run in a network namespace of their own, so that no
// test traffic to a private or public address ever leaves through the host's namespace. Call
// `useOwnNetworkNamespace()` first thing in such a test file's module body: the process's main thread moves into a
// new namespace with only `lo` (up), and every worker, hypervisor, card, QEMU or CLI the file starts afterwards
// inherits it. The namespace goes away with the test process. The product's defaults are untouched: only tests move.
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { CLONE_NEWNET, O_CLOEXEC, O_RDONLY, open, unshare } from '../../src/sys/libc.js';

export interface OwnNetworkNamespace {
  /** The inode of the host's network namespace (the one this process started in). */
  readonly hostInode: number;
  /** The inode of the namespace the test now runs in. */
  readonly ownInode: number;
  /** A path naming the host's namespace (a descriptor this process keeps open), for `nsenter --net=` in checks. */
  readonly hostPath: string;
}

let entered: OwnNetworkNamespace | undefined;

function nsInode(path: string): number {
  return statSync(path).ino;
}

/** Moves this test process into a fresh network namespace (once; later calls return the same one). */
export function useOwnNetworkNamespace(): OwnNetworkNamespace {
  if (entered) return entered;
  const hostInode = nsInode('/proc/self/ns/net');
  // Held for the life of the test process, so checks can look at the host's side; closed when the process exits.
  const hostFd = open('/proc/self/ns/net', O_RDONLY | O_CLOEXEC);
  try {
    unshare(CLONE_NEWNET);
  } catch (e) {
    throw new Error(`this test sends packets and must run in a network namespace of its own, which needs root `
      + `(CAP_SYS_ADMIN): run npm test as root (${(e as Error).message})`, { cause: e });
  }
  execFileSync('ip', ['link', 'set', 'lo', 'up'], { stdio: ['ignore', 'ignore', 'pipe'] });
  entered = { hostInode, ownInode: nsInode('/proc/self/ns/net'), hostPath: `/proc/${process.pid}/fd/${hostFd}` };
  return entered;
}
