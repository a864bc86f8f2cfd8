// Azote's guest kernel, built once by guest/kernel/build.sh and cached by the hash of its inputs.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';
import { projectRoot } from './paths.js';

export interface KernelArtifacts {
  readonly dir: string;
  readonly vmlinux: string;
  readonly bzImage: string;
  readonly version: string;
}

/** The cache key: the config fragment, every patch (in order) and the build script. */
export function kernelKey(): string {
  const k = path.join(projectRoot(), 'guest', 'kernel');
  const h = createHash('sha256');
  const patches = readdirSync(path.join(k, 'patches')).filter((f) => f.endsWith('.patch')).sort();
  for (const f of ['config', 'build.sh', ...patches.map((p) => path.join('patches', p))]) {
    h.update(f).update('\0').update(readFileSync(path.join(k, f))).update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

function artifacts(dir: string): KernelArtifacts {
  return {
    dir, vmlinux: path.join(dir, 'vmlinux'), bzImage: path.join(dir, 'bzImage'),
    version: readFileSync(path.join(dir, 'version'), 'utf8').trim(),
  };
}

export async function ensureKernel(log: Logger): Promise<KernelArtifacts> {
  const root = path.join(cacheDir(), 'kernel');
  const dir = path.join(root, kernelKey());
  // `version` is written last by build.sh, and the directory appears by rename: its presence means complete.
  if (existsSync(path.join(dir, 'version'))) return artifacts(dir);
  mkdirSync(root, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  log.info('building the guest kernel (first use only; about ten minutes on two cores)');
  const script = path.join(projectRoot(), 'guest', 'kernel', 'build.sh');
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('bash', [script, tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
  });
  if (code !== 0 || !existsSync(path.join(tmp, 'version'))) {
    rmSync(tmp, { recursive: true, force: true });
    throw new AzoteError('KernelBuild', 'building the guest kernel failed (see the [kernel] lines above)',
      'fix the cause named there and run `azote setup` again');
  }
  if (existsSync(dir)) rmSync(tmp, { recursive: true, force: true });
  else renameSync(tmp, dir);
  return artifacts(dir);
}
