// The shared libraries an ELF file loads, as `ldd` resolves them on this host, for the jails' roots (jail.ts).
// ldd runs the loader twice per file, tens of ms each time, and every jail asks about the same few files: the
// answers are kept per file identity (device, inode, size, modification time) while the loader's own cache
// (/etc/ld.so.cache) stays the same, in memory and, for processes that build one jail and end (`azote run`), in a
// small JSON file, which drops the answers about files that are gone or changed (a run's copy of the hypervisor's
// addons is new each time). A library replaced at its path (an upgrade) needs no new answer: the jail binds it by path.
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const LOADER_CACHE = '/etc/ld.so.cache';
/** Bumped when the file's meaning changes; a file of another version is ignored. */
const CACHE_VERSION = 1;

/**
 * What `ldd` says `file` loads (and the loader itself); none for a file this host cannot load (another platform's
 * addon, which the process never loads either).
 */
export function lddLibraries(file: string): string[] {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (r.error) throw new Error(`ldd is needed to build the hypervisor's jail: ${r.error.message}`);
  const out = r.status === 0 ? r.stdout : '';
  return [...out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/g)].map((m) => m[1] ?? '').filter(Boolean);
}

/** The file as it is now (path and identity), undefined if it is gone. */
function identity(file: string): string | undefined {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs} ${path.resolve(file)}`;
  } catch {
    return undefined;
  }
}

/** Whether a key still names a file as it is now. */
function current(key: string): boolean {
  return identity(key.slice(key.indexOf(' ') + 1)) === key;
}

interface CacheFile {
  readonly version: number;
  readonly loaderCache: string;
  readonly files: Record<string, string[]>;
}

/** The file's answers, if it holds answers of this version for this loader cache; anything else is no answers. */
function readCacheFile(file: string, loaderCache: string): Map<string, string[]> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return new Map();
  }
  const c = value as Partial<CacheFile> | null;
  if (typeof c !== 'object' || c === null || c.version !== CACHE_VERSION || c.loaderCache !== loaderCache
    || typeof c.files !== 'object' || c.files === null) return new Map();
  const answers = Object.entries(c.files).filter(([, libs]) => Array.isArray(libs) && libs.every((l) => typeof l === 'string' && l.startsWith('/')));
  return new Map(answers);
}

export class SharedLibraries {
  private readonly loaderCache = identity(LOADER_CACHE) ?? 'none';
  private readonly answers: Map<string, string[]>;
  private changed = false;

  /** `file`: where answers are kept across processes (undefined: in memory only). */
  constructor(private readonly file?: string | undefined, private readonly ldd: (file: string) => string[] = lddLibraries) {
    this.answers = file === undefined ? new Map() : readCacheFile(file, this.loaderCache);
  }

  of(file: string): string[] {
    const key = identity(file);
    if (key === undefined) return this.ldd(file); // ldd names what is wrong with it
    let libs = this.answers.get(key);
    if (!libs) {
      libs = this.ldd(file);
      this.answers.set(key, libs);
      this.changed = true;
    }
    return libs;
  }

  /**
   * Writes new answers to the file with the old ones still about files as they are (whole, by rename: a concurrent
   * reader sees the old or the new one).
   */
  save(): void {
    if (!this.file || !this.changed) return;
    // Only a cache: where it cannot be written, the next process asks ldd again.
    const files = Object.fromEntries([...this.answers].filter(([key]) => current(key)));
    const content: CacheFile = { version: CACHE_VERSION, loaderCache: this.loaderCache, files };
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(content), { mode: 0o644 });
      renameSync(tmp, this.file);
    } catch {
      rmSync(tmp, { force: true });
    }
    this.changed = false;
  }
}
