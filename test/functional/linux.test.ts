// End to end with the real minimal Linux: `azote run` as a user types it. Each boot takes a while under a nested
// KVM, so each test boots once and checks one promise of `azote run`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/base/log.js';
import { detectKvmFlavour } from '../../src/kvm/kvm.js';
import { guestCmdline } from '../../src/images/cmdline.js';
import { ensureKernel } from '../../src/images/kernel.js';
import { azote } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';

/** A boot that has not ended by then has hung: fail instead of waiting for the test runner. */
const BOOT_LIMIT = { timeoutMs: 300_000 };

test('run -- uname -r prints the guest kernel\'s version', async (t) => {
  if (!requireKvm(t)) return;
  const kernel = await ensureKernel(silentLogger);
  const r = await azote(['run', '--', 'uname', '-r'], BOOT_LIMIT);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `${kernel.version}\n`);
});

test('the command\'s output and exit status reach the host', async (t) => {
  if (!requireKvm(t)) return;
  const r = await azote(['run', '-e', 'WHO=azote guest', '--', 'sh', '-c', 'echo "out $WHO"; echo err >&2; exit 7'], BOOT_LIMIT);
  assert.equal(r.status, 7, r.stderr);
  assert.equal(r.stdout, 'out azote guest\nerr\n', 'stdout and stderr, byte for byte, on the serial console');
});

test('--vcpus 2: the guest sees two CPUs', async (t) => {
  if (!requireKvm(t)) return;
  const r = await azote(['run', '--vcpus', '2', '--', 'sh', '-c', 'nproc'], BOOT_LIMIT);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '2\n');
});

test('--mem 256: the guest\'s MemTotal is 256 MiB less what the kernel keeps', async (t) => {
  if (!requireKvm(t)) return;
  const r = await azote(['run', '--mem', '256', '--', 'grep', 'MemTotal', '/proc/meminfo'], BOOT_LIMIT);
  assert.equal(r.status, 0, r.stderr);
  const m = /^MemTotal:\s+(\d+) kB$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const kib = Number(m[1]);
  assert.ok(kib > 230 * 1024 && kib <= 256 * 1024, `MemTotal ${kib} kB`);
});

test('the shell reads what the host sends on the serial console (IRQ 4), even before it is ready', async (t) => {
  if (!requireKvm(t)) return;
  const r = await azote(['run'], { ...BOOT_LIMIT, input: 'echo shell-says $((6*7))\nexit 3\n' });
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stdout, /^shell-says 42\r$/m);
});

test('virtio-rng: the guest\'s hardware RNG is the host\'s CSPRNG, through the virtio-mmio transport', async (t) => {
  if (!requireKvm(t)) return;
  // Single commands, no pipeline: see guest/kernel/README.md on pipelines under the nested KVM.
  const r = await azote(['run', '--', 'sh', '-c',
    'cat /sys/class/misc/hw_random/rng_current; head -c 32 /dev/hwrng > /tmp/r; wc -c < /tmp/r; od -An -tx1 -v /tmp/r'], BOOT_LIMIT);
  assert.equal(r.status, 0, r.stderr);
  const [current, count, ...hex] = r.stdout.trim().split('\n');
  assert.equal(current, 'virtio_rng.0');
  assert.equal(count?.trim(), '32');
  const bytes = hex.join(' ').trim().split(/\s+/);
  assert.equal(bytes.length, 32);
  assert.ok(new Set(bytes).size > 8, `random-looking bytes: ${bytes.join(' ')}`);
});

test('a guest kernel that panics: non-zero status and a one-line reason', async (t) => {
  if (!requireKvm(t)) return;
  const cmdline = `${guestCmdline({ nestedPvm: detectKvmFlavour() === 'nested-pvm', quiet: true })} rdinit=/nope`;
  const r = await azote(['run', '--cmdline', cmdline, '--', 'true'], BOOT_LIMIT);
  assert.equal(r.status, 125);
  assert.match(r.stderr, /^azote: the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs/m);
});
