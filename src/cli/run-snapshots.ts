// `azote run` from a booted snapshot. The guest is booted once per machine (kernel, initramfs, vCPUs, memory,
// devices, command line, hypervisor code) to where its init waits for the run request; the hypervisor saves it there
// and this host's security chip seals the file (snapshot-mac.ts). Every later run of the same machine continues a
// copy of it, which reads its command, clock, entropy and network from the run-request ports: no boot.
// The snapshots live in <cache>/snapshots/<key>.snap, made on first use like the kernel; a snapshot that fails its
// check is removed and the run boots cold (and makes a new one).
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { SNAPSHOT_FORMAT_VERSION } from '../protocols/snapshot-file.js';
import { checkSnapshot, sealSnapshot } from '../security-chip/snapshot-mac.js';
import { COMPONENTS, componentFiles } from '../controller/components.js';
import { projectRoot } from '../images/paths.js';
import { cacheDir } from '../images/cache.js';

/** Everything that makes one booted machine differ from another. */
export interface SnapshotMachine {
  readonly kernel: string;
  readonly initrd: Uint8Array;
  readonly cmdline: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly rng: boolean;
  readonly tap: boolean;
  readonly vsock: boolean;
  readonly flavour: string;
  /** What guest memory is (a guest booted with kvmclock cannot continue on secret memory). */
  readonly memory: { readonly kind: string; readonly noKvmclock: boolean };
}

/**
 * What the hypervisor is handed (its fd, which the handover owns from then on): an fd to write the snapshot to, or
 * one to continue, with the digest the MAC verified. discard() removes what a run that did not finish leaves.
 */
export type SnapshotUse =
  | { readonly mode: 'save'; readonly fd: number; saved(): void; discard(): void }
  | { readonly mode: 'restore'; readonly fd: number; readonly digest: string; discard(): void };

function sha256(...parts: Array<string | Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

let hypervisorDigest: string | undefined;

/** The hypervisor's compiled code: a snapshot holds its devices' state, which only the same code reads for sure. */
function hypervisorCode(): string {
  if (hypervisorDigest === undefined) {
    const spec = COMPONENTS.find((c) => c.name === 'hypervisor');
    if (!spec) throw new Error('no hypervisor component is defined');
    const root = projectRoot();
    const files = componentFiles(spec, root).filter((f) => f.endsWith('.js')).sort();
    hypervisorDigest = sha256(...files.flatMap((f) => [f, readFileSync(path.join(root, f))]));
  }
  return hypervisorDigest;
}

/**
 * The kernel file by its identity on disk rather than its 16 MiB of content, hashed at every run otherwise: a
 * rebuilt or replaced kernel is a new file (a new inode, size or modification time).
 */
function kernelIdentity(file: string): string {
  const st = statSync(file, { bigint: true });
  return `${path.resolve(file)} ${st.dev} ${st.ino} ${st.size} ${st.mtimeNs}`;
}

export function snapshotKey(m: SnapshotMachine): string {
  return sha256(String(SNAPSHOT_FORMAT_VERSION), kernelIdentity(m.kernel), m.initrd, m.cmdline,
    JSON.stringify({ vcpus: m.vcpus, mem: m.memoryMiB, rng: m.rng, tap: m.tap, vsock: m.vsock, flavour: m.flavour, memory: m.memory }), hypervisorCode()).slice(0, 32);
}

export function snapshotDir(): string {
  return path.join(cacheDir(), 'snapshots');
}

/** How many snapshots are kept: each is a machine run lately (a rebuilt hypervisor or kernel makes new ones). */
const KEEP_SNAPSHOTS = 8;

/** Removes all but the KEEP_SNAPSHOTS most recently used snapshots (a restore touches its file). */
function prune(dir: string): void {
  const snaps = readdirSync(dir).filter((f) => f.endsWith('.snap')).flatMap((f) => {
    try {
      return [{ file: path.join(dir, f), used: statSync(path.join(dir, f)).mtimeMs }];
    } catch {
      return []; // removed meanwhile by another run
    }
  });
  for (const s of snaps.sort((a, b) => b.used - a.used).slice(KEEP_SNAPSHOTS)) rmSync(s.file, { force: true });
}

/**
 * The snapshot to continue for this machine (its MAC checked by the chip in `hostDir`), or, when there is none yet
 * or it fails its check, a new file to save one into.
 */
export function useSnapshot(m: SnapshotMachine, hostDir: string, log: Logger): SnapshotUse {
  const dir = snapshotDir();
  mkdirSync(dir, { recursive: true });
  mkdirSync(path.join(hostDir, 'chip'), { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${snapshotKey(m)}.snap`);
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (fd !== undefined) {
    try {
      const { digest } = checkSnapshot(hostDir, fd);
      const now = new Date();
      utimesSync(file, now, now);
      return { mode: 'restore', fd, digest: digest.toString('hex'), discard: () => undefined };
    } catch (e) {
      closeSync(fd);
      if (!(e instanceof AzoteError)) throw e;
      log.warn('the saved snapshot cannot be used: booting cold and saving a new one', { file, why: errorMessage(e) });
      rmSync(file, { force: true });
    }
  }
  // Written under a name of its own and renamed once sealed: a run never meets a half-written snapshot.
  const tmp = `${file}.${process.pid}.tmp`;
  return {
    mode: 'save', fd: openSync(tmp, 'w+', 0o600),
    saved: () => {
      try {
        sealSnapshot(hostDir, tmp);
        renameSync(tmp, file);
        prune(dir);
        log.info('saved a snapshot of the booted machine: the next runs continue it', { file });
      } catch (e) {
        rmSync(tmp, { force: true });
        log.warn('the snapshot could not be kept', { why: errorMessage(e) });
      }
    },
    discard: () => rmSync(tmp, { force: true }),
  };
}

/** Removes a snapshot the hypervisor refused to continue, so the next run boots cold and saves a new one. */
export function forgetSnapshot(m: SnapshotMachine): void {
  rmSync(path.join(snapshotDir(), `${snapshotKey(m)}.snap`), { force: true });
}
