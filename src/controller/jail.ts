// The jail a hypervisor (or a card) runs in, built from util-linux tools as the command the controller spawns:
//   setpriv (killed if the controller dies) -> sh (joins its control group: cores, memory, CPU time, pids) -> taskset
//   (its cores) -> prlimit (locked memory sized to its guest) -> unshare (new network, mount, IPC, UTS and pid
//   namespaces) -> sh (the root below) -> setpriv (a uid never given to another jail, no groups, no capabilities,
//   no_new_privs) -> node (the entry)
// Its root is a read-only tmpfs that holds only what the process needs to run: the node binary and setpriv with
// the shared libraries they and the bundle's native addons load, and the verified component's files, each bound
// read-only at its own path, and a /proc that shows only the processes of its own pid namespace (subset=pid: no
// system files), where the hypervisor lists its own threads to pull a vCPU out of KVM_RUN. No /dev, /sys, /etc, /tmp
// and no data directory: /dev/kvm, the kernel and the disks come as inherited descriptors and the cards' connections
// on its channel. The old root is detached before
// the hypervisor starts, so nothing of the host's file system can be reached again from inside.
import { accessSync, closeSync, constants, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as libc from '../sys/libc.js';
import { SharedLibraries } from './shared-libraries.js';

/** Uids the jails run as: JAIL_UID_BASE and up, each given once (no account is needed). */
export const JAIL_UID_BASE = 0x40000;
/** How many uids the jails cycle through before one is given again (about 16 million launches). */
export const JAIL_UID_COUNT = 0x1000000;

/**
 * Hands out jail uids in order, never the same twice until the range wraps, remembered in `file` across restarts:
 * what one jail leaves behind under its uid (a keyring, a file owned by it) is never readable by the next jail,
 * which may serve another account. After a wrap, uids still in use are skipped. The controller and each `azote run`
 * of a data directory share the file: a lock beside it makes each taking whole.
 */
export class JailUids {
  constructor(private readonly file: string) {}

  next(inUse: ReadonlySet<number>): number {
    mkdirSync(path.dirname(this.file), { recursive: true });
    const lock = openSync(`${this.file}.lock`, 'a', 0o600);
    try {
      libc.flock(lock, libc.LOCK_EX);
      return this.take(inUse);
    } finally {
      closeSync(lock); // and with it the lock
    }
  }

  private take(inUse: ReadonlySet<number>): number {
    let n = 0;
    try {
      n = Number(readFileSync(this.file, 'utf8').trim());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (!Number.isInteger(n) || n < 0 || n >= JAIL_UID_COUNT) n = 0;
    let uid = JAIL_UID_BASE + n;
    for (let tries = 0; inUse.has(uid); tries++) {
      if (tries >= JAIL_UID_COUNT) throw new Error('every jail uid is in use');
      n = (n + 1) % JAIL_UID_COUNT;
      uid = JAIL_UID_BASE + n;
    }
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, String((n + 1) % JAIL_UID_COUNT));
    renameSync(tmp, this.file);
    return uid;
  }
}

/** How one path of the host appears in the jail. */
export type MirrorStep =
  | { readonly kind: 'link'; readonly at: string; readonly target: string }
  | { readonly kind: 'file' | 'dir'; readonly at: string };

/**
 * The steps that make `wanted` (an absolute path) exist in the jail as on the host: each symbolic link on the way
 * becomes the same link, and what the path finally names is bound read-only.
 */
export function mirrorSteps(wanted: string): MirrorStep[] {
  const steps: MirrorStep[] = [];
  let todo = path.resolve(wanted);
  for (let hops = 0; hops < 40; hops++) {
    const parts = todo.split('/').filter(Boolean);
    let at = '';
    let followed = false;
    for (const [i, part] of parts.entries()) {
      at = `${at}/${part}`;
      const st = lstatSync(at);
      if (st.isSymbolicLink()) {
        const target = readlinkSync(at);
        steps.push({ kind: 'link', at, target });
        todo = path.resolve(path.dirname(at), target, ...parts.slice(i + 1));
        followed = true;
        break;
      }
      if (i === parts.length - 1) steps.push({ kind: st.isDirectory() ? 'dir' : 'file', at });
    }
    if (!followed) return steps;
  }
  throw new Error(`${wanted}: too many symbolic links`);
}

function nativeAddons(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.node')).map((f) => path.join(dir, f));
}

/** What a hypervisor's root holds: the node binary, setpriv, their libraries and the component's native addons'. */
export function jailContents(componentDir: string, node: string, setpriv: string, libraries: SharedLibraries): MirrorStep[] {
  const wanted = [node, setpriv, ...[node, setpriv, ...nativeAddons(componentDir)].flatMap((f) => libraries.of(f)), componentDir];
  const seen = new Set<string>();
  return wanted.flatMap(mirrorSteps).filter((s) => {
    const key = `${s.kind} ${s.at}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// Run by sh inside the new mount namespace: $1 is the directory the tmpfs root is mounted on, $2 the host's umount
// and $3 the directories of its libraries, then the mirror steps (link TARGET AT | file AT | dir AT) up to "--",
// then the command. The root is made read-only before the pivot; after it, the host's umount (run from the old root,
// which is still attached, finding mounts in the jail's own proc) detaches the old root, whose mount point stays
// behind, empty and read-only. The entry gets the environment the jail was given (PATH), not the shell's PWD
// and OLDPWD (which named the mount point on the host). Directories are made only where missing, and named by
// parameter expansion rather than dirname: each process the script starts costs every launch a few milliseconds. The directories made on the way to each bound path must let
// the jail's uid through whatever umask the starting process had.
const ROOT_SCRIPT = `set -eu
umask 022
r=$1 umount=$2 libs=$3; shift 3
mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev azote-jail "$r"
while [ "$1" != -- ]; do
  case $1 in
    link) [ -d "$r\${3%/*}" ] || mkdir -p "$r\${3%/*}"; ln -s "$2" "$r$3"; shift 3;;
    file) [ -d "$r\${2%/*}" ] || mkdir -p "$r\${2%/*}"; : > "$r$2"; mount --bind -o ro,nosuid,nodev "$2" "$r$2"; shift 2;;
    dir) mkdir -p "$r$2"; mount --bind -o ro,nosuid,nodev "$2" "$r$2"; shift 2;;
    *) echo "jail: unknown step $1" >&2; exit 2;;
  esac
