// The VPC resources a caller names, found in its own account or refused with EC2's errors (another account's id
// answers as a missing one), and their ARNs.
import type { ApiContext } from './context.js';
import { Ec2Error } from './errors.js';
import { wellFormed } from './ids.js';
import type { Quotas } from './quotas.js';
import type { SecurityGroupRow, SubnetRow, VpcRow } from './store.js';

/** What the VPC actions see: the API's context and the account's limits. */
export type NetworkContext = ApiContext & { readonly quotas: Quotas };

export function vpcNamed(ctx: ApiContext, id: string): VpcRow {
  if (!wellFormed('vpc', id)) throw new Ec2Error('InvalidVpcID.Malformed', `Invalid id: "${id}" (expecting "vpc-...")`);
  const v = ctx.store.vpc(ctx.account.id, id);
  if (!v) throw new Ec2Error('InvalidVpcID.NotFound', `The vpc ID '${id}' does not exist`);
  return v;
}

export function subnetNamed(ctx: ApiContext, id: string): SubnetRow {
  if (!wellFormed('subnet', id)) throw new Ec2Error('InvalidSubnetID.Malformed', `Invalid id: "${id}" (expecting "subnet-...")`);
  const s = ctx.store.subnet(ctx.account.id, id);
  if (!s) throw new Ec2Error('InvalidSubnetID.NotFound', `The subnet ID '${id}' does not exist`);
  return s;
}

export function groupNamed(ctx: ApiContext, id: string): SecurityGroupRow {
  if (!wellFormed('sg', id)) throw new Ec2Error('InvalidGroupId.Malformed', `Invalid id: "${id}" (expecting "sg-...")`);
  const g = ctx.store.securityGroup(ctx.account.id, id);
  if (!g) throw new Ec2Error('InvalidGroup.NotFound', `The security group '${id}' does not exist`);
  return g;
}

/** The account's default VPC; EC2's error for an account that deleted it. */
export function defaultVpcOf(ctx: ApiContext): VpcRow {
  const v = ctx.store.defaultVpc(ctx.account.id);
  if (!v) throw new Ec2Error('VPCIdNotSpecified', 'No default VPC for this user');
  return v;
}

/** A group named by name: as EC2, names are looked up in the default VPC (other VPCs' groups are named by id). */
export function groupInDefaultVpc(ctx: ApiContext, name: string): SecurityGroupRow {
  const vpc = defaultVpcOf(ctx);
  const g = ctx.store.securityGroupByName(ctx.account.id, vpc.id, name);
  if (!g) throw new Ec2Error('InvalidGroup.NotFound', `The security group '${name}' does not exist in default VPC '${vpc.id}'`);
  return g;
}

export const arn = (ctx: ApiContext, type: string, id: string): string => `arn:aws:ec2:${ctx.region}:${ctx.account.id}:${type}/${id}`;
