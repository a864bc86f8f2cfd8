// Security groups: CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroups. Every VPC has a group named
// "default" (all traffic in from its own members, all traffic out), which cannot be deleted; a new group allows
// all traffic out and nothing in. The rules are stored and described here; the network card enforces them later.
import { applyFilters, paginate, tagSet, tagSpecifications, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid, missing } from './errors.js';
import { newId } from './ids.js';
import { arn, defaultVpcOf, groupInDefaultVpc, groupNamed, vpcNamed, type NetworkContext } from './network-refs.js';
import { checkTag } from './query.js';
import { permissionsXml } from './security-group-rules.js';
import type { SecurityGroupRow, SecurityGroupRuleRow, Store, TagRow } from './store.js';
import { list, type XmlNode } from './xml.js';

export const DEFAULT_GROUP = 'default';
const DEFAULT_DESCRIPTION = 'default VPC security group';
/** The characters EC2 allows in a VPC security group's name and description. */
const TEXT = /^[a-zA-Z0-9 ._\-:/()#,@[\]+=&;{}!$*]{1,255}$/;

/** Adds a group to a VPC with EC2's initial rules; the default group also lets its members reach each other. */
export function addSecurityGroup(store: Store, account: string, vpcId: string, name: string, description: string): SecurityGroupRow {
  const row: SecurityGroupRow = { id: newId('sg'), account, vpc_id: vpcId, name, description, created: new Date().toISOString() };
  store.addSecurityGroup(row);
  const rule = (egress: boolean, cidr: string | null, ref: string | null): SecurityGroupRuleRow => ({
    id: newId('sgr'), account, group_id: row.id, egress: egress ? 1 : 0, protocol: '-1', from_port: null, to_port: null, cidr, ref_group: ref, description: '',
  });
  if (name === DEFAULT_GROUP) store.addRule(rule(false, null, row.id));
  store.addRule(rule(true, '0.0.0.0/0', null));
  return row;
}

/** A VPC's default group, made with the VPC. */
export const addDefaultGroup = (store: Store, account: string, vpcId: string): SecurityGroupRow =>
  addSecurityGroup(store, account, vpcId, DEFAULT_GROUP, DEFAULT_DESCRIPTION);

function checkText(what: string, v: string): void {
  if (!TEXT.test(v)) {
    throw invalid(`Invalid security group ${what} '${v.slice(0, 64)}': 1 to 255 of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{}!$*`);
  }
}

export const createSecurityGroup: Action = (c) => {
  const ctx = c as NetworkContext;
  const name = ctx.params.optional('GroupName');
  if (name === undefined) throw missing('GroupName');
  const description = ctx.params.optional('GroupDescription');
  if (description === undefined) throw missing('GroupDescription');
  checkText('name', name);
  checkText('description', description);
  if (name.toLowerCase().startsWith('sg-')) throw invalid(`Group names may not be in the format sg-*: '${name}'`);
  if (name === DEFAULT_GROUP) throw new Ec2Error('InvalidGroup.Reserved', `The security group '${DEFAULT_GROUP}' is reserved`);
  const vpcId = ctx.params.optional('VpcId');
  const vpc = vpcId === undefined ? defaultVpcOf(ctx) : vpcNamed(ctx, vpcId);
  const tags = tagSpecifications(ctx.params, 'security-group', ['security-group']);
  for (const t of tags) checkTag(t.key, t.value);
  const row = ctx.store.transaction(() => {
    if (ctx.store.securityGroupByName(ctx.account.id, vpc.id, name)) {
      throw new Ec2Error('InvalidGroup.Duplicate', `The security group '${name}' already exists for VPC '${vpc.id}'`);
    }
    const count = ctx.store.securityGroups(ctx.account.id).length;
    if (count >= ctx.quotas.limits.securityGroups) {
      throw new Ec2Error('SecurityGroupLimitExceeded', `The maximum number of security groups has been reached: ${count} of ${ctx.quotas.limits.securityGroups}`);
    }
    const g = addSecurityGroup(ctx.store, ctx.account.id, vpc.id, name, description);
    for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: g.id, resource_type: 'security-group', key: t.key, value: t.value });
    return g;
  });
  const set = ctx.store.tagsOf(ctx.account.id, row.id);
  return { groupId: row.id, tagSet: set.length > 0 ? tagSet(set) : undefined, securityGroupArn: arn(ctx, 'security-group', row.id) };
};

