// The hypervisor's code for `azote run`'s jail. The jail binds one directory read-only as the whole of the
// hypervisor's code (as the controller binds a verified component), so the entry's import closure, as a bundle
// carries it (compiled modules, package.json, koffi with this platform's binary), is copied into a directory of the
// run's own. Copies, not links: a rebuild while the VM runs must not change the code under it. A run killed before
// it removed its copy leaves it behind: the next run removes the copies whose process is gone.
import { chmodSync, copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { COMPONENTS, componentFiles } from '../controller/components.js';
import { projectRoot } from '../images/paths.js';

export interface StagedHypervisor {
  /** The directory the jail binds, and the entry in it. */
  readonly dir: string;
  readonly entry: string;
  remove(): void;
}

const PREFIX = 'hypervisor-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Copies the hypervisor's files under `runDir` (made if missing) for this process. */
export function stageHypervisor(runDir: string): StagedHypervisor {
  const hypervisor = COMPONENTS.find((c) => c.name === 'hypervisor');
  if (!hypervisor) throw new Error('no hypervisor component is defined');
  mkdirSync(runDir, { recursive: true });
  for (const name of readdirSync(runDir)) {
    const pid = Number(name.startsWith(PREFIX) ? name.slice(PREFIX.length) : NaN);
    if (Number.isInteger(pid) && (pid === process.pid || !alive(pid))) rmSync(path.join(runDir, name), { recursive: true, force: true });
  }
  const dir = path.join(runDir, `${PREFIX}${process.pid}`);
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  const root = projectRoot();
  try {
    for (const file of componentFiles(hypervisor, root)) {
      const to = path.join(dir, file);
      // Readable by the jail's uid whatever this process's umask.
      for (let d = path.dirname(to); d.startsWith(dir); d = path.dirname(d)) {
        mkdirSync(d, { recursive: true });
        chmodSync(d, 0o755);
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
