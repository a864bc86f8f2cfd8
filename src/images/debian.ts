// Files from Debian packages, taken without installing them: `apt-get download` into <cache>/debs, then
// `dpkg-deb -x`. Works as any user on Debian or Ubuntu once the package lists exist (apt-get update, as root).
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';
import { runTool, type ToolRun } from './run-tool.js';

/** Debian package names: lower-case letters, digits, "+", "-", "."; at least two characters. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/** Refuses what is not a Debian package name before it reaches apt's command line. */
export function checkPackageName(name: string): void {
  if (!PACKAGE_NAME.test(name)) throw new AzoteError('BadPackageName', `${JSON.stringify(name)} is not a Debian package name`);
}

function missingTool(tool: string, pkg: string, e: unknown): AzoteError {
  const code = (e as NodeJS.ErrnoException).code;
  return new AzoteError('MissingTool', `cannot run ${tool}: ${code === 'ENOENT' ? 'not installed' : String(e)}`,
    `run on Debian or Ubuntu with ${pkg} installed, or pass your own --kernel and --initrd`, { cause: e });
}

/** The last "E:" line of apt's stderr, else its last line. */
export function aptReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.filter((l) => l.startsWith('E:')).at(-1) ?? lines.at(-1) ?? 'no error message';
}

function cachedDeb(dir: string, name: string): string | undefined {
  const hit = readdirSync(dir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')).sort().at(-1);
  return hit === undefined ? undefined : path.join(dir, hit);
}

let listsRefreshed = false;

/** Downloads into a private directory, then renames into place, so concurrent callers never see half a file. */
async function download(name: string, dir: string): Promise<ToolRun & { deb?: string }> {
  const work = mkdtempSync(path.join(dir, `.download-${name}-`));
  try {
    let r: ToolRun;
    try {
      r = await runTool('apt-get', ['download', '-q', name], work);
    } catch (e) {
      throw missingTool('apt-get', 'apt', e);
    }
    const file = readdirSync(work).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'));
    if (r.code !== 0 || file === undefined) return r;
    renameSync(path.join(work, file), path.join(dir, file));
    return { ...r, deb: path.join(dir, file) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The path of the .deb of `name` in <cache>/debs, downloaded with `apt-get download` unless a `<name>_*.deb` is
 * already there. If the download fails (most often: no or stale package lists), runs `apt-get update` once per
 * process and tries again.
 */
export async function fetchDebianPackage(name: string, log: Logger): Promise<string> {
  checkPackageName(name);
  const dir = path.join(cacheDir(), 'debs');
  mkdirSync(dir, { recursive: true });
  const hit = cachedDeb(dir, name);
  if (hit !== undefined) return hit;

  log.info(`fetching ${name}`);
  let r = await download(name, dir);
  if (r.deb === undefined && !listsRefreshed) {
    log.info(`apt-get download ${name} failed (${aptReason(r.stderr)}); refreshing the package lists (apt-get update)`);
    listsRefreshed = true;
    let u: ToolRun;
    try {
      u = await runTool('apt-get', ['update', '-q']);
    } catch (e) {
      throw missingTool('apt-get', 'apt', e);
    }
    if (u.code !== 0) {
      throw new AzoteError('AptUpdate', `apt-get download ${name} failed and apt-get update failed: ${aptReason(u.stderr)}`,
        process.getuid?.() === 0 ? 'check the network and /etc/apt/sources.list' : 'run `sudo apt-get update` once, then try again');
    }
    r = await download(name, dir);
  }
  if (r.deb === undefined) {
    throw new AzoteError('AptDownload', `apt-get download ${name} failed: ${aptReason(r.stderr)}`,
      `check that the Debian archive is reachable and has ${name} (apt-cache policy ${name})`);
  }
  return r.deb;
}

/** Unpacks the files of a .deb into destDir (created if needed), without running any of its scripts. */
export async function extractDeb(debPath: string, destDir: string): Promise<void> {
  mkdirSync(destDir, { recursive: true });
  let r: ToolRun;
  try {
    r = await runTool('dpkg-deb', ['-x', debPath, destDir]);
  } catch (e) {
    throw missingTool('dpkg-deb', 'dpkg', e);
  }
  if (r.code !== 0) {
    throw new AzoteError('DebExtract', `dpkg-deb -x ${debPath} failed: ${aptReason(r.stderr)}`,
      `delete ${debPath} so that it is downloaded again`);
  }
}
