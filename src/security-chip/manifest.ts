// A component bundle's manifest: what the component is (name, display version, build number for anti-rollback, the
// file it starts from) and every file it holds with its SHA-384 digest. The signature covers the manifest's exact
// bytes (manifest.json as shipped), so nothing is re-serialized before checking it.
import { createHash } from 'node:crypto';
import { AzoteError } from '../base/errors.js';

export interface ManifestFile {
  /** Relative path inside the bundle, "/"-separated, no "." or ".." parts. */
  readonly path: string;
  /** Hexadecimal SHA-384 of the file's bytes. */
  readonly sha384: string;
  /** Whether the file is executable (mode 0755 rather than 0644). */
  readonly executable: boolean;
}

export interface Manifest {
  readonly format: 'azote-bundle-1';
  readonly name: string;
  /** The version people read (package.json's). */
  readonly version: string;
  /** A number that only grows from one release to the next: anti-rollback compares it. */
  readonly build: number;
  /** The file the controller runs (a path of `files`). */
  readonly entry: string;
  readonly files: readonly ManifestFile[];
  /** The Node runtime the component must run on (the controller's: every component runs on the same one). */
  readonly runtime?: Runtime;
}

export interface Runtime {
  /** Where the runtime was when the bundle was built (for messages). */
  readonly path: string;
  /** Its version (process.version). */
  readonly version: string;
  /** Hexadecimal SHA-384 of the binary. */
  readonly sha384: string;
}

export const COMPONENT_NAME = /^[a-z][a-z0-9-]{0,40}$/;
const SAFE_PATH = /^(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._@+-][A-Za-z0-9._@+/-]*$/;

export function sha384(data: Uint8Array | string): string {
  return createHash('sha384').update(data).digest('hex');
}

function bad(why: string): AzoteError {
  return new AzoteError('BadManifest', `the bundle's manifest is not valid: ${why}`, 'rebuild the bundle (npm run build)');
}

/** Parses and checks a manifest's bytes (shape only: the signature is checked by the caller). */
export function parseManifest(bytes: Uint8Array): Manifest {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<Manifest>;
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (m.format !== 'azote-bundle-1') throw bad(`unknown format ${JSON.stringify(m.format)}`);
  if (typeof m.name !== 'string' || !COMPONENT_NAME.test(m.name)) throw bad('no valid name');
  if (typeof m.version !== 'string' || m.version.length === 0 || m.version.length > 64) throw bad('no valid version');
  if (typeof m.build !== 'number' || !Number.isSafeInteger(m.build) || m.build < 0) throw bad('no valid build number');
  if (!Array.isArray(m.files) || m.files.length === 0) throw bad('no files');
  const seen = new Set<string>();
  for (const f of m.files) {
    if (typeof f?.path !== 'string' || !SAFE_PATH.test(f.path) || seen.has(f.path)) throw bad(`file path ${JSON.stringify(f?.path)} is invalid or repeated`);
    if (typeof f.sha384 !== 'string' || !/^[0-9a-f]{96}$/.test(f.sha384)) throw bad(`${f.path} has no SHA-384 digest`);
    if (typeof f.executable !== 'boolean') throw bad(`${f.path} has no executable flag`);
    seen.add(f.path);
  }
  if (typeof m.entry !== 'string' || !seen.has(m.entry)) throw bad('its entry is not one of its files');
  if (m.runtime !== undefined) {
    const r = m.runtime;
    if (typeof r?.path !== 'string' || typeof r.version !== 'string' || typeof r.sha384 !== 'string' || !/^[0-9a-f]{96}$/.test(r.sha384)) {
      throw bad('its runtime has no path, version or SHA-384 digest');
    }
  }
  return m as Manifest;
}
