// A host secret the security chip keeps in its directory: 32 random bytes, 0600, made where missing (at `azote host
// init`, or on first use on a host initialised before the key existed). It is written whole under another name and
// linked into place, so two processes making it at once agree on one key and neither reads a half-written file.
import { existsSync, linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { AzoteError } from '../base/errors.js';

export const HOST_KEY_BYTES = 32;

/** The key in `file` (made if missing); `what` names it and `lost` says what deleting it costs, in the error's fix. */
export function hostKey(file: string, what: string, lost: string): Buffer {
  if (!existsSync(file)) {
    const tmp = `${file}.new-${process.pid}`;
    writeFileSync(tmp, randomBytes(HOST_KEY_BYTES), { mode: 0o600 });
    try {
      linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  const key = readFileSync(file);
  if (key.length !== HOST_KEY_BYTES) {
    throw new AzoteError('HostKeyDamaged', `the ${what} ${file} is ${key.length} bytes, not ${HOST_KEY_BYTES}`,
      `delete it: a new key is made on next use (${lost})`);
  }
  return key;
}
