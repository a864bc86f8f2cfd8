// Tests that run something as another user (uid 65534) need it to reach the checkout and their own files: a clone
// in a directory only root may enter (mktemp -d makes one) would stop it at the first step, whatever capability the
// test gives it (access(2), which Node's existsSync uses, ignores capabilities for a non-root uid). This lets other
// users search (o+x, not list) each directory above `target` that refuses them, and puts the modes back after.
import { chmodSync, statSync } from 'node:fs';
import path from 'node:path';

/** Makes `target`'s ancestors searchable by others; returns what puts their modes back. */
export function searchableByOthers(...targets: string[]): () => void {
  const changed = new Map<string, number>();
  for (const target of targets) {
    for (let dir = path.dirname(path.resolve(target)); ; dir = path.dirname(dir)) {
      const mode = statSync(dir).mode & 0o7777;
      if ((mode & 0o001) === 0 && !changed.has(dir)) {
        changed.set(dir, mode);
        chmodSync(dir, mode | 0o001);
      }
      if (dir === path.dirname(dir)) break;
    }
  }
  return () => {
    for (const [dir, mode] of changed) chmodSync(dir, mode);
  };
}
