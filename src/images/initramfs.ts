// The guest's initramfs: our init, Debian's static busybox and its applet links, a few device nodes.
// Uncompressed, since decompression is slow under a nested KVM and the archive is small. Cached by content.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';
import { CpioWriter } from './cpio.js';
import { extractDeb, fetchDebianPackage } from './debian.js';
import { projectRoot } from './paths.js';

/** Bump when the archive's layout changes, so cached images are rebuilt. */
const LAYOUT_VERSION = 1;
const BUSYBOX_PACKAGE = 'busybox-static';

function sha256(...parts: Array<string | Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Builds guest/init into the cache (keyed by its source) and returns the binary's path. */
export function buildGuestInit(log: Logger): string {
  const src = path.join(projectRoot(), 'guest', 'init');
  const key = sha256(readFileSync(path.join(src, 'init.c')), readFileSync(path.join(src, 'Makefile'))).slice(0, 16);
  const out = path.join(cacheDir(), 'init', key);
  const bin = path.join(out, 'init');
  if (existsSync(bin)) return bin;
  log.info('compiling the guest init');
  try {
    execFileSync('make', ['-s', '-C', src, `OUT=${out}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? '').trim();
    throw new AzoteError('InitBuild', `compiling guest/init failed: ${stderr.split('\n').slice(-3).join(' ')}`,
      'install gcc, make and the C library headers (apt-get install build-essential)');
  }
  return bin;
}

export async function ensureBaseInitramfs(log: Logger): Promise<string> {
  const init = readFileSync(buildGuestInit(log));
  const deb = fetchDebianPackage(BUSYBOX_PACKAGE, log);
  const key = sha256(init, path.basename(deb), String(LAYOUT_VERSION)).slice(0, 16);
  const dir = path.join(cacheDir(), 'initramfs');
  const target = path.join(dir, `${key}.cpio`);
  if (existsSync(target)) return target;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(path.join(dir, 'work-'));
  try {
    extractDeb(deb, work);
    const busyboxPath = path.join(work, 'bin', 'busybox');
    const applets = execFileSync(busyboxPath, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    const w = new CpioWriter();
    for (const d of ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'root', 'etc', 'mnt', 'azote']) {
      w.dir(d, d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755);
    }
    w.charDevice('dev/console', 5, 1).charDevice('dev/null', 1, 3, 0o666).charDevice('dev/ttyS0', 4, 64);
    w.file('init', init, 0o755);
    w.file('bin/busybox', readFileSync(busyboxPath), 0o755);
    let links = 0;
    for (const a of applets) {
      if (a === 'bin/busybox' || a === 'linuxrc' || a.includes('..')) continue;
      w.symlink(a, '/bin/busybox');
      links++;
    }
    w.file('etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n'));
    w.file('etc/group', Buffer.from('root:x:0:\n'));
    w.file('etc/hostname', Buffer.from('azote\n'));
    const archive = w.finish();
    log.info(`writing initramfs (${links + 20} entries, ${Math.round(archive.length / 1024)} KiB)`);
    const tmp = `${target}.tmp-${process.pid}`;
    writeFileSync(tmp, archive);
    renameSync(tmp, target);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return target;
}

/**
 * The run request, as a small archive appended to the base image: the command's arguments and environment,
 * each NUL-separated. Without arguments the guest starts an interactive shell.
 */
export function runRequestArchive(argv: string[] | undefined, env: Record<string, string> = {}): Buffer {
  const w = new CpioWriter();
  const list = (items: string[]): Buffer => Buffer.from(items.map((i) => `${i}\0`).join(''), 'utf8');
  for (const a of [...(argv ?? []), ...Object.keys(env), ...Object.values(env)]) {
    if (a.includes('\0')) throw new AzoteError('BadArgument', 'arguments and environment may not contain NUL bytes');
  }
  if (argv && argv.length > 0) w.file('azote/argv', list(argv));
  const entries = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  if (entries.length > 0) w.file('azote/env', list(entries));
  return w.finish();
}
