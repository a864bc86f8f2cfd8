// The Debian packages this host needs for a purpose (the test suite, the kernel build), checked with dpkg-query and
// installed with apt-get when we are root; otherwise one error that names the exact command to type.
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { aptReason, checkPackageName } from './debian.js';
import { runTool, type ToolRun } from './run-tool.js';

export interface HostPackage {
  readonly name: string;
  /** What needs it, for the log line that installs it. */
  readonly why: string;
}

/** What `npm test` runs besides Node: compilers for guest programs, the tools tests compare against or look through. */
export const TEST_PACKAGES: readonly HostPackage[] = [
  { name: 'build-essential', why: 'gcc and make build the guest init, test guests and benchmark programs' },
  { name: 'flex', why: 'the guest kernel build' },
  { name: 'bison', why: 'the guest kernel build' },
  { name: 'bc', why: 'the guest kernel build' },
  { name: 'libelf-dev', why: 'the guest kernel build' },
  { name: 'xz-utils', why: 'unpacking the kernel source' },
  { name: 'cpio', why: 'tests read our initramfs archives back with an independent reader' },
  { name: 'e2fsprogs', why: 'mke2fs -d writes root file system images' },
  { name: 'qemu-system-x86', why: 'interoperability tests run QEMU against our cards and guests' },
  { name: 'awscli', why: 'the EC2 API tests drive the AWS CLI (/usr/bin/aws)' },
  { name: 'openssh-client', why: 'ssh-keygen checks the key pairs the API makes' },
  { name: 'iproute2', why: 'network tests configure their own namespaces and look inside jails (ip)' },
  { name: 'util-linux', why: 'the jail (taskset, unshare, setpriv, nsenter)' },
  { name: 'mount', why: 'the jail builds a root with mount and umount' },
  { name: 'python3', why: 'the jail test tries ptrace as an unprivileged user' },
];

async function tool(cmd: string, args: readonly string[]): Promise<ToolRun> {
  try {
    return await runTool(cmd, [...args]);
  } catch (e) {
    throw new AzoteError('MissingTool', `cannot run ${cmd}: ${(e as Error).message}`,
      'this needs a Debian or Ubuntu host (dpkg and apt-get)', { cause: e });
  }
}

/** The names among `names` that dpkg does not list as installed. */
export async function missingPackages(names: readonly string[]): Promise<string[]> {
  for (const n of names) checkPackageName(n);
  // One call for all; a package dpkg never heard of is on stderr and absent from stdout, so it counts as missing.
  const r = await tool('dpkg-query', ['-W', '-f', '${Package}\t${db:Status-Abbrev}\n', ...names]);
  const installed = new Set(r.stdout.split('\n').map((l) => l.split('\t'))
    .filter(([, status]) => status?.startsWith('ii')).map(([name]) => (name ?? '').replace(/:.*$/, '')));
  return names.filter((n) => !installed.has(n));
}

function aptLine(missing: readonly string[]): string {
  return `sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`;
}

/**
 * Makes sure every package is installed: nothing to do when all are (one dpkg-query, a few milliseconds); as root,
 * apt-get install (refreshing the package lists once if that fails); as another user, an error naming the command.
 */
export async function ensurePackages(pkgs: readonly HostPackage[], log: Logger): Promise<string[]> {
  const missing = await missingPackages(pkgs.map((p) => p.name));
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0) {
    throw new AzoteError('MissingPackages', `these Debian packages are not installed: ${missing.join(', ')}`,
      `run: ${aptLine(missing)}`);
  }
  for (const p of pkgs.filter((q) => missing.includes(q.name))) log.info(`installing ${p.name}: ${p.why}`);
  // Another apt or dpkg (a parallel setup, unattended upgrades) may hold the lock: wait for it rather than fail.
  const lock = ['-o', 'DPkg::Lock::Timeout=600'];
  const args = [...lock, 'install', '-y', '-q', '--no-install-recommends', ...missing];
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  let r = await runTool('apt-get', args, undefined, env);
  if (r.code !== 0) {
    log.info(`apt-get install failed (${aptReason(r.stderr)}); refreshing the package lists (apt-get update)`);
    const u = await runTool('apt-get', [...lock, 'update', '-q'], undefined, env);
    if (u.code !== 0) {
      throw new AzoteError('AptUpdate', `apt-get update failed: ${aptReason(u.stderr)}`, 'check the network and /etc/apt/sources.list');
    }
    r = await runTool('apt-get', args, undefined, env);
  }
  if (r.code !== 0) {
    throw new AzoteError('AptInstall', `apt-get install ${missing.join(' ')} failed: ${aptReason(r.stderr)}`,
      'check the apt sources (a Debian bookworm archive) and try again');
  }
  const still = await missingPackages(missing);
  if (still.length > 0) {
    throw new AzoteError('AptInstall', `apt-get install reported success but ${still.join(', ')} is still not installed`,
      `run: ${aptLine(still)}`);
  }
  return missing;
}
