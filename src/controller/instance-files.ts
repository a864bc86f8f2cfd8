// An instance's files in the data directory: its root disk (a sparse copy of its image, grown to the size asked
// for, built under a temporary name and renamed when whole: its existence says it is complete), its metadata disk (a
// newc archive the guest unpacks at boot: the simple channel that carries the instance's identity, key and user
// data until the VPC card's metadata service exists), its console log and its hypervisor's log (the process's stdout
// and stderr: files, so that the hypervisor holds no socket for them). The hypervisor writes the logs through
// descriptors it inherited, opened to append: the controller caps them by copying a full one to NAME.1 and
// emptying it, and the hypervisor's next write lands at the start again.
import {
  closeSync, constants, copyFileSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, statSync,
  truncateSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import { CpioWriter } from '../images/cpio.js';
import type { ImageRecord } from '../images/rootfs.js';
import { runTool } from '../images/run-tool.js';

/** What the guest learns about itself at boot (EC2's instance metadata, in part). */
export interface InstanceMetadata {
  readonly instanceId: string;
  readonly amiId: string;
  readonly instanceType: string;
  readonly launchIndex: number;
  /** The guest's host name: ip-A-B-C-D from its private address, as EC2's ip-name host names. */
  readonly hostname: string;
  /** The OpenSSH public key of the instance's key pair. */
  readonly publicKey?: string | undefined;
  /** User data, decoded. */
  readonly userData?: Buffer | undefined;
  /** What the guest's memory is on this host (secret or memfd: isolation/memory-protection.ts). */
  readonly guestMemory?: string | undefined;
}

/** The newest part of the console that GetConsoleOutput returns. */
export const CONSOLE_TAIL = 64 * 1024;
/** The size at which a log is rotated: each log keeps at most about twice this (the file and its .1). */
export const LOG_CAP = 8 * 2 ** 20;
/** A log opened for a new boot: emptied, and appended to (so that emptying it later sends writes to its start). */
const LOG_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_APPEND;
const SECTOR = 512;

export class InstanceFiles {
  readonly dir: string;

  constructor(dataDir: string, readonly instanceId: string) {
    this.dir = path.join(dataDir, 'instances', instanceId);
  }

  get root(): string {
    return path.join(this.dir, 'root.ext4');
  }

  get metadata(): string {
    return path.join(this.dir, 'metadata.cpio');
  }

  /** The instance's hibernation image (hibernation-image.ts): encrypted, present from a hibernation to the resume. */
  get hibernationImage(): string {
    return path.join(this.dir, 'hibernation.img');
  }

  get console(): string {
    return path.join(this.dir, 'console.log');
  }

  /**
   * Creates the root disk from `image` at `sizeGiB` (the file is sparse; ext4 is grown to fill it). It is built
   * under a temporary name and renamed when whole and on disk, so that a failure or a crash leaves no root that
   * looks complete, and the next launch builds it again.
   */
  async createRoot(image: ImageRecord, sizeGiB: number): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const building = `${this.root}.building`;
    const step = async (cmd: string, args: string[], what: string): Promise<void> => {
      const r = await runTool(cmd, args).catch((e: unknown) => ({ code: -1, stdout: '', stderr: (e as Error).message }));
      // e2fsck exits 1 when it corrected something (a fresh copy's timestamps): that is success here.
      if (r.code !== 0 && !(cmd === 'e2fsck' && r.code === 1)) {
        throw new AzoteError('RootDisk', `${what} for ${this.instanceId} failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`,
          `check free space in ${this.dir} and that e2fsprogs is installed`);
      }
    };
    try {
      rmSync(building, { force: true });
      await step('cp', ['--sparse=always', image.path, building], 'copying the image');
      const bytes = sizeGiB * 2 ** 30;
      if (bytes > image.sizeMiB * 2 ** 20) {
        truncateSync(building, bytes);
        await step('e2fsck', ['-f', '-y', building], 'checking the root file system');
        await step('resize2fs', ['-f', building], 'growing the root file system');
      }
      syncFile(building);
      renameSync(building, this.root);
      syncFile(this.dir);
    } catch (e) {
      rmSync(building, { force: true });
      throw e;
    }
  }

  get hasRoot(): boolean {
    return existsSync(this.root);
  }

  writeMetadata(m: InstanceMetadata): void {
    mkdirSync(this.dir, { recursive: true });
    const w = new CpioWriter()
      .file('instance-id', Buffer.from(m.instanceId))
      .file('ami-id', Buffer.from(m.amiId))
      .file('instance-type', Buffer.from(m.instanceType))
      .file('ami-launch-index', Buffer.from(String(m.launchIndex)))
      .file('hostname', Buffer.from(m.hostname));
    if (m.guestMemory) w.file('guest-memory', Buffer.from(`${m.guestMemory}\n`));
    if (m.publicKey) w.file('public-key', Buffer.from(`${m.publicKey}\n`));
    if (m.userData) w.file('user-data', m.userData, 0o755);
    const archive = w.finish();
    // A disk is whole sectors.
    writeFileSync(this.metadata, Buffer.concat([archive, Buffer.alloc((SECTOR - (archive.length % SECTOR)) % SECTOR)]));
  }

  get hypervisorLog(): string {
    return path.join(this.dir, 'hypervisor.log');
  }

  /**
   * A new, empty console log for a boot (EC2 shows the latest boot's output); the same log, appended to, for a VM
   * resumed from hibernation (`resumed`), which is the same boot going on.
   */
  openConsole(resumed = false): number {
    mkdirSync(this.dir, { recursive: true });
    if (resumed) return openSync(this.console, LOG_FLAGS & ~constants.O_TRUNC, 0o600);
    rmSync(rotated(this.console), { force: true });
    return openSync(this.console, LOG_FLAGS, 0o600);
  }

  /** A new, empty hypervisor log for a boot. */
  openHypervisorLog(): number {
    mkdirSync(this.dir, { recursive: true });
    rmSync(rotated(this.hypervisorLog), { force: true });
    return openSync(this.hypervisorLog, LOG_FLAGS, 0o600);
  }

  /**
   * Rotates each log that has grown past `cap` bytes: copied to NAME.1 (replacing the previous), then emptied.
   * What the hypervisor writes between the copy and the emptying is lost: a few bytes of a log already that long.
   */
  capLogs(cap = LOG_CAP): void {
    for (const file of [this.console, this.hypervisorLog]) {
      if (sizeOf(file) <= cap) continue;
      copyFileSync(file, rotated(file));
      truncateSync(file, 0);
    }
  }

  /** The newest CONSOLE_TAIL bytes of the console, reaching into the rotated part when the current one is shorter. */
  consoleTail(): Buffer {
    const current = tail(this.console, CONSOLE_TAIL);
    if (current.length === CONSOLE_TAIL) return current;
    return Buffer.concat([tail(rotated(this.console), CONSOLE_TAIL - current.length), current]);
  }

  /** The newest `bytes` of the hypervisor's log. */
  hypervisorLogTail(bytes: number): string {
    return tail(this.hypervisorLog, bytes).toString('utf8');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const rotated = (file: string): string => `${file}.1`;

function sizeOf(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}

/** Flushes a file or a directory (a rename within it) to disk. */
function syncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function tail(file: string, most: number): Buffer {
  if (!existsSync(file)) return Buffer.alloc(0);
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, most);
    const out = Buffer.alloc(length);
    readSync(fd, out, 0, length, size - length);
    return out;
  } finally {
    closeSync(fd);
  }
}
