// Hibernation images at rest: AES-256-GCM under the host's key, streamed in chunks. What is written reads back
// whole; any byte changed (header, body or tag), a cut or lengthened file, another key or another instance's image
// is refused with HibernationImageRefused, never another exception, and leaves no descriptor open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, fstatSync, mkdtempSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { AzoteError } from '../../src/base/errors.js';
import { IMAGE_CHUNK, readHibernationImage, writeHibernationImage } from '../../src/controller/hibernation-image.js';
import * as libc from '../../src/sys/libc.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-hibernation-image-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const ID = 'i-0123456789abcdef0';
const key = randomBytes(32);

/** A memfd holding `bytes` (the caller closes it). */
function memfdWith(bytes: Buffer): number {
  const fd = libc.memfdCreate('test-snapshot');
  writeFileSync(fd, bytes);
  return fd;
}

function contents(fd: number): Buffer {
  const out = Buffer.alloc(fstatSync(fd).size);
  let done = 0;
  while (done < out.length) done += readSync(fd, out, done, out.length - done, done);
  return out;
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

async function written(plain: Buffer, name = `img-${Math.random().toString(16).slice(2)}`): Promise<string> {
  const file = path.join(dir, name);
  const fd = memfdWith(plain);
  try {
    await writeHibernationImage(key, ID, fd, file);
  } finally {
    libc.close(fd);
  }
  return file;
}

async function refusal(file: string, k = key, id = ID): Promise<AzoteError> {
  const before = openFds();
  const e = await readHibernationImage(k, id, file).then((fd) => { libc.close(fd); return undefined; }, (err: unknown) => err);
  assert.ok(e instanceof AzoteError, `refused with a named error, not ${String(e)}`);
  assert.equal(e.code, 'HibernationImageRefused');
  assert.equal(openFds(), before, 'a refused image leaves no descriptor open');
  return e;
}

test('a multi-MiB image round-trips through several chunks; it is not the plaintext, 0600, and no temporary file stays', async () => {
  const plain = randomBytes(5 * IMAGE_CHUNK + 12345);
  const file = await written(plain, 'big');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(file).size, plain.length + 36 + 16, 'header, ciphertext as long as the snapshot, tag');
  assert.equal(readFileSync(file).indexOf(plain.subarray(4096, 4096 + 64)), -1, 'the snapshot is not on disk in the clear');
  assert.ok(!existsSync(`${file}.new`));
  const fd = await readHibernationImage(key, ID, file);
  try {
    assert.ok(contents(fd).equals(plain));
  } finally {
    libc.close(fd);
  }
  // A fresh IV per image: the same snapshot encrypts differently.
  const again = await written(plain, 'big-again');
  assert.ok(!readFileSync(again).subarray(36, 100).equals(readFileSync(file).subarray(36, 100)));
});

test('an empty snapshot round-trips too', async () => {
  const fd = await readHibernationImage(key, ID, await written(Buffer.alloc(0)));
  try {
    assert.equal(fstatSync(fd).size, 0);
  } finally {
    libc.close(fd);
  }
});

test('a flipped byte anywhere (header, body, tag) is refused', async () => {
  const plain = randomBytes(2 * IMAGE_CHUNK + 7);
  const file = await written(plain, 'flip-source');
  const original = readFileSync(file);
  await fc.assert(fc.asyncProperty(fc.nat(original.length - 1), fc.integer({ min: 1, max: 255 }), async (at, mask) => {
    const damaged = Buffer.from(original);
    damaged[at] = (damaged[at] ?? 0) ^ mask;
    writeFileSync(file, damaged);
    await refusal(file);
  }), { numRuns: 40 });
  for (const at of [0, 12, 20, 30, 36, original.length - 1]) {
    const damaged = Buffer.from(original);
    damaged[at] = (damaged[at] ?? 0) ^ 1;
    writeFileSync(file, damaged);
    await refusal(file);
  }
});

test('another key, another instance, a cut or lengthened file, and a file that is no image are refused', async () => {
  const file = await written(randomBytes(IMAGE_CHUNK + 99), 'others');
  assert.match((await refusal(file, randomBytes(32))).message, /tag does not verify/);
  await refusal(file, key, 'i-0fedcba9876543210');
  const whole = readFileSync(file);
  truncateSync(file, whole.length - 1);
  await refusal(file);
  writeFileSync(file, whole);
  appendFileSync(file, Buffer.alloc(1));
  await refusal(file);
  truncateSync(file, 10);
  await refusal(file);
  writeFileSync(file, Buffer.alloc(200, 0x41));
  assert.match((await refusal(file)).message, /not a hibernation image/);
});
