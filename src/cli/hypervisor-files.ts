// The hypervisor's code for `azote run`'s jail. The jail binds one directory read-only as the whole of the
// hypervisor's code (as the controller binds a verified component), so the entry's import closure, as a bundle
// carries it (compiled modules, package.json, koffi with this platform's binary), is copied into a directory of the
// run's own. Copies, not links: a rebuild while the VM runs must not change the code under it. A run killed before
// it removed its copy leaves it behind: the next run removes the copies whose process is gone.
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { COMPONENTS, componentFiles } from '../controller/components.js';
import { projectRoot } from '../images/paths.js';
import { processAlive } from '../sys/process-alive.js';

export interface StagedHypervisor {
  /** The directory the jail binds, and the entry in it. */
  readonly dir: string;
  readonly entry: string;
  remove(): void;
}

const PREFIX = 'hypervisor-';

/** Copies the hypervisor's files under `runDir` (made if missing) for this process. */
export function stageHypervisor(runDir: string): StagedHypervisor {
  const hypervisor = COMPONENTS.find((c) => c.name === 'hypervisor');
  if (!hypervisor) throw new Error('no hypervisor component is defined');
  mkdirSync(runDir, { recursive: true });
  for (const name of readdirSync(runDir)) {
    const pid = Number(name.startsWith(PREFIX) ? name.slice(PREFIX.length) : NaN);
    if (Number.isInteger(pid) && (pid === process.pid || !processAlive(pid))) rmSync(path.join(runDir, name), { recursive: true, force: true });
  }
  const dir = path.join(runDir, `${PREFIX}${process.pid}`);
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const root = projectRoot();
  try {
    // Readable by the jail's uid whatever this process's umask: each directory made once, then opened up.
    const made = new Set<string>();
    for (const file of componentFiles(hypervisor, root)) {
      const to = path.join(dir, file);
      for (let d = path.dirname(to); d.startsWith(dir) && !made.has(d); d = path.dirname(d)) {
        mkdirSync(d, { recursive: true });
        chmodSync(d, 0o755);
        made.add(d);
      }
      copyFileSync(path.join(root, file), to);
      chmodSync(to, 0o644);
    }
  } catch (e) {
    remove();
    throw e;
  }
  return { dir, entry: path.join(dir, hypervisor.entry), remove };
}
