// The host's controller: the one process that starts hypervisors and cards, and the control plane's only way to
// act on the host. Each instance is a hypervisor process (src/hypervisor/instance-main.ts) forked with an IPC
// channel as its only line; its console goes to the instance's console log. The controller also runs this host's
// network card, which every instance's eth0 is attached to, and restarts it if it dies (instances reconnect and
// keep their addresses). Launching verified bundles in jails is the security chip's and the next issue's work.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { guestCmdline } from '../images/cmdline.js';
import { ensureKernel } from '../images/kernel.js';
import type { ImageRecord } from '../images/rootfs.js';
import { runRequestParams } from '../images/run-request.js';
import type { ControllerMessage, HypervisorMessage } from '../hypervisor/instance-protocol.js';
import { detectKvmFlavour } from '../kvm/kvm.js';
import { SecurityChip, type VerifiedComponent } from '../security-chip/chip.js';
import { CardProcess } from './card-process.js';
import { InstanceCgroup } from './cgroup.js';
import { coreGroups } from './cores.js';
import { controllerDigest, provisionDevelopmentHost } from './components.js';
import { INSTANCE_ARGV } from './instance-boot.js';
import { InstanceFiles, type InstanceMetadata } from './instance-files.js';

/** Host memory kept for the host itself (Node, cards, page cache) when offering memory to instances. */
const HOST_RESERVED_MIB = 2048;
/** How long a stopping instance's guest gets before its hypervisor is killed. */
const STOP_GRACE_MS = 10_000;

export interface HostCapacity {
  /** Hardware threads instances may use. */
  readonly cores: number;
  /** The same threads, grouped by physical core (SMT siblings go together). */
  readonly coreGroups: readonly number[][];
  readonly memoryMiB: number;
}

export interface LaunchRequest {
  readonly instanceId: string;
  readonly image: ImageRecord;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly rootGiB: number;
  readonly metadata: InstanceMetadata;
  /** Volumes attached to the instance (ids), in order: each served by a block card of its own while it runs. */
  readonly volumes: readonly string[];
  /** The host CPUs the instance's hypervisor (and so its vCPUs) may run on: its own physical cores. */
  readonly cores: readonly number[];
}

export type InstanceEnd =
  /** The guest powered off (its init ended the machine with a status), or the VM was stopped. */
  | { readonly kind: 'shutdown' | 'stopped'; readonly detail: string }
  /** The guest reset the machine: an instance reboots. */
  | { readonly kind: 'reboot'; readonly detail: string }
  /** The guest or its hypervisor failed. */
  | { readonly kind: 'failed'; readonly detail: string };

export interface InstanceEvents {
  created(privateIp: string | undefined, mac: string | undefined): void;
  booted(): void;
  ended(end: InstanceEnd): void;
}

export interface ControllerOptions {
  readonly dataDir: string;
  readonly log: Logger;
  /** The instances' network (the network card's subnet). */
  readonly subnet: string;
  /** A TAP uplink from the instances' network to the host (needs CAP_NET_ADMIN). */
  readonly uplink?: string | undefined;
  /** The security chip's directory (keys, component store, registers); default DATA_DIR/host. */
  readonly hostDir?: string | undefined;
}

interface Running {
  readonly child: ChildProcess;
  stopping: NodeJS.Timeout | undefined;
}

export class Controller {
  readonly capacity: HostCapacity = (() => {
    const groups = coreGroups();
    return { cores: groups.flat().length, coreGroups: groups, memoryMiB: Math.max(0, Math.floor(totalmem() / 2 ** 20) - HOST_RESERVED_MIB) };
  })();
  private readonly running = new Map<string, Running>();
  /** Instances whose disks are being prepared; a stop before their hypervisor starts cancels the launch. */
  private readonly preparing = new Map<string, { cancelled: boolean; done: Promise<unknown> }>();
  private card: CardProcess | undefined;
  private closing = false;
  readonly netSocket: string;

  private constructor(private readonly o: ControllerOptions, private readonly kernel: string, readonly chip: SecurityChip) {
    this.netSocket = path.join(o.dataDir, 'net.sock');
  }

