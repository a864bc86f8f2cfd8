// Signatures with the host's keys: Ed25519, or ECDSA P-384 over SHA-384 (DER signatures).
import { sign, verify, type KeyObject } from 'node:crypto';

const digestFor = (key: KeyObject): string | null => (key.asymmetricKeyType === 'ed25519' ? null : 'sha384');

export function signBytes(key: KeyObject, data: Uint8Array): Buffer {
  return sign(digestFor(key), data, key);
}

export function verifyBytes(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(digestFor(key), data, key, signature);
  } catch {
    return false;
  }
}
