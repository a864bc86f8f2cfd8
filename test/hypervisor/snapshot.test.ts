// Snapshots of a running Linux guest, in-process: saved when its init starts (the boot marker), then continued in a
// new VM from the file, which finishes the same command with the same output and status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
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

const dir = mkdtempSync(path.join(tmpdir(), 'azote-snapshot-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The guest runs this; the sleep leaves the snapshot, taken at init's start, well before the output. */
const COMMAND = ['sh', '-c', 'echo "first $((6 * 7))"; sleep 1; echo second; exit 5'];

async function linuxConfig(): Promise<Omit<VmConfig, 'output'>> {
  const kernel = readFileSync((await ensureKernel(silentLogger)).vmlinux);
  const base = readFileSync(await ensureBaseInitramfs(silentLogger));
  const request = runRequestArchive(COMMAND, {});
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
