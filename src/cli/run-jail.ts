// Where `azote run` starts its hypervisor: in the jail the controller gives instances (controller/jail.ts) whenever
// it can, as root or, without root, inside an unprivileged user namespace; unjailed with --no-jail (for debugging,
// said nothing), or where this host allows no user namespaces (said in one line on stderr). Either way the
// hypervisor is the same entry, told everything over its channel and inherited descriptors.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { coreGroups } from '../controller/cores.js';
import { JAIL_PATH, jailCommand, JailUids, memlockLimit, type LockedMemory } from '../controller/jail.js';
import { projectRoot } from '../images/paths.js';
import { COMPONENTS } from '../controller/components.js';
import type { StagedHypervisor } from './hypervisor-files.js';

export type JailChoice =
  | { readonly jail: true }
  /** `notice`: the line to print, when the user did not ask for it. */
  | { readonly jail: false; readonly notice: string | undefined };

/**
 * Whether the hypervisor runs jailed. `userNamespaces` says why unprivileged user namespaces cannot be made here
 * (undefined: they can); it is asked only where it matters (not root, no --no-jail).
 */
export function chooseJail(o: { noJail: boolean; root: boolean; userNamespaces: () => string | undefined }): JailChoice {
  if (o.noJail) return { jail: false, notice: undefined };
  if (o.root) return { jail: true };
  const why = o.userNamespaces();
  if (why === undefined) return { jail: true };
  return {
    jail: false,
    notice: `azote: running without a jail: this user cannot make the jail's namespaces (${why}) `
      + '(run as root, or let unprivileged users make user namespaces, e.g. sysctl kernel.unprivileged_userns_clone=1; --no-jail silences this)',
  };
}

/** Why the namespaces of an unprivileged jail cannot be made here (undefined: they can), as unshare says. */
export function userNamespaceProblem(): string | undefined {
  const r = spawnSync('unshare', ['--user', '--map-root-user', '--net', '--mount', '--ipc', '--uts', '--pid', '--fork', 'true'],
    { encoding: 'utf8', env: { PATH: JAIL_PATH } });
  if (r.error) return `unshare cannot be run: ${r.error.message}`;
  if (r.status === 0) return undefined;
  return r.stderr.trim().split('\n').at(-1) || `unshare exited with ${r.status ?? r.signal}`;
}

export interface HypervisorCommand {
  readonly command: string;
  readonly args: readonly string[];
  /** The jail's uid (undefined: the user's own, unjailed or in a user namespace). */
  readonly uid: number | undefined;
}

/** The entry's arguments: a name for the process list, and --vsock where it must take vsock connections. */
function entryArgs(vsock: boolean): string[] {
  return ['--instance', `run-${process.pid}`, ...(vsock ? ['--vsock'] : [])];
}

/**
 * The jailed hypervisor: its staged code, a uid never given to another jail (as root), the CPUs this process may
 * use, locked memory for its guest, and the data directory's mount point (the controller's, each jail mounting its
 * root in its own mount namespace). No control group: the user's own limits apply, as to any program they run.
 */
export function jailedHypervisor(o: { dataDir: string; staged: StagedHypervisor; lockedMemory: LockedMemory; vsock: boolean }): HypervisorCommand {
  const mountPoint = path.join(o.dataDir, 'jail');
  mkdirSync(mountPoint, { recursive: true, mode: 0o755 });
  const uid = process.getuid?.() === 0 ? new JailUids(path.join(o.dataDir, 'jail-uid-next')).next(new Set()) : undefined;
  const { command, args } = jailCommand({
    mountPoint, componentDir: o.staged.dir, entry: o.staged.entry, args: entryArgs(o.vsock), cores: coreGroups().flat(), uid,
    cgroupProcs: [], lockedMemory: o.lockedMemory, libraryCache: path.join(o.dataDir, 'jail-libraries.json'),
  });
  return { command, args, uid };
}

/**
 * The memory a hypervisor may lock, in bytes (secret guest memory counts): in the jail, up to `wanted` (memlockLimit,
 * which may let it keep CAP_IPC_LOCK: then without limit); unjailed, this process's own RLIMIT_MEMLOCK (soft), or no
 * limit as root (CAP_IPC_LOCK).
 */
export function lockableBytes(jailed: boolean, wanted: number): number {
  if (jailed) {
    const lock = memlockLimit(wanted, { ipcLock: true });
    return lock.ipcLock ? Infinity : lock.bytes;
  }
  return ownMemlock();
}

function ownMemlock(): number {
  if (process.getuid?.() === 0) return Infinity;
  const soft = /^Max locked memory\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? '0';
  return soft === 'unlimited' ? Infinity : Number(soft);
}

/** The same entry unjailed, from this build. */
export function unjailedHypervisor(vsock: boolean): HypervisorCommand {
  const entry = COMPONENTS.find((c) => c.name === 'hypervisor')?.entry ?? '';
  return { command: process.execPath, args: [path.join(projectRoot(), entry), ...entryArgs(vsock)], uid: undefined };
}
