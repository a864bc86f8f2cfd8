// The block card: a process that serves one volume (a raw file) to one VM at a time over a vhost-user socket, with
// the same virtio-blk model and data path the hypervisor's own device uses. The volume is locked while the card
// runs. It waits in poll() on its socket, the frontend's connection, the rings' kick fds.
import type { Logger } from '../../base/log.js';
import * as libc from '../../sys/libc.js';
import { VirtioBlock } from '../../virtio/blk.js';
import { openDisk } from '../../virtio/raw-file.js';
import { listenAtPath } from '../../sys/unix-listen.js';
import { BackendSession } from '../../vhost-user/backend.js';

export interface BlockCardOptions {
  readonly socket: string;
  readonly volume: string;
  readonly readOnly: boolean;
}

/**
 * Serves until the process is killed: this thread sleeps in poll(), so the card has no JavaScript signal handler;
 * SIGTERM ends it and the kernel drops the volume's lock.
 */
export function serveBlockCard(o: BlockCardOptions, log: Logger): never {
  const disk = openDisk(o.volume, o.readOnly);
  const device = new VirtioBlock(disk);
  const listenFd = listenAtPath(o.socket, 'the card socket').fd;
  log.info('block card serving', { socket: o.socket, volume: o.volume, readOnly: o.readOnly, sectors: disk.sectors });
  let session: BackendSession | undefined;
  for (;;) {
    const ready = libc.pollFds([listenFd, ...(session?.watched() ?? [])], [...(session?.watchedWritable() ?? [])], -1);
    for (const fd of ready.write) session?.writable(fd);
    for (const fd of ready.read) {
      if (fd === listenFd) {
        for (let c = libc.acceptNonBlocking(listenFd); c >= 0; c = libc.acceptNonBlocking(listenFd)) {
          if (session && !session.closed) {
            log.warn('a second frontend was refused: the volume is attached', { socket: o.socket });
            libc.close(c);
            continue;
          }
          log.info('vhost-user frontend connected', { socket: o.socket });
          session = new BackendSession(c, device, log);
        }
        continue;
      }
      if (session && !session.closed && session.watched().includes(fd)) session.readable(fd);
    }
  }
}
