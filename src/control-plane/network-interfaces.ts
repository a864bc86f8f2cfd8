// Network interfaces: each instance has one (device index 0) in its subnet, with its security groups, made at
// RunInstances and deleted when the instance is terminated (DeleteOnTermination, as EC2's primary interface).
// DescribeNetworkInterfaces, and the interface as DescribeInstances shows it.
import { createHash } from 'node:crypto';
import { firstFree, ipString, parseCidr, parseIp } from './cidr.js';
import { applyFilters, paginate, tagSet, zoneIdOf, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid, missing } from './errors.js';
import { newId, wellFormed } from './ids.js';
import { defaultVpcOf, groupNamed, subnetNamed, type NetworkContext } from './network-refs.js';
import { DEFAULT_GROUP } from './security-groups.js';
import type { InstanceRow, NetworkInterfaceRow, SecurityGroupRow, Store, SubnetRow } from './store.js';
import { list, type XmlNode, type XmlValue } from './xml.js';

/**
 * The address and MAC the API shows for an instance's interface: those the control plane allocated it at launch
 * (copied onto the instance's row, and cleared when it is terminated and its interface deleted). The controller
 * tells the VPC's network card both, and the guest gets that address by DHCP.
 */
export function shownAddress(instance: InstanceRow): { ip: string | undefined; mac: string | undefined } {
  return { ip: instance.private_ip ?? undefined, mac: instance.mac ?? undefined };
}

/**
 * An interface's MAC: locally administered unicast (02 in its first byte, as EC2's MACs are), the rest from a hash of
 * the interface's id, so it stays the same for the interface's life without being stored apart.
 */
