// `azote image build` and `azote image ls`: the catalogue of root file system images.
import type { Logger } from '../base/log.js';
import { allocatedBytes, buildImage, DEFAULT_IMAGE, listImages } from '../images/rootfs.js';

export async function imageBuild(name: string | undefined, log: Logger): Promise<void> {
  const started = performance.now();
  const image = await buildImage(name ?? DEFAULT_IMAGE, log);
  const took = ((performance.now() - started) / 1000).toFixed(1);
  process.stdout.write(`${image.name} ${image.id} ${image.reused ? 'unchanged' : 'built'} in ${took} s: ${image.path}\n`);
}

export function imageList(): void {
  const rows = listImages().map((i) => [i.name, i.id, `${i.sizeMiB} MiB`,
    `${(allocatedBytes(i.path) / 2 ** 20).toFixed(1)} MiB`, i.created.replace('T', ' ').slice(0, 19), i.contents.join(', ')]);
  const header = ['NAME', 'IMAGE ID', 'SIZE', 'ON DISK', 'CREATED', 'CONTENTS'];
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  for (const r of all) {
    process.stdout.write(`${r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] ?? 0))).join('  ')}\n`);
  }
}
