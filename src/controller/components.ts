// The host components the controller runs, and how their bundles are made from this build: each bundle holds its
// entry's compiled modules (following static and dynamic imports and worker URLs), package.json (for "type":
// "module"), and the runtime libraries it loads (koffi, with this platform's binary only). On a development host
// (one with a development release key) `azote up` signs and installs the bundles of the code it runs whenever they
// differ from the store's, so that what it launches is always what the chip verified.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { projectRoot } from '../images/paths.js';
import { devReleaseKey } from '../security-chip/keys.js';
import { sha384, type Runtime } from '../security-chip/manifest.js';
import { buildBundle, type SecurityChip, type VerifiedComponent } from '../security-chip/chip.js';

export interface ComponentSpec {
  readonly name: string;
  /** The compiled entry, relative to the project root. */
  readonly entry: string;
  /**
   * 'bundled': the libraries it loads travel in the bundle (it runs from the store). 'versions': only each
   * library's package.json is signed (the controller runs where it was installed, and its npm dependencies are
   * pinned by package-lock.json's integrity hashes).
   */
  readonly libraries: 'bundled' | 'versions';
  /** Whether its manifest names the Node runtime (the binary every component runs on) by digest. */
  readonly runtime?: boolean;
}

export const CONTROLLER: ComponentSpec = { name: 'controller', entry: 'dist/src/control-plane/up.js', libraries: 'versions', runtime: true };

export const COMPONENTS: readonly ComponentSpec[] = [
  { name: 'hypervisor', entry: 'dist/src/hypervisor/instance-main.js', libraries: 'bundled' },
  { name: 'card-block', entry: 'dist/src/cards/block/main.js', libraries: 'bundled' },
  { name: 'card-net', entry: 'dist/src/cards/net/main.js', libraries: 'bundled' },
  CONTROLLER,
];

const RELATIVE = [/\bfrom\s+['"](\.[^'"]+)['"]/g, /\bimport\s*\(\s*['"](\.[^'"]+)['"]\s*\)/g, /\bimport\s+['"](\.[^'"]+)['"]/g,
  /new URL\(\s*['"](\.[^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g];
const BARE = [/\bfrom\s+['"]([^.'"][^'"]*)['"]/g, /\bimport\s*\(\s*['"]([^.'"][^'"]*)['"]\s*\)/g];

/** Files of a runtime library the components load, by package name. */
function libraryFiles(name: string, root: string): string[] {
  if (name === 'koffi') {
    const triplet = `${process.platform}_${process.arch}`;
    const files = ['node_modules/koffi/package.json', 'node_modules/koffi/index.js', `node_modules/koffi/build/koffi/${triplet}/koffi.node`];
    for (const f of files) if (!existsSync(path.join(root, f))) throw new AzoteError('BundleBuild', `koffi has no ${f}`, 'run npm ci');
    return files;
  }
  throw new AzoteError('BundleBuild', `a component imports ${name}, which bundles do not carry`, 'import it only from the CLI or the control plane');
}

/** The files of a component: its entry's import closure, package.json and the libraries it loads. */
export function componentFiles(spec: ComponentSpec, root = projectRoot()): string[] {
  return importClosure(spec.entry, root, spec.libraries === 'bundled' ? libraryFiles : (name) => [`node_modules/${name}/package.json`]);
}

/** `entry`'s import closure with package.json, and for each library it imports the files `library` names. */
function importClosure(entry: string, root: string, library: (name: string, root: string) => string[]): string[] {
  const files = new Set<string>(['package.json']);
  const libraries = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() ?? '';
    if (files.has(file)) continue;
    const full = path.join(root, file);
    if (!existsSync(full)) throw new AzoteError('BundleBuild', `${file} does not exist`, 'compile first: npm run build');
    files.add(file);
    const text = readFileSync(full, 'utf8');
    for (const re of RELATIVE) for (const m of text.matchAll(re)) queue.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1] ?? '')));
    for (const re of BARE) {
      for (const m of text.matchAll(re)) {
        const name = m[1] ?? '';
        if (!name.startsWith('node:')) libraries.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : (name.split('/')[0] ?? name));
      }
    }
  }
  for (const lib of libraries) for (const f of library(lib, root)) files.add(f);
  return [...files].sort();
}

let runtimeCache: { identity: string; runtime: Runtime } | undefined;

/** This process's Node binary: its path, version and digest (hashed again only when the file changed). */
export function nodeRuntime(): Runtime {
  const file = realpathSync(process.execPath);
  const st = statSync(file);
  const identity = [file, st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs].join(':');
  if (runtimeCache?.identity !== identity) {
    runtimeCache = { identity, runtime: { path: file, version: process.version, sha384: sha384(readFileSync(file)) } };
  }
  return runtimeCache.runtime;
}

