// Tags on this account's resources (instances, key pairs, volumes, VPCs, subnets, security groups and their rules,
// network interfaces): CreateTags, DeleteTags, DescribeTags.
import { applyFilters, paginate, type Action, type ApiContext } from './context.js';
import { Ec2Error, missing, notFound } from './errors.js';
import { wellFormed } from './ids.js';
import { checkTag } from './query.js';
import { list } from './xml.js';

const MAX_TAGS = 50;

/** The resource type of a resource id that exists in this account; EC2's errors otherwise. */
function resourceType(ctx: ApiContext, id: string): string {
  if (wellFormed('i', id)) {
    if (!ctx.store.instance(ctx.account.id, id)) throw new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return 'instance';
  }
  if (wellFormed('key', id)) {
    if (!ctx.store.keyPairs(ctx.account.id).some((k) => k.id === id)) throw new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${id}' does not exist`);
    return 'key-pair';
  }
  if (wellFormed('vol', id)) {
    if (!ctx.store.volume(ctx.account.id, id)) throw new Ec2Error('InvalidVolume.NotFound', `The volume '${id}' does not exist.`);
    return 'volume';
  }
  if (wellFormed('vpc', id)) {
    if (!ctx.store.vpc(ctx.account.id, id)) throw notFound('InvalidVpcID.NotFound', 'vpc ID', id);
    return 'vpc';
  }
  if (wellFormed('subnet', id)) {
    if (!ctx.store.subnet(ctx.account.id, id)) throw notFound('InvalidSubnetID.NotFound', 'subnet ID', id);
    return 'subnet';
  }
  if (wellFormed('sg', id)) {
    if (!ctx.store.securityGroup(ctx.account.id, id)) throw notFound('InvalidGroup.NotFound', 'security group', id);
    return 'security-group';
  }
  if (wellFormed('sgr', id)) {
    if (!ctx.store.rules(ctx.account.id).some((r) => r.id === id)) throw notFound('InvalidSecurityGroupRuleId.NotFound', 'security group rule ID', id);
    return 'security-group-rule';
  }
  if (wellFormed('eni', id)) {
    if (!ctx.store.networkInterfaces(ctx.account.id).some((n) => n.id === id)) throw notFound('InvalidNetworkInterfaceID.NotFound', 'networkInterface ID', id);
    return 'network-interface';
  }
  throw new Ec2Error('InvalidID', `The ID '${id}' is not valid`);
}

function resources(ctx: ApiContext): Array<{ id: string; type: string }> {
  const ids = ctx.params.list('ResourceId');
  if (ids.length === 0) throw missing('ResourceId');
  return ids.map((id) => ({ id, type: resourceType(ctx, id) }));
}

export const createTags: Action = (ctx) => {
  const targets = resources(ctx);
  const tags = ctx.params.tags('Tag');
  if (tags.length === 0) throw missing('Tag');
  for (const t of tags) checkTag(t.key, t.value ?? '');
  ctx.store.transaction(() => {
    for (const r of targets) {
      for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: r.id, resource_type: r.type, key: t.key, value: t.value ?? '' });
      if (ctx.store.tagsOf(ctx.account.id, r.id).length > MAX_TAGS) {
        throw new Ec2Error('TagLimitExceeded', `The maximum number of tags for the resource '${r.id}' is ${MAX_TAGS}`);
      }
    }
  });
  return { return: true };
};

export const deleteTags: Action = (ctx) => {
  const targets = resources(ctx);
  const tags = ctx.params.tags('Tag');
  ctx.store.transaction(() => {
    for (const r of targets) {
      if (tags.length === 0) for (const t of ctx.store.tagsOf(ctx.account.id, r.id)) ctx.store.deleteTag(ctx.account.id, r.id, t.key, undefined);
      for (const t of tags) ctx.store.deleteTag(ctx.account.id, r.id, t.key, t.value);
    }
  });
  return { return: true };
};

export const describeTags: Action = (ctx) => {
  const rows = applyFilters(ctx.store.tags(ctx.account.id), ctx.params.filters(), {
    key: (t) => [t.key], value: (t) => [t.value], 'resource-id': (t) => [t.resource_id], 'resource-type': (t) => [t.resource_type],
  });
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return {
    tagSet: list(page.map((t) => ({ resourceId: t.resource_id, resourceType: t.resource_type, key: t.key, value: t.value }))),
    nextToken: next,
  };
};
