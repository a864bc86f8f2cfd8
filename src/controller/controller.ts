// The host's controller: the one process that starts hypervisors and cards, and the control plane's only way to
// act on the host. Each instance is a hypervisor process (src/hypervisor/instance-main.ts), verified and measured by
// the security chip, started in its jail (jail.ts) with a channel (protocols/channel.ts) as its only line: it
// inherits /dev/kvm, the kernel and its disks as descriptors, and every connection to a card is made here and handed
// over on the channel. A hypervisor that breaks the channel's protocol (a message too long, not JSON, not valid) is
// cut off and killed, and its instance ends failed with the reason: nothing it sends can take the controller down.
// Its console goes to the instance's console log, its stderr to the instance's hypervisor.log (both capped and rotated
// here). The controller also runs a network card per VPC (vpc-networks.ts), which each of the VPC's instances' eth0
// is attached to with the lease the control plane allocated it (its MAC and address, told to the card on each
// connection made here), and a block card per attached volume, each in a jail of its own (card-process.ts), and
// restarts a card that dies (instances ask for a new connection and keep their addresses).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { AzoteError, errorMessage } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import { guestCmdline } from '../images/cmdline.js';
import { ensureKernel } from '../images/kernel.js';
import type { ImageRecord } from '../images/rootfs.js';
import { runRequestParams } from '../images/run-request.js';
import { GUEST_SHUTDOWN_GRACE_MS } from '../hypervisor/devices/azote-ports.js';
import { Channel, channelPair } from '../protocols/channel.js';
import { snapshotCapacity } from '../protocols/snapshot-file.js';
import { hypervisorMessage, INHERITED_FDS, type ControllerMessage, type HypervisorMessage } from '../protocols/instance.js';
import { detectKvmFlavour, KVM_DEVICE } from '../kvm/kvm.js';
import { chooseProtection, describeProtection, protectionMeasurement, type MemoryProtection } from '../isolation/memory-protection.js';
import { probeHostMemory } from '../isolation/secret-probe.js';
import { threadPoolEnv } from '../isolation/vcpus.js';
import { SecurityChip, type VerifiedComponent } from '../security-chip/chip.js';
import * as libc from '../sys/libc.js';
import { CardProcess, FIRST_CARD_FD, type CardJail } from './card-process.js';
import { CardLinks } from './card-links.js';
import { VpcNetworks, type VpcNetwork } from './vpc-networks.js';
import { InstanceCgroup } from './cgroup.js';
import { coreGroups } from './cores.js';
import { provisionDevelopmentHost, verifyController, type VerifiedRuntime } from './components.js';
import { INSTANCE_ARGV } from './instance-boot.js';
import { InstanceFiles, type InstanceMetadata } from './instance-files.js';
import { Hibernations, type ResumableImage } from './hibernation.js';
import { JAIL_PATH, jailCommand, jailedExit, jailToolPaths, JailUids, MEMLOCK_OVERHEAD_MIB, memlockLimit, type LockedMemory } from './jail.js';
import { PidFiles } from './pid-files.js';
import { sha384 } from '../security-chip/manifest.js';
import { parseIpv4, parseSubnet, subnetRange } from '../virtio/net-addressing.js';
import { encodeLease } from '../cards/net/port-lease.js';

/** Host memory kept for the host itself (Node, cards, page cache) when offering memory to instances. */
const HOST_RESERVED_MIB = 2048;
/**
 * Memory of a card's control group: Node's own, and the guest pages it is the first to touch (shared memory is
 * charged to whoever faults a page in first): a block card may fill its guest's memory with what it reads, a network
 * card the receive buffers of all its VPC's guests.
 */
const CARD_OWN_MIB = 256;
const NET_CARD_MIB = 1024;
/** How long a hypervisor told to stop its VM gets before it is killed. */
const STOP_GRACE_MS = 10_000;
/**
 * How often the logs of running instances are capped: a guest that floods its console can outgrow the cap by what
 * it writes in this time (the UART it writes through is slow).
 */
