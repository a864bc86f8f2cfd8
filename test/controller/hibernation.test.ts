// A hibernation on the host, without a VM: the snapshot a hypervisor wrote into a memfd is sealed by the chip and
// kept encrypted; opened again it is the same snapshot, its MAC verified (the digest a restoring hypervisor loads it
// against). An image that was altered, or comes from another host, is discarded with the reason logged, and the
// instance boots instead. The memfds handed over are closed by their owner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, fstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/base/log.js';
import { Hibernations } from '../../src/controller/hibernation.js';
import { writeHibernationImage } from '../../src/controller/hibernation-image.js';
import { InstanceFiles } from '../../src/controller/instance-files.js';
import { writeSnapshot } from '../../src/hypervisor/snapshot/format.js';
import { SecurityChip } from '../../src/security-chip/chip.js';
import * as libc from '../../src/sys/libc.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-hibernation-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const PAGE = 4096;
const lines: string[] = [];
const log = createLogger('test', { write: (l) => { lines.push(l); } }, 'info');
const chip = SecurityChip.init(path.join(dir, 'host')).chip;
const openFds = (): number => readdirSync('/proc/self/fd').length;

function snapshotMemfd(): { fd: number; bytes: Buffer } {
  const memory = new Uint8Array(256 * PAGE);
  memory.fill(0x5a, 3 * PAGE, 200 * PAGE);
  const fd = libc.memfdCreate('test-hibernation');
  writeSnapshot(fd, { records: [{ kind: 'uart', version: 1, lcr: 3 }] }, memory);
  return { fd, bytes: contents(fd) };
}

function contents(fd: number): Buffer {
  const out = Buffer.alloc(fstatSync(fd).size);
  let done = 0;
  while (done < out.length) done += readSync(fd, out, done, out.length - done, done);
  return out;
}

async function hibernated(id: string, h = new Hibernations(chip, log)): Promise<{ files: InstanceFiles; sealed: Buffer }> {
  const files = new InstanceFiles(dir, id);
  mkdirSync(files.dir, { recursive: true });
  const { fd } = snapshotMemfd();
  const before = openFds();
  await h.save(files, fd);
  assert.equal(openFds(), before - 1, 'save closes the memfd it was given');
  const opened = await h.open(files);
  assert.ok(opened);
  const sealed = contents(opened.fd);
  libc.close(opened.fd);
  return { files, sealed };
}

test('saved, the image is encrypted; opened, it is the sealed snapshot, with the digest its MAC verified', async () => {
  const h = new Hibernations(chip, log);
  const { files, sealed } = await hibernated('i-0aaaaaaaaaaaaaaa1', h);
  assert.ok(existsSync(files.hibernationImage));
  assert.equal(readFileSync(files.hibernationImage).indexOf(Buffer.alloc(64, 0x5a)), -1, 'no guest page in the clear');
  const opened = await h.open(files);
  assert.ok(opened);
  try {
    assert.equal(opened.digest, chip.checkSnapshot(opened.fd).digest.toString('hex'));
    assert.ok(contents(opened.fd).equals(sealed));
  } finally {
    libc.close(opened.fd);
  }
  h.discard(files);
  assert.ok(!existsSync(files.hibernationImage), 'consumed by the resume');
  assert.equal(await h.open(files), undefined, 'no image: the instance boots');
});

test('an altered image, or one from another host, is discarded with the reason logged: the instance boots', async () => {
  const h = new Hibernations(chip, log);
  const { files } = await hibernated('i-0aaaaaaaaaaaaaaa2', h);
  const image = readFileSync(files.hibernationImage);
  image[image.length - 100] = (image[image.length - 100] ?? 0) ^ 0x10;
  writeFileSync(files.hibernationImage, image);
  lines.length = 0;
  const before = openFds();
  assert.equal(await h.open(files), undefined);
  assert.equal(openFds(), before, 'no descriptor left open');
  assert.ok(!existsSync(files.hibernationImage));
  assert.ok(lines.some((l) => l.includes('i-0aaaaaaaaaaaaaaa2') && l.includes('tag does not verify')), lines.join(''));

  // Another host: its key does not open this host's image.
  const other = new Hibernations(SecurityChip.init(path.join(dir, 'other-host')).chip, log);
  const moved = await hibernated('i-0aaaaaaaaaaaaaaa3', h);
  lines.length = 0;
  assert.equal(await other.open(moved.files), undefined);
  assert.ok(lines.some((l) => l.includes('boots instead of resuming')), lines.join(''));

  // Encrypted under this host's key but sealed by another chip: the tag verifies, the MAC does not.
  const foreign = new InstanceFiles(dir, 'i-0aaaaaaaaaaaaaaa4');
  mkdirSync(foreign.dir, { recursive: true });
  const { fd } = snapshotMemfd();
  try {
    SecurityChip.init(path.join(dir, 'other-host')).chip.sealSnapshot(fd);
    await writeHibernationImage(chip.hibernationKey(), foreign.instanceId, fd, foreign.hibernationImage);
  } finally {
    libc.close(fd);
  }
  lines.length = 0;
  assert.equal(await h.open(foreign), undefined);
  assert.ok(lines.some((l) => l.includes('not made on this host')), lines.join(''));
  assert.ok(!existsSync(foreign.hibernationImage));
});
