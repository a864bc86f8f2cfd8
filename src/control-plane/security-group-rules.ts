// Security group rules: AuthorizeSecurityGroupIngress/Egress and RevokeSecurityGroupIngress/Egress, given as
// IpPermissions.N structures or as the legacy flat parameters (IpProtocol, FromPort, ToPort, CidrIp,
// SourceSecurityGroupName), and how a group's rules read in EC2's answers. Each rule is one protocol and port range
// with one peer (a CIDR block or a group of the same VPC); a later issue has the network card enforce them.
import { parseCidr } from './cidr.js';
import { tagSpecifications, type ApiContext } from './context.js';
import { Ec2Error, invalid, missing } from './errors.js';
import { newId, wellFormed } from './ids.js';
import { groupInDefaultVpc, groupNamed, type NetworkContext } from './network-refs.js';
import { checkTag, type QueryParams } from './query.js';
import type { SecurityGroupRow, SecurityGroupRuleRow } from './store.js';
import { list, type XmlNode, type XmlValue } from './xml.js';

/** A rule as asked for, before it has an id. */
export interface RuleSpec {
  readonly protocol: string;
  readonly from: number | null;
  readonly to: number | null;
  readonly cidr: string | null;
  readonly refGroup: string | null;
  readonly description: string;
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };
const MAX_DESCRIPTION = 255;

/** "tcp", "udp", "icmp", "icmpv6", "-1", or a protocol number (those four numbers are given their names, as EC2 does). */
export function parseProtocol(v: string): string {
  const lower = v.toLowerCase();
  if (lower === '-1' || Object.values(PROTOCOL_NAMES).includes(lower)) return lower;
  if (/^\d{1,3}$/.test(v) && Number(v) <= 255) return PROTOCOL_NAMES[Number(v)] ?? String(Number(v));
  throw invalid(`Invalid value '${v.slice(0, 64)}' for IP protocol. Unknown protocol.`);
}

/** The port range a protocol keeps: TCP/UDP ports 0-65535, ICMP type and code -1 (all) to 255; none for the others. */
export function portRange(protocol: string, from: number | undefined, to: number | undefined): { from: number | null; to: number | null } {
  if (protocol === 'tcp' || protocol === 'udp') {
    if (from === undefined || to === undefined) throw invalid(`Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.`);
    if (from < 0 || to > 65535 || from > to) throw invalid(`Invalid TCP/UDP port range ${from}-${to}: ports are 0 to 65535, from port <= to port`);
    return { from, to };
  }
  if (protocol === 'icmp' || protocol === 'icmpv6') {
    if (from === undefined || to === undefined) throw invalid(`Invalid value 'Must specify both from and to ports with ICMP.' for portRange.`);
    if (from < -1 || from > 255 || to < -1 || to > 255) throw invalid(`Invalid ICMP type ${from} or code ${to}: each is -1 (all) or 0 to 255`);
    if (from === -1 && to !== -1) throw invalid(`Invalid value for portRange: an ICMP code (${to}) needs a type, not -1`);
    return { from, to };
  }
  return { from: null, to: null };
}

function port(p: QueryParams, name: string): number | undefined {
  return p.int(name, undefined, -65536, 65536);
}

function cidrPeer(v: string): string {
  if (!parseCidr(v)) throw invalid(`CIDR block ${v.slice(0, 64)} is malformed`);
  return v;
}

function description(v: string | undefined): string {
  if (v !== undefined && v.length > MAX_DESCRIPTION) throw invalid(`Rule descriptions are at most ${MAX_DESCRIPTION} characters`);
  return v ?? '';
}

