// Subnets: CreateSubnet, DeleteSubnet, DescribeSubnets. A subnet is a block of /16 to /28 inside its VPC's, apart
// from the VPC's other subnets, in this host's one zone; its interfaces get its addresses from the fifth to the
// one before the last (AWS keeps the others), which is what AvailableIpAddressCount counts down.
import { cidrString, contains, overlaps, parseCidr, usableCount } from './cidr.js';
import { applyFilters, paginate, tagSet, tagSpecifications, zoneIdOf, zoneOf, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid } from './errors.js';
import { newId } from './ids.js';
import { arn, subnetNamed, vpcNamed, type NetworkContext } from './network-refs.js';
import { checkTag } from './query.js';
import type { Store, SubnetRow } from './store.js';
import { VPC_PREFIXES } from './vpcs.js';
import { list, type XmlNode } from './xml.js';

export function addSubnet(store: Store, account: string, vpcId: string, cidr: string, zone: string, defaultForAz: boolean): SubnetRow {
  const row: SubnetRow = { id: newId('subnet'), account, vpc_id: vpcId, cidr, zone, default_for_az: defaultForAz ? 1 : 0, created: new Date().toISOString() };
  store.addSubnet(row);
  return row;
}

/** Addresses of the subnet no interface has. */
export function availableAddresses(store: Store, s: SubnetRow): number {
  const cidr = parseCidr(s.cidr);
  return cidr ? usableCount(cidr) - store.addressesIn(s.id).length : 0;
}

function subnetXml(ctx: ApiContext, s: SubnetRow): XmlNode {
  const tags = ctx.store.tagsOf(ctx.account.id, s.id);
  return {
    subnetId: s.id, subnetArn: arn(ctx, 'subnet', s.id), state: 'available', vpcId: s.vpc_id, cidrBlock: s.cidr,
    ipv6CidrBlockAssociationSet: list([]), availableIpAddressCount: availableAddresses(ctx.store, s), availabilityZone: s.zone,
    availabilityZoneId: zoneIdOf(ctx.region), defaultForAz: s.default_for_az === 1,
    // No instance gets a public address on this host: a default subnet saying true would promise one.
    mapPublicIpOnLaunch: false, mapCustomerOwnedIpOnLaunch: false, assignIpv6AddressOnCreation: false, ipv6Native: false,
    enableDns64: false, ownerId: ctx.account.id,
    privateDnsNameOptionsOnLaunch: { hostnameType: 'ip-name', enableResourceNameDnsARecord: false, enableResourceNameDnsAAAARecord: false },
    tagSet: tags.length > 0 ? tagSet(tags) : undefined,
  };
}

export const createSubnet: Action = (c) => {
  const ctx = c as NetworkContext;
  const vpc = vpcNamed(ctx, ctx.params.required('VpcId'));
  const text = ctx.params.required('CidrBlock');
  const cidr = parseCidr(text);
  if (!cidr) throw invalid(`Value (${text.slice(0, 64)}) for parameter cidrBlock is invalid. This is not a valid CIDR block.`);
  const zone = zoneOf(ctx.region);
  const askedZone = ctx.params.optional('AvailabilityZone'), askedZoneId = ctx.params.optional('AvailabilityZoneId');
  if (askedZone !== undefined && askedZone !== zone || askedZoneId !== undefined && askedZoneId !== zoneIdOf(ctx.region)) {
    throw invalid(`Value (${askedZone ?? askedZoneId ?? ''}) for parameter availabilityZone is invalid. Subnets can currently only be created `
      + `in the following availability zones: ${zone}.`);
  }
  if (ctx.params.optional('Ipv6CidrBlock') !== undefined || ctx.params.bool('Ipv6Native', false)) {
    throw invalid('IPv6 CIDR blocks are not supported: Azote\'s VPCs are IPv4 only');
  }
  const vpcCidr = parseCidr(vpc.cidr);
  if (!vpcCidr || cidr.prefix < VPC_PREFIXES.min || cidr.prefix > VPC_PREFIXES.max || !contains(vpcCidr, cidr)) {
    throw new Ec2Error('InvalidSubnet.Range', `The CIDR '${text}' is invalid.`);
  }
  const tags = tagSpecifications(ctx.params, 'subnet', ['subnet']);
  for (const t of tags) checkTag(t.key, t.value);
  const row = ctx.store.transaction(() => {
    const siblings = ctx.store.subnets(ctx.account.id).filter((s) => s.vpc_id === vpc.id);
    if (siblings.some((s) => { const o = parseCidr(s.cidr); return o !== undefined && overlaps(o, cidr); })) {
      throw new Ec2Error('InvalidSubnet.Conflict', `The CIDR '${text}' conflicts with another subnet`);
    }
    if (siblings.length >= ctx.quotas.limits.subnetsPerVpc) {
      throw new Ec2Error('SubnetLimitExceeded', `The maximum number of subnets has been reached: ${vpc.id} has ${siblings.length} of ${ctx.quotas.limits.subnetsPerVpc}`);
    }
    const s = addSubnet(ctx.store, ctx.account.id, vpc.id, cidrString(cidr), zone, false);
    for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: s.id, resource_type: 'subnet', key: t.key, value: t.value });
    return s;
  });
  return { subnet: subnetXml(ctx, row) };
};

export const deleteSubnet: Action = (ctx) => {
  const s = subnetNamed(ctx, ctx.params.required('SubnetId'));
  ctx.store.transaction(() => {
    if (ctx.store.addressesIn(s.id).length > 0) throw new Ec2Error('DependencyViolation', `The subnet '${s.id}' has dependencies and cannot be deleted.`);
    ctx.store.deleteSubnet(ctx.account.id, s.id);
  });
  return { return: true };
};

export const describeSubnets: Action = (ctx) => {
  const all = ctx.store.subnets(ctx.account.id);
  const ids = ctx.params.list('SubnetId');
  for (const id of ids) subnetNamed(ctx, id);
  const chosen = ids.length > 0 ? all.filter((s) => ids.includes(s.id)) : all;
  const cidr = (s: SubnetRow): string[] => [s.cidr];
  const zone = (s: SubnetRow): string[] => [s.zone];
  const zoneId = (): string[] => [zoneIdOf(ctx.region)];
  const isDefault = (s: SubnetRow): string[] => [String(s.default_for_az === 1)];
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'subnet-id': (s) => [s.id], 'vpc-id': (s) => [s.vpc_id], 'cidr-block': cidr, cidr, cidrBlock: cidr,
    'availability-zone': zone, availabilityZone: zone, 'availability-zone-id': zoneId, availabilityZoneId: zoneId,
    'default-for-az': isDefault, defaultForAz: isDefault, state: () => ['available'], 'owner-id': () => [ctx.account.id],
    'available-ip-address-count': (s) => [String(availableAddresses(ctx.store, s))], 'map-public-ip-on-launch': () => ['false'],
    'subnet-arn': (s) => [arn(ctx, 'subnet', s.id)], 'ipv6-native': () => ['false'],
  }, (s) => ctx.store.tagsOf(ctx.account.id, s.id));
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return { subnetSet: list(page.map((s) => subnetXml(ctx, s))), nextToken: next };
};