done
shift
mkdir "$r/.old" "$r/proc"
mount -t proc -o nosuid,nodev,noexec,subset=pid,hidepid=invisible proc "$r/proc"
mount --rbind "$r" "$r"
mount -o remount,bind,ro,nosuid,nodev "$r"
cd "$r"
pivot_root . .old
LD_LIBRARY_PATH=$libs "/.old$umount" -l /.old
cd /
unset OLDPWD PWD
exec "$@"`;

export interface JailSpec {
  /** An empty directory the jail's root is mounted on (inside the jail's mount namespace only). */
  readonly mountPoint: string;
  /** The verified component's directory (bound read-only at the same path) and the entry in it. */
  readonly componentDir: string;
  readonly entry: string;
  readonly args: readonly string[];
  readonly cores: readonly number[];
  /** The uid and gid to run as; undefined where the controller is not root (it is unprivileged already). */
  readonly uid: number | undefined;
  /** The cgroup.procs files of its control group (InstanceCgroup.procsFiles); empty where there is none. */
  readonly cgroupProcs: readonly string[];
  /** The memory it may lock (secret guest memory counts as locked): memlockLimit's answer. */
  readonly lockedMemory: LockedMemory;
  /** A file that keeps ldd's answers across processes (shared-libraries.ts); undefined: asked again by each process. */
  readonly libraryCache?: string | undefined;
}

const CAP_SYS_RESOURCE = 24;
/** Locked memory a hypervisor may have beyond its guest's (the guest's memory may be secret memory, which counts). */
export const MEMLOCK_OVERHEAD_MIB = 64;

/** The memory a jail may lock: its RLIMIT_MEMLOCK, and whether it keeps CAP_IPC_LOCK (then the limit does not bind). */
export interface LockedMemory {
  readonly bytes: number;
  readonly ipcLock: boolean;
}

const CAP_IPC_LOCK = 14;

/**
 * How a jail may lock `wanted` bytes: an RLIMIT_MEMLOCK of that much where this process may raise limits
 * (CAP_SYS_RESOURCE) or its own hard limit allows it; else, if `o.ipcLock` allows it (the jail must lock it all: its
 * guest memory is secret memory) and this process may lock without limit (root with CAP_IPC_LOCK, but not allowed to
 * raise limits: a container), by keeping CAP_IPC_LOCK through the jail (its memory stays bounded by its control
 * group, which is charged for every page); else no more than the hard limit (`clamped`).
 */
export function memlockLimit(wanted: number, o: { readonly ipcLock: boolean } = { ipcLock: false }): LockedMemory & { clamped: boolean } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const eff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)?.[1] ?? '0'}`);
  if ((eff >> BigInt(CAP_SYS_RESOURCE)) & 1n) return { bytes: wanted, ipcLock: false, clamped: false };
  const hard = /^Max locked memory\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? '0';
  const limit = hard === 'unlimited' ? Infinity : Number(hard);
  if (limit >= wanted) return { bytes: wanted, ipcLock: false, clamped: false };
  if (o.ipcLock && process.getuid?.() === 0 && (eff >> BigInt(CAP_IPC_LOCK)) & 1n) return { bytes: limit, ipcLock: true, clamped: false };
  return { bytes: limit, ipcLock: false, clamped: true };
}

/**
 * How a jailed process ended, from what the controller sees: the exit of unshare, its parent in the jail. unshare
 * passes on its child's status and re-raises its child's fatal signal on itself, except SIGKILL, which it cannot
 * (util-linux then exits 1 with "sigprocmask unblock failed" as the log's last line): that case is the child's
 * SIGKILL (an OOM kill or a kill by hand), not a failure of the jail.
 */