/** A peer group named in a rule: of this account and the target's VPC. */
function peerGroup(ctx: ApiContext, target: SecurityGroupRow, id: string | undefined, name: string | undefined, owner: string | undefined): string {
  if (owner !== undefined && owner !== ctx.account.id) {
    throw new Ec2Error('InvalidGroup.NotFound', `The security group '${id ?? name ?? ''}' of account ${owner} does not exist`);
  }
  let g: SecurityGroupRow | undefined;
  if (id !== undefined) g = groupNamed(ctx, id);
  else if (name !== undefined) {
    g = ctx.store.securityGroupByName(ctx.account.id, target.vpc_id, name);
    if (!g) throw new Ec2Error('InvalidGroup.NotFound', `The security group '${name}' does not exist in VPC '${target.vpc_id}'`);
  } else throw missing('GroupId');
  if (g.vpc_id !== target.vpc_id) {
    throw new Ec2Error('InvalidParameter', `Security group ${g.id} and security group ${target.id} belong to different networks.`);
  }
  return g.id;
}

/** The rules a request asks for, from IpPermissions.N or from the flat parameters (not both). */
export function requestedRules(ctx: ApiContext, target: SecurityGroupRow): RuleSpec[] {
  const p = ctx.params;
  const flat = ['IpProtocol', 'FromPort', 'ToPort', 'CidrIp', 'SourceSecurityGroupName'].filter((n) => p.optional(n) !== undefined);
  const indexes = p.indexes('IpPermissions');
  if (flat.length > 0 && indexes.length > 0) {
    throw new Ec2Error('InvalidParameterCombination', `The parameter ${flat[0] ?? ''} cannot be used with the parameter IpPermissions`);
  }
  if (flat.length > 0) return flatRules(ctx, target);
  if (indexes.length === 0) throw missing('IpPermissions');
  const out: RuleSpec[] = [];
  for (const i of indexes) {
    const at = `IpPermissions.${i}`;
    const protocolText = p.optional(`${at}.IpProtocol`);
    if (protocolText === undefined) throw missing(`${at}.IpProtocol`);
    const protocol = parseProtocol(protocolText);
    const { from, to } = portRange(protocol, port(p, `${at}.FromPort`), port(p, `${at}.ToPort`));
    if (p.indexes(`${at}.Ipv6Ranges`).length > 0) throw invalid('IPv6 CIDR blocks are not supported: Azote\'s VPCs are IPv4 only');
    const [prefixList] = p.indexes(`${at}.PrefixListIds`);
    if (prefixList !== undefined) {
      throw new Ec2Error('InvalidPrefixListID.NotFound', `The prefix list '${p.optional(`${at}.PrefixListIds.${prefixList}.PrefixListId`) ?? ''}' does not exist`);
    }
    const before = out.length;
    for (const j of p.indexes(`${at}.IpRanges`)) {
      const cidr = p.optional(`${at}.IpRanges.${j}.CidrIp`);
      if (cidr === undefined) throw missing(`${at}.IpRanges.${j}.CidrIp`);
      out.push({ protocol, from, to, cidr: cidrPeer(cidr), refGroup: null, description: description(p.optional(`${at}.IpRanges.${j}.Description`)) });
    }
    for (const j of p.indexes(`${at}.Groups`)) {
      const g = `${at}.Groups.${j}`;
      const refGroup = peerGroup(ctx, target, p.optional(`${g}.GroupId`), p.optional(`${g}.GroupName`), p.optional(`${g}.UserId`));
      out.push({ protocol, from, to, cidr: null, refGroup, description: description(p.optional(`${g}.Description`)) });
    }
    if (out.length === before) throw missing(`${at}.IpRanges or ${at}.Groups`);
  }
  return out;
}

/** The legacy form: one protocol, port range and CIDR, or a source group alone (all of TCP, UDP and ICMP from it). */
function flatRules(ctx: ApiContext, target: SecurityGroupRow): RuleSpec[] {
  const p = ctx.params;
  const source = p.optional('SourceSecurityGroupName');
  if (source !== undefined) {
    const other = ['IpProtocol', 'FromPort', 'ToPort', 'CidrIp'].find((n) => p.optional(n) !== undefined);
    if (other) throw new Ec2Error('InvalidParameterCombination', `The parameter SourceSecurityGroupName cannot be used with the parameter ${other}`);
    const refGroup = peerGroup(ctx, target, undefined, source, p.optional('SourceSecurityGroupOwnerId'));
    return [
      { protocol: 'icmp', from: -1, to: -1, cidr: null, refGroup, description: '' },
      { protocol: 'tcp', from: 0, to: 65535, cidr: null, refGroup, description: '' },
      { protocol: 'udp', from: 0, to: 65535, cidr: null, refGroup, description: '' },
    ];
  }
  const protocol = parseProtocol(p.required('IpProtocol'));
  const { from, to } = portRange(protocol, port(p, 'FromPort'), port(p, 'ToPort'));
  return [{ protocol, from, to, cidr: cidrPeer(p.required('CidrIp')), refGroup: null, description: '' }];
}

