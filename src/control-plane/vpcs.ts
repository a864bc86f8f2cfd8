// VPCs: CreateVpc, DeleteVpc, DescribeVpcs. Each VPC is an IPv4 block of /16 to /28 with its own default security
// group; VPCs may overlap (they are separate networks), and an account has at most 5 in the region, its default
// VPC included (VpcLimitExceeded), as on AWS.
import { createHash } from 'node:crypto';
import { cidrString, parseCidr } from './cidr.js';
import { applyFilters, paginate, tagSet, tagSpecifications, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid } from './errors.js';
import { newId } from './ids.js';
import { vpcNamed, type NetworkContext } from './network-refs.js';
import { checkTag } from './query.js';
import { addDefaultGroup, DEFAULT_GROUP } from './security-groups.js';
import type { Store, VpcRow } from './store.js';
import { list, type XmlNode } from './xml.js';

/** The prefixes a VPC's block may have. */
export const VPC_PREFIXES = { min: 16, max: 28 } as const;
/** The DHCP options of every VPC: AWS's defaults (a DHCP options set of its own comes with the DHCP work). */
const DHCP_OPTIONS = 'default';

/** Adds a VPC and its default security group. */
export function addVpc(store: Store, account: string, cidr: string, isDefault: boolean): VpcRow {
  const row: VpcRow = { id: newId('vpc'), account, cidr, is_default: isDefault ? 1 : 0, created: new Date().toISOString() };
  store.addVpc(row);
  addDefaultGroup(store, account, row.id);
  return row;
}

/** The VPC's one IPv4 block association, with a stable id derived from the VPC's. */
const associationId = (vpcId: string): string => `vpc-cidr-assoc-${createHash('sha256').update(vpcId).digest('hex').slice(0, 17)}`;

function vpcXml(ctx: ApiContext, v: VpcRow): XmlNode {
  const tags = ctx.store.tagsOf(ctx.account.id, v.id);
  return {
    vpcId: v.id, ownerId: ctx.account.id, state: 'available', cidrBlock: v.cidr,
    cidrBlockAssociationSet: list([{ associationId: associationId(v.id), cidrBlock: v.cidr, cidrBlockState: { state: 'associated' } }]),
    dhcpOptionsId: DHCP_OPTIONS, instanceTenancy: 'default', isDefault: v.is_default === 1, tagSet: tags.length > 0 ? tagSet(tags) : undefined,
  };
}

export const createVpc: Action = (c) => {
  const ctx = c as NetworkContext;
  const text = ctx.params.required('CidrBlock');
  const cidr = parseCidr(text);
  if (!cidr) throw invalid(`Value (${text.slice(0, 64)}) for parameter cidrBlock is invalid. This is not a valid CIDR block.`);
  if (cidr.prefix < VPC_PREFIXES.min || cidr.prefix > VPC_PREFIXES.max) throw new Ec2Error('InvalidVpc.Range', `The CIDR '${text}' is invalid.`);
  const tenancy = ctx.params.optional('InstanceTenancy') ?? 'default';
  if (tenancy !== 'default') throw invalid(`Value (${tenancy}) for parameter instanceTenancy is invalid: this host offers default tenancy only`);
  if (ctx.params.bool('AmazonProvidedIpv6CidrBlock', false) || ctx.params.optional('Ipv6CidrBlock') !== undefined) {
    throw invalid('IPv6 CIDR blocks are not supported: Azote\'s VPCs are IPv4 only');
  }
  const tags = tagSpecifications(ctx.params, 'vpc', ['vpc']);
  for (const t of tags) checkTag(t.key, t.value);
  const row = ctx.store.transaction(() => {
    const count = ctx.store.vpcs(ctx.account.id).length;
    if (count >= ctx.quotas.limits.vpcs) {
      throw new Ec2Error('VpcLimitExceeded', `The maximum number of VPCs has been reached: ${count} of ${ctx.quotas.limits.vpcs} in ${ctx.region}`);
    }
    const v = addVpc(ctx.store, ctx.account.id, cidrString(cidr), false);
    for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: v.id, resource_type: 'vpc', key: t.key, value: t.value });
    return v;
  });
  return { vpc: vpcXml(ctx, row) };
};

export const deleteVpc: Action = (ctx) => {
  const v = vpcNamed(ctx, ctx.params.required('VpcId'));
  ctx.store.transaction(() => {
    const subnets = ctx.store.subnets(ctx.account.id).some((s) => s.vpc_id === v.id);
    const groups = ctx.store.securityGroups(ctx.account.id).some((g) => g.vpc_id === v.id && g.name !== DEFAULT_GROUP);
    if (subnets || groups) throw new Ec2Error('DependencyViolation', `The vpc '${v.id}' has dependencies and cannot be deleted.`);
    ctx.store.deleteVpc(ctx.account.id, v.id);
  });
  return { return: true };
};

export const describeVpcs: Action = (ctx) => {
  const all = ctx.store.vpcs(ctx.account.id);
  const ids = ctx.params.list('VpcId');
  for (const id of ids) vpcNamed(ctx, id);
  const chosen = ids.length > 0 ? all.filter((v) => ids.includes(v.id)) : all;
  const isDefault = (v: VpcRow): string[] => [String(v.is_default === 1)];
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'vpc-id': (v) => [v.id], cidr: (v) => [v.cidr], 'cidr-block-association.cidr-block': (v) => [v.cidr],
    'cidr-block-association.association-id': (v) => [associationId(v.id)], 'cidr-block-association.state': () => ['associated'],
    'dhcp-options-id': () => [DHCP_OPTIONS], 'is-default': isDefault, isDefault, 'owner-id': () => [ctx.account.id], state: () => ['available'],
  }, (v) => ctx.store.tagsOf(ctx.account.id, v.id));
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return { vpcSet: list(page.map((v) => vpcXml(ctx, v))), nextToken: next };
};