  /**
   * Starts the host: the security chip's registers begin again (a host start) with the controller's own code
   * measured first, the development host's components are brought up to date, and the network card is verified,
   * measured and started.
   */
  static async start(o: ControllerOptions): Promise<Controller> {
    const kernel = (await ensureKernel(o.log)).vmlinux;
    const { chip } = SecurityChip.init(o.hostDir ?? path.join(o.dataDir, 'host'));
    provisionDevelopmentHost(chip, o.log);
    chip.boot();
    const self = controllerDigest();
    chip.measure({ name: 'controller', version: self.version, build: 0, digest: self.digest });
    const c = new Controller(o, kernel, chip);
    const args = ['--socket', c.netSocket, '--subnet', o.subnet, ...(o.uplink ? ['--uplink', o.uplink] : [])];
    c.card = await CardProcess.start('network', () => chip.admit('card-net').entryPath, args, c.netSocket, o.log).catch((e: unknown) => {
      throw new AzoteError('NetCard', errorMessage(e), o.uplink ? 'the uplink needs CAP_NET_ADMIN: run as root, or start without an uplink' : undefined);
    });
    return c;
  }

  volumeFile(volumeId: string): string {
    return path.join(this.o.dataDir, 'volumes', `${volumeId}.img`);
  }

  /** A new volume: a sparse raw file of `sizeGiB`. */
  createVolume(volumeId: string, sizeGiB: number): void {
    mkdirSync(path.join(this.o.dataDir, 'volumes'), { recursive: true, mode: 0o700 });
    const fd = openSync(this.volumeFile(volumeId), 'wx', 0o600);
    try {
      ftruncateSync(fd, sizeGiB * 2 ** 30);
    } finally {
      closeSync(fd);
    }
  }

  deleteVolume(volumeId: string): void {
    rmSync(this.volumeFile(volumeId), { force: true });
  }

  /** Starts a block card for each volume; their vhost-user sockets, in order. */
  private async volumeCards(volumes: readonly string[]): Promise<CardProcess[]> {
    const dir = path.join(this.o.dataDir, 'cards');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const cards: CardProcess[] = [];
    try {
      for (const v of volumes) {
        const base = path.join(dir, `${v}.sock`);
        cards.push(await CardProcess.start(`volume ${v}`, () => this.chip.admit('card-block').entryPath,
          ['--socket', base, '--volume', `${v}=${this.volumeFile(v)}`], `${base}:${v}`, this.o.log));
      }
    } catch (e) {
      for (const c of cards) c.stop();
      throw e;
    }
    return cards;
  }

  files(instanceId: string): InstanceFiles {
    return new InstanceFiles(this.o.dataDir, instanceId);
  }

  /** Whether the instance has a hypervisor, or is about to. */
  isRunning(instanceId: string): boolean {
    return this.running.has(instanceId) || this.preparing.has(instanceId);
  }

