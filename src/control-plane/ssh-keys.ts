// Key material for EC2 key pairs: new RSA or Ed25519 key pairs, OpenSSH public keys (RFC 4253 section 6.6 wire
// format, base64) and EC2's fingerprints: for a key pair EC2 created, the SHA-1 of the PKCS#8 DER private key (RSA)
// or the base64 SHA-256 of the public key blob (Ed25519, as ssh-keygen -l shows it); for an imported RSA key, the
// MD5 of its DER public key. Ed25519 private keys are given in the OpenSSH private key format (PROTOCOL.key).
import { createHash, createPublicKey, generateKeyPair as generate, randomBytes, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { invalid } from './errors.js';

export type KeyType = 'rsa' | 'ed25519';

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function mpint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const trimmed = b.subarray(i);
  return sshString((trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), trimmed]) : trimmed);
}

function fromB64url(s: string | undefined): Buffer {
  return Buffer.from(s ?? '', 'base64url');
}

/** The OpenSSH public key blob of a node:crypto public key. */
export function publicBlob(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  if (key.asymmetricKeyType === 'rsa') return Buffer.concat([sshString('ssh-rsa'), mpint(fromB64url(jwk.e)), mpint(fromB64url(jwk.n))]);
  if (key.asymmetricKeyType === 'ed25519') return Buffer.concat([sshString('ssh-ed25519'), sshString(fromB64url(jwk.x))]);
  throw new Error(`no OpenSSH form for ${key.asymmetricKeyType ?? 'this'} key`);
}

const colonHex = (b: Buffer): string => b.toString('hex').match(/../g)?.join(':') ?? '';

function readString(b: Buffer, at: number): [Buffer, number] {
  if (at + 4 > b.length) throw invalid('Key is not in valid OpenSSH public key format');
  const len = b.readUInt32BE(at);
  if (at + 4 + len > b.length) throw invalid('Key is not in valid OpenSSH public key format');
  return [b.subarray(at + 4, at + 4 + len), at + 4 + len];
}

export interface ParsedPublicKey {
  readonly type: KeyType;
  /** "ssh-rsa AAAA..." without a comment. */
  readonly openssh: string;
  readonly fingerprint: string;
}

/** An imported public key ("ssh-rsa AAAA... comment" or "ssh-ed25519 ..."), checked and fingerprinted. */
export function parseOpenSshPublicKey(text: string): ParsedPublicKey {
  const m = /^\s*(ssh-rsa|ssh-ed25519)\s+([A-Za-z0-9+/=]+)(\s.*)?$/s.exec(text);
  if (!m) throw invalid('Key is not in valid OpenSSH public key format (ssh-rsa or ssh-ed25519)');
  const blob = Buffer.from(m[2] ?? '', 'base64');
  const [kind, after] = readString(blob, 0);
  if (kind.toString() !== m[1]) throw invalid('Key is not in valid OpenSSH public key format: its type does not match its data');
  const openssh = `${m[1]} ${blob.toString('base64')}`;
  if (m[1] === 'ssh-ed25519') {
    const [x, end] = readString(blob, after);
    if (x.length !== 32 || end !== blob.length) throw invalid('Key is not in valid OpenSSH public key format: bad Ed25519 key');
    return { type: 'ed25519', openssh, fingerprint: `${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}=` };
  }
  const [e, afterE] = readString(blob, after);
  const [n, end] = readString(blob, afterE);
  if (end !== blob.length || n.length < 128) throw invalid('Key is not in valid OpenSSH public key format: RSA keys of at least 1024 bits are accepted');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'RSA', e: e.toString('base64url'), n: n.toString('base64url') }, format: 'jwk' });
  } catch {
    throw invalid('Key is not in valid OpenSSH public key format: bad RSA key');
  }
  return { type: 'rsa', openssh, fingerprint: colonHex(createHash('md5').update(key.export({ type: 'spki', format: 'der' })).digest()) };
}

export interface NewKeyPair {
  readonly type: KeyType;
  readonly privateKey: string;
  readonly openssh: string;
  readonly fingerprint: string;
}

/** The OpenSSH private key format for an Ed25519 key (unencrypted). */
function opensshPrivateEd25519(pub: Buffer, seed: Buffer, comment: string): string {
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  let priv = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const nkeys = Buffer.alloc(4);
  nkeys.writeUInt32BE(1);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), nkeys, sshString(pubBlob), sshString(priv)]);
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return ['-----BEGIN OPENSSH PRIVATE KEY-----', ...lines, '-----END OPENSSH PRIVATE KEY-----', ''].join('\n');
}

const generateAsync = promisify(generate);

/** A new key pair, generated on libuv's thread pool: an RSA key takes long enough to stall every VM's supervision. */
export async function generateKeyPair(type: KeyType, name: string): Promise<NewKeyPair> {
  if (type === 'ed25519') {
    const { publicKey, privateKey } = await generateAsync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    const blob = publicBlob(publicKey);
    return {
      type, privateKey: opensshPrivateEd25519(fromB64url(jwk.x), fromB64url(jwk.d), name),
      openssh: `ssh-ed25519 ${blob.toString('base64')}`,
      fingerprint: `${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}=`,
    };
  }
  const { publicKey, privateKey } = await generateAsync('rsa', { modulusLength: 2048 });
  return {
    type,
    privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString().trimEnd(),
    openssh: `ssh-rsa ${publicBlob(publicKey).toString('base64')}`,
    fingerprint: colonHex(createHash('sha1').update(privateKey.export({ type: 'pkcs8', format: 'der' })).digest()),
  };
}
