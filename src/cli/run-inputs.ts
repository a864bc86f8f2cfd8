// What `azote run` opens or makes for its VM before the hypervisor starts, as the controller does for an instance:
// the hypervisor, jailed, can open nothing itself. Each failure here is the user's to fix and is said in one line
// before any process starts: a kernel path that is wrong, a disk in use, a card that is not running, a vsock path
// another VM serves.
import { closeSync, openSync, writeSync } from 'node:fs';
import { AzoteError, errorMessage } from '../base/errors.js';
import { Kvm } from '../kvm/kvm.js';
import * as libc from '../sys/libc.js';
import { listenAtPath } from '../sys/unix-listen.js';
import { cardAtPath } from '../hypervisor/card-link.js';
import { createTap } from '../hypervisor/tap.js';
import type { DiskSpec } from '../hypervisor/vm.js';
import { openDisk } from '../virtio/raw-file.js';
import type { Handover, RunCard } from './run-hypervisor.js';

export interface RunInputs {
  /** What the hypervisor is given (RunHypervisor.start closes its descriptors). */
  readonly handover: Omit<Handover, 'launch'>;
  /** Closes the handover's descriptors: only where it never reached RunHypervisor.start. */
  discard(): void;
  /** Closes the vsock's listening socket and removes its path: at the end, whatever happened. */
  release(): void;
}

export interface RunInputSpec {
  /** The kernel's path, and the initramfs's bytes (made in memory: the base image and the run request). */
  readonly kernel: string;
  readonly initrd: Uint8Array | undefined;
  readonly disks: readonly DiskSpec[];
  readonly tap: boolean;
  /** The network card's socket, and the volumes' (SOCKET:NAME). */
  readonly netCard: string | undefined;
  readonly volumes: readonly string[];
  readonly vsock: string | undefined;
}

function openKernel(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AzoteError('BadPath', `cannot read the kernel ${file}: ${code === 'ENOENT' ? 'no such file' : code ?? String(e)}`, 'check the --kernel path');
  }
}

/** `bytes` in a memory file, as a read-only descriptor (the hypervisor reads it; only this process could write it). */
function memoryFile(name: string, bytes: Uint8Array): number {
  const fd = libc.memfdCreate(name);
  try {
    for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
    return openSync(`/proc/self/fd/${fd}`, 'r');
  } finally {
    closeSync(fd);
  }
}

/** /dev/kvm, checked (its API version, the capabilities Azote needs) as the hypervisor would. */
function openKvm(): number {
  const kvm = Kvm.open();
  try {
    return libc.dup(kvm.fd);
  } finally {
    kvm.close();
  }
}

/** A card's connection, made here; the error says which card and how to start it. */
function card(what: string, socket: string, fix: string): RunCard {
  const link = cardAtPath(socket);
  const connect = (): number => {
    try {
      return link.connect();
    } catch (e) {
      throw new AzoteError('CardUnavailable', `${what} at ${socket} cannot be used: ${errorMessage(e)}`, fix);
    }
  };
  return { name: socket, fd: connect(), reconnect: connect };
}

export function openInputs(spec: RunInputSpec): RunInputs {
  const fds: number[] = [];
  const keep = <T extends number>(fd: T): T => {
    fds.push(fd);
    return fd;
  };
  let vsock: { fd: number; release(): void } | undefined;
  try {
    const kernelFd = keep(openKernel(spec.kernel));
    const initrdFd = spec.initrd ? keep(memoryFile('azote-initrd', spec.initrd)) : undefined;
    // Locked as the hypervisor would lock them (the lock belongs to the open file, which it inherits).
    const disks = spec.disks.map((d) => ({ fd: keep(openDisk(d.path, d.readOnly).fd), name: d.path, readOnly: d.readOnly }));
    const kvmFd = keep(openKvm());
    const tap = spec.tap ? createTap() : undefined;
    if (tap) keep(tap.fd);
    const volumes = spec.volumes.map((socket) => {
      const c = card('the volume\'s card', socket, `start it first: azote card block --socket ${socket.replace(/:[^:/]*$/, '')} --volume FILE`);
      keep(c.fd);
      return c;
    });
    const netCard = spec.netCard === undefined ? undefined : card('the network card', spec.netCard, `start it first: azote card net --socket ${spec.netCard}`);
    if (netCard) keep(netCard.fd);
    if (spec.vsock !== undefined) vsock = listenAtPath(spec.vsock, 'the vsock path');
    const listening = vsock;
    return {
      handover: { kvmFd, kernelFd, initrdFd, disks, tap, netCard, volumes, vsock: listening && spec.vsock !== undefined ? { listenFd: listening.fd, path: spec.vsock } : undefined },
      discard: () => fds.splice(0).forEach((fd) => closeSync(fd)),
      release: () => listening?.release(),
    };
  } catch (e) {
    for (const fd of fds) closeSync(fd);
    vsock?.release();
    throw e;
  }
}
