// The project's root (where guest/ lives), found from this module's own location in src/ or dist/src/.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * The name in a package.json, or undefined where there is none. Read, not probed with existsSync: access(2) checks
 * with the real uid and no capabilities, so it says no to a user who may read the file through CAP_DAC_OVERRIDE.
 */
function packageName(file: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function projectRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (packageName(path.join(dir, 'package.json')) === 'azote') {
      root = dir;
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the azote package root');
    dir = up;
  }
}