export const deleteSecurityGroup: Action = (ctx) => {
  const id = ctx.params.optional('GroupId'), name = ctx.params.optional('GroupName');
  if (id === undefined && name === undefined) throw missing('GroupId');
  const g = id !== undefined ? groupNamed(ctx, id) : groupInDefaultVpc(ctx, name ?? '');
  if (g.name === DEFAULT_GROUP) {
    throw new Ec2Error('CannotDelete', `the specified group: "${g.id}" name: "${DEFAULT_GROUP}" cannot be deleted by a user`);
  }
  ctx.store.transaction(() => {
    if (ctx.store.groupInUse(g.id) || ctx.store.rulesReferring(ctx.account.id, g.id).length > 0) {
      throw new Ec2Error('DependencyViolation', `resource ${g.id} has a dependent object`);
    }
    ctx.store.deleteSecurityGroup(ctx.account.id, g.id);
  });
  return { return: true, groupId: g.id };
};

function groupXml(ctx: ApiContext, g: SecurityGroupRow, rules: readonly SecurityGroupRuleRow[], tags: readonly TagRow[]): XmlNode {
  return {
    ownerId: ctx.account.id, groupId: g.id, groupName: g.name, groupDescription: g.description, vpcId: g.vpc_id,
    securityGroupArn: arn(ctx, 'security-group', g.id),
    ipPermissions: permissionsXml(ctx, rules.filter((r) => r.egress === 0)),
    ipPermissionsEgress: permissionsXml(ctx, rules.filter((r) => r.egress === 1)),
    tagSet: tags.length > 0 ? tagSet(tags) : undefined,
  };
}

export const describeSecurityGroups: Action = (ctx) => {
  const all = ctx.store.securityGroups(ctx.account.id);
  const ids = ctx.params.list('GroupId'), names = ctx.params.list('GroupName');
  for (const id of ids) groupNamed(ctx, id);
  const byName = names.map((n) => groupInDefaultVpc(ctx, n).id);
  const chosen = ids.length + names.length > 0 ? all.filter((g) => ids.includes(g.id) || byName.includes(g.id)) : all;
  const rules = new Map<string, SecurityGroupRuleRow[]>();
  for (const r of ctx.store.rules(ctx.account.id)) rules.set(r.group_id, [...(rules.get(r.group_id) ?? []), r]);
  const names_ = new Map(all.map((g) => [g.id, g.name]));
  const field = (egress: boolean, pick: (r: SecurityGroupRuleRow) => string | null) =>
    (g: SecurityGroupRow) => (rules.get(g.id) ?? []).filter((r) => (r.egress === 1) === egress).map((r) => pick(r) ?? undefined);
  const ruleFilters = (prefix: string, egress: boolean): Record<string, (g: SecurityGroupRow) => Array<string | undefined>> => ({
    [`${prefix}ip-permission.protocol`]: field(egress, (r) => r.protocol),
    [`${prefix}ip-permission.from-port`]: field(egress, (r) => (r.from_port === null ? null : String(r.from_port))),
    [`${prefix}ip-permission.to-port`]: field(egress, (r) => (r.to_port === null ? null : String(r.to_port))),
    [`${prefix}ip-permission.cidr`]: field(egress, (r) => r.cidr),
    [`${prefix}ip-permission.group-id`]: field(egress, (r) => r.ref_group),
    [`${prefix}ip-permission.group-name`]: field(egress, (r) => (r.ref_group ? names_.get(r.ref_group) ?? null : null)),
    [`${prefix}ip-permission.user-id`]: field(egress, (r) => (r.ref_group ? ctx.account.id : null)),
  });
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'group-id': (g) => [g.id], 'group-name': (g) => [g.name], description: (g) => [g.description], 'vpc-id': (g) => [g.vpc_id],
    'owner-id': () => [ctx.account.id], ...ruleFilters('', false), ...ruleFilters('egress.', true),
  }, (g) => ctx.store.tagsOf(ctx.account.id, g.id));
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return {
    securityGroupInfo: list(page.map((g) => groupXml(ctx, g, rules.get(g.id) ?? [], ctx.store.tagsOf(ctx.account.id, g.id)))),
    nextToken: next,
  };
};
