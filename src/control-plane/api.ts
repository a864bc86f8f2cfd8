// The EC2 Query API's dispatch: which actions exist and the context each runs in.
import type { Logger } from '../base/log.js';
import type { Controller } from '../controller/controller.js';
import type { Action } from './context.js';
import { describeAccountAttributes, ensureDefaultNetwork } from './default-vpc.js';
import { describeAvailabilityZones, describeImages, describeInstanceTypes, describeRegions } from './describe.js';
import { Ec2Error } from './errors.js';
import {
  describeInstances, describeInstanceStatus, getConsoleOutput, rebootInstances, runInstances, startInstances,
  stopInstances, terminateInstances, type InstanceActionsContext,
} from './instances.js';
import { createKeyPair, deleteKeyPair, describeKeyPairs, importKeyPair } from './keypairs.js';
import { FORGET_TERMINATED_AFTER_MS, Lifecycle } from './lifecycle.js';
import { describeNetworkInterfaces } from './network-interfaces.js';
import type { QueryParams } from './query.js';
import { DEFAULT_DISK_OVERCOMMIT, defaultLimits, Quotas, type AccountLimits } from './quotas.js';
import type { AccountRow, Store } from './store.js';
import {
  authorizeSecurityGroupEgress, authorizeSecurityGroupIngress, revokeSecurityGroupEgress, revokeSecurityGroupIngress,
} from './security-group-rules.js';
import { createSecurityGroup, deleteSecurityGroup, describeSecurityGroups } from './security-groups.js';
import { createSubnet, deleteSubnet, describeSubnets } from './subnets.js';
import { createTags, deleteTags, describeTags } from './tags.js';
import { attachVolume, createVolume, deleteVolume, describeVolumes, detachVolume } from './volumes.js';
import { createVpc, deleteVpc, describeVpcs } from './vpcs.js';
import type { XmlNode } from './xml.js';

export const API_VERSION = '2016-11-15';

const ACTIONS: Readonly<Record<string, Action>> = {
  RunInstances: runInstances, DescribeInstances: describeInstances, DescribeInstanceStatus: describeInstanceStatus,
  StartInstances: startInstances, StopInstances: stopInstances, RebootInstances: rebootInstances,
  TerminateInstances: terminateInstances, GetConsoleOutput: getConsoleOutput,
  DescribeImages: describeImages, DescribeInstanceTypes: describeInstanceTypes, DescribeRegions: describeRegions,
  DescribeAvailabilityZones: describeAvailabilityZones,
  CreateKeyPair: createKeyPair, ImportKeyPair: importKeyPair, DescribeKeyPairs: describeKeyPairs, DeleteKeyPair: deleteKeyPair,
  CreateTags: createTags, DeleteTags: deleteTags, DescribeTags: describeTags,
  CreateVolume: createVolume, AttachVolume: attachVolume, DetachVolume: detachVolume, DeleteVolume: deleteVolume,
  DescribeVolumes: describeVolumes,
  DescribeAccountAttributes: describeAccountAttributes, CreateVpc: createVpc, DeleteVpc: deleteVpc, DescribeVpcs: describeVpcs,
  CreateSubnet: createSubnet, DeleteSubnet: deleteSubnet, DescribeSubnets: describeSubnets,
  CreateSecurityGroup: createSecurityGroup, DeleteSecurityGroup: deleteSecurityGroup, DescribeSecurityGroups: describeSecurityGroups,
  AuthorizeSecurityGroupIngress: authorizeSecurityGroupIngress, AuthorizeSecurityGroupEgress: authorizeSecurityGroupEgress,
  RevokeSecurityGroupIngress: revokeSecurityGroupIngress, RevokeSecurityGroupEgress: revokeSecurityGroupEgress,
  DescribeNetworkInterfaces: describeNetworkInterfaces,
};

/** The host's settings of accounts' limits and its disk (defaults: defaultLimits, DEFAULT_DISK_OVERCOMMIT). */
export interface HostPolicy {
  readonly limits?: Partial<AccountLimits> | undefined;
  /** The unwritten part of all sparse disks may be this many times the data directory's free space. */
  readonly diskOvercommit?: number | undefined;
  /** Terminated instances are forgotten this long after they ended. */
  readonly forgetTerminatedAfterMs?: number | undefined;
}

/** The limits given, without those left undefined (which keep their defaults). */
function definedOnly(limits: Partial<AccountLimits>): Partial<AccountLimits> {
  return Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined));
}

export class Ec2Api {
  readonly lifecycle: Lifecycle;
  readonly quotas: Quotas;

  constructor(readonly store: Store, readonly controller: Controller, readonly region: string, readonly dataDir: string, log: Logger,
    shareCoresWithinAccount = false, policy: HostPolicy = {}) {
    this.lifecycle = new Lifecycle(store, controller, log, shareCoresWithinAccount);
    this.lifecycle.recover();
    this.lifecycle.forgetTerminated(policy.forgetTerminatedAfterMs ?? FORGET_TERMINATED_AFTER_MS);
    this.quotas = new Quotas(store, controller, dataDir, { ...defaultLimits(controller.capacity), ...definedOnly(policy.limits ?? {}) },
      policy.diskOvercommit ?? DEFAULT_DISK_OVERCOMMIT);
  }

  /** Stops every instance (marked stopped, with the reason) and the host's cards. */
  async close(): Promise<void> {
    this.lifecycle.close();
    this.lifecycle.hostShutdown = true;
    await this.controller.close();
  }

  async dispatch(action: string, params: QueryParams, account: AccountRow): Promise<XmlNode> {
    const run = Object.hasOwn(ACTIONS, action) ? ACTIONS[action] : undefined;
    if (!run) throw new Ec2Error('InvalidAction', `The action ${action} is not valid for this web service.`);
    const version = params.optional('Version');
    if (version === undefined) throw new Ec2Error('MissingParameter', 'The request must contain the parameter Version');
    if (version !== API_VERSION) throw new Ec2Error('InvalidParameterValue', `Version ${version} is not supported: Azote speaks ${API_VERSION}`);
    // Every caller may do what it asks of its own account (there are no IAM policies here), so a dry run only says so.
    if (params.bool('DryRun', false)) throw new Ec2Error('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
    ensureDefaultNetwork(this.store, account.id, this.region);
    const ctx: InstanceActionsContext = {
      store: this.store, controller: this.controller, region: this.region, dataDir: this.dataDir, account, params, lifecycle: this.lifecycle,
      quotas: this.quotas,
    };
    return run(ctx);
  }
}