const LOG_SWEEP_MS = 5_000;

export interface HostCapacity {
  /** Hardware threads instances may use. */
  readonly cores: number;
  /** The same threads, grouped by physical core (SMT siblings go together). */
  readonly coreGroups: readonly number[][];
  readonly memoryMiB: number;
}

export interface LaunchRequest {
  readonly instanceId: string;
  /** The instance's interface: its eth0 is on its VPC's network, with this MAC and address. */
  readonly network: InstanceInterface;
  readonly image: ImageRecord;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly rootGiB: number;
  readonly metadata: InstanceMetadata;
  /** Volumes attached to the instance (ids), in order: each served by a block card of its own while it runs. */
  readonly volumes: readonly string[];
  /** The host CPUs the instance's hypervisor (and so its vCPUs) may run on: its own physical cores. */
  readonly cores: readonly number[];
  /** Continue the instance's hibernation image if it has a usable one (else it boots): a start after hibernate(). */
  readonly resume?: boolean | undefined;
}

/** An instance's network interface, as the control plane allocated it. */
export interface InstanceInterface {
  readonly vpc: VpcNetwork;
  /** The MAC, as aa:bb:cc:dd:ee:ff. */
  readonly mac: string;
  /** The address, its subnet's CIDR, and the VPC's DNS server. */
  readonly address: string;
  readonly subnet: string;
  readonly dns: string;
}

/** The bytes that begin each connection to the interface's card: its lease (cards/net/port-lease.ts). */
function leaseOf(n: InstanceInterface): Uint8Array {
  const subnet = parseSubnet(n.subnet);
  const ip = parseIpv4(n.address), dns = parseIpv4(n.dns);
  const mac = Uint8Array.from(n.mac.split(':').map((h) => parseInt(h, 16)));
  if (!subnet || ip === undefined || dns === undefined || mac.length !== 6) {
    throw new Error(`the interface ${n.address} (${n.mac}) in ${n.subnet} is not one a network card can serve`);
  }
  return encodeLease({ mac, ip, prefix: subnet.prefix, gateway: subnetRange(subnet).gateway, dns });
}

export type InstanceEnd =
  /** The guest powered off (its init ended the machine with a status), or the VM was stopped. */
  | { readonly kind: 'shutdown' | 'stopped'; readonly detail: string }
  /** The guest reset the machine: an instance reboots. */
  | { readonly kind: 'reboot'; readonly detail: string }
  /** The guest or its hypervisor failed. */
  | { readonly kind: 'failed'; readonly detail: string }
  /** The VM was saved (hibernate()): the instance's hibernation image is written; a resume launch continues it. */
  | { readonly kind: 'hibernated'; readonly detail: string };

export interface InstanceEvents {
  booted(): void;
  ended(end: InstanceEnd): void;
}

export interface ControllerOptions {
  readonly dataDir: string;
  readonly log: Logger;
  /** Whether VPCs get an uplink to the host (a TAP holding the VPC's first address) where their CIDR allows. */
  readonly uplinks: boolean;
  /** The security chip's directory (keys, component store, registers); default DATA_DIR/host. */
  readonly hostDir?: string | undefined;
}

interface Running {
  readonly child: ChildProcess;
  readonly channel: Channel<HypervisorMessage, ControllerMessage>;
  /** The uid its jail runs as (undefined where the controller is not root). */
  readonly uid: number | undefined;
  readonly memoryMiB: number;
  /** Set once a stop began: the timer of its next step. */
  stopping: NodeJS.Timeout | undefined;
  /** The stop is hard: the VM was told to stop without asking its guest. */
  forced: boolean;
  /**
   * A hibernation under way: the memfd the hypervisor writes the snapshot into (this entry owns it), whether the stop
   * that follows a failed one is forced, and whether the hypervisor was asked yet (not while the image's memory is
   * being allocated).
   */
  hibernation: { readonly fd: number; readonly force: boolean; asked: boolean } | undefined;
  /** The hibernation image being written (resolves false if it could not be): the instance's end waits for it. */
  saving: Promise<boolean> | undefined;
}

