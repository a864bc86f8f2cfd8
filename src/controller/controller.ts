// The host's controller: the one process that starts hypervisors and cards, and the control plane's only way to
// act on the host. Each instance is a hypervisor process (src/hypervisor/instance-main.ts), verified and measured by
// the security chip, started in its jail (jail.ts) with a channel (protocols/channel.ts) as its only line: it
// inherits /dev/kvm, the kernel and its disks as descriptors, and every connection to a card is made here and handed
// over on the channel. A hypervisor that breaks the channel's protocol (a message too long, not JSON, not valid) is
// cut off and killed, and its instance ends failed with the reason: nothing it sends can take the controller down.
// Its console goes to the instance's console log, its stderr to the instance's hypervisor.log. The controller also runs this host's network card, which every
// instance's eth0 is attached to, and restarts it if it dies (instances ask for a new connection and keep their
// addresses).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { guestCmdline } from '../images/cmdline.js';
import { ensureKernel } from '../images/kernel.js';
import type { ImageRecord } from '../images/rootfs.js';
import { runRequestParams } from '../images/run-request.js';
import { Channel, channelPair } from '../protocols/channel.js';
import { hypervisorMessage, INHERITED_FDS, type ControllerMessage, type HypervisorMessage } from '../protocols/instance.js';
import { detectKvmFlavour, KVM_DEVICE } from '../kvm/kvm.js';
import { SecurityChip, type VerifiedComponent } from '../security-chip/chip.js';
import * as libc from '../sys/libc.js';
import { CardProcess } from './card-process.js';
import { CardLinks } from './card-links.js';
import { InstanceCgroup } from './cgroup.js';
import { coreGroups } from './cores.js';
import { provisionDevelopmentHost, verifyController, type VerifiedRuntime } from './components.js';
import { INSTANCE_ARGV } from './instance-boot.js';
import { InstanceFiles, type InstanceMetadata } from './instance-files.js';
import { JAIL_PATH, jailCommand, jailToolPaths, JAIL_UID_BASE } from './jail.js';
import { sha384 } from '../security-chip/manifest.js';

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
  readonly channel: Channel<HypervisorMessage, ControllerMessage>;
  /** Its uid is JAIL_UID_BASE + slot. */
  readonly slot: number;
  stopping: NodeJS.Timeout | undefined;
}

/** The network card's name on a hypervisor's channel; a volume's card is `volume ID`. */
const NET_CARD = 'network';

