// Azote's guest kernel: built once by guest/kernel/build.sh and cached under <cache>/kernel/<key>/, where the key
// is a hash of everything that goes into the build (config fragment, patches, build script).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';
import { processAlive } from '../sys/process-alive.js';
import { projectRoot } from './paths.js';

export interface KernelArtifacts {
  /** Stripped ELF vmlinux with a PVH note: what Azote boots. */
  readonly vmlinux: string;
  /** The same kernel as a bzImage, when the build produced one. */
  readonly bzImage: string | undefined;
  /** `make kernelrelease`, e.g. "6.1.176-azote". */
  readonly version: string;
  /** The cache directory holding the artifacts (also config, System.map, build.log). */
  readonly dir: string;
}

/** build.sh writes this file last; a cache directory that has it is complete. */
const COMPLETE_MARKER = 'version';

export function kernelSourceDir(): string {
  return path.join(projectRoot(), 'guest', 'kernel');
}

/** The first 16 hex digits of sha256 over the config fragment, every patch (sorted by name) and build.sh. */
export function kernelKey(src = kernelSourceDir()): string {
  const h = createHash('sha256');
  let patches: string[];
  try {
    patches = readdirSync(path.join(src, 'patches')).filter((f) => f.endsWith('.patch')).sort();
  } catch {
    patches = [];
  }
  for (const rel of ['config', ...patches.map((p) => `patches/${p}`), 'build.sh']) {
    let data: Buffer;
    try {
      data = readFileSync(path.join(src, rel));
    } catch (e) {
      throw new AzoteError('KernelSource', `cannot read guest/kernel/${rel}: ${(e as Error).message}`,
        'reinstall Azote: its guest/ folder is incomplete', { cause: e });
    }
    h.update(rel).update('\0').update(String(data.length)).update('\0').update(data);
  }
  return h.digest('hex').slice(0, 16);
}

function complete(dir: string): KernelArtifacts | undefined {
  const marker = path.join(dir, COMPLETE_MARKER);
  const vmlinux = path.join(dir, 'vmlinux');
  if (!existsSync(marker) || !existsSync(vmlinux)) return undefined;
  const bzImage = path.join(dir, 'bzImage');
  return {
    vmlinux, bzImage: existsSync(bzImage) ? bzImage : undefined,
    version: readFileSync(marker, 'utf8').trim(), dir,
  };
}

/** Takes <dir>.lock (holding our pid); false when another live process holds it. A stale lock is broken. */
function tryLock(lock: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = NaN;
      try {
        holder = Number(readFileSync(lock, 'utf8').trim());
      } catch { /* removed meanwhile: try again */ }
      if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) return false;
      rmSync(lock, { force: true });
    }
  }
  return false;
}

function runBuild(script: string, out: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    // The script's output (progress lines, apt-get) goes to our stderr: stdout belongs to the guest.
    const child = spawn('bash', [script, out], { stdio: ['ignore', 2, 2] });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** The cached guest kernel, built first if needed (about ten minutes on two cores). */
export async function ensureKernel(log: Logger): Promise<KernelArtifacts> {
  const src = kernelSourceDir();
  const root = path.join(cacheDir(), 'kernel');
  const key = kernelKey(src);
  const dir = path.join(root, key);
  const hit = complete(dir);
  if (hit) return hit;

  mkdirSync(root, { recursive: true });
  const lock = `${dir}.lock`;
  let waited = false;
  while (!tryLock(lock)) {
    if (!waited) log.info('another process is building the guest kernel; waiting for it');
    waited = true;
    await sleep(2000);
    const done = complete(dir);
    if (done) return done;
  }
  try {
    const again = complete(dir);
    if (again) return again;
    const tmp = path.join(root, `${key}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    log.info('building the guest kernel (first use only; about ten minutes on two cores)', { key });
    const code = await runBuild(path.join(src, 'build.sh'), tmp);
    if (code !== 0 || !complete(tmp)) {
      const kept = path.join(root, 'last-failed-build.log');
      let where = '';
      try {
        copyFileSync(path.join(tmp, 'build.log'), kept);
        where = ` (full log: ${kept})`;
      } catch { /* failed before the build log existed */ }
      rmSync(tmp, { recursive: true, force: true });
      throw new AzoteError('KernelBuild', `building the guest kernel failed${where}`,
        'fix the cause named in the [kernel] lines above and run `azote setup` again');
    }
    rmSync(dir, { recursive: true, force: true }); // an incomplete leftover, never a complete one (checked above)
    renameSync(tmp, dir);
    const built = complete(dir);
    if (!built) throw new AzoteError('KernelBuild', `the guest kernel cache ${dir} is incomplete after the build`);
    log.info(`guest kernel ${built.version} ready`, { dir });
    return built;
  } finally {
    rmSync(lock, { force: true });
  }
}
