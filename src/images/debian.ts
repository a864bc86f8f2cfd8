// Files from Debian packages, taken without installing them: `apt-get download` into the cache, `dpkg-deb -x`.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';

function cachedDeb(dir: string, name: string): string | undefined {
  const hit = readdirSync(dir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')).sort().at(-1);
  return hit ? path.join(dir, hit) : undefined;
}

/** The .deb of `name`, downloaded once into <cache>/debs. */
export function fetchDebianPackage(name: string, log: Logger): string {
  const dir = path.join(cacheDir(), 'debs');
  mkdirSync(dir, { recursive: true });
  const hit = cachedDeb(dir, name);
  if (hit) return hit;
  log.info(`downloading Debian package ${name}`);
  const download = (): ReturnType<typeof spawnSync> =>
    spawnSync('apt-get', ['download', name], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  let r = download();
  if (r.error) {
    throw new AzoteError('NoAptGet', `cannot run apt-get to fetch ${name}: ${r.error.message}`,
      'run on Debian or Ubuntu, or pass your own --kernel and --initrd');
  }
  if (r.status !== 0) {
    log.info('refreshing the package lists (apt-get update)');
    spawnSync('apt-get', ['update', '-q'], { stdio: 'ignore' });
    r = download();
  }
  const deb = cachedDeb(dir, name);
  if (r.status !== 0 || !deb) {
    throw new AzoteError('AptDownload', `apt-get download ${name} failed: ${String(r.stderr).trim().split('\n').at(-1) ?? ''}`,
      'check that the Debian package archive is reachable (apt-get update)');
  }
  return deb;
}

export function extractDeb(deb: string, dest: string): void {
  mkdirSync(dest, { recursive: true });
  execFileSync('dpkg-deb', ['-x', deb, dest], { stdio: ['ignore', 'ignore', 'inherit'] });
}
