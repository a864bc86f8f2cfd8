// The instance lifecycle: state follows what the hypervisor process reports. pending until the guest's init
// starts, running, stopping -> stopped (the VM shut down, its disk kept; or, hibernating, the VM saved and its image
// kept, which the next start resumes, pending -> running), shutting-down -> terminated (process gone,
// files removed; the record forgotten an hour later, as EC2 does). A guest that ends on its own becomes stopped with
// Client.InstanceInitiatedShutdown; a failing VM stopped with Server.InternalError. Tenants see EC2's reasons only:
// the host's detail (its paths, its hypervisor's log) goes to the host's log. Placement is here too: cores and memory
// are counted for every instance that holds a VM, so concurrent RunInstances calls cannot over-commit the host.
import type { Logger } from '../base/log.js';
import type { Controller, InstanceEnd, InstanceInterface } from '../controller/controller.js';
import { findImage } from '../images/rootfs.js';
import { imageByAmi } from './catalogue.js';
import { ipString, parseCidr } from './cidr.js';
import { interfaceMac } from './network-interfaces.js';
import { Ec2Error } from './errors.js';
import type { InstanceRow, InstanceStateName, Store } from './store.js';
import { userInitiated } from './context.js';
import { pickGroups } from '../controller/cores.js';

/** How long a terminated instance stays visible (EC2: about an hour). */
export const FORGET_TERMINATED_AFTER_MS = 3600_000;

/** States in which an instance holds (or is about to hold) its VM's cores and memory. */
export const HOLDING: readonly InstanceStateName[] = ['pending', 'running', 'stopping', 'shutting-down'];

export class Lifecycle {
  /** Instances whose VM is restarted when it ends (RebootInstances). */
  private readonly rebooting = new Set<string>();
  /** Set when `azote up` shuts down: the VMs that end then were stopped by the host, not by their owners. */
  hostShutdown = false;
  private forgetting: NodeJS.Timeout | undefined;

  constructor(private readonly store: Store, private readonly controller: Controller, private readonly log: Logger,
    /** The host setting that lets one account's instances share physical cores (never two accounts'). */
    private readonly shareCoresWithinAccount = false) {}

  /** After a restart of the control plane: nothing from before is running any more (the controller stopped it). */
  recover(): void {
    for (const row of this.store.instancesIn(HOLDING)) {
      if (row.state === 'shutting-down') {
        this.finishTermination(row.id);
        continue;
      }
      this.store.updateInstance(row.id, {
        state: 'stopped', cores: '', transition_reason: `Server initiated (${new Date().toISOString()})`,
        state_reason_code: 'Server.InternalError',
        state_reason_message: 'Server.InternalError: the host\'s control plane restarted while the instance ran; start it again',
      });
      this.log.warn('an instance that was running before the restart is marked stopped', { instance: row.id });
    }
  }

  /**
   * Forgets instances terminated more than `afterMs` ago, now and then every so often (a sweep at least every
   * 5 minutes, more often for a shorter time) until close().
   */
  forgetTerminated(afterMs: number): void {
    const sweep = (): void => {
      const gone = this.store.purgeTerminated(new Date(Date.now() - afterMs).toISOString());
      if (gone.length > 0) this.log.info('terminated instances forgotten', { instances: gone.join(',') });
    };
    sweep();
    clearInterval(this.forgetting);
    this.forgetting = setInterval(sweep, Math.min(300_000, Math.max(100, afterMs / 4)));
    this.forgetting.unref();
  }

  close(): void {
    clearInterval(this.forgetting);
  }

  /**
   * The physical cores (sibling groups) `account` may be given: those no instance holds, and, where the host allows
   * sharing within an account, those only this account's instances hold (after the free ones). The memory free.
   */
  free(account: string): { free: number[][]; shared: number[][]; memoryMiB: number } {
    const held = this.store.instancesIn(HOLDING);
    const holders = new Map<number, Set<string>>();
    for (const r of held) for (const c of r.cores ? r.cores.split(',').map(Number) : []) holders.set(c, (holders.get(c) ?? new Set()).add(r.account));
    const groups = this.controller.capacity.coreGroups;
    const ownOnly = (g: readonly number[]): boolean => g.every((c) => { const h = holders.get(c); return h !== undefined && h.size === 1 && h.has(account); });
    return {
      free: groups.filter((g) => !g.some((c) => holders.has(c))).map((g) => [...g]),
      shared: this.shareCoresWithinAccount ? groups.filter(ownOnly).map((g) => [...g]) : [],
      memoryMiB: this.controller.capacity.memoryMiB - held.reduce((n, r) => n + r.memory_mib, 0),
    };
  }

