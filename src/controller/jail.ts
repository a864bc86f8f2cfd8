// The jail a hypervisor runs in, built from util-linux tools as the command the controller spawns:
//   setpriv (killed if the controller dies) -> taskset (its cores) -> unshare (new network and mount namespaces) -> sh (the root below) -> setpriv (its own
//   unprivileged uid, no groups, no capabilities, no_new_privs) -> node (the verified hypervisor entry)
// Its root is a read-only tmpfs that holds only what the process needs to run: the node binary and setpriv with
// the shared libraries they and the bundle's native addons load, and the verified component's files, each bound
// read-only at its own path. No /dev, /proc, /sys, /etc, /tmp and no data directory: /dev/kvm, the kernel and the
// disks come as inherited descriptors and the cards' connections on its channel. The old root is detached before
// the hypervisor starts, so nothing of the host's file system can be reached again from inside.
import { execFileSync, spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

/** Uids the hypervisors run as: JAIL_UID_BASE + a slot no other running hypervisor has (no account is needed). */
export const JAIL_UID_BASE = 0x40000;

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

/**
 * The shared libraries an ELF file loads (and the loader itself), as `ldd` resolves them on this host; none for a
 * file this host cannot load (another platform's addon, which the process never loads either).
 */
export function sharedLibraries(file: string): string[] {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (r.error) throw new Error(`ldd is needed to build the hypervisor's jail: ${r.error.message}`);
  const out = r.status === 0 ? r.stdout : '';
  return [...out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/g)].map((m) => m[1] ?? '').filter(Boolean);
}

function nativeAddons(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.node')).map((f) => path.join(dir, f));
}

/** What a hypervisor's root holds: the node binary, setpriv, their libraries and the component's native addons'. */
export function jailContents(componentDir: string, node: string, setpriv: string): MirrorStep[] {
  const wanted = [node, setpriv, ...[node, setpriv, ...nativeAddons(componentDir)].flatMap(sharedLibraries), componentDir];
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
// which is still attached) detaches the old root and the proc it needs to find mounts, and the two mount points
// stay behind, empty and read-only.
const ROOT_SCRIPT = `set -eu
r=$1 umount=$2 libs=$3; shift 3
mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev azote-jail "$r"
while [ "$1" != -- ]; do
  case $1 in
    link) mkdir -p "$r$(dirname "$3")"; ln -s "$2" "$r$3"; shift 3;;
    file) mkdir -p "$r$(dirname "$2")"; : > "$r$2"; mount --bind -o ro,nosuid,nodev "$2" "$r$2"; shift 2;;
    dir) mkdir -p "$r$2"; mount --bind -o ro,nosuid,nodev "$2" "$r$2"; shift 2;;
    *) echo "jail: unknown step $1" >&2; exit 2;;
  esac
done
shift
mkdir "$r/.old" "$r/proc"
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount --rbind "$r" "$r"
mount -o remount,bind,ro,nosuid,nodev "$r"
cd "$r"
pivot_root . .old
LD_LIBRARY_PATH=$libs "/.old$umount" -l /.old /proc
cd /
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
}

/** The host programs that build every jail (run as root before the hypervisor starts). */
export const JAIL_TOOLS = ['taskset', 'unshare', 'sh', 'mount', 'umount', 'pivot_root', 'setpriv'] as const;

/** Each jail tool's real path on this host. */
export function jailToolPaths(): string[] {
  return JAIL_TOOLS.map(which);
}

function which(tool: string): string {
  return realpathSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8', env: { PATH: JAIL_PATH } }).trim());
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

function hostTools(): HostTools {
  if (!tools) {
    const umount = which('umount');
    tools = { setpriv: which('setpriv'), umount, umountLibs: [...new Set(sharedLibraries(umount).map((l) => `/.old${path.dirname(realpathSync(l))}`))].join(':') };
  }
  return tools;
}

/** The command and arguments that start `entry` in its jail. */
export function jailCommand(spec: JailSpec): { command: string; args: string[] } {
  const { setpriv, umount, umountLibs } = hostTools();
  // Made again at each launch: an installed update may bring other native addons.
  const steps = jailContents(spec.componentDir, process.execPath, setpriv).flatMap((s) => (s.kind === 'link' ? ['link', s.target, s.at] : [s.kind, s.at]));
  const root = process.getuid?.() === 0;
  // Without root: a user namespace, whose root may mount proc (which the jail's umount needs) only in a pid
  // namespace of its own; the hypervisor is then unshare's child, killed with it.
  const namespaces = root ? ['unshare', '--net', '--mount', '--propagation', 'private']
    : ['unshare', '--user', '--map-root-user', '--net', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child'];
  const identity = spec.uid !== undefined ? [`--reuid=${spec.uid}`, `--regid=${spec.uid}`, '--clear-groups'] : [];
  // The parent-death signal holds through the execs down to unshare (the controller's own child), which takes its
  // child with it (--kill-child) where it forks: a controller that dies takes its hypervisors with it.
  return {
    command: setpriv,
    args: ['--pdeathsig', 'KILL', '--', 'taskset', '--cpu-list', spec.cores.join(','), ...namespaces, '--', 'sh', '-c', ROOT_SCRIPT, 'azote-jail', spec.mountPoint, umount, umountLibs, ...steps, '--',
      setpriv, ...identity, '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', process.execPath, spec.entry, ...spec.args],
  };
}
