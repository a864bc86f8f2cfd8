// The block card: a process that serves volumes (raw files) to VMs over vhost-user, one socket per volume
// (`<socket>:<volume name>`), each attached to one VM at a time, with the same virtio-blk model and data path the
// hypervisor's own device uses. Each volume is locked while the card runs. Run by hand it opens its files and listens
// on its sockets itself; in its jail it is given both as descriptors, the sockets in the volumes' order. The card sleeps in poll() on its
// sockets, the frontends' connections and the rings' kick fds.
import { AzoteError } from '../../base/errors.js';
import type { Logger } from '../../base/log.js';
import * as libc from '../../sys/libc.js';
import { VirtioBlock } from '../../virtio/blk.js';
import { adoptDisk, openDisk } from '../../virtio/raw-file.js';
import { listenAtPath } from '../../sys/unix-listen.js';
import { BackendSession, type CardDevice } from '../../vhost-user/backend.js';
import { createDataPath } from '../../virtio/data-paths.js';

export interface VolumeSpec {
  readonly name: string;
  /** The file; for an inherited one, the volume's name. */
  readonly path: string;
  /** The file opened by the controller and inherited. */
  readonly fd?: number;
  readonly readOnly: boolean;
}

export interface BlockCardOptions {
  readonly socket: string;
  readonly volumes: readonly VolumeSpec[];
  /** The volumes' listening sockets, made and handed over by the controller (their paths are still named by `socket`). */
  readonly listenFds?: readonly number[] | undefined;
  /** Called once every volume is open and locked and its socket takes connections. */
  readonly ready?: (() => void) | undefined;
}

/** The socket a volume is served on. */
export function volumeSocket(socket: string, volume: string): string {
  return `${socket}:${volume}`;
}

interface Served {
  readonly volume: VolumeSpec;
  readonly socket: string;
  readonly listenFd: number;
  readonly device: CardDevice;
  session: BackendSession | undefined;
}

/**
 * Serves until the process is killed: this thread sleeps in poll(), so the card has no JavaScript signal handler;
 * SIGTERM ends it and the kernel drops the volumes' locks.
 */
export function serveBlockCard(o: BlockCardOptions, log: Logger): never {
  const { socket, volumes, listenFds } = o;
  if (listenFds && listenFds.length !== volumes.length) {
    throw new AzoteError('BadArguments', `${listenFds.length} listening sockets for ${volumes.length} volumes`, 'give one --listen-fd per --volume, in the same order');
  }
  const served: Served[] = volumes.map((v, i) => {
    const disk = v.fd !== undefined ? adoptDisk(v.fd, v.path, v.readOnly) : openDisk(v.path, v.readOnly);
    const path = volumeSocket(socket, v.name);
    const listenFd = listenFds?.[i] ?? listenAtPath(path, 'the card socket').fd;
    log.info('block card serving', { socket: path, volume: v.path, readOnly: v.readOnly, sectors: disk.sectors });
    const model = new VirtioBlock(disk);
    const device: CardDevice = { model, dataPath: (mem, queues, features) => createDataPath(model.dataPath, mem, queues, features) };
    return { volume: v, socket: path, listenFd, device, session: undefined };
  });
  o.ready?.();
  const live = (s: Served): BackendSession | undefined => (s.session && !s.session.closed ? s.session : undefined);
  for (;;) {
    const reads = served.flatMap((s) => [s.listenFd, ...(live(s)?.watched() ?? [])]);
    const writes = served.flatMap((s) => [...(live(s)?.watchedWritable() ?? [])]);
    // Rings left with work at their budget get another turn once every ready fd had its own.
    const ready = libc.pollFds(reads, writes, served.some((s) => live(s)?.hasBacklog) ? 0 : -1);
    for (const fd of ready.write) for (const s of served) if (live(s)?.watchedWritable().includes(fd)) s.session?.writable(fd);
    for (const fd of ready.read) {
      const byListen = served.find((s) => s.listenFd === fd);
      if (byListen) {
        for (let c = libc.acceptNonBlocking(fd); c >= 0; c = libc.acceptNonBlocking(fd)) {
          if (live(byListen)) {
            log.warn('a second frontend was refused: the volume is attached', { socket: byListen.socket });
            libc.close(c);
            continue;
          }
          log.info('vhost-user frontend connected', { socket: byListen.socket });
          byListen.session = new BackendSession(c, byListen.device, log);
        }
        continue;
      }
      const owner = served.find((s) => live(s)?.watched().includes(fd));
      owner?.session?.readable(fd);
    }
    for (const s of served) live(s)?.serveBacklog();
  }
}