const sameRule = (a: RuleSpec, b: SecurityGroupRuleRow | RuleSpec): boolean => a.protocol === b.protocol
  && a.from === ('from_port' in b ? b.from_port : b.from) && a.to === ('to_port' in b ? b.to_port : b.to)
  && a.cidr === b.cidr && a.refGroup === ('ref_group' in b ? b.ref_group : b.refGroup);

function ruleText(r: RuleSpec, egress: boolean): string {
  const ports = r.from === null ? 'ALL' : `${r.protocol.toUpperCase()}, from port: ${r.from}, to port: ${r.to ?? ''}`;
  return `peer: ${r.cidr ?? r.refGroup ?? ''}, ${r.protocol === '-1' ? 'ALL' : ports}, ${egress ? 'ALLOW egress' : 'ALLOW'}`;
}

/** The rules of a group, as rows to add (no duplicates, within the limit); the caller stores them. */
export function addRules(ctx: NetworkContext, group: SecurityGroupRow, egress: boolean, specs: readonly RuleSpec[]): SecurityGroupRuleRow[] {
  const existing = ctx.store.rulesOf(ctx.account.id, group.id).filter((r) => (r.egress === 1) === egress);
  specs.forEach((s, i) => {
    if (existing.some((r) => sameRule(s, r)) || specs.slice(0, i).some((o) => sameRule(s, o))) {
      throw new Ec2Error('InvalidPermission.Duplicate', `the specified rule "${ruleText(s, egress)}" already exists`);
    }
  });
  const limit = ctx.quotas.limits.rulesPerGroup;
  if (existing.length + specs.length > limit) {
    throw new Ec2Error('RulesPerSecurityGroupLimitExceeded', `The maximum number of rules per security group has been reached: ${group.id} `
      + `has ${existing.length} ${egress ? 'outbound' : 'inbound'} rules of at most ${limit}, and ${specs.length} more were asked`);
  }
  return specs.map((s) => ({
    id: newId('sgr'), account: ctx.account.id, group_id: group.id, egress: egress ? 1 : 0, protocol: s.protocol, from_port: s.from,
    to_port: s.to, cidr: s.cidr, ref_group: s.refGroup, description: s.description,
  }));
}

function ruleXml(ctx: ApiContext, r: SecurityGroupRuleRow): XmlNode {
  return {
    securityGroupRuleId: r.id, groupId: r.group_id, groupOwnerId: ctx.account.id, isEgress: r.egress === 1, ipProtocol: r.protocol,
    fromPort: r.from_port ?? -1, toPort: r.to_port ?? -1, cidrIpv4: r.cidr ?? undefined,
    referencedGroupInfo: r.ref_group ? { groupId: r.ref_group, userId: ctx.account.id } : undefined,
    description: r.description || undefined,
  };
}

/** A group's rules of one direction as EC2's IpPermissions: one per protocol and port range, with its peers. */
export function permissionsXml(ctx: ApiContext, rules: readonly SecurityGroupRuleRow[]): XmlValue {
  const byRange = new Map<string, SecurityGroupRuleRow[]>();
  for (const r of rules) {
    const key = `${r.protocol}|${r.from_port ?? ''}|${r.to_port ?? ''}`;
    byRange.set(key, [...(byRange.get(key) ?? []), r]);
  }
  return list([...byRange.values()].map((rs) => {
    const first = rs[0] as SecurityGroupRuleRow;
    return {
      ipProtocol: first.protocol, fromPort: first.from_port ?? undefined, toPort: first.to_port ?? undefined,
      groups: list(rs.filter((r) => r.ref_group).map((r) => ({ description: r.description || undefined, userId: ctx.account.id, groupId: r.ref_group ?? '' }))),
      ipRanges: list(rs.filter((r) => r.cidr).map((r) => ({ cidrIp: r.cidr ?? '', description: r.description || undefined }))),
      ipv6Ranges: list([]), prefixListIds: list([]),
    };
  }));
}

