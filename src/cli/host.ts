// `azote host ...`: this host's security chip: keys, signed component bundles, measurements and quotes.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createPublicKey } from 'node:crypto';
import { AzoteError } from '../base/errors.js';
import { buildBundles } from '../controller/components.js';
import { defaultDataDir } from '../controller/data-dir.js';
import { SecurityChip, verifyQuote, type Quote } from '../security-chip/chip.js';
import { devReleaseKey, keyPaths } from '../security-chip/keys.js';

export const defaultHostDir = (): string => path.join(defaultDataDir(), 'host');

export function hostInit(hostDir: string, releaseKeyFile?: string): void {
  const pem = releaseKeyFile === undefined ? undefined : readFileSync(releaseKeyFile, 'utf8');
  const { chip, createdDevKey } = SecurityChip.init(hostDir, pem);
  const k = keyPaths(hostDir);
  process.stdout.write(`host ${chip.hostDir}\n  root of trust (release public key): ${k.releasePublic}\n`
    + (createdDevKey ? `  development release key (signs this host's own builds): ${k.releaseDevPrivate}\n` : '')
    + `  attestation key: ${k.attestationPublic}\n  component store: ${path.join(hostDir, 'components')}\n`);
}

export function hostComponents(hostDir: string): void {
  const chip = SecurityChip.open(hostDir);
  const rows = chip.components();
  if (rows.length === 0) {
    process.stdout.write('no components installed (azote up installs its own on a development host; or azote host install-bundle)\n');
    return;
  }
  for (const c of rows) process.stdout.write(`${c.name.padEnd(12)} ${c.version.padEnd(8)} build ${String(c.build).padEnd(11)} ${c.files} files  sha384:${c.digest}\n`);
  // What the controller measured at the host's start: how guests' memory is kept (isolation/memory-protection.ts).
  const memory = chip.eventLog().filter((e) => e.component === 'guest-memory').at(-1);
  if (memory) process.stdout.write(`guest memory: ${memory.version} (measured into PCR${memory.pcr} at this host's start, sha384:${memory.digest})\n`);
}

export function hostInstall(hostDir: string, bundle: string): void {
  const c = SecurityChip.open(hostDir).install(readFileSync(bundle));
  process.stdout.write(`installed ${c.name} ${c.version} (build ${c.build}, ${c.files} files, sha384:${c.digest})\n`);
}

/** Signs bundles of this build with the host's development release key. */
export function hostBundle(hostDir: string, outDir: string): void {
  SecurityChip.init(hostDir);
  const key = devReleaseKey(hostDir);
  if (!key) {
    throw new AzoteError('NoSigningKey', `${hostDir} has no development release key to sign with`,
      'sign bundles with your release key elsewhere, or use a development host (azote host init without --release-key)');
  }
  mkdirSync(outDir, { recursive: true });
  for (const { name, bundle } of buildBundles(key, Math.floor(Date.now() / 1000))) {
    const file = path.join(outDir, `${name}.tgz`);
    writeFileSync(file, bundle);
    process.stdout.write(`${file} (${(bundle.length / 1024).toFixed(0)} KiB)\n`);
  }
}

export function hostAttest(hostDir: string, nonce: string | undefined): void {
  process.stdout.write(`${JSON.stringify(SecurityChip.open(hostDir).attest(nonce), null, 1)}\n`);
}

export function hostVerify(hostDir: string, quoteFile: string, keyFile?: string): void {
  const quote = JSON.parse(readFileSync(quoteFile, 'utf8')) as Quote;
  const trusted = createPublicKey(readFileSync(keyFile ?? keyPaths(hostDir).attestationPublic, 'utf8'));
  verifyQuote(quote, trusted);
  process.stdout.write(`quote verified: nonce ${quote.nonce}, ${quote.eventLog.length} measurements\n`);
  for (const e of quote.eventLog) process.stdout.write(`  PCR${e.pcr} ${e.component} ${e.version} build ${e.build} sha384:${e.digest}\n`);
}