  /**
   * Places up to `max` instances of this size for `account` (down to `min`): the cores each gets, whole physical
   * cores that no other account's instance holds (nor, unless the host allows sharing within an account, any other
   * instance). Throws InsufficientInstanceCapacity if fewer than `min` fit.
   */
  place(account: string, vcpus: number, memoryMiB: number, min: number, max: number): number[][] {
    const f = this.free(account);
    const placed: number[][] = [];
    let memory = f.memoryMiB;
    while (placed.length < max && memory >= memoryMiB) {
      const cores = pickGroups([...f.free, ...f.shared], vcpus);
      if (!cores) break;
      // Groups taken now are this account's from here on: shareable by its next instances if the host allows it.
      const taken = f.free.filter((g) => g.some((c) => cores.includes(c)));
      f.free = f.free.filter((g) => !taken.includes(g));
      if (this.shareCoresWithinAccount) f.shared.push(...taken);
      memory -= memoryMiB;
      placed.push(cores);
    }
    if (placed.length < min) {
      const now = this.free(account);
      throw new Ec2Error('InsufficientInstanceCapacity',
        `We currently do not have sufficient capacity in the Availability Zone you requested: the host has `
        + `${now.free.flat().length} of ${this.controller.capacity.cores} cores and ${now.memoryMiB} MiB free, `
        + `and ${min} instance(s) need ${min * vcpus} cores (${this.shareCoresWithinAccount ? 'never shared with another account' : 'never shared with another instance'}) `
        + `and ${min * memoryMiB} MiB`, 500);
    }
    return placed;
  }

  /** Starts the VM of an instance in state pending. */
  start(row: InstanceRow, publicKey: string | undefined): void {
    const image = imageByAmi(row.image_id);
    if (!image) {
      this.ended(row.id, { kind: 'failed', detail: `its image ${row.image_id} is no longer on this host` });
      return;
    }
    const userData = row.user_data ? Buffer.from(row.user_data, 'base64') : undefined;
    const network = this.interfaceOf(row);
    if (!network) {
      this.ended(row.id, { kind: 'failed', detail: 'its network interface, subnet or VPC is gone' });
      return;
    }
    void this.controller.launch({
      instanceId: row.id, network, image: findImage(image.id), vcpus: row.vcpus, memoryMiB: row.memory_mib, rootGiB: row.root_gib,
      volumes: this.store.volumesOf(row.id).map((v) => v.id),
      cores: row.cores.split(',').filter(Boolean).map(Number),
      resume: row.hibernation_configured === 1,
      metadata: {
        instanceId: row.id, amiId: row.image_id, instanceType: row.instance_type, launchIndex: row.launch_index,
        hostname: `ip-${network.address.replace(/\./g, '-')}`,
        publicKey, userData,
      },
    }, {
      booted: () => {
        const now = this.store.instanceById(row.id);
        if (now?.state === 'pending') this.store.updateInstance(row.id, { state: 'running', state_reason_code: null, state_reason_message: null });
      },
      ended: (end) => this.ended(row.id, end),
    }).catch((e: unknown) => this.ended(row.id, { kind: 'failed', detail: (e as Error).message }));
  }

  /** The instance's interface as the controller attaches it: its VPC, subnet, MAC and address. */
  private interfaceOf(row: InstanceRow): InstanceInterface | undefined {
    const nic = this.store.networkInterfaceOf(row.id);
    const subnet = nic && this.store.subnet(row.account, nic.subnet_id);
    const vpc = nic && this.store.vpc(row.account, nic.vpc_id);
    const base = vpc && parseCidr(vpc.cidr);
    if (!nic || !subnet || !vpc || !base) return undefined;
    // The VPC's DNS server is its base address + 2, as EC2's (Amazon-provided DNS).
    return { vpc: { id: vpc.id, cidr: vpc.cidr }, mac: interfaceMac(nic.id), address: nic.private_ip, subnet: subnet.cidr, dns: ipString(base.network + 2) };
  }

