// Root file system images: ext4 written by `mke2fs -d` from a staging directory (no loop mount, no root needed),
// holding Debian's static busybox with all its applet links, our init as /sbin/init, and dropbear with the shared
// libraries it links (for SSH into instances). Images are content-addressed: the id is a hash of everything that
// goes in (package files, init, builder version, size), so a rebuild with nothing changed finds the image at once.
// The catalogue is <cache>/images: <id>.ext4, <id>.json (what it holds), and names.json (name -> id).
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import {
  chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { cacheDir } from './cache.js';
import { extractDeb, fetchDebianPackage } from './debian.js';
import { buildGuestInit } from './initramfs.js';
import { runTool } from './run-tool.js';
import { DHCP_SCRIPT, DHCP_SCRIPT_PATH } from './dhcp-client.js';
import { SSH_SERVER_PATH, SSH_SERVER_SCRIPT } from './ssh-server.js';

/** Bump when what goes into an image changes in a way its inputs do not show. */
const IMAGE_BUILDER_VERSION = 1;
/** The file system's size; the file is sparse, so unused space costs nothing on the host. */
const IMAGE_SIZE_MIB = 256;
export const DEFAULT_IMAGE = 'default';
/** Debian packages in the default image: busybox, and dropbear with each library it links. */
const PACKAGES = ['busybox-static', 'dropbear-bin', 'libc6', 'libcrypt1', 'libtomcrypt1', 'libtommath1', 'libgmp10', 'zlib1g'];
/** Dynamically linked programs in the image: each library they need (recursively) must be in it too. */
const LINKED_PROGRAMS = ['usr/sbin/dropbear', 'usr/bin/dbclient', 'usr/bin/dropbearkey'];
const LIBRARY_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib64'];
/** Parts of those packages a minimal guest has no use for. */
const PRUNED = ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'usr/share/lintian',
  'usr/share/bug', 'usr/lib/x86_64-linux-gnu/gconv', 'usr/share/i18n'];
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const execFileAsync = promisify(execFile);

export interface ImageRecord {
  readonly name: string;
  /** "img-" and the first 16 hex digits of the content hash. */
  readonly id: string;
  readonly path: string;
  readonly sizeMiB: number;
  readonly created: string;
  /** The Debian packages (file names, with versions) and the init it holds. */
  readonly contents: readonly string[];
}

function imagesDir(): string {
  return path.join(cacheDir(), 'images');
}

