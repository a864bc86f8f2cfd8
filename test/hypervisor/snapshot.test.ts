// Snapshots of a running Linux guest, in-process: saved when its init starts (the boot marker), then continued in a
// new VM from the file, which finishes the same command with the same output and status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/base/log.js';
import { AzoteError } from '../../src/base/errors.js';
import { detectKvmFlavour, type CpuidEntry } from '../../src/kvm/kvm.js';
import { cpuidDigest } from '../../src/hypervisor/snapshot/machine-state.js';
import { guestCmdline } from '../../src/images/cmdline.js';
import { ensureKernel } from '../../src/images/kernel.js';
import { ensureBaseInitramfs } from '../../src/images/initramfs.js';
import { runRequestArchive } from '../../src/images/run-request.js';
import { MicroVm, type VmConfig, type VmEnd } from '../../src/hypervisor/vm.js';
import { requireKvm } from '../framework/kvm.js';
import { backend } from '../framework/backend.js';
import { projectRoot } from '../../src/images/paths.js';
import { cardAtPath } from '../../src/hypervisor/card-link.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-snapshot-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The guest runs this; the sleep leaves the snapshot, taken at init's start, well before the output. */
const COMMAND = ['sh', '-c', 'echo "first $((6 * 7))"; sleep 1; echo second; exit 5'];

async function linuxConfig(command = COMMAND): Promise<Omit<VmConfig, 'output'>> {
  const kernel = readFileSync((await ensureKernel(silentLogger)).vmlinux);
  const base = readFileSync(await ensureBaseInitramfs(silentLogger));
  const request = runRequestArchive(command, {});
  const initrd = Buffer.concat([base, Buffer.alloc((4 - (base.length % 4)) % 4), request]);
  return {
    kernel, initrd, cmdline: guestCmdline({ nestedPvm: detectKvmFlavour() === 'nested-pvm', quiet: true }),
    vcpus: 1, memoryMiB: 128, log: silentLogger, rng: true,
  };
}

/** Runs a VM to its end, collecting its console. */
async function finish(vm: MicroVm, output: () => string): Promise<{ end: VmEnd; output: string }> {
  const end = await vm.run();
  return { end, output: output() };
}

test('a Linux guest saved as its init starts continues in a new VM from the file: same output, same status', async (t) => {
  if (!requireKvm(t)) return;
  const cfg = await linuxConfig();
  const file = path.join(dir, 'linux.snap');
  const fd = openSync(file, 'w+');
  let saved: Promise<unknown> | undefined;
  let coldOutput = '';
  const cold: MicroVm = new MicroVm({
    ...cfg, output: (b) => { coldOutput += Buffer.from(b).toString('latin1'); },
    onMarker: (v) => {
      // Saved at init's first instruction after the marker; the original goes on and finishes too.
      if (v === 1 && !saved) saved = cold.snapshot(fd);
    },
  });
  const coldRun = await finish(cold, () => coldOutput);
  assert.ok(saved, 'the marker came');
  const written = await saved as { bytes: number; pages: number };
  closeSync(fd);
  assert.deepEqual(coldRun.end, { kind: 'exit-status', status: 5 });
  assert.equal(coldRun.output, 'first 42\nsecond\n');
  assert.equal(statSync(file).size, written.bytes);
  assert.ok(written.pages < (128 << 20) / 4096, `only non-zero pages are stored (${written.pages})`);

  // Twice from the same file: each restore is a new VM of its own.
  for (let i = 0; i < 2; i++) {
    const rfd = openSync(file, 'r');
    let out = '';
    try {
      const restored = new MicroVm({ ...cfg, kernel: new Uint8Array(0), initrd: undefined, output: (b) => { out += Buffer.from(b).toString('latin1'); },
        restore: { fd: rfd } });
      const run = await finish(restored, () => out);
      assert.deepEqual(run.end, { kind: 'exit-status', status: 5 }, run.output);
      assert.equal(run.output, 'first 42\nsecond\n');
    } finally {
      closeSync(rfd);
    }
  }

  // A flipped byte in guest memory is refused before anything runs.
  const bytes = readFileSync(file);
  const damaged = path.join(dir, 'damaged.snap');
  const dfd = openSync(damaged, 'w+');
  const middle = Math.floor(bytes.length / 2);
  bytes[middle] = (bytes[middle] ?? 0) ^ 0x40;
  writeSync(dfd, bytes);
  try {
    assert.throws(() => new MicroVm({ ...cfg, output: () => undefined, restore: { fd: dfd } }),
      (e: unknown) => e instanceof AzoteError && e.code === 'SnapshotCorrupt');
  } finally {
    closeSync(dfd);
  }

  // Another shape is refused with what differs.
  const sfd = openSync(file, 'r');
  try {
    assert.throws(() => new MicroVm({ ...cfg, rng: false, output: () => undefined, restore: { fd: sfd } }),
      (e: unknown) => e instanceof AzoteError && e.code === 'BadSnapshotState' && /devices/.test(e.message));
  } finally {
    closeSync(sfd);
  }
});

