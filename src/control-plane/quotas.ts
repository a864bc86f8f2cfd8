// Per-account limits, answered with EC2's codes (its service quotas: instances holding a VM, their vCPUs, EBS
// storage), and the host's cap on the over-commit of its disk. Volumes and root disks are sparse files: what is
// provisioned may exceed what the disk holds, and an account that fills its files would fill the disk for every
// account; so the part of every disk not yet written may be at most a factor of the file system's free space.
import type { Controller, HostCapacity } from '../controller/controller.js';
import { allocatedBytes, availableBytes } from '../controller/disk-space.js';
import { Ec2Error } from './errors.js';
import { HOLDING } from './lifecycle.js';
import type { DiskRow, Store } from './store.js';

export interface AccountLimits {
  /** Instances holding a VM at once (pending, running, stopping, shutting-down). */
  readonly instances: number;
  /** The vCPUs of those instances. */
  readonly vcpus: number;
  /** GiB of volumes and root disks (a root counts until its instance is terminated, as EBS counts root volumes). */
  readonly volumeGiB: number;
  /** VPCs in the region, the default one included (VpcLimitExceeded). */
  readonly vpcs: number;
  /** Subnets in one VPC (SubnetLimitExceeded). */
  readonly subnetsPerVpc: number;
  /** Security groups in the region, default groups included (SecurityGroupLimitExceeded). */
  readonly securityGroups: number;
  /** Rules of one group in one direction (RulesPerSecurityGroupLimitExceeded). */
  readonly rulesPerGroup: number;
  /** Security groups of one network interface (SecurityGroupsPerInterfaceLimitExceeded). */
  readonly groupsPerInterface: number;
}

/** EC2's default VPC quotas. */
export const VPC_LIMITS = { vpcs: 5, subnetsPerVpc: 200, securityGroups: 2500, rulesPerGroup: 60, groupsPerInterface: 5 } as const;

/** EC2's long-standing default On-Demand instance limit, and its vCPU limit for standard instances of new accounts. */
const DEFAULT_INSTANCES = 20;
const DEFAULT_VCPUS = 32;
const DEFAULT_VOLUME_GIB = 1024;
/** The unwritten part of all disks may be as large as the free space: a full disk never surprises a guest. */
export const DEFAULT_DISK_OVERCOMMIT = 1;
const GIB = 2 ** 30;

/**
 * Defaults for one host: EC2's, or, on a large host, twice its cores (room for an account that fills it, sharing its
 * own cores where the host allows that); placement still never over-commits cores nor gives one to two accounts.
 */
export function defaultLimits(capacity: HostCapacity): AccountLimits {
  return {
    instances: Math.max(DEFAULT_INSTANCES, 2 * capacity.cores), vcpus: Math.max(DEFAULT_VCPUS, 2 * capacity.cores),
    volumeGiB: DEFAULT_VOLUME_GIB, ...VPC_LIMITS,
  };
}

export class Quotas {
  constructor(private readonly store: Store, private readonly controller: Controller, private readonly dataDir: string,
    readonly limits: AccountLimits, readonly diskOvercommit: number) {}

  /**
   * How many instances of `vcpus` each (from `min` up to `max`) the account may add to those holding a VM; throws
   * InstanceLimitExceeded or VcpuLimitExceeded when not even `min`.
   */
  instances(account: string, vcpus: number, min: number, max: number): number {
    const held = this.store.instancesIn(HOLDING).filter((r) => r.account === account);
    const usedVcpus = held.reduce((n, r) => n + r.vcpus, 0);
    const byCount = this.limits.instances - held.length;
    if (byCount < min) {
      throw new Ec2Error('InstanceLimitExceeded', `You have requested more instances (${held.length + min}) than your current instance `
        + `limit of ${this.limits.instances} allows: stop or terminate some, or ask the host's operator to raise it`);
    }
    const byVcpus = Math.floor((this.limits.vcpus - usedVcpus) / vcpus);
    if (byVcpus < min) {
      throw new Ec2Error('VcpuLimitExceeded', `You have requested more vCPU capacity (${usedVcpus} in use, ${min * vcpus} more asked) `
        + `than your current vCPU limit of ${this.limits.vcpus} allows: stop or terminate some, or ask the host's operator to raise it`);
    }
    return Math.min(max, byCount, byVcpus);
  }

  /**
   * How many disks of `gib` each (from `min` up to `max`) the account's storage and the host's disk can take;
   * throws VolumeLimitExceeded (the account's limit) or InsufficientVolumeCapacity (the host's disk) when not even `min`.
   */
  disks(account: string, gib: number, min = 1, max = 1): number {
    const all = this.store.disks();
    const own = all.reduce((n, d) => n + (d.account === account ? d.size_gib : 0), 0);
    const byAccount = Math.floor((this.limits.volumeGiB - own) / gib);
    if (byAccount < min) {
      throw new Ec2Error('VolumeLimitExceeded', `You have exceeded your maximum volume storage limit of ${this.limits.volumeGiB} GiB `
        + `(${own} GiB provisioned, ${min * gib} GiB more asked): delete volumes, or ask the host's operator to raise it`);
    }
    const unwritten = all.reduce((n, d) => n + Math.max(0, d.size_gib * GIB - allocatedBytes(this.file(d))), 0);
    const byHost = Math.floor((this.diskOvercommit * availableBytes(this.dataDir) - unwritten) / (gib * GIB));
    if (byHost < min) {
      throw new Ec2Error('InsufficientVolumeCapacity', `There is not enough capacity to fulfill your volume provision request: this `
        + `host cannot back ${min * gib} GiB more; ask for less, or try again when space is freed`, 500);
    }
    return Math.min(max, byAccount, byHost);
  }

  private file(d: DiskRow): string {
    return d.kind === 'volume' ? this.controller.volumeFile(d.id) : this.controller.files(d.id).root;
  }
}