/** The runtime the controller was verified with; every start of a hypervisor or card checks it is still the same. */
export class VerifiedRuntime {
  constructor(readonly expected: Runtime) {}

  check(): void {
    const now = nodeRuntime();
    if (now.sha384 !== this.expected.sha384) {
      throw new AzoteError('LaunchRefused', `the security chip refused the Node runtime: ${now.path} (${now.version}) is not the signed one (${this.expected.version})`,
        'restore the Node binary the controller bundle was signed with, or install a bundle signed for this one');
    }
  }
}

/**
 * Checks that the code `azote up` runs (the controller and the control plane: `up`'s import closure, with each
 * library's package.json) is exactly the signed controller component in the store, file by file, and returns it for
 * measuring into PCR0. The chip cannot check the process already running, so it checks the files it was loaded from,
 * before anything is launched: a changed or added file refuses the host's start, naming it.
 */
export function verifyController(chip: SecurityChip, root = projectRoot()): { component: VerifiedComponent; runtime: VerifiedRuntime } {
  const signed = chip.verify(CONTROLLER.name);
  const manifest = JSON.parse(readFileSync(path.join(signed.dir, '..', 'manifest.json'), 'utf8')) as { files: Array<{ path: string; sha384: string }>; runtime?: Runtime };
  const digests = new Map(manifest.files.map((f) => [f.path, f.sha384]));
  const refuse = (why: string): AzoteError => new AzoteError('StartRefused', `the security chip refused the controller: ${why}`,
    'run the build whose controller bundle is installed, or install the signed bundle of this one (azote host install-bundle)');
  const running = componentFiles(CONTROLLER, root);
  for (const f of running) {
    const expected = digests.get(f);
    if (expected === undefined) throw refuse(`${f} is not in the signed manifest`);
    if (sha384(readFileSync(path.join(root, f))) !== expected) throw refuse(`${f} does not match its signed digest`);
  }
  const missing = manifest.files.find((f) => !running.includes(f.path));
  if (missing) throw refuse(`${missing.path} is signed but not part of the code that runs`);
  if (!manifest.runtime) throw refuse('its manifest names no Node runtime');
  const runtime = new VerifiedRuntime(manifest.runtime);
  runtime.check();
  return { component: signed, runtime };
}

function packageVersion(root: string): string {
  return (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Signs a bundle of each component of this build with `key`. */
export function buildBundles(key: Parameters<typeof buildBundle>[1], build: number, root = projectRoot()): Array<{ name: string; bundle: Buffer }> {
  const version = packageVersion(root);
  return COMPONENTS.map((c) => ({
    name: c.name,
    bundle: buildBundle({ name: c.name, version, build, entry: c.entry, root, files: componentFiles(c, root), ...(c.runtime ? { runtime: nodeRuntime() } : {}) }, key),
  }));
}

/** Whether the store's component holds exactly this build's files. */
function upToDate(chip: SecurityChip, spec: ComponentSpec, root: string): boolean {
  let installed;
  try {
    installed = chip.verify(spec.name);
  } catch {
    return false;
  }
  const files = componentFiles(spec, root);
  const manifest = JSON.parse(readFileSync(path.join(installed.dir, '..', 'manifest.json'), 'utf8')) as { files: Array<{ path: string; sha384: string }>; runtime?: Runtime };
  if (spec.runtime && manifest.runtime?.sha384 !== nodeRuntime().sha384) return false;
  return manifest.files.length === files.length
    && manifest.files.every((f) => files.includes(f.path) && sha384(readFileSync(path.join(root, f.path))) === f.sha384);
}

/**
 * On a development host: signs and installs this build's components where the store differs. Elsewhere nothing is
 * installed here (the operator installs signed bundles), and a missing component fails at launch.
 */
export function provisionDevelopmentHost(chip: SecurityChip, log: Logger, root = projectRoot()): void {
  const key = devReleaseKey(chip.hostDir);
  if (!key) return;
  const stale = COMPONENTS.filter((c) => !upToDate(chip, c, root));
  if (stale.length === 0) return;
  const floor = Math.max(0, ...chip.components().map((c) => c.build));
  const build = Math.max(Math.floor(Date.now() / 1000), floor + 1);
  for (const { name, bundle } of buildBundles(key, build, root).filter((b) => stale.some((c) => c.name === b.name))) {
    const installed = chip.install(bundle);
    log.warn('development host: installed this build\'s component, signed with the development release key', {
      component: name, build: installed.build, files: installed.files,
    });
  }
}