/** Sends `fd` to the hypervisor as its connection to `card`, then closes this copy; false if the channel took none. */
function handOver(channel: Channel<HypervisorMessage, ControllerMessage>, card: string, fd: number): boolean {
  try {
    return channel.send({ kind: 'card', card }, [fd]);
  } finally {
    libc.close(fd);
  }
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

  private constructor(private readonly o: ControllerOptions, private readonly kernel: string, readonly chip: SecurityChip,
    private readonly runtime: VerifiedRuntime) {
    this.netSocket = path.join(o.dataDir, 'net.sock');
  }

  /** What every start of a hypervisor or card asks first: the runtime it will run on and its component verified, measured. */
  private admit(name: string): VerifiedComponent {
    this.runtime.check();
    return this.chip.admit(name);
  }

  /**
   * Starts the host: the development host's components are brought up to date, the security chip's registers
   * begin again (a host start), the controller's own code and Node runtime are verified and measured first, then the
   * jail's tools measured, and the network card is verified, measured and started.
   */
  static async start(o: ControllerOptions): Promise<Controller> {
    const kernel = (await ensureKernel(o.log)).vmlinux;
    const { chip } = SecurityChip.init(o.hostDir ?? path.join(o.dataDir, 'host'));
    provisionDevelopmentHost(chip, o.log);
    chip.boot();
    const self = verifyController(chip);
    chip.measure(self.component);
    // The host programs that build the jails are Debian's, not ours to sign: they are measured, beside the controller.
    chip.measure({ name: 'jail-tools', version: 'host', build: 0, digest: sha384(jailToolPaths().map((t) => `${sha384(readFileSync(t))}  ${t}\n`).join('')) });
    const c = new Controller(o, kernel, chip, self.runtime);
    const args = ['--socket', c.netSocket, '--subnet', o.subnet, ...(o.uplink ? ['--uplink', o.uplink] : [])];
    c.card = await CardProcess.start('network', () => c.admit('card-net').entryPath, args, c.netSocket, o.log).catch((e: unknown) => {
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
        cards.push(await CardProcess.start(`volume ${v}`, () => this.admit('card-block').entryPath,
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
        return { cards, hypervisor: this.admit('hypervisor') };
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
    const cgroup = InstanceCgroup.create(req.instanceId, { memoryMiB: req.memoryMiB, vcpus: req.vcpus }, this.o.log);
    const taken = new Set([...this.running.values()].map((r) => r.slot));
    let slot = 0;
    while (taken.has(slot)) slot++;
    const jailUid = process.getuid?.() === 0 ? JAIL_UID_BASE + slot : undefined;
    let child: ChildProcess;
    let channelFd: number;
    try {
      ({ child, channelFd } = this.startJailed(req, files, hypervisor, jailUid));
    } catch (e) {
      for (const c of cards) c.stop();
      cgroup?.remove();
      throw e;
    }
    if (child.pid !== undefined) {
      try {
        cgroup?.add(child.pid);
      } catch (e) {
        child.kill('SIGKILL');
        this.o.log.error('the hypervisor could not be put in its control group; it was killed', { instance: req.instanceId, why: (e as Error).message });
      }
    }
    let ended: InstanceEnd | undefined;
    const links = new CardLinks(new Map([[NET_CARD, this.netSocket], ...req.volumes.map((v, i): [string, string] => [`volume ${v}`, cards[i]?.socket ?? ''])]));
    const channel = new Channel<HypervisorMessage, ControllerMessage>(channelFd, hypervisorMessage, {
      message: (m) => {
        if (m.kind === 'connect-card') {
          if (!links.sockets.has(m.card)) return;
          let fd: number;
          try {
            fd = links.renew(m.card);
          } catch (e) {
            channel.send({ kind: 'card-unavailable', card: m.card, why: errorMessage(e) });
            return;
          }
          handOver(channel, m.card, fd);
        } else if (m.kind === 'created') events.created(m.privateIp, m.mac);
        else if (m.kind === 'booted') events.booted();
        else {
          ended = m.end === 'exit-status' ? { kind: 'shutdown', detail: `the guest powered off (status ${m.detail})` }
            : m.end === 'reset' ? { kind: 'reboot', detail: 'the guest rebooted' }
              : m.end === 'stopped' ? { kind: 'stopped', detail: '' } : { kind: 'failed', detail: m.detail };
        }
      },
      // The hypervisor closing its end is its exit (reported below); anything else is a breach: it is cut off.
      end: (error) => {
        if (!error) return;
        this.o.log.error('a hypervisor broke its channel and was killed', { instance: req.instanceId, code: error.code, why: error.message });
        ended = { kind: 'failed', detail: `the hypervisor was cut off: ${error.message}` };
        child.kill('SIGKILL');
      },
    }, `the hypervisor of ${req.instanceId}`);
    const entryState: Running = { child, channel, slot, stopping: undefined };
    this.running.set(req.instanceId, entryState);
    let over = false;
    const finish = (fallback: InstanceEnd): void => {
      if (over) return;
      over = true;
      channel.close();
      for (const c of cards) c.stop();
      links.close();
      cgroup?.remove();
      clearTimeout(entryState.stopping);
      this.running.delete(req.instanceId);
      const end = ended ?? fallback;
      this.o.log.info('instance hypervisor ended', { instance: req.instanceId, end: end.kind, detail: end.detail });
      events.ended(end);
    };
    child.on('exit', (code, signal) => finish(entryState.stopping !== undefined || signal === 'SIGKILL' && this.closing
      ? { kind: 'stopped', detail: '' }
      : { kind: 'failed', detail: `the hypervisor exited (${signal ?? `status ${code}`}): ${files.hypervisorLogTail(4096).trim().split('\n').slice(-1)[0] ?? ''}` }));
    // The jail's tools missing, or no process at all: the launch fails with the reason.
    child.on('error', (e) => finish({ kind: 'failed', detail: `the hypervisor could not be started: ${e.message}` }));
    const launch: ControllerMessage = {
      kind: 'launch', kvmFd: INHERITED_FDS.kvm, kernelFd: INHERITED_FDS.kernel, flavour: detectKvmFlavour(), cmdline, vcpus: req.vcpus, memoryMiB: req.memoryMiB,
      disks: [{ fd: INHERITED_FDS.firstDisk, name: 'root', readOnly: false }, { fd: INHERITED_FDS.firstDisk + 1, name: 'metadata', readOnly: true }],
      netCard: NET_CARD, volumes: req.volumes.map((v) => `volume ${v}`),
    };
    this.o.log.info('instance hypervisor started', {
      instance: req.instanceId, pid: child.pid, uid: jailUid ?? process.getuid?.(), vcpus: req.vcpus, memoryMiB: req.memoryMiB, cores: req.cores.join(','), build: hypervisor.build,
    });
    // Its first connection to each card, then the launch (the channel keeps them in order). A channel that ends
    // meanwhile has said why, or the hypervisor's exit will.
    try {
      for (const card of links.sockets.keys()) {
        if (!handOver(channel, card, await links.renewWaiting(card))) return;
      }
      channel.send(launch);
    } catch (e) {
      if (!over) {
        this.o.log.error('a card could not be handed to the hypervisor; it was killed', { instance: req.instanceId, why: errorMessage(e) });
        ended = { kind: 'failed', detail: `a card could not be connected: ${errorMessage(e)}` };
        child.kill('SIGKILL');
      }
    } finally {
      if (over) links.close(); // it ended while its cards were being handed over
    }
  }

  /**
   * Starts the verified hypervisor in its jail, with what it may use opened here and inherited (it can open
   * nothing itself; INHERITED_FDS gives their numbers): its console and log, its end of the channel, /dev/kvm, the
   * kernel and its disks. Returns the process and the controller's end of the channel.
   */
  private startJailed(req: LaunchRequest, files: InstanceFiles, hypervisor: VerifiedComponent, uid: number | undefined): { child: ChildProcess; channelFd: number } {
    const mountPoint = path.join(this.o.dataDir, 'jail');
    mkdirSync(mountPoint, { recursive: true, mode: 0o755 });
    const { command, args } = jailCommand({
      mountPoint, componentDir: hypervisor.dir, entry: hypervisor.entryPath, args: ['--instance', req.instanceId], cores: req.cores, uid,
    });
    const inherited: number[] = [];
    // The hypervisor's seccomp forbids socketpair(): the pair is made here and one end inherited.
    const [ours, theirs] = channelPair();
    try {
      inherited.push(theirs, files.openConsole(), files.openHypervisorLog(), openSync(KVM_DEVICE, 'r+'), openSync(this.kernel, 'r'),
        openSync(files.root, 'r+'), openSync(files.metadata, 'r'));
      const [channelFd, consoleFd, logFd, kvmFd, kernelFd, rootFd, metadataFd] = inherited;
      const child = spawn(command, args, {
        stdio: ['ignore', consoleFd, logFd, channelFd, kvmFd, kernelFd, rootFd, metadataFd],
        env: { PATH: JAIL_PATH },
      });
      return { child, channelFd: ours };
    } catch (e) {
      libc.close(ours);
      throw e;
    } finally {
      for (const fd of inherited) closeSync(fd);
    }
  }

  /** Asks the instance's hypervisor to stop the VM; kills it if it has not ended after the grace time. */
  stop(instanceId: string): void {
    const prep = this.preparing.get(instanceId);
    if (prep) prep.cancelled = true;
    const r = this.running.get(instanceId);
    if (!r || r.stopping) return;
    r.stopping = setTimeout(() => r.child.kill('SIGKILL'), STOP_GRACE_MS);
    if (!r.channel.send({ kind: 'stop' })) r.child.kill('SIGKILL');
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
