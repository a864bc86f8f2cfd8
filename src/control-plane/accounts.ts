// Accounts and their access keys. The secret access key is shown once, at creation; the store keeps it sealed
// (AES-256-GCM under a key that lives in the data directory, readable only by its owner), because verifying a
// SigV4 signature needs the secret itself, so a one-way hash cannot do. It is never logged.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import { newAccountId } from './ids.js';
import type { Store } from './store.js';

const KEY_FILE = 'api-seal.key';
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ACCESS_KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The sealing key of a data directory, created (mode 0600) on first use. */
export function sealingKey(dataDir: string): Buffer {
  const file = path.join(dataDir, KEY_FILE);
  if (!existsSync(file)) {
    writeFileSync(file, randomBytes(32), { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  const key = readFileSync(file);
  if (key.length !== 32) {
    throw new AzoteError('SealingKey', `${file} is not a 32-byte key`, 'restore it from a backup; without it no account can sign in');
  }
  return key;
}

export function seal(key: Buffer, secret: string): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([c.update(secret, 'utf8'), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]);
}

export function unseal(key: Buffer, sealed: Buffer): string {
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([d.update(sealed.subarray(28)), d.final()]).toString('utf8');
}

export interface NewAccount {
  readonly accountId: string;
  readonly name: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export function createAccount(store: Store, dataDir: string, name: string): NewAccount {
  if (!NAME.test(name)) {
    throw new AzoteError('BadAccountName', `account name ${JSON.stringify(name)} is not lower-case letters, digits and "-"`, 'e.g. azote account create dev');
  }
  if (store.accountByName(name)) throw new AzoteError('AccountExists', `account ${name} exists already`, 'choose another name');
  const bytes = randomBytes(16);
  const accessKeyId = `AKIA${Array.from(bytes, (b) => ACCESS_KEY_ALPHABET[b % 32]).join('')}`;
  const secretAccessKey = randomBytes(30).toString('base64').replace(/\+/g, 'A').replace(/\//g, 'z');
  const accountId = newAccountId();
  store.addAccount({
    id: accountId, name, access_key_id: accessKeyId, sealed_secret: seal(sealingKey(dataDir), secretAccessKey),
    created: new Date().toISOString(),
  });
  return { accountId, name, accessKeyId, secretAccessKey };
}