test('the CPUID digest names features, not the host CPU that asked (APIC ids), and changes with a feature', () => {
  const leaf = (fn: number, ebx: number, edx: number): CpuidEntry => ({ function: fn, index: 0, flags: 0, eax: 1, ebx, ecx: 2, edx });
  const onCpu0 = [leaf(1, 0x00010800, 0x178bfbff), leaf(0xb, 0, 0)];
  const onCpu1 = [leaf(1, 0x01010800, 0x178bfbff), leaf(0xb, 0, 1)];
  assert.equal(cpuidDigest(onCpu0), cpuidDigest(onCpu1));
  assert.equal(cpuidDigest(onCpu0), cpuidDigest([...onCpu0].reverse()), 'order does not matter');
  assert.notEqual(cpuidDigest(onCpu0), cpuidDigest([leaf(1, 0x00010800, 0x178bfbfe), leaf(0xb, 0, 0)]));
});

test('a VM whose disk a block card serves: its rings pause for the snapshot and go on; a restored copy gets them from the card again', async (t) => {
  if (!requireKvm(t)) return;
  const volume = path.join(dir, 'card.img');
  writeFileSync(volume, new Uint8Array(4 << 20));
  const socket = `${path.join(dir, 'card.sock')}:vol-1`;
  const card = await backend(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block', '--socket', path.join(dir, 'card.sock'),
    '--volume', `vol-1=${volume}`], socket);
  // Each run writes its own block through the card, reads it back and says so.
  const script = 'printf "%4096s" "$1" > /tmp/p; dd if=/tmp/p of=/dev/vda bs=4096 seek="$2" oflag=direct conv=fsync 2>/dev/null && '
    + 'dd if=/dev/vda of=/tmp/r bs=4096 skip="$2" count=1 iflag=direct 2>/dev/null && cmp /tmp/p /tmp/r && echo "same $1"';
  try {
    const cfg = { ...await linuxConfig(['sh', '-c', script, 'sh', 'first', '1']), volumes: [cardAtPath(socket)] };
    const file = path.join(dir, 'card.snap');
    const fd = openSync(file, 'w+');
    let saved: Promise<unknown> | undefined;
    let out = '';
    const vm: MicroVm = new MicroVm({
      ...cfg, output: (b) => { out += Buffer.from(b).toString('latin1'); },
      // The kernel probed the disk already: the card holds the rings when the snapshot is taken.
      onMarker: (v) => { if (v === 1 && !saved) saved = vm.snapshot(fd); },
    });
    assert.deepEqual(await vm.run(), { kind: 'exit-status', status: 0 }, out);
    await saved;
    closeSync(fd);
    assert.equal(out, 'same first\n');

    const rfd = openSync(file, 'r');
    let again = '';
    try {
      const restored = new MicroVm({ ...cfg, kernel: new Uint8Array(0), initrd: undefined, restore: { fd: rfd },
        output: (b) => { again += Buffer.from(b).toString('latin1'); } });
      assert.deepEqual(await restored.run(), { kind: 'exit-status', status: 0 }, again);
    } finally {
      closeSync(rfd);
    }
    // The copy runs the command the snapshot holds: the same block again, through the card's rings it was given anew.
    assert.equal(again, 'same first\n');
    const onDisk = readFileSync(volume);
    assert.ok(onDisk.subarray(4096, 8192).equals(Buffer.from(`${' '.repeat(4091)}first`)), 'the block is on the volume');
  } finally {
    card.stop();
  }
});
