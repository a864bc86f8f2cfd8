// The host end of a VM's vsock device: a Unix socket at the path the user gave, which host programs connect to.
// A path left over by a VM that is gone (nobody accepts on it) is replaced; one another VM serves is refused.
import { lstatSync, unlinkSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';

export const GUEST_CID = 3;

/** The listening socket, and the inode of its path: removed at the end only if the path is still this socket. */
export function listenVsock(path: string): { fd: number; release(): void } {
  let stale = false;
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) {
      throw new AzoteError('VsockPathInUse', `the vsock path ${path} exists and is not a socket`, 'give a path that does not exist yet');
    }
    try {
      libc.close(libc.connectUnix(path));
    } catch {
      stale = true;
    }
    if (!stale) throw new AzoteError('VsockPathInUse', `the vsock path ${path} is in use by another VM`, 'give each VM its own --vsock path');
  } catch (e) {
    if (e instanceof AzoteError) throw e;
    // ENOENT: the path is free.
  }
  if (stale) unlinkSync(path);
  let fd: number;
  try {
    fd = libc.listenUnix(path);
  } catch (e) {
    throw new AzoteError('VsockListen', `cannot listen on the vsock path ${path}: ${(e as Error).message}`,
      'check that its folder exists and is writable');
  }
  const ino = lstatSync(path).ino;
  return {
    fd,
    release: () => {
      libc.close(fd);
      try {
        if (lstatSync(path).ino === ino) unlinkSync(path);
      } catch {
        // Already gone.
      }
    },
  };
}