  private ended(id: string, end: InstanceEnd): void {
    const row = this.store.instanceById(id);
    if (!row) return;
    if (row.state === 'shutting-down') {
      this.finishTermination(id);
      return;
    }
    const reboot = this.rebooting.delete(id) || end.kind === 'reboot';
    if (reboot && !this.hostShutdown && (row.state === 'running' || row.state === 'pending')) {
      this.log.info('instance rebooting', { instance: id });
      this.start(row, this.keyOf(row));
      return;
    }
    if (this.hostShutdown && (row.state === 'pending' || row.state === 'running')) {
      this.store.updateInstance(id, {
        state: 'stopped', cores: '', transition_reason: `Server initiated (${new Date().toISOString()})`, state_reason_code: 'Server.InternalError',
        state_reason_message: 'Server.InternalError: the host\'s control plane (azote up) shut down; start the instance again',
      });
      return;
    }
    if (row.state === 'stopping' || end.kind === 'stopped' || end.kind === 'hibernated') {
      this.store.updateInstance(id, { state: 'stopped', cores: '' });
      return;
    }
    const failed = end.kind === 'failed';
    // The detail may name host paths and log lines: the host's log keeps it, the tenant sees EC2's reason.
    this.log[failed ? 'warn' : 'info']('instance stopped by itself', { instance: id, detail: end.detail });
    this.store.updateInstance(id, {
      state: 'stopped', cores: '', transition_reason: `${failed ? 'Server' : 'Client'} initiated (${new Date().toISOString()})`,
      state_reason_code: failed ? 'Server.InternalError' : 'Client.InstanceInitiatedShutdown',
      state_reason_message: !failed ? 'Client.InstanceInitiatedShutdown: Instance initiated shutdown'
        : row.state === 'pending' ? 'Server.InternalError: Internal error on launch' : 'Server.InternalError: Internal error',
    });
  }

  keyOf(row: InstanceRow): string | undefined {
    return row.key_name ? this.store.keyPairByName(row.account, row.key_name)?.public_key : undefined;
  }

  /** Asks the guest to shut down, stopping it hard after the grace time, or at once with `force`. */
  stop(row: InstanceRow, force = false): void {
    if (row.state !== 'stopping') {
      this.store.updateInstance(row.id, { state: 'stopping', transition_reason: userInitiated(), state_reason_code: 'Client.UserInitiatedShutdown',
        state_reason_message: 'Client.UserInitiatedShutdown: User initiated shutdown' });
    }
    if (this.controller.isRunning(row.id)) this.controller.stop(row.id, force);
    else this.store.updateInstance(row.id, { state: 'stopped', cores: '' });
  }

  /**
   * Hibernates the instance (StopInstances with Hibernate): stopping until its VM is saved, then stopped; if it cannot
   * be saved, it stops as stop() does (forced with `force`), as EC2's normal shutdown after a failed hibernation.
   */
  hibernate(row: InstanceRow, force = false): void {
    this.store.updateInstance(row.id, { state: 'stopping', transition_reason: userInitiated(), state_reason_code: 'Client.UserInitiatedHibernate',
      state_reason_message: 'Client.UserInitiatedHibernate: User initiated hibernate' });
    if (this.controller.isRunning(row.id)) this.controller.hibernate(row.id, force);
    else this.store.updateInstance(row.id, { state: 'stopped', cores: '' });
  }

  terminate(row: InstanceRow): void {
    this.store.updateInstance(row.id, { state: 'shutting-down', transition_reason: userInitiated(), state_reason_code: 'Client.UserInitiatedShutdown',
      state_reason_message: 'Client.UserInitiatedShutdown: User initiated shutdown' });
    if (this.controller.isRunning(row.id)) this.controller.stop(row.id);
    else this.finishTermination(row.id);
  }

  reboot(row: InstanceRow): void {
    if (!this.controller.isRunning(row.id)) return;
    this.rebooting.add(row.id);
    this.controller.stop(row.id);
  }

  private finishTermination(id: string): void {
    // Volumes outlive the instance (they are not deleted on termination): detached, available again.
    for (const v of this.store.volumesOf(id)) this.store.updateVolume(v.id, { state: 'available', instance_id: null, device: null, attach_time: null });
    // Its interface goes with it (DeleteOnTermination), giving its address back to the subnet.
    this.store.deleteNetworkInterfaceOf(id);
    this.controller.remove(id);
    this.store.updateInstance(id, { state: 'terminated', cores: '', terminated_at: new Date().toISOString(), private_ip: null, mac: null });
  }
}
