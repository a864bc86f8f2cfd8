// The guest programs of guest/bench (vsockperf, blkbench, tcpperf), built and packed into an initramfs after the base image,
// for tests that need them inside a guest (`azote run --initrd`).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/base/log.js';
import { CpioWriter } from '../../src/images/cpio.js';
import { ensureBaseInitramfs } from '../../src/images/initramfs.js';
import { projectRoot } from '../../src/images/paths.js';

/** The path of an initramfs holding the base image and /bin/blkbench, /bin/vsockperf, /bin/tcpperf. Made in a new temporary folder. */
export async function initrdWithGuestTools(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-tools-'));
  execFileSync('make', ['-s', '-C', path.join(projectRoot(), 'guest', 'bench'), `OUT=${dir}`]);
  const w = new CpioWriter();
  for (const tool of ['blkbench', 'vsockperf', 'tcpperf']) w.file(`bin/${tool}`, readFileSync(path.join(dir, tool)), 0o755);
  const file = path.join(dir, 'initrd.cpio');
  writeFileSync(file, Buffer.concat([readFileSync(await ensureBaseInitramfs(silentLogger)), w.finish()]));
  return file;
}
