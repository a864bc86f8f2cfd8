// `azote setup`: everything a first run would build, done ahead of time; with --tests, also what the test suite
// needs from the host. Idempotent: when all is there it only checks (about a second).
import type { Logger } from '../base/log.js';
import { ensurePackages, TEST_PACKAGES } from '../images/host-packages.js';
import { ensureBaseInitramfs } from '../images/initramfs.js';
import { ensureKernel } from '../images/kernel.js';
import { buildImage, DEFAULT_IMAGE } from '../images/rootfs.js';

export async function setup(opts: { tests: boolean }, log: Logger): Promise<void> {
  const started = performance.now();
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  if (opts.tests) {
    const installed = await ensurePackages(TEST_PACKAGES, log);
    say(installed.length > 0 ? `host packages: installed ${installed.join(', ')}` : 'host packages: all present');
  }
  const k = await ensureKernel(log);
  say(`kernel ${k.version}: ${k.vmlinux}`);
  const i = await ensureBaseInitramfs(log);
  say(`initramfs: ${i}`);
  if (opts.tests) {
    const image = await buildImage(DEFAULT_IMAGE, log);
    say(`image ${image.name} ${image.id} (${image.reused ? 'unchanged' : 'built'}): ${image.path}`);
  }
  say(`setup done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