function readNames(): Record<string, string> {
  const file = path.join(imagesDir(), 'names.json');
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch (e) {
    throw new AzoteError('ImageCatalogue', `the image catalogue ${file} is unreadable: ${(e as Error).message}`,
      `delete ${file} and rebuild the images (azote image build)`);
  }
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

function record(id: string): ImageRecord | undefined {
  const meta = path.join(imagesDir(), `${id}.json`);
  const file = path.join(imagesDir(), `${id}.ext4`);
  if (!existsSync(meta) || !existsSync(file)) return undefined;
  return { ...(JSON.parse(readFileSync(meta, 'utf8')) as Omit<ImageRecord, 'path'>), path: file };
}

/** Every named image in the catalogue, by name. */
export function listImages(): ImageRecord[] {
  return Object.entries(readNames()).flatMap(([name, id]) => {
    const r = record(id);
    return r ? [{ ...r, name }] : [];
  }).sort((a, b) => a.name.localeCompare(b.name));
}

/** The image called `name` (or with that id). */
export function findImage(nameOrId: string): ImageRecord {
  const names = readNames();
  const id = names[nameOrId] ?? (nameOrId.startsWith('img-') ? nameOrId : undefined);
  const r = id === undefined ? undefined : record(id);
  if (!r) {
    throw new AzoteError('ImageNotFound', `no image called ${nameOrId}`,
      nameOrId === DEFAULT_IMAGE ? 'build it: azote image build' : 'see the images there are: azote image ls');
  }
  const name = Object.entries(names).find(([, v]) => v === r.id)?.[0] ?? r.name;
  return { ...r, name };
}

async function busyboxApplets(busybox: string): Promise<string[]> {
  try {
    const out = (await execFileAsync(busybox, ['--list-full'], { encoding: 'utf8' })).stdout;
    return out.split('\n').map((l) => l.trim()).filter(Boolean);
  } catch (e) {
    throw new AzoteError('BusyboxList', `cannot run busybox --list-full on this host: ${(e as Error).message}`,
      'build images on an x86-64 Linux host', { cause: e });
  }
}

/** Fills `root` with the default image's files. */
async function stage(root: string, debs: readonly string[], init: Uint8Array, log: Logger): Promise<void> {
  for (const deb of debs) {
    log.info(`unpacking ${path.basename(deb)}`);
    await extractDeb(deb, root);
  }
  for (const p of PRUNED) rmSync(path.join(root, p), { recursive: true, force: true });
  for (const d of ['dev', 'proc', 'sys', 'run', 'mnt', 'home', 'var/log', 'etc/dropbear', 'sbin', 'usr/sbin', 'usr/bin']) {
    mkdirSync(path.join(root, d), { recursive: true });
  }
  mkdirSync(path.join(root, 'tmp'), { mode: 0o1777 });
  chmodSync(path.join(root, 'tmp'), 0o1777);
  mkdirSync(path.join(root, 'root'), { mode: 0o700 });
  // Applet links where no package put a real program.
  const busybox = path.join(root, 'bin', 'busybox');
  if (!existsSync(busybox)) throw new AzoteError('BusyboxMissing', 'busybox-static has no bin/busybox', 'delete <cache>/debs/busybox-static_* and rebuild');
  for (const applet of await busyboxApplets(busybox)) {
    const at = path.join(root, applet);
    if (applet === 'sbin/init' || existsSync(at)) continue;
    mkdirSync(path.dirname(at), { recursive: true });
    symlinkSync('/bin/busybox', at);
  }
  rmSync(path.join(root, 'sbin', 'init'), { force: true });
  writeFileSync(path.join(root, 'sbin', 'init'), init, { mode: 0o755 });
  writeFileSync(path.join(root, SSH_SERVER_PATH), SSH_SERVER_SCRIPT, { mode: 0o755 });
  mkdirSync(path.join(root, path.dirname(DHCP_SCRIPT_PATH)), { recursive: true });
  writeFileSync(path.join(root, DHCP_SCRIPT_PATH), DHCP_SCRIPT, { mode: 0o755 });
  const etc = (name: string, text: string, mode = 0o644): void => writeFileSync(path.join(root, 'etc', name), text, { mode });
  etc('passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  etc('group', 'root:x:0:\n');
  etc('shadow', 'root:*:19000:0:99999:7:::\n', 0o600);
  etc('shells', '/bin/sh\n');
  etc('hostname', 'azote\n');
  etc('hosts', '127.0.0.1\tlocalhost\n127.0.1.1\tazote\n');
  etc('fstab', '/dev/vda\t/\text4\tdefaults\t0\t1\n');
  etc('os-release', [
    'NAME="Azote guest"', 'ID=azote', `VERSION_ID=${IMAGE_BUILDER_VERSION}`,
    `PRETTY_NAME="Azote guest image ${IMAGE_BUILDER_VERSION} (busybox and dropbear from Debian)"`,
    '',
  ].join('\n'));
}

/** The NEEDED entries of an ELF file's dynamic section (readelf from binutils). */
async function neededLibraries(file: string): Promise<string[]> {
  let out: string;
  try {
    out = (await execFileAsync('readelf', ['-d', '-W', file], { encoding: 'utf8' })).stdout;
  } catch (e) {
    throw new AzoteError('MissingTool', `cannot run readelf on ${file}: ${(e as Error).message}`, 'install binutils (apt-get install binutils)', { cause: e });
  }
  return [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] ?? '');
}

/** Checks that every library the image's programs need, and those they need in turn, is in the image. */
async function checkLibraries(root: string): Promise<void> {
  const seen = new Set<string>();
  const queue = LINKED_PROGRAMS.map((p) => path.join(root, p));
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    for (const lib of await neededLibraries(file)) {
      if (seen.has(lib)) continue;
      seen.add(lib);
      const found = LIBRARY_DIRS.map((d) => path.join(root, d, lib)).find((p) => existsSync(p));
      if (!found) {
        throw new AzoteError('ImageBuild', `${path.relative(root, file)} needs ${lib}, which no package of the image provides`,
          'add the Debian package that holds it to PACKAGES in src/images/rootfs.ts');
      }
      queue.push(found);
    }
  }
}