  /** Prepares the instance's disks (the root only on first launch) and starts its hypervisor. */
  async launch(req: LaunchRequest, events: InstanceEvents): Promise<void> {
    if (this.isRunning(req.instanceId)) throw new Error(`instance ${req.instanceId} is running already`);
    const files = this.files(req.instanceId);
    const work = (async () => {
      if (!files.hasRoot) await files.createRoot(req.image, req.rootGiB);
      files.writeMetadata(req.metadata);
      const cards = await this.volumeCards(req.volumes);
      try {
        // Nothing of the hypervisor runs unless the chip verified and measured it just now.
        return { cards, hypervisor: this.chip.admit('hypervisor') };
      } catch (e) {
        for (const c of cards) c.stop();
        throw e;
      }
    })();
    const prep = { cancelled: false, done: work.catch(() => undefined) };
    this.preparing.set(req.instanceId, prep);
    let cards: CardProcess[];
    let hypervisor: VerifiedComponent;
    try {
      ({ cards, hypervisor } = await work);
    } finally {
      this.preparing.delete(req.instanceId);
    }
    if (prep.cancelled || this.closing) {
      for (const c of cards) c.stop();
      events.ended({ kind: 'stopped', detail: 'stopped before its VM started' });
      return;
    }
    const cmdline = [guestCmdline({ nestedPvm: detectKvmFlavour() === 'nested-pvm', quiet: false }),
      'root=/dev/vda', 'rw', 'rootfstype=ext4', ...runRequestParams(INSTANCE_ARGV)].join(' ');
    const consoleFd = files.openConsole();
    const cgroup = InstanceCgroup.create(req.instanceId, { memoryMiB: req.memoryMiB, vcpus: req.vcpus }, this.o.log);
    let child: ChildProcess;
    try {
      // A network namespace of its own with a loopback that is down: the hypervisor cannot reach any address (its
      // cards are Unix sockets on the file system, which namespaces do not divide). Pinned to its own cores.
      const jail = process.getuid?.() === 0 ? ['unshare', '--net', '--'] : ['unshare', '--user', '--map-root-user', '--net', '--'];
      child = spawn(jail[0] ?? 'unshare', [...jail.slice(1), 'taskset', '--cpu-list', req.cores.join(','), process.execPath,
        hypervisor.entryPath, '--instance', req.instanceId], { stdio: ['ignore', consoleFd, 'pipe', 'ipc'] });
    } finally {
      closeSync(consoleFd);
    }
    if (child.pid !== undefined) {
      try {
        cgroup?.add(child.pid);
      } catch (e) {
        child.kill('SIGKILL');
        this.o.log.error('the hypervisor could not be put in its control group; it was killed', { instance: req.instanceId, why: (e as Error).message });
      }
    }
    const entryState: Running = { child, stopping: undefined };
    this.running.set(req.instanceId, entryState);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4096); });
    let ended: InstanceEnd | undefined;
    child.on('message', (m: HypervisorMessage) => {
      if (m.kind === 'created') events.created(m.privateIp, m.mac);
      else if (m.kind === 'booted') events.booted();
      else if (m.kind === 'ended') {
        ended = m.end === 'exit-status' ? { kind: 'shutdown', detail: `the guest powered off (status ${m.detail})` }
          : m.end === 'reset' ? { kind: 'reboot', detail: 'the guest rebooted' }
            : m.end === 'stopped' ? { kind: 'stopped', detail: '' } : { kind: 'failed', detail: m.detail };
      }
    });
    let over = false;
    const finish = (fallback: InstanceEnd): void => {
      if (over) return;
      over = true;
      for (const c of cards) c.stop();
      cgroup?.remove();
      clearTimeout(entryState.stopping);
      this.running.delete(req.instanceId);
      const end = ended ?? fallback;
      this.o.log.info('instance hypervisor ended', { instance: req.instanceId, end: end.kind, detail: end.detail });
      events.ended(end);
    };
    child.on('exit', (code, signal) => finish(entryState.stopping !== undefined || signal === 'SIGKILL' && this.closing
      ? { kind: 'stopped', detail: '' }
      : { kind: 'failed', detail: `the hypervisor exited (${signal ?? `status ${code}`}): ${stderr.trim().split('\n').slice(-1)[0] ?? ''}` }));
    // The jail's tools missing, or no process at all: the launch fails with the reason.
    child.on('error', (e) => finish({ kind: 'failed', detail: `the hypervisor could not be started: ${e.message}` }));
    const launch: ControllerMessage = {
      kind: 'launch', kernel: this.kernel, cmdline, vcpus: req.vcpus, memoryMiB: req.memoryMiB,
      disks: [{ path: files.root, readOnly: false }, { path: files.metadata, readOnly: true }], netCard: this.netSocket,
      volumes: cards.map((c) => c.socket),
    };
    if (child.connected) child.send(launch);
    this.o.log.info('instance hypervisor started', {
      instance: req.instanceId, pid: child.pid, vcpus: req.vcpus, memoryMiB: req.memoryMiB, cores: req.cores.join(','), build: hypervisor.build,
    });
  }

  /** Asks the instance's hypervisor to stop the VM; kills it if it has not ended after the grace time. */
  stop(instanceId: string): void {
    const prep = this.preparing.get(instanceId);
    if (prep) prep.cancelled = true;
    const r = this.running.get(instanceId);
    if (!r || r.stopping) return;
    r.stopping = setTimeout(() => r.child.kill('SIGKILL'), STOP_GRACE_MS);
    if (r.child.connected) r.child.send({ kind: 'stop' } satisfies ControllerMessage);
    else r.child.kill('SIGKILL');
  }

  /** The newest console output of the instance's latest boot. */
  consoleOutput(instanceId: string): Buffer {
    return this.files(instanceId).consoleTail();
  }

  remove(instanceId: string): void {
    this.files(instanceId).remove();
  }

  /** Stops every instance and the card; resolves when the hypervisors are gone. */
  async close(): Promise<void> {
    this.closing = true;
    // Launches still preparing disks end as stopped (closing) before anything else goes.
    await Promise.all([...this.preparing.values()].map((p) => p.done));
    const gone = [...this.running.values()].map((r) => new Promise<void>((resolve) => {
      r.child.once('exit', () => resolve());
      r.child.kill('SIGKILL');
    }));
    await Promise.all(gone);
    this.card?.stop();
  }
}