export function jailedExit(code: number | null, signal: NodeJS.Signals | null, logLines: readonly string[]): { how: string; lastLine: string } {
  const last = logLines.at(-1) ?? '';
  if (signal === null && code === 1 && /^unshare: sigprocmask unblock failed/.test(last)) return { how: 'SIGKILL', lastLine: logLines.at(-2) ?? '' };
  return { how: signal ?? `status ${code}`, lastLine: last };
}

/** The host programs that build every jail (run as root before the hypervisor starts). */
export const JAIL_TOOLS = ['sh', 'taskset', 'prlimit', 'unshare', 'mount', 'umount', 'pivot_root', 'setpriv'] as const;

// The jail's first step: $1 counts the cgroup.procs files that follow; it writes its own pid into each, then runs
// the rest, so nothing of the jail ever runs outside its group.
const CGROUP_SCRIPT = `set -eu
n=$1; shift
while [ "$n" -gt 0 ]; do echo $$ > "$1"; shift; n=$((n - 1)); done
exec "$@"`;

/** Each jail tool's real path on this host. */
export function jailToolPaths(): string[] {
  return JAIL_TOOLS.map(which);
}

/** The tool's real path: the first executable file of that name on JAIL_PATH, as `command -v` finds it. */
function which(tool: string): string {
  for (const dir of JAIL_PATH.split(':')) {
    const file = path.join(dir, tool);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return realpathSync(file);
    } catch {
      // not here
    }
  }
  throw new Error(`${tool} is needed to build the jails and is not on ${JAIL_PATH}: install it (util-linux has all but sh)`);
}

/** The PATH the jail is built with. */
export const JAIL_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

interface HostTools {
  readonly setpriv: string;
  readonly umount: string;
  /** The directories of umount's libraries, as seen from the jail before the old root goes (under /.old). */
  readonly umountLibs: string;
}
let tools: HostTools | undefined;

function hostTools(libraries: SharedLibraries): HostTools {
  if (!tools) {
    const umount = which('umount');
    tools = { setpriv: which('setpriv'), umount, umountLibs: [...new Set(libraries.of(umount).map((l) => `/.old${path.dirname(realpathSync(l))}`))].join(':') };
  }
  return tools;
}

/** setpriv's capability options: none at all, or only CAP_IPC_LOCK (ambient: it survives the exec of node). */
function capabilities(ipcLock: boolean): string[] {
  const keep = ipcLock ? ',+ipc_lock' : '';
  return [`--inh-caps=-all${keep}`, ...(ipcLock ? ['--ambient-caps=+ipc_lock'] : []), `--bounding-set=-all${keep}`];
}

/** The command and arguments that start `entry` in its jail. */
export function jailCommand(spec: JailSpec): { command: string; args: string[] } {
  const libraries = new SharedLibraries(spec.libraryCache);
  const { setpriv, umount, umountLibs } = hostTools(libraries);
  // Made again at each launch: an installed update may bring other native addons.
  const steps = jailContents(spec.componentDir, process.execPath, setpriv, libraries).flatMap((s) => (s.kind === 'link' ? ['link', s.target, s.at] : [s.kind, s.at]));
  const root = process.getuid?.() === 0;
  // Its own IPC namespace (SysV objects and POSIX queues die with it), host name and pid namespace (it sees no
  // other process; the entry is unshare's child, killed with it). Without root, a user namespace first.
  const namespaces = ['unshare', ...(root ? [] : ['--user', '--map-root-user']), '--net', '--mount', '--propagation', 'private',
    '--ipc', '--uts', '--pid', '--fork', '--kill-child'];
  const identity = spec.uid !== undefined ? [`--reuid=${spec.uid}`, `--regid=${spec.uid}`, '--clear-groups'] : [];
  const jail = ['taskset', '--cpu-list', spec.cores.join(','), 'prlimit', `--memlock=${spec.lockedMemory.bytes}:${spec.lockedMemory.bytes}`, '--',
    ...namespaces, '--', 'sh', '-c', ROOT_SCRIPT, 'azote-jail', spec.mountPoint, umount, umountLibs, ...steps, '--',
    setpriv, ...identity, ...capabilities(spec.lockedMemory.ipcLock), '--no-new-privs', '--', process.execPath, spec.entry, ...spec.args];
  const grouped = spec.cgroupProcs.length === 0 ? jail
    : ['sh', '-c', CGROUP_SCRIPT, 'azote-cgroup', String(spec.cgroupProcs.length), ...spec.cgroupProcs, ...jail];
  // The parent-death signal holds through the execs down to unshare (the controller's own child), which takes its
  // child with it (--kill-child) where it forks: a controller that dies takes its hypervisors with it.
  libraries.save();
  return { command: setpriv, args: ['--pdeathsig', 'KILL', '--', ...grouped] };
}
