// Disks end to end: `azote run --disk` as a user types it, on the real minimal Linux.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { closeDisk, openDisk } from '../../src/virtio/raw-file.js';
import { azote } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';

const BOOT_LIMIT = { timeoutMs: 300_000 };
const dir = mkdtempSync(path.join(tmpdir(), 'azote-disks-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('--disk: what the guest writes and flushes is in the file after the VM ends; a ,ro disk reads but refuses writes; 9 devices all work', async (t) => {
  if (!requireKvm(t)) return;
  const data = path.join(dir, 'data.img');
  const ro = path.join(dir, 'ro.img');
  writeFileSync(data, new Uint8Array(8 << 20));
  const pattern = randomBytes(64 << 10);
  writeFileSync(ro, Buffer.concat([pattern, Buffer.alloc((4 << 20) - pattern.length)]));
  // With virtio-rng, 6 more disks make 9 devices: the last sits on IOAPIC input 16, above the ISA lines.
  const extra = Array.from({ length: 6 }, (_, i) => {
    const file = path.join(dir, `extra${i}.img`);
    writeFileSync(file, Buffer.concat([Buffer.from(`extra-${String(i).padStart(2, '0')}\n`), Buffer.alloc(4096 - 9)]));
    return file;
  });
  // Single commands, no pipeline: see guest/kernel/README.md on pipelines under the nested KVM.
  const script = [
    'cat /sys/block/vda/size /sys/block/vda/ro /sys/block/vdb/ro',
    'dd if=/dev/vdb of=/dev/vda bs=4096 count=16 seek=1 conv=fsync 2>/dev/null || echo copy-failed',
    'dd if=/dev/zero of=/dev/vdb bs=512 count=1 2>/dev/null && echo ro-write-accepted',
    'dd if=/dev/vdc bs=9 count=1 2>/dev/null',
    'dd if=/dev/vdh bs=9 count=1 2>/dev/null',
    'echo done',
  ].join('; ');
  const r = await azote(['run', '--disk', data, '--disk', `${ro},ro`, ...extra.flatMap((e) => ['--disk', `${e},ro`]), '--', 'sh', '-c', script],
    BOOT_LIMIT);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `${(8 << 20) / 512}\n0\n1\nextra-00\nextra-05\ndone\n`);
  const after = readFileSync(data);
  assert.ok(after.subarray(4096, 4096 + pattern.length).equals(pattern), 'the copied 64 KiB is at offset 4096');
  assert.ok(after.subarray(0, 4096).every((b) => b === 0) && after.subarray(4096 + pattern.length).every((b) => b === 0));
  assert.ok(readFileSync(ro).subarray(0, pattern.length).equals(pattern), 'the read-only disk is unchanged');
});

test('--disk: a missing file, a disk in use by another VM, and a bad spec are one-line errors (status 125)', async () => {
  const missing = await azote(['run', '--disk', path.join(dir, 'missing.img'), '--', 'true']);
  assert.equal(missing.status, 125);
  assert.match(missing.stderr, /^azote: disk .*missing\.img does not exist/m);
  const busy = path.join(dir, 'busy.img');
  writeFileSync(busy, new Uint8Array(1 << 20));
  const held = openDisk(busy, false);
  try {
    const r = await azote(['run', '--disk', busy, '--', 'true']);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /^azote: disk .*busy\.img is in use by another VM/m);
  } finally {
    closeDisk(held);
  }
  const bad = await azote(['run', '--disk', `${busy},rx`, '--', 'true']);
  assert.equal(bad.status, 125);
  assert.match(bad.stderr, /is not PATH or PATH,ro/);
});