export function interfaceMac(interfaceId: string): string {
  const h = createHash('sha256').update(interfaceId).digest();
  return [0x02, ...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Where a launch puts its instances' interfaces. */
export interface LaunchNetwork {
  readonly subnet: SubnetRow;
  readonly groups: readonly SecurityGroupRow[];
}

/** The one interface a RunInstances may describe in NetworkInterface.N (device index 0, a new interface). */
function interfaceSpec(ctx: ApiContext): { subnetId: string | undefined; groupIds: string[]; groupNames: string[] } {
  const p = ctx.params;
  const indexes = p.indexes('NetworkInterface');
  const top = { subnetId: p.optional('SubnetId'), groupIds: p.list('SecurityGroupId'), groupNames: p.list('SecurityGroup') };
  if (indexes.length === 0) return top;
  if (indexes.length > 1) throw invalid('An instance has one network interface on this host: give NetworkInterface.1 only');
  if (top.subnetId !== undefined || top.groupIds.length > 0 || top.groupNames.length > 0) {
    throw new Ec2Error('InvalidParameterCombination', 'Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request');
  }
  const at = `NetworkInterface.${indexes[0] ?? 1}`;
  const device = p.optional(`${at}.DeviceIndex`);
  if (device === undefined) throw missing(`${at}.DeviceIndex`);
  if (device !== '0') throw invalid(`Invalid value '${device}' for ${at}.DeviceIndex: the instance's one interface is device 0`);
  if (p.optional(`${at}.NetworkInterfaceId`) !== undefined) throw invalid('Attaching an existing network interface at launch is not supported: give a SubnetId');
  if (p.bool(`${at}.AssociatePublicIpAddress`, false)) throw invalid('This host has no public IPv4 addresses: AssociatePublicIpAddress must be false');
  if (!p.bool(`${at}.DeleteOnTermination`, true)) throw invalid('An instance\'s interface is deleted with it: DeleteOnTermination must be true');
  return { subnetId: p.optional(`${at}.SubnetId`), groupIds: p.list(`${at}.SecurityGroupId`), groupNames: [] };
}

/**
 * The subnet and groups of a launch: SubnetId (or the default VPC's default subnet of `zone`), SecurityGroupId.N and
 * SecurityGroup.N (names, in the default VPC), or the VPC's default group; or the same in NetworkInterface.1.
 */
export function launchNetwork(ctx: NetworkContext, zone: string): LaunchNetwork {
  const p = ctx.params;
  if (p.optional('PrivateIpAddress') !== undefined || p.indexes('NetworkInterface').some((i) => p.optional(`NetworkInterface.${i}.PrivateIpAddress`) !== undefined)) {
    throw invalid('Choosing an instance\'s private address is not supported: it is allocated from the subnet');
  }
  const spec = interfaceSpec(ctx);
  let subnet: SubnetRow;
  if (spec.subnetId !== undefined) subnet = subnetNamed(ctx, spec.subnetId);
  else {
    const vpc = defaultVpcOf(ctx);
    const found = ctx.store.subnets(ctx.account.id).find((s) => s.vpc_id === vpc.id && s.default_for_az === 1 && s.zone === zone);
    if (!found) throw new Ec2Error('MissingInput', `No subnets found for the default VPC '${vpc.id}'. Please specify a subnet.`);
    subnet = found;
  }
  const groups = new Map<string, SecurityGroupRow>();
  for (const id of spec.groupIds) {
    const g = groupNamed(ctx, id);
    if (g.vpc_id !== subnet.vpc_id) throw new Ec2Error('InvalidParameter', `Security group ${g.id} and subnet ${subnet.id} belong to different networks.`);
    groups.set(g.id, g);
  }
  if (spec.groupNames.length > 0 && ctx.store.defaultVpc(ctx.account.id)?.id !== subnet.vpc_id) {
    throw new Ec2Error('InvalidParameterCombination', 'The parameter groupName cannot be used with the parameter subnet');
  }
  for (const name of spec.groupNames) {
    const g = ctx.store.securityGroupByName(ctx.account.id, subnet.vpc_id, name);
    if (!g) throw new Ec2Error('InvalidGroup.NotFound', `The security group '${name}' does not exist in VPC '${subnet.vpc_id}'`);
    groups.set(g.id, g);
  }
  if (groups.size === 0) {
    const g = ctx.store.securityGroupByName(ctx.account.id, subnet.vpc_id, DEFAULT_GROUP);
    if (!g) throw new Ec2Error('InvalidGroup.NotFound', `The security group '${DEFAULT_GROUP}' does not exist in VPC '${subnet.vpc_id}'`);
    groups.set(g.id, g);
  }
  if (groups.size > ctx.quotas.limits.groupsPerInterface) {
    throw new Ec2Error('SecurityGroupsPerInterfaceLimitExceeded', `The maximum number of security groups per interface has been reached: `
      + `${groups.size} given, at most ${ctx.quotas.limits.groupsPerInterface}`);
  }
  return { subnet, groups: [...groups.values()] };
}

/** Gives an instance its interface, with the subnet's lowest free address; InsufficientFreeAddressesInSubnet if none. */
export function attachInterface(store: Store, account: string, instanceId: string, net: LaunchNetwork): NetworkInterfaceRow {
  const cidr = parseCidr(net.subnet.cidr);
  const taken = new Set(store.addressesIn(net.subnet.id).map((a) => parseIp(a) ?? -1));
  const ip = cidr ? firstFree(cidr, taken) : undefined;
  if (ip === undefined) {
    throw new Ec2Error('InsufficientFreeAddressesInSubnet', `There are not enough free addresses in subnet '${net.subnet.id}' to satisfy the requested number of instances.`);
  }
  const row: NetworkInterfaceRow = {
    id: newId('eni'), account, vpc_id: net.subnet.vpc_id, subnet_id: net.subnet.id, private_ip: ipString(ip), instance_id: instanceId,
    attachment_id: newId('eni-attach'), created: new Date().toISOString(),
  };
  store.addNetworkInterface(row, net.groups.map((g) => g.id));
  store.updateInstance(instanceId, { private_ip: row.private_ip, mac: interfaceMac(row.id) });
  return row;
}

/** The account's interfaces and their groups, read once for an answer. */
export class NetworkView {
  private readonly byInstance: Map<string, NetworkInterfaceRow>;
  private readonly groups: Map<string, string[]>;
  private readonly names: Map<string, string>;

  constructor(readonly ctx: ApiContext) {
    this.byInstance = new Map(ctx.store.networkInterfaces(ctx.account.id).map((n) => [n.instance_id, n]));
    this.groups = ctx.store.interfaceGroups(ctx.account.id);
    this.names = new Map(ctx.store.securityGroups(ctx.account.id).map((g) => [g.id, g.name]));
  }

  interfaceOf(instanceId: string): NetworkInterfaceRow | undefined {
    return this.byInstance.get(instanceId);
  }

  interfaces(): NetworkInterfaceRow[] {
    return [...this.byInstance.values()];
  }

  groupsOf(n: NetworkInterfaceRow): Array<{ id: string; name: string }> {
    return (this.groups.get(n.id) ?? []).map((id) => ({ id, name: this.names.get(id) ?? '' }));
  }

  groupSet(n: NetworkInterfaceRow | undefined): XmlValue {
    return list(n ? this.groupsOf(n).map((g) => ({ groupId: g.id, groupName: g.name })) : []);
  }
}

export const privateDnsName = (region: string, ip: string | undefined): string =>
  ip ? `ip-${ip.replace(/\./g, '-')}.${region}.compute.internal` : '';

/** The parts an interface shows in DescribeInstances and DescribeNetworkInterfaces alike. */
function common(view: NetworkView, n: NetworkInterfaceRow, instance: InstanceRow): XmlNode {
  const { ip, mac } = shownAddress(instance);
  const dns = privateDnsName(view.ctx.region, ip);
  return {
    networkInterfaceId: n.id, subnetId: n.subnet_id, vpcId: n.vpc_id, description: '', ownerId: view.ctx.account.id, status: 'in-use',
    macAddress: mac, privateIpAddress: ip, privateDnsName: ip ? dns : undefined, sourceDestCheck: true, groupSet: view.groupSet(n),
  };
}

function addresses(region: string, instance: InstanceRow): XmlValue {
  const { ip } = shownAddress(instance);
  return list(ip ? [{ privateIpAddress: ip, privateDnsName: privateDnsName(region, ip), primary: true }] : []);
}

/** An instance's interface as DescribeInstances shows it (networkInterfaceSet/item). */
export function instanceInterfaceXml(view: NetworkView, n: NetworkInterfaceRow, instance: InstanceRow): XmlNode {
  return {
    ...common(view, n, instance),
    attachment: { attachmentId: n.attachment_id, deviceIndex: 0, status: 'attached', attachTime: new Date(n.created), deleteOnTermination: true, networkCardIndex: 0 },
    privateIpAddressesSet: addresses(view.ctx.region, instance), ipv6AddressesSet: list([]), interfaceType: 'interface',
  };
}

function interfaceXml(view: NetworkView, n: NetworkInterfaceRow, instance: InstanceRow, zone: string): XmlNode {
  const tags = view.ctx.store.tagsOf(view.ctx.account.id, n.id);
  return {
    ...common(view, n, instance), availabilityZone: zone, availabilityZoneId: zoneIdOf(view.ctx.region), requesterManaged: false,
    attachment: {
      attachmentId: n.attachment_id, instanceId: n.instance_id, instanceOwnerId: view.ctx.account.id, deviceIndex: 0, status: 'attached',
      attachTime: new Date(n.created), deleteOnTermination: true, networkCardIndex: 0,
    },
    privateIpAddressesSet: addresses(view.ctx.region, instance), ipv6AddressesSet: list([]), interfaceType: 'interface',
    tagSet: tagSet(tags),
  };
}

export const describeNetworkInterfaces: Action = (ctx) => {
  const view = new NetworkView(ctx);
  const all = view.interfaces();
  const ids = ctx.params.list('NetworkInterfaceId');
  for (const id of ids) {
    if (!wellFormed('eni', id)) throw new Ec2Error('InvalidNetworkInterfaceID.Malformed', `Invalid id: "${id}" (expecting "eni-...")`);
    if (!all.some((n) => n.id === id)) throw new Ec2Error('InvalidNetworkInterfaceID.NotFound', `The networkInterface ID '${id}' does not exist`);
  }
  const instances = new Map(ctx.store.instances(ctx.account.id).map((r) => [r.id, r]));
  const zones = new Map(ctx.store.subnets(ctx.account.id).map((s) => [s.id, s.zone]));
  const chosen = (ids.length > 0 ? all.filter((n) => ids.includes(n.id)) : all).filter((n) => instances.has(n.instance_id));
  const of = (n: NetworkInterfaceRow): InstanceRow => instances.get(n.instance_id) as InstanceRow;
  const ip = (n: NetworkInterfaceRow): Array<string | undefined> => [shownAddress(of(n)).ip];
  const zone = (n: NetworkInterfaceRow): string => zones.get(n.subnet_id) ?? '';
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'network-interface-id': (n) => [n.id], 'subnet-id': (n) => [n.subnet_id], 'vpc-id': (n) => [n.vpc_id], 'availability-zone': (n) => [zone(n)],
    'attachment.instance-id': (n) => [n.instance_id], 'attachment.attachment-id': (n) => [n.attachment_id], 'attachment.device-index': () => ['0'],
    'attachment.status': () => ['attached'], 'attachment.instance-owner-id': () => [ctx.account.id], 'attachment.delete-on-termination': () => ['true'],
    'private-ip-address': ip, 'addresses.private-ip-address': ip, 'mac-address': (n) => [shownAddress(of(n)).mac], status: () => ['in-use'],
    'group-id': (n) => view.groupsOf(n).map((g) => g.id), 'group-name': (n) => view.groupsOf(n).map((g) => g.name), 'owner-id': () => [ctx.account.id],
    'interface-type': () => ['interface'], description: () => [''], 'requester-managed': () => ['false'], 'source-dest-check': () => ['true'],
  }, (n) => ctx.store.tagsOf(ctx.account.id, n.id));
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return { networkInterfaceSet: list(page.map((n) => interfaceXml(view, n, of(n), zone(n)))), nextToken: next };
};
