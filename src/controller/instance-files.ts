// An instance's files in the data directory: its root disk (a sparse copy of its image, grown to the size asked
// for), its metadata disk (a newc archive the guest unpacks at boot: the simple channel that carries the instance's
// identity, key and user data until the VPC card's metadata service exists), its console log and its hypervisor's
// log (the process's stderr: a file, so that the hypervisor holds no socket for it).
import { closeSync, existsSync, mkdirSync, openSync, readSync, fstatSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
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
  /** The OpenSSH public key of the instance's key pair. */
  readonly publicKey?: string | undefined;
  /** User data, decoded. */
  readonly userData?: Buffer | undefined;
}

/** The newest part of the console that GetConsoleOutput returns. */
export const CONSOLE_TAIL = 64 * 1024;
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

  get console(): string {
    return path.join(this.dir, 'console.log');
  }

  /** Creates the root disk from `image` at `sizeGiB` (the file is sparse; ext4 is grown to fill it). */
  async createRoot(image: ImageRecord, sizeGiB: number): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const step = async (cmd: string, args: string[], what: string): Promise<void> => {
      const r = await runTool(cmd, args).catch((e: unknown) => ({ code: -1, stdout: '', stderr: (e as Error).message }));
      // e2fsck exits 1 when it corrected something (a fresh copy's timestamps): that is success here.
      if (r.code !== 0 && !(cmd === 'e2fsck' && r.code === 1)) {
        throw new AzoteError('RootDisk', `${what} for ${this.instanceId} failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`,
          `check free space in ${this.dir} and that e2fsprogs is installed`);
      }
    };
    await step('cp', ['--sparse=always', image.path, this.root], 'copying the image');
    const bytes = sizeGiB * 2 ** 30;
    if (bytes > image.sizeMiB * 2 ** 20) {
      truncateSync(this.root, bytes);
      await step('e2fsck', ['-f', '-y', this.root], 'checking the root file system');
      await step('resize2fs', ['-f', this.root], 'growing the root file system');
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
      .file('hostname', Buffer.from(m.instanceId));
    if (m.publicKey) w.file('public-key', Buffer.from(`${m.publicKey}\n`));
    if (m.userData) w.file('user-data', m.userData, 0o755);
    const archive = w.finish();
    // A disk is whole sectors.
    writeFileSync(this.metadata, Buffer.concat([archive, Buffer.alloc((SECTOR - (archive.length % SECTOR)) % SECTOR)]));
  }

  get hypervisorLog(): string {
    return path.join(this.dir, 'hypervisor.log');
  }

  /** A new, empty console log for a boot (EC2 shows the latest boot's output). */
  openConsole(): number {
    mkdirSync(this.dir, { recursive: true });
    return openSync(this.console, 'w', 0o600);
  }

  /** A new, empty hypervisor log for a boot. */
  openHypervisorLog(): number {
    mkdirSync(this.dir, { recursive: true });
    return openSync(this.hypervisorLog, 'w', 0o600);
  }

  consoleTail(): Buffer {
    return tail(this.console, CONSOLE_TAIL);
  }

  /** The newest `bytes` of the hypervisor's log. */
  hypervisorLogTail(bytes: number): string {
    return tail(this.hypervisorLog, bytes).toString('utf8');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
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