/** Room for a hibernating VM's machine state in its preallocated image (the records of a VM take tens of KiB). */
const HIBERNATION_STATE_ALLOWANCE = 2 ** 20;

/** The network card's name on a hypervisor's channel; a volume's card is `volume ID`. */
const NET_CARD = 'network';
/** The descriptor a resuming hypervisor inherits its snapshot as (after the root and metadata disks). */
const SNAPSHOT_FD = INHERITED_FDS.firstDisk + 2;

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
  private readonly networks: VpcNetworks;
  private closing = false;
  /** The hypervisors write the console and their log themselves: the controller rotates them (InstanceFiles.capLogs). */
  private readonly logSweep = setInterval(() => {
    for (const id of this.running.keys()) {
      try {
        this.files(id).capLogs();
      } catch (e) {
        this.o.log.warn('the logs of an instance could not be rotated', { instance: id, why: errorMessage(e) });
      }
    }
  }, LOG_SWEEP_MS).unref();
  private readonly jailUids: JailUids;
  /** The uids of the cards' jails now running. */
  private readonly cardUids = new Set<number>();
  private readonly hibernations: Hibernations;
  /** Hibernation images being written: close() waits for them. */
  private readonly savingImages = new Set<Promise<boolean>>();

  private constructor(private readonly o: ControllerOptions, private readonly kernel: string, readonly chip: SecurityChip,
    private readonly runtime: VerifiedRuntime, private readonly pids: PidFiles,
    /** What every guest's memory is on this host, measured at its start. */
    readonly guestMemory: MemoryProtection) {
    this.jailUids = new JailUids(path.join(o.dataDir, 'jail-uid-next'));
    this.hibernations = new Hibernations(chip, o.log);
    // A network card serves one VPC, whose instances' cores change with them: it may run on any core.
    this.networks = new VpcNetworks(path.join(o.dataDir, 'cards'), () => this.admit('card-net'),
      this.cardJail(this.capacity.coreGroups.flat(), NET_CARD_MIB), pids, o.uplinks, o.log);
  }

  /** A uid for a jail, never given before (undefined where the controller is not root and jails keep its uid). */
  private jailUid(): number | undefined {
    if (process.getuid?.() !== 0) return undefined;
    const hypervisors = [...this.running.values()].map((r) => r.uid).filter((u): u is number => u !== undefined);
    return this.jailUids.next(new Set([...hypervisors, ...this.cardUids]));
  }

  private cardJail(cores: readonly number[], memoryMiB: number): CardJail {
    return {
      mountPoint: this.jailMountPoint(), cores, memoryMiB, libraryCache: this.libraryCache(), secretGuestMemory: this.guestMemory.kind === 'secret',
      uids: {
        take: () => {
          const uid = this.jailUid();
          if (uid !== undefined) this.cardUids.add(uid);
          return uid;
        },
        give: (uid) => this.cardUids.delete(uid),
      },
    };
  }

  /** The empty directory every jail's root is mounted on, each in its own mount namespace. */
  private libraryCache(): string {
    return path.join(this.o.dataDir, 'jail-libraries.json');
  }

  private jailMountPoint(): string {
    const mountPoint = path.join(this.o.dataDir, 'jail');
    mkdirSync(mountPoint, { recursive: true, mode: 0o755 });
    return mountPoint;
  }

  /** What every start of a hypervisor or card asks first: the runtime it will run on and its component verified, measured. */
  private admit(name: string): VerifiedComponent {
    this.runtime.check();
    return this.chip.admit(name);
  }

  /**
   * Starts the host: the development host's components are brought up to date, the security chip's registers
   * begin again (a host start), the controller's own code and Node runtime are verified and measured first, then the
   * jail's tools measured. Each VPC's network card is verified, measured and started with its first instance.
   * Cards and hypervisors a crashed controller left running are killed first.
   */
  static async start(o: ControllerOptions): Promise<Controller> {
    const pids = new PidFiles(path.join(o.dataDir, 'pids'));
    await pids.reapStale(o.log);
    const kernel = (await ensureKernel(o.log)).vmlinux;
    const { chip } = SecurityChip.init(o.hostDir ?? path.join(o.dataDir, 'host'));
    provisionDevelopmentHost(chip, o.log);
    chip.boot();
    const self = verifyController(chip);
    chip.measure(self.component);
    // The host programs that build the jails are Debian's, not ours to sign: they are measured, beside the controller.
    chip.measure({ name: 'jail-tools', version: 'host', build: 0, digest: sha384(jailToolPaths().map((t) => `${sha384(readFileSync(t))}  ${t}\n`).join('')) });
    // Guests' memory is a property of the host, asked of its KVM once and measured: a quote shows what is hidden.
    // Secret memory counts as locked: jails that could not lock all of a guest's cannot have it.
    const jailsLock = !memlockLimit(totalmem(), { ipcLock: true }).clamped;
    const guestMemory = jailsLock ? chooseProtection(probeHostMemory())
      : { kind: 'memfd' as const, noKvmclock: false, why: 'the controller can neither raise the jails\' locked-memory limit nor let them lock (run it as root)' };
    chip.measure(protectionMeasurement(guestMemory));
    o.log.info('guest memory', { kind: guestMemory.kind, level: describeProtection(guestMemory) });
    return new Controller(o, kernel, chip, self.runtime, pids, guestMemory);
  }

  volumeFile(volumeId: string): string {
    return path.join(this.o.dataDir, 'volumes', `${volumeId}.img`);
  }

  /**
   * A new volume: a sparse raw file of `sizeGiB`, made under a temporary name and renamed when whole, so that a
   * failure leaves no file. A size the file system cannot hold is a VolumeCapacity error.
   */
  createVolume(volumeId: string, sizeGiB: number): void {
    mkdirSync(path.join(this.o.dataDir, 'volumes'), { recursive: true, mode: 0o700 });
    const file = this.volumeFile(volumeId);
    const temp = `${file}.new`;
    try {
      const fd = openSync(temp, 'wx', 0o600);
      try {
        ftruncateSync(fd, sizeGiB * 2 ** 30);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, file);
    } catch (e) {
      rmSync(temp, { force: true });
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EFBIG' || code === 'ENOSPC' || code === 'EDQUOT') {
        throw new AzoteError('VolumeCapacity', `the file system of ${this.o.dataDir} cannot hold a volume of ${sizeGiB} GiB (${code})`,
          'ask for a smaller volume, or give azote up a data directory on a larger file system', { cause: e });
      }
      throw e;
    }
  }

  deleteVolume(volumeId: string): void {
    rmSync(this.volumeFile(volumeId), { force: true });
  }

  /**
   * Starts a block card for each of the instance's volumes, each in its jail on the instance's cores, given its
   * volume's file and its listening socket.
   */
  private async volumeCards(req: LaunchRequest): Promise<CardProcess[]> {
    const dir = path.join(this.o.dataDir, 'cards');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const cards: CardProcess[] = [];
    try {
      for (const v of req.volumes) {
        const base = path.join(dir, `${v}.sock`);
        cards.push(await CardProcess.start({
          name: `volume ${v}`, group: `card-${v}`, admit: () => this.admit('card-block'), sockets: [`${base}:${v}`],
          files: [{ path: this.volumeFile(v), readOnly: false }], jail: this.cardJail(req.cores, CARD_OWN_MIB + req.memoryMiB),
          args: ['--socket', base, '--listen-fd', String(FIRST_CARD_FD), '--volume', `${v}=fd:${FIRST_CARD_FD + 1}`],
        }, this.pids, this.o.log));
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
      files.writeMetadata({ ...req.metadata, guestMemory: this.guestMemory.kind });
      const netCard = await this.networks.cardOf(req.network.vpc);
      const cards = await this.volumeCards(req);
      try {
        // Nothing of the hypervisor runs unless the chip verified and measured it just now.
        const hypervisor = this.admit('hypervisor');
        return { cards, netCard, hypervisor, resume: req.resume ? await this.hibernations.open(files) : undefined };
      } catch (e) {
        for (const c of cards) c.stop();
        throw e;
      }
    })();
    const prep = { cancelled: false, done: work.catch(() => undefined) };
    this.preparing.set(req.instanceId, prep);
    let cards: CardProcess[];
    let netCard: CardProcess;
    let hypervisor: VerifiedComponent;
    let resume: ResumableImage | undefined;
    try {
      ({ cards, netCard, hypervisor, resume } = await work);
    } finally {
      this.preparing.delete(req.instanceId);
    }
    if (prep.cancelled || this.closing) {
      for (const c of cards) c.stop();
      if (resume) libc.close(resume.fd);
      events.ended({ kind: 'stopped', detail: 'stopped before its VM started' });
      return;
    }
    const cmdline = [guestCmdline({ nestedPvm: detectKvmFlavour() === 'nested-pvm', quiet: false }),
      'root=/dev/vda', 'rw', 'rootfstype=ext4', ...runRequestParams(INSTANCE_ARGV)].join(' ');
    const cgroup = InstanceCgroup.create(req.instanceId, { memoryMiB: req.memoryMiB, vcpus: req.vcpus, cores: req.cores }, this.o.log);
    const jailUid = this.jailUid();
    let child: ChildProcess;
    let channelFd: number;
    try {
      // The snapshot's memfd goes to startJailed, which closes this copy whatever happens.
      ({ child, channelFd } = this.startJailed(req, files, hypervisor, jailUid, cgroup?.procsFiles ?? [], resume?.fd));
    } catch (e) {
      for (const c of cards) c.stop();
      cgroup?.remove();
      throw e;
    }
    const pidName = `hypervisor ${req.instanceId}`;
    if (child.pid !== undefined) this.pids.record(pidName, child.pid);
    let ended: InstanceEnd | undefined;
    // Each card by its name on the channel (a block card's name is its volume's there, `volume ID`).
    const byName = new Map<string, CardProcess>([[NET_CARD, netCard], ...cards.map((c): [string, CardProcess] => [c.name, c])]);
    const links = new CardLinks(new Map([...byName].map(([name, c]) => [name, c.socket])), new Map([[NET_CARD, leaseOf(req.network)]]));
    const channel = new Channel<HypervisorMessage, ControllerMessage>(channelFd, hypervisorMessage, {
      message: (m) => {
        if (m.kind === 'connect-card') {
          if (!links.sockets.has(m.card)) return;
          if (!byName.get(m.card)?.serving) {
            channel.send({ kind: 'card-unavailable', card: m.card, why: 'the card is being restarted' });
            return;
          }
          let fd: number;
          try {
            fd = links.renew(m.card);
          } catch (e) {
            channel.send({ kind: 'card-unavailable', card: m.card, why: errorMessage(e) });
            return;
          }
          handOver(channel, m.card, fd);
        } else if (m.kind === 'connect-vsock') channel.send({ kind: 'vsock-refused', port: m.port }); // an instance has no vsock
        else if (m.kind === 'booted' || m.kind === 'created' && resume) {
          // A resumed guest writes no boot marker (its init started long before): restored, its digest verified, it
          // runs again. Its image is then consumed, as EC2's hibernation image is by the start.
          if (resume) {
            if (resumed) return;
            resumed = true;
            this.hibernations.discard(files);
          }
          events.booted();
        } else if (m.kind === 'created') return; // the instance's MAC and address are its interface's, known already
        else if (m.kind === 'snapshot-saved' || m.kind === 'snapshot-failed') this.hibernationAnswer(req.instanceId, entryState, files, m);
        else {
          ended = m.end === 'exit-status' ? { kind: 'shutdown', detail: `the guest powered off (status ${m.detail})` }
            : m.end === 'reset' ? { kind: 'reboot', detail: 'the guest rebooted' }
              : m.end === 'stopped' ? { kind: 'stopped', detail: '' }
                : m.end === 'hibernated' ? { kind: 'hibernated', detail: 'the VM was saved' } : { kind: 'failed', detail: m.detail };
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
    const entryState: Running = { child, channel, uid: jailUid, memoryMiB: req.memoryMiB, stopping: undefined, forced: false, hibernation: undefined, saving: undefined };
    this.running.set(req.instanceId, entryState);
    let over = false;
    let resumed = false;
    const finish = (fallback: InstanceEnd): void => {
      if (over) return;
      over = true;
      if (child.pid !== undefined) this.pids.forget(pidName, child.pid);
      channel.close();
      for (const c of cards) c.stop();
      links.close();
      cgroup?.remove();
      clearTimeout(entryState.stopping);
      if (entryState.hibernation) libc.close(entryState.hibernation.fd);
      entryState.hibernation = undefined;
      this.running.delete(req.instanceId);
      // A resume that never ran again: its image is discarded, so that the next start boots rather than failing again.
      if (resume && !resumed) this.hibernations.discard(files, `the hypervisor ended before the guest ran again: ${(ended ?? fallback).detail}`);
      const report = (end: InstanceEnd): void => {
        this.o.log.info('instance hypervisor ended', { instance: req.instanceId, end: end.kind, detail: end.detail });
        events.ended(end);
      };
      const saving = entryState.saving;
      if (!saving) {
        report(ended ?? fallback);
        return;
      }
      // The VM is gone once saved: the instance is hibernated if its image is whole, else just stopped (logged).
      void saving.then((saved) => report(saved ? { kind: 'hibernated', detail: 'the VM was saved' }
        : { kind: 'stopped', detail: 'the hibernation image could not be written' }));
    };
    const exitDetail = (code: number | null, signal: NodeJS.Signals | null): string => {
      const { how, lastLine } = jailedExit(code, signal, files.hypervisorLogTail(4096).trim().split('\n'));
      return `the hypervisor exited (${how}): ${lastLine}`;
    };
    child.on('exit', (code, signal) => finish(entryState.stopping !== undefined || signal === 'SIGKILL' && this.closing
      ? { kind: 'stopped', detail: '' } : { kind: 'failed', detail: exitDetail(code, signal) }));
    // The jail's tools missing, or no process at all: the launch fails with the reason.
    child.on('error', (e) => finish({ kind: 'failed', detail: `the hypervisor could not be started: ${e.message}` }));
    const launch: ControllerMessage = {
      kind: 'launch', kvmFd: INHERITED_FDS.kvm, kernelFd: INHERITED_FDS.kernel, flavour: detectKvmFlavour(), cmdline, vcpus: req.vcpus, memoryMiB: req.memoryMiB,
      memory: { kind: this.guestMemory.kind, noKvmclock: this.guestMemory.noKvmclock },
      disks: [{ fd: INHERITED_FDS.firstDisk, name: 'root', readOnly: false }, { fd: INHERITED_FDS.firstDisk + 1, name: 'metadata', readOnly: true }],
      netCard: NET_CARD, volumes: req.volumes.map((v) => `volume ${v}`), rng: true,
      ...(resume ? { snapshot: { mode: 'restore', fd: SNAPSHOT_FD, digest: resume.digest } } : {}),
    };
    this.o.log.info('instance hypervisor started', {
      instance: req.instanceId, pid: child.pid, uid: jailUid ?? process.getuid?.(), vcpus: req.vcpus, memoryMiB: req.memoryMiB, cores: req.cores.join(','), build: hypervisor.build,
      resuming: resume !== undefined,
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
  private startJailed(req: LaunchRequest, files: InstanceFiles, hypervisor: VerifiedComponent, uid: number | undefined,
    cgroupProcs: readonly string[], snapshotFd: number | undefined): { child: ChildProcess; channelFd: number } {
    // Everything here is closed on the way out (the child has its copies): the snapshot's memfd from the start.
    const inherited: number[] = snapshotFd === undefined ? [] : [snapshotFd];
    let ours: number | undefined;
    try {
      const { command, args } = jailCommand({
        mountPoint: this.jailMountPoint(), componentDir: hypervisor.dir, entry: hypervisor.entryPath, args: ['--instance', req.instanceId], cores: req.cores, uid,
        cgroupProcs, lockedMemory: this.memlock(req), libraryCache: this.libraryCache(),
      });
      // The hypervisor's seccomp forbids socketpair(): the pair is made here and one end inherited.
      const [mine, theirs] = channelPair();
      ours = mine;
      const fds = [theirs];
      inherited.push(theirs);
      for (const open of [() => files.openConsole(snapshotFd !== undefined), () => files.openHypervisorLog(), () => openSync(KVM_DEVICE, 'r+'), () => openSync(this.kernel, 'r'),
        () => openSync(files.root, 'r+'), () => openSync(files.metadata, 'r')]) {
        const fd = open();
        fds.push(fd);
        inherited.push(fd);
      }
      const [channelFd, consoleFd, logFd, kvmFd, kernelFd, rootFd, metadataFd] = fds;
      const child = spawn(command, args, {
        // SNAPSHOT_FD follows the disks.
        stdio: ['ignore', consoleFd, logFd, channelFd, kvmFd, kernelFd, rootFd, metadataFd, ...(snapshotFd === undefined ? [] : [snapshotFd])],
        env: { PATH: JAIL_PATH, ...threadPoolEnv(req.vcpus) },
      });
      return { child, channelFd: mine };
    } catch (e) {
      if (ours !== undefined) libc.close(ours);
      throw e;
    } finally {
      for (const fd of inherited) closeSync(fd);
    }
  }

  /** The locked memory the instance's jail may have: its guest's and a little more, or what this host allows. */
  private memlock(req: LaunchRequest): LockedMemory {
    const locked = memlockLimit((req.memoryMiB + MEMLOCK_OVERHEAD_MIB) * 2 ** 20, { ipcLock: this.guestMemory.kind === 'secret' });
    if (locked.clamped) {
      this.o.log.warn('the controller may not raise the locked-memory limit (no CAP_SYS_RESOURCE): the jail keeps the host\'s',
        { instance: req.instanceId, bytes: locked.bytes });
    }
    return locked;
  }

  /**
   * Asks the instance's guest to shut down (it syncs and unmounts its disks, then powers off) and, if it has not
   * after GUEST_SHUTDOWN_GRACE_MS, its hypervisor to stop the VM, as EC2 waits for the guest, then forces. With
   * `force` (also while a shutdown is under way) the hypervisor stops it at once. A hypervisor that has not ended
   * STOP_GRACE_MS after that is killed.
   */
  stop(instanceId: string, force = false): void {
    const prep = this.preparing.get(instanceId);
    if (prep) prep.cancelled = true;
    const r = this.running.get(instanceId);
    if (!r || r.stopping && (r.forced || !force)) return;
    clearTimeout(r.stopping);
    if (force || !r.channel.send({ kind: 'shutdown' })) {
      this.stopHard(r);
      return;
    }
    r.stopping = setTimeout(() => this.stopHard(r), GUEST_SHUTDOWN_GRACE_MS);
  }

  private stopHard(r: Running): void {
    r.forced = true;
    r.stopping = setTimeout(() => r.child.kill('SIGKILL'), STOP_GRACE_MS);
    if (!r.channel.send({ kind: 'stop' })) r.child.kill('SIGKILL');
  }

  /**
   * Hibernates the instance (EC2's StopInstances with Hibernate): its hypervisor saves the VM into a memfd made here,
   * which is sealed and written encrypted as the instance's image, and the instance ends `hibernated`. If the VM
   * cannot be saved now, the instance stops as stop() stops it (EC2: "a normal shutdown occurs"), forced with
   * `force`; the reason is logged. An instance without a running VM (or already stopping) just stops.
   */
  hibernate(instanceId: string, force = false): void {
    const r = this.running.get(instanceId);
    if (!r || r.stopping !== undefined || r.hibernation || r.saving) {
      this.stop(instanceId, force);
      return;
    }
    const fd = libc.memfdCreate(`hibernation-${instanceId}`);
    const pending = { fd, force, asked: false };
    r.hibernation = pending;
    // The image's pages are charged to this process, not to the hypervisor, whose jail may hold little more than its
    // guest's memory: a guest using all of it would double that while the snapshot is written. Preallocated to the
    // most a snapshot of this memory takes (the hypervisor cuts the file to its length), off the event loop: zeroing
    // the pages takes about a second per GiB.
    void libc.fallocateAsync(fd, 0, 0, snapshotCapacity(r.memoryMiB * 2 ** 20, HIBERNATION_STATE_ALLOWANCE)).then(() => {
      // The VM ended meanwhile (its end closed the fd), or a stop began: nothing is asked.
      if (r.hibernation !== pending) return;
      if (r.stopping !== undefined) {
        r.hibernation = undefined;
        libc.close(fd);
        return;
      }
      pending.asked = true;
      if (!r.channel.send({ kind: 'hibernate' }, [fd])) {
        r.hibernation = undefined;
        libc.close(fd);
        this.stop(instanceId, force);
      }
    }, (e: unknown) => {
      if (r.hibernation !== pending) return;
      r.hibernation = undefined;
      libc.close(fd);
      this.o.log.warn('the instance could not hibernate: it stops normally', { instance: instanceId, why: `no memory for its image: ${errorMessage(e)}` });
      this.stop(instanceId, force);
    });
  }

  /** The hypervisor's answer to hibernate(): the image is written, or the instance stops normally. */
  private hibernationAnswer(instanceId: string, r: Running, files: InstanceFiles,
    m: Extract<HypervisorMessage, { kind: 'snapshot-saved' | 'snapshot-failed' }>): void {
    const h = r.hibernation;
    if (!h?.asked) return; // none asked: a hypervisor saying so is ignored
    r.hibernation = undefined;
    if (m.kind === 'snapshot-failed') {
      libc.close(h.fd);
      this.o.log.warn('the instance could not hibernate: it stops normally', { instance: instanceId, why: m.detail });
      this.stop(instanceId, h.force);
      return;
    }
    this.o.log.info('instance saved for hibernation', { instance: instanceId, bytes: m.bytes, pages: m.pages, ms: Math.round(m.ms) });
    const saving = this.hibernations.save(files, h.fd).then(() => true, (e: unknown) => {
      this.hibernations.discard(files);
      this.o.log.error('the hibernation image could not be written: the instance is stopped', { instance: instanceId, why: errorMessage(e) });
      return false;
    });
    r.saving = saving;
    this.savingImages.add(saving);
    void saving.then(() => this.savingImages.delete(saving));
  }

  /** The newest console output of the instance's latest boot. */
  consoleOutput(instanceId: string): Buffer {
    return this.files(instanceId).consoleTail();
  }

  remove(instanceId: string): void {
    this.files(instanceId).remove();
  }

  /** Stops every instance as stop() does (their guests shut down first) and the network cards; resolves when the hypervisors are gone. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.logSweep);
    // Launches still preparing disks end as stopped (closing) before anything else goes.
    await Promise.all([...this.preparing.values()].map((p) => p.done));
    const gone = [...this.running.entries()].map(([id, r]) => new Promise<void>((resolve) => {
      r.child.once('exit', () => resolve());
      this.stop(id);
    }));
    await Promise.all(gone);
    await Promise.all(this.savingImages);
    await this.networks.close();
  }
}