/** The group a rule action is about: GroupId, or (ingress only, as EC2) GroupName in the default VPC. */
function target(ctx: ApiContext, egress: boolean): SecurityGroupRow {
  const id = ctx.params.optional('GroupId');
  if (id !== undefined) return groupNamed(ctx, id);
  const name = egress ? undefined : ctx.params.optional('GroupName');
  if (name === undefined) throw missing('GroupId');
  return groupInDefaultVpc(ctx, name);
}

function authorize(c: ApiContext, egress: boolean): XmlNode {
  const ctx = c as NetworkContext;
  const group = target(ctx, egress);
  const rows = addRules(ctx, group, egress, requestedRules(ctx, group));
  const tags = tagSpecifications(ctx.params, 'security-group-rule', ['security-group-rule']);
  for (const t of tags) checkTag(t.key, t.value);
  ctx.store.transaction(() => {
    for (const r of rows) {
      ctx.store.addRule(r);
      for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: r.id, resource_type: 'security-group-rule', key: t.key, value: t.value });
    }
  });
  return { return: true, securityGroupRuleSet: list(rows.map((r) => ruleXml(ctx, r))) };
}

function revoke(ctx: ApiContext, egress: boolean): XmlNode {
  const group = target(ctx, egress);
  const existing = ctx.store.rulesOf(ctx.account.id, group.id).filter((r) => (r.egress === 1) === egress);
  const ids = ctx.params.list('SecurityGroupRuleId');
  let gone: SecurityGroupRuleRow[];
  let unknown: RuleSpec[] = [];
  if (ids.length > 0) {
    gone = ids.map((id) => {
      const r = wellFormed('sgr', id) ? existing.find((x) => x.id === id) : undefined;
      if (!r) throw new Ec2Error('InvalidSecurityGroupRuleId.NotFound', `The security group rule ID '${id}' does not exist in ${group.id}`);
      return r;
    });
  } else {
    const specs = requestedRules(ctx, group);
    gone = existing.filter((r) => specs.some((s) => sameRule(s, r)));
    unknown = specs.filter((s) => !existing.some((r) => sameRule(s, r)));
    if (gone.length === 0) throw new Ec2Error('InvalidPermission.NotFound', 'The specified rule does not exist in this security group.');
  }
  ctx.store.transaction(() => { for (const r of gone) ctx.store.deleteRule(ctx.account.id, r.id); });
  return {
    return: true,
    unknownIpPermissionSet: unknown.length > 0 ? list(unknown.map((s) => ({
      ipProtocol: s.protocol, fromPort: s.from ?? undefined, toPort: s.to ?? undefined,
      groups: list(s.refGroup ? [{ groupId: s.refGroup, userId: ctx.account.id }] : []), ipRanges: list(s.cidr ? [{ cidrIp: s.cidr }] : []),
    }))) : undefined,
    revokedSecurityGroupRuleSet: list(gone.map((r) => ({
      securityGroupRuleId: r.id, groupId: r.group_id, isEgress: r.egress === 1, ipProtocol: r.protocol, fromPort: r.from_port ?? -1,
      toPort: r.to_port ?? -1, cidrIpv4: r.cidr ?? undefined, referencedGroupId: r.ref_group ?? undefined, description: r.description || undefined,
    }))),
  };
}

export const authorizeSecurityGroupIngress = (ctx: ApiContext): XmlNode => authorize(ctx, false);
export const authorizeSecurityGroupEgress = (ctx: ApiContext): XmlNode => authorize(ctx, true);
export const revokeSecurityGroupIngress = (ctx: ApiContext): XmlNode => revoke(ctx, false);
export const revokeSecurityGroupEgress = (ctx: ApiContext): XmlNode => revoke(ctx, true);