/**
 * Builds the default image (or finds it, when nothing that goes in has changed) and names it `name`.
 * Progress goes to `log`.
 */
export async function buildImage(name: string, log: Logger): Promise<ImageRecord & { reused: boolean }> {
  if (!NAME.test(name)) {
    throw new AzoteError('BadImageName', `${JSON.stringify(name)} is not an image name`, 'use lower-case letters, digits, ".", "_" and "-"');
  }
  const init = readFileSync(await buildGuestInit(log));
  const debs: string[] = [];
  for (const p of PACKAGES) debs.push(await fetchDebianPackage(p, log));
  const h = createHash('sha256').update(`azote-image ${IMAGE_BUILDER_VERSION} ${IMAGE_SIZE_MIB}\0`).update(init).update(SSH_SERVER_SCRIPT).update(DHCP_SCRIPT);
  for (const d of debs) h.update(`\0${path.basename(d)}`);
  const id = `img-${h.digest('hex').slice(0, 16)}`;
  const dir = imagesDir();
  mkdirSync(dir, { recursive: true });
  const contents = [...debs.map((d) => decodeURIComponent(path.basename(d, '.deb'))), `init ${createHash('sha256').update(init).digest('hex').slice(0, 12)}`];

  let reused = true;
  if (!record(id)) {
    reused = false;
    const work = mkdtempSync(path.join(dir, `.build-${id}-`));
    try {
      const root = path.join(work, 'root');
      mkdirSync(root);
      await stage(root, debs, init, log);
      await checkLibraries(root);
      const out = path.join(work, 'image.ext4');
      log.info(`writing the ext4 file system (${IMAGE_SIZE_MIB} MiB, sparse) with mke2fs -d`);
      let r;
      try {
        r = await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', root, '-L', 'azote-root', '-m', '0',
          '-E', 'root_owner=0:0', out, `${IMAGE_SIZE_MIB}M`]);
      } catch (e) {
        throw new AzoteError('MissingTool', `cannot run mke2fs: ${(e as Error).message}`, 'install e2fsprogs (apt-get install e2fsprogs)', { cause: e });
      }
      if (r.code !== 0) {
        throw new AzoteError('ImageBuild', `mke2fs failed: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`,
          'check free space in the cache directory (df -h)');
      }
      renameSync(out, path.join(dir, `${id}.ext4`));
      writeJsonAtomic(path.join(dir, `${id}.json`), { name, id, sizeMiB: IMAGE_SIZE_MIB, created: new Date().toISOString(), contents });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const names = readNames();
  names[name] = id;
  writeJsonAtomic(path.join(dir, 'names.json'), names);
  const pruned = pruneImages();
  if (pruned > 0) log.info(`removed ${pruned} image file(s) no name points to any more`);
  return { ...findImage(name), reused };
}

/** Removes image files no name points to (left by earlier builds). */
function pruneImages(): number {
  const kept = new Set(Object.values(readNames()));
  let removed = 0;
  const dir = imagesDir();
  if (!existsSync(dir)) return 0;
  for (const f of readdirSync(dir)) {
    const m = /^(img-[0-9a-f]{16})\.(ext4|json)$/.exec(f);
    if (m && !kept.has(m[1] ?? '')) {
      rmSync(path.join(dir, f), { force: true });
      removed++;
    }
  }
  return removed;
}

/** Bytes the image file really occupies on the host (it is sparse). */
export function allocatedBytes(file: string): number {
  return statSync(file).blocks * 512;
}

/**
 * A private, writable copy of an image for one VM, in a new directory under `parent` (sparse: only the image's
 * used blocks are copied). The caller removes the directory when the VM has ended.
 */
export async function instanceCopy(image: ImageRecord, parent: string): Promise<{ dir: string; path: string }> {
  const dir = mkdtempSync(path.join(parent, 'azote-root-'));
  const copy = path.join(dir, 'root.ext4');
  const r = await runTool('cp', ['--sparse=always', image.path, copy]).catch((e: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw new AzoteError('MissingTool', `cannot run cp: ${(e as Error).message}`, 'install coreutils');
  });
  if (r.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new AzoteError('ImageCopy', `copying image ${image.name} failed: ${r.stderr.trim()}`, `check free space in ${parent}`);
  }
  return { dir, path: copy };
}
