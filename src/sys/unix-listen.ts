// A listening Unix socket at a path the user chose (a VM's vsock, a card's vhost-user socket). A path left over by
// a process that is gone (nobody accepts on it) is replaced; one that another process serves is refused.
import { lstatSync, unlinkSync } from 'node:fs';
import { AzoteError } from '../base/errors.js';
import * as libc from './libc.js';

/**
 * The listening socket (non-blocking), and `release`, which closes it and removes the path if it is still this
 * socket. `what` names the socket in errors ("the vsock path").
 */
export function listenAtPath(path: string, what: string): { fd: number; release(): void } {
  let stale = false;
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) {
      throw new AzoteError('SocketPathInUse', `${what} ${path} exists and is not a socket`, 'give a path that does not exist yet');
    }
    try {
      libc.close(libc.connectUnix(path));
    } catch {
      stale = true;
    }
    if (!stale) throw new AzoteError('SocketPathInUse', `${what} ${path} is in use by another process`, 'give each its own path');
  } catch (e) {
    if (e instanceof AzoteError) throw e;
    // ENOENT: the path is free.
  }
  if (stale) unlinkSync(path);
  let fd: number;
  try {
    fd = libc.listenUnix(path);
  } catch (e) {
    throw new AzoteError('SocketListen', `cannot listen on ${what} ${path}: ${(e as Error).message}`,
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
