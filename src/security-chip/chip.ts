// The security chip: the host's root of trust in software. It installs signed component bundles into the
// component store (the only way the store changes) and refuses unsigned, tampered or older ones (anti-rollback on
// the build number); before every launch it verifies the component in the store again, file by file, and measures
// it into a PCR-style register of its class (SHA-384 extend) with an entry in the event log; it signs quotes of the
// registers, the log and a caller's nonce with the host attestation key, which anyone can check by replaying the log.
// It MACs the snapshots this host makes and refuses those made elsewhere or altered (snapshot-mac.ts), and keeps the key
// that hibernation images are encrypted under at rest (hibernation-key.ts).
import { randomBytes, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import { attestationPrivateKey, attestationPublicKey, initKeys, releasePublicKey } from './keys.js';
import { COMPONENT_NAME, parseManifest, sha384, type Manifest, type Runtime } from './manifest.js';
import { signBytes, verifyBytes } from './signing.js';
import { checkSnapshot, sealSnapshot, snapshotMacKey, type CheckedSnapshot, type SnapshotTarget } from './snapshot-mac.js';
import { hibernationKey } from './hibernation-key.js';
import { readTgz, writeTgz } from './tar.js';

export const PCR_COUNT = 8;
/** The register each component class is measured into; classes not listed go to the last one. */
export const PCR_OF: Readonly<Record<string, number>> = {
  controller: 0, 'jail-tools': 0, hypervisor: 1, 'card-block': 2, 'card-net': 3,
  /** The protection of guests' memory in force on the host (isolation/memory-protection.ts). */
  'guest-memory': 4,
};
const ZERO_PCR = '0'.repeat(96);

export interface MeasurementEvent {
  readonly pcr: number;
  readonly component: string;
  readonly version: string;
  readonly build: number;
  /** SHA-384 of the manifest's bytes (which name every file's digest). */
  readonly digest: string;
}

export interface InstalledComponent {
  readonly name: string;
  readonly version: string;
  readonly build: number;
  readonly digest: string;
  readonly files: number;
}

export interface VerifiedComponent extends InstalledComponent {
  /** Where its files are; the entry is `entryPath`. */
  readonly dir: string;
  readonly entryPath: string;
}

export interface Quote {
  readonly format: 'azote-quote-1';
  readonly nonce: string;
  readonly pcrs: readonly string[];
  readonly eventLog: readonly MeasurementEvent[];
  /** The attestation key's public half (PEM): check it against the one you trust for this host. */
  readonly attestationKey: string;
  readonly signature: string;
}

export function extend(pcr: string, digest: string): string {
  return sha384(Buffer.concat([Buffer.from(pcr, 'hex'), Buffer.from(digest, 'hex')]));
}

/** The registers the event log leads to, from zero. */
export function replay(events: readonly MeasurementEvent[]): string[] {
  const pcrs = Array.from({ length: PCR_COUNT }, () => ZERO_PCR);
  for (const e of events) pcrs[e.pcr] = extend(pcrs[e.pcr] ?? ZERO_PCR, e.digest);
  return pcrs;
}

/** The bytes a quote's signature covers. */
function quoted(q: Omit<Quote, 'signature' | 'attestationKey'>): Buffer {
  return Buffer.from(JSON.stringify({ format: q.format, nonce: q.nonce, pcrs: q.pcrs, eventLog: sha384(JSON.stringify(q.eventLog)) }));
}

/** Checks a quote: its signature, and that its log replays to its registers. `trusted` is the key to expect. */
export function verifyQuote(q: Quote, trusted?: KeyObject): void {
  if (q.format !== 'azote-quote-1') throw new AzoteError('BadQuote', 'not an Azote quote');
  const key = createPublicKey(q.attestationKey);
  if (trusted && !key.equals(trusted)) throw new AzoteError('BadQuote', 'the quote is signed by another attestation key than the one trusted');
  if (!verifyBytes(key, quoted(q), Buffer.from(q.signature, 'base64'))) {
    throw new AzoteError('BadQuote', 'the quote\'s signature does not verify: its registers, log or nonce were changed');
  }
  const replayed = replay(q.eventLog);
  const wrong = replayed.findIndex((p, i) => p !== q.pcrs[i]);
  if (wrong >= 0 || q.pcrs.length !== PCR_COUNT) throw new AzoteError('BadQuote', `replaying the event log does not give PCR ${wrong}`);
}

/** Builds a signed bundle of `files` (paths relative to `root`). */
export function buildBundle(o: { name: string; version: string; build: number; entry: string; root: string; files: readonly string[]; runtime?: Runtime },
  key: KeyObject): Buffer {
  const entries = o.files.map((f) => {
    const full = path.join(o.root, f);
    return { path: f.split(path.sep).join('/'), data: readFileSync(full), executable: (statSync(full).mode & 0o111) !== 0 };
  }).sort((a, b) => a.path.localeCompare(b.path));
  const manifest: Manifest = {
    format: 'azote-bundle-1', name: o.name, version: o.version, build: o.build, entry: o.entry,
    files: entries.map((e) => ({ path: e.path, sha384: sha384(e.data), executable: e.executable })),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  };
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`);
  parseManifest(manifestBytes);
  return writeTgz([
    { name: 'manifest.json', data: manifestBytes, mode: 0o644 },
    { name: 'manifest.sig', data: Buffer.from(`${signBytes(key, manifestBytes).toString('base64')}\n`), mode: 0o644 },
    ...entries.map((e) => ({ name: `files/${e.path}`, data: e.data, mode: e.executable ? 0o755 : 0o644 })),
  ]);
}

export class SecurityChip {
  private constructor(readonly hostDir: string) {}

  /** Creates the host's keys, component store and registers where missing. */
  static init(hostDir: string, releasePublicPem?: string): { chip: SecurityChip; createdDevKey: boolean } {
    const { createdDevKey } = initKeys(hostDir, releasePublicPem);
    mkdirSync(path.join(hostDir, 'components'), { recursive: true, mode: 0o700 });
    mkdirSync(path.join(hostDir, 'chip'), { recursive: true, mode: 0o700 });
    const chip = new SecurityChip(hostDir);
    if (!existsSync(chip.file('pcrs.json'))) chip.boot();
    snapshotMacKey(hostDir);
    hibernationKey(hostDir);
    return { chip, createdDevKey };
  }

  static open(hostDir: string): SecurityChip {
    if (!existsSync(path.join(hostDir, 'chip'))) throw new AzoteError('HostNotInitialized', `${hostDir} is not an initialized host`, 'run: azote host init');
    return new SecurityChip(hostDir);
  }

  private file(name: string): string {
    return path.join(this.hostDir, 'chip', name);
  }

  private writeJson(name: string, value: unknown): void {
    const tmp = `${this.file(name)}.tmp-${process.pid}`;
    writeFileSync(tmp, `${JSON.stringify(value, null, 1)}\n`, { mode: 0o600 });
    renameSync(tmp, this.file(name));
  }

  private readJson<T>(name: string, dflt: T): T {
    return existsSync(this.file(name)) ? JSON.parse(readFileSync(this.file(name), 'utf8')) as T : dflt;
  }

  /** The builds installed, by component: the floor below which nothing installs. */
  private installedBuilds(): Record<string, number> {
    return this.readJson<Record<string, number>>('builds.json', {});
  }

  /** A host start: the registers and the log begin again from zero. */
  boot(): void {
    this.writeJson('pcrs.json', replay([]));
    this.writeJson('events.json', []);
  }

  pcrs(): string[] {
    return this.readJson<string[]>('pcrs.json', replay([]));
  }

  eventLog(): MeasurementEvent[] {
    return this.readJson<MeasurementEvent[]>('events.json', []);
  }

  private storeDir(name: string): string {
    return path.join(this.hostDir, 'components', name);
  }

  /** Checks a bundle and, if it is signed by the release key, intact, and not older, installs it. */
  install(bundle: Uint8Array): InstalledComponent {
    const entries = readTgz(bundle);
    const manifestBytes = entries.get('manifest.json')?.data;
    const sig = entries.get('manifest.sig')?.data;
    if (!manifestBytes || !sig) throw new AzoteError('UnsignedBundle', 'the bundle has no manifest.json and manifest.sig', 'sign it with the release key (npm run build on a host with a development key)');
    if (!verifyBytes(releasePublicKey(this.hostDir), manifestBytes, Buffer.from(sig.toString('utf8').trim(), 'base64'))) {
      throw new AzoteError('BadSignature', 'the bundle\'s signature does not verify with this host\'s release key', 'install only bundles signed by the release key whose public half is keys/release.pub');
    }
    const m = parseManifest(manifestBytes);
    const listed = new Set(m.files.map((f) => `files/${f.path}`));
    for (const name of entries.keys()) {
      if (name !== 'manifest.json' && name !== 'manifest.sig' && !listed.has(name)) throw new AzoteError('BadBundle', `the bundle holds ${name}, which its manifest does not list`);
    }
    for (const f of m.files) {
      const data = entries.get(`files/${f.path}`)?.data;
      if (!data) throw new AzoteError('BadBundle', `the bundle lacks ${f.path}, which its manifest lists`);
      if (sha384(data) !== f.sha384) throw new AzoteError('BadBundle', `${f.path} in the bundle does not match its signed digest`);
    }
    const digest = sha384(manifestBytes);
    const floor = this.installedBuilds()[m.name];
    if (floor !== undefined && m.build < floor) {
      throw new AzoteError('Rollback', `${m.name} build ${m.build} (${m.version}) is older than the installed build ${floor}`, 'install a newer build');
    }
    if (floor !== undefined && m.build === floor && this.components().find((c) => c.name === m.name)?.digest !== digest) {
      throw new AzoteError('Rollback', `${m.name} build ${m.build} is installed with other contents`, 'a changed bundle needs a higher build number');
    }
    const dir = this.storeDir(m.name);
    const tmp = `${dir}.installing-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    for (const f of m.files) {
      const to = path.join(tmp, 'files', ...f.path.split('/'));
      mkdirSync(path.dirname(to), { recursive: true });
      writeFileSync(to, entries.get(`files/${f.path}`)?.data ?? Buffer.alloc(0), { mode: f.executable ? 0o755 : 0o644 });
    }
    writeFileSync(path.join(tmp, 'manifest.json'), manifestBytes);
    writeFileSync(path.join(tmp, 'manifest.sig'), sig);
    const old = `${dir}.old-${process.pid}`;
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
    this.writeJson('builds.json', { ...this.installedBuilds(), [m.name]: m.build });
    return { name: m.name, version: m.version, build: m.build, digest, files: m.files.length };
  }

  components(): InstalledComponent[] {
    const root = path.join(this.hostDir, 'components');
    if (!existsSync(root)) return [];
    return readdirSync(root).filter((n) => COMPONENT_NAME.test(n) && existsSync(path.join(root, n, 'manifest.json'))).sort().map((n) => {
      const bytes = readFileSync(path.join(root, n, 'manifest.json'));
      const m = parseManifest(bytes);
      return { name: m.name, version: m.version, build: m.build, digest: sha384(bytes), files: m.files.length };
    });
  }

  /** Verifies component `name` in the store, every file of it, as it is now; throws naming what is wrong. */
  verify(name: string): VerifiedComponent {
    const dir = this.storeDir(name);
    const refuse = (why: string): AzoteError => new AzoteError('LaunchRefused', `the security chip refused ${name}: ${why}`,
      'install a signed bundle again (azote host install-bundle)');
    if (!existsSync(path.join(dir, 'manifest.json'))) throw refuse('it is not installed');
    const bytes = readFileSync(path.join(dir, 'manifest.json'));
    const sig = existsSync(path.join(dir, 'manifest.sig')) ? readFileSync(path.join(dir, 'manifest.sig'), 'utf8').trim() : '';
    if (!verifyBytes(releasePublicKey(this.hostDir), bytes, Buffer.from(sig, 'base64'))) throw refuse('its manifest\'s signature does not verify');
    const m = parseManifest(bytes);
    if (m.name !== name) throw refuse(`its manifest names ${m.name}`);
    const floor = this.installedBuilds()[name];
    if (floor === undefined || m.build !== floor) throw refuse(`the store holds build ${m.build}, but build ${floor ?? 'none'} was installed`);
    const files = path.join(dir, 'files');
    for (const f of m.files) {
      const full = path.join(files, ...f.path.split('/'));
      if (!existsSync(full)) throw refuse(`${f.path} is missing`);
      if (sha384(readFileSync(full)) !== f.sha384) throw refuse(`${f.path} does not match its signed digest`);
    }
    const listed = new Set(m.files.map((f) => f.path));
    const walk = (rel: string): void => {
      for (const e of readdirSync(path.join(files, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(r);
        else if (!listed.has(r)) throw refuse(`${r} is in the store but not in the signed manifest`);
      }
    };
    walk('');
    return { name, version: m.version, build: m.build, digest: sha384(bytes), files: m.files.length, dir: files, entryPath: path.join(files, ...m.entry.split('/')) };
  }

  /** Extends the component's register with its manifest digest and logs the event. */
  measure(c: Pick<InstalledComponent, 'name' | 'version' | 'build' | 'digest'>): MeasurementEvent {
    const event: MeasurementEvent = { pcr: PCR_OF[c.name] ?? PCR_COUNT - 1, component: c.name, version: c.version, build: c.build, digest: c.digest };
    const pcrs = this.pcrs();
    pcrs[event.pcr] = extend(pcrs[event.pcr] ?? ZERO_PCR, event.digest);
    this.writeJson('events.json', [...this.eventLog(), event]);
    this.writeJson('pcrs.json', pcrs);
    return event;
  }

  /** Verifies and measures: what a launch asks before it runs anything of `name`. */
  admit(name: string): VerifiedComponent {
    const c = this.verify(name);
    this.measure(c);
    return c;
  }

  attest(nonce: string = randomBytes(16).toString('hex')): Quote {
    const body = { format: 'azote-quote-1' as const, nonce, pcrs: this.pcrs(), eventLog: this.eventLog() };
    return {
      ...body, attestationKey: attestationPublicKey(this.hostDir).export({ type: 'spki', format: 'pem' }).toString(),
      signature: signBytes(attestationPrivateKey(this.hostDir), quoted(body)).toString('base64'),
    };
  }

  /** MACs a snapshot the hypervisor wrote (an fd the caller keeps, or a path), binding it to this host. */
  sealSnapshot(target: SnapshotTarget): void {
    sealSnapshot(this.hostDir, target);
  }

  /** The key this host's hibernation images are encrypted under at rest (hibernation-key.ts). */
  hibernationKey(): Buffer {
    return hibernationKey(this.hostDir);
  }

  /** Refuses a snapshot not sealed on this host or altered since (SnapshotForeign); returns the digest to load it against. */
  checkSnapshot(target: SnapshotTarget): CheckedSnapshot {
    return checkSnapshot(this.hostDir, target);
  }
}
