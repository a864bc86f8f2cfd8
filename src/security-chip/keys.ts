// The host's keys. The release key signs component bundles: its public half is the host's root of trust
// (keys/release.pub); `azote host init` makes a development release key whose private half stays beside it
// (keys/release-dev.key) so that this host can sign what it builds. A user with a release key of their own puts its
// public half in keys/release.pub (azote host init --release-key FILE) and keeps the private half elsewhere. The
// attestation key (ECDSA P-384) signs quotes of the PCRs.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';

export interface HostKeyPaths {
  readonly dir: string;
  readonly releasePublic: string;
  readonly releaseDevPrivate: string;
  readonly attestationPrivate: string;
  readonly attestationPublic: string;
}

export function keyPaths(hostDir: string): HostKeyPaths {
  const dir = path.join(hostDir, 'keys');
  return {
    dir,
    releasePublic: path.join(dir, 'release.pub'),
    releaseDevPrivate: path.join(dir, 'release-dev.key'),
    attestationPrivate: path.join(dir, 'attestation.key'),
    attestationPublic: path.join(dir, 'attestation.pub'),
  };
}

function writeSecret(file: string, pem: string): void {
  writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
}

/** Creates the host's keys where missing; `releasePublicPem` replaces the development release key. */
export function initKeys(hostDir: string, releasePublicPem?: string): { createdDevKey: boolean } {
  const k = keyPaths(hostDir);
  mkdirSync(k.dir, { recursive: true, mode: 0o700 });
  let createdDevKey = false;
  if (releasePublicPem !== undefined) {
    const key = createPublicKey(releasePublicPem);
    if (key.asymmetricKeyType !== 'ed25519' && !(key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1')) {
      throw new AzoteError('BadReleaseKey', 'the release key must be Ed25519 or ECDSA P-384', 'e.g. openssl genpkey -algorithm ed25519');
    }
    writeFileSync(k.releasePublic, key.export({ type: 'spki', format: 'pem' }));
  } else if (!existsSync(k.releasePublic)) {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    writeSecret(k.releaseDevPrivate, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    writeFileSync(k.releasePublic, publicKey.export({ type: 'spki', format: 'pem' }));
    createdDevKey = true;
  }
  if (!existsSync(k.attestationPrivate)) {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    writeSecret(k.attestationPrivate, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    writeFileSync(k.attestationPublic, publicKey.export({ type: 'spki', format: 'pem' }));
  }
  return { createdDevKey };
}

function read(file: string, what: string): string {
  if (!existsSync(file)) throw new AzoteError('HostNotInitialized', `this host has no ${what} (${file})`, 'run: azote host init');
  return readFileSync(file, 'utf8');
}

export const releasePublicKey = (hostDir: string): KeyObject => createPublicKey(read(keyPaths(hostDir).releasePublic, 'release public key'));
export const attestationPrivateKey = (hostDir: string): KeyObject => createPrivateKey(read(keyPaths(hostDir).attestationPrivate, 'attestation key'));
export const attestationPublicKey = (hostDir: string): KeyObject => createPublicKey(read(keyPaths(hostDir).attestationPublic, 'attestation public key'));

/** The development release key, if this host has one (it can sign bundles it builds). */
export function devReleaseKey(hostDir: string): KeyObject | undefined {
  const file = keyPaths(hostDir).releaseDevPrivate;
  return existsSync(file) ? createPrivateKey(readFileSync(file, 'utf8')) : undefined;
}
