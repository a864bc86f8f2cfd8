// The guest's initramfs: our init (guest/init), Debian's static busybox, a few device nodes and directories.
// Only the links scripts name by path are written: Linux unpacks each archive entry slowly under a nested KVM
// (guest/kernel/README.md), and Debian's busybox shell runs its applets without links (FEATURE_SH_STANDALONE),
// as does our init for a command that is not a file. Uncompressed: decompression is slower still there.
// Built once and cached under <cache>/initramfs/<key>.cpio. The host appends a second small archive per run
// (run-request.ts) that carries the command; Linux unpacks concatenated archives in order.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';
import { CpioWriter } from './cpio.js';
import { DHCP_SCRIPT, DHCP_SCRIPT_PATH } from './dhcp-client.js';
import { runTool, type ToolRun } from './run-tool.js';
import { extractDeb, fetchDebianPackage } from './debian.js';
import { projectRoot } from './paths.js';

/** Bump when the archive's layout changes, so that cached images are rebuilt. */
const INITRAMFS_BUILDER_VERSION = 3;
const BUSYBOX_PACKAGE = 'busybox-static';
/** The applet links in the image: the paths that scripts name in their #! line. */
const APPLET_LINKS = ['bin/sh', 'usr/bin/env'];

const execFileAsync = promisify(execFile);

function sha256hex(...parts: Array<string | Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

/**
 * Compiles guest/init with its Makefile into <cache>/init/<key>/init, key = hash of init.c and the Makefile
 * (so a read-only installation works and a changed source is rebuilt), and returns the binary's path.
 */
export async function buildGuestInit(log: Logger): Promise<string> {
  const src = path.join(projectRoot(), 'guest', 'init');
  let key: string;
  try {
    key = sha256hex(readFileSync(path.join(src, 'init.c')), readFileSync(path.join(src, 'Makefile'))).slice(0, 16);
  } catch (e) {
    throw new AzoteError('InitSource', `cannot read the guest init's source in ${src}: ${(e as Error).message}`,
      'reinstall Azote: its guest/ folder is incomplete', { cause: e });
  }
  const root = path.join(cacheDir(), 'init');
  const dir = path.join(root, key);
  const bin = path.join(dir, 'init');
  if (existsSync(bin)) return bin;

  mkdirSync(root, { recursive: true });
  const tmp = mkdtempSync(path.join(root, `${key}.tmp-`));
  try {
    log.info('compiling the guest init');
    let r: ToolRun;
    try {
      r = await runTool('make', ['-s', '-C', src, `OUT=${tmp}`]);
    } catch (e) {
      throw new AzoteError('InitBuild', `cannot run make to compile the guest init: ${(e as Error).message}`,
        'install gcc, make and the C library (apt-get install build-essential)', { cause: e });
    }
    if (r.code !== 0 || !existsSync(path.join(tmp, 'init'))) {
      const why = r.stderr.trim().split('\n').slice(-3).join(' / ') || `make exited with ${r.code}`;
      throw new AzoteError('InitBuild', `compiling guest/init failed: ${why}`,
        'install gcc, make and the static C library (apt-get install build-essential)');
    }
    try {
      chmodSync(tmp, 0o755);
      renameSync(tmp, dir);
    } catch (e) {
      // Another process finished the same build first: use its result.
      if (!existsSync(bin)) throw e;
    }
    return bin;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The base initramfs (built once, then reused): /init, /bin/busybox and the links of APPLET_LINKS, /dev/console,
 * /dev/null, /dev/ttyS0, the usual empty directories, /etc/passwd, /etc/group, /etc/hostname, udhcpc's script.
 * Returns the path of the uncompressed newc archive.
 */
export async function ensureBaseInitramfs(log: Logger): Promise<string> {
  const init = readFileSync(await buildGuestInit(log));
  const deb = await fetchDebianPackage(BUSYBOX_PACKAGE, log);
  const key = sha256hex(init, path.basename(deb), String(INITRAMFS_BUILDER_VERSION), DHCP_SCRIPT).slice(0, 16);
  const outDir = path.join(cacheDir(), 'initramfs');
  const target = path.join(outDir, `${key}.cpio`);
  if (existsSync(target)) return target;

  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(path.join(outDir, 'work-'));
  try {
    await extractDeb(deb, work);
    const busyboxPath = path.join(work, 'bin', 'busybox');
    if (!existsSync(busyboxPath)) {
      throw new AzoteError('BusyboxMissing', `${path.basename(deb)} has no bin/busybox`,
        `delete ${deb} so that it is downloaded again`);
    }
    let applets: Set<string>;
    try {
      const out = (await execFileAsync(busyboxPath, ['--list-full'], { encoding: 'utf8' })).stdout;
      applets = new Set(out.split('\n').map((l) => l.trim()));
    } catch (e) {
      throw new AzoteError('BusyboxList', `cannot run ${BUSYBOX_PACKAGE}'s busybox --list-full on this host: ${(e as Error).message}`,
        'build on an x86-64 Linux host', { cause: e });
    }
    const missing = APPLET_LINKS.filter((l) => !applets.has(l));
    if (missing.length > 0) {
      throw new AzoteError('BusyboxList', `${BUSYBOX_PACKAGE}'s busybox lists no ${missing.join(', ')} applet`,
        `delete ${deb} so that it is downloaded again`);
    }

    const w = new CpioWriter();
    for (const d of ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'etc', 'mnt', 'azote']) w.dir(d);
    w.dir('tmp', 0o1777);
    w.dir('root', 0o700);
    // The kernel opens /dev/console for init before init mounts devtmpfs over /dev.
    w.charDevice('dev/console', 5, 1, 0o600);
    w.charDevice('dev/null', 1, 3, 0o666);
    w.charDevice('dev/ttyS0', 4, 64, 0o660);
    w.file('init', init, 0o755);
    w.file('bin/busybox', readFileSync(busyboxPath), 0o755);
    for (const name of APPLET_LINKS) w.symlink(name, '/bin/busybox');
    w.file('etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n'));
    w.file('etc/group', Buffer.from('root:x:0:\n'));
    w.file('etc/hostname', Buffer.from('azote\n'));
    w.dir(path.dirname(DHCP_SCRIPT_PATH).slice(1));
    w.file(DHCP_SCRIPT_PATH.slice(1), Buffer.from(DHCP_SCRIPT), 0o755);
    const archive = w.finish();
    log.info(`writing initramfs (${w.count} files, ${Math.ceil(archive.length / 1024)} KiB)`);
    const tmp = `${target}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, archive);
      renameSync(tmp, target);
    } finally {
      rmSync(tmp, { force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return target;
}
