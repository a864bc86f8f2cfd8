// Every account's default VPC, as new AWS accounts have: 172.31.0.0/16 with a default subnet in each zone (the
// zone's /20: 172.31.0.0/20 for the first) and the VPC's default security group. It is made on the account's first
// request (so accounts created before VPCs existed get one too, and their instances an interface in it), once: an
// account that deletes it has none, as on AWS. DescribeAccountAttributes tells tools which one it is.
import type { Action, ApiContext } from './context.js';
import { zoneOf } from './context.js';
import { Ec2Error } from './errors.js';
import { attachInterface } from './network-interfaces.js';
import { DEFAULT_GROUP } from './security-groups.js';
import type { Quotas } from './quotas.js';
import type { Store } from './store.js';
import { addSubnet } from './subnets.js';
import { addVpc } from './vpcs.js';
import { list } from './xml.js';

export const DEFAULT_VPC_CIDR = '172.31.0.0/16';
/** The default subnets: the n-th zone's is 172.31.(16 n).0/20. */
export const defaultSubnetCidr = (zoneIndex: number): string => `172.31.${16 * zoneIndex}.0/20`;

/** Makes the account's default VPC if it never had one, and gives its instances from before an interface in it. */
export function ensureDefaultNetwork(store: Store, account: string, region: string): void {
  if (store.hasDefaultNetwork(account)) return;
  store.transaction(() => {
    if (store.hasDefaultNetwork(account)) return;
    const vpc = addVpc(store, account, DEFAULT_VPC_CIDR, true);
    const subnet = addSubnet(store, account, vpc.id, defaultSubnetCidr(0), zoneOf(region), true);
    const group = store.securityGroupByName(account, vpc.id, DEFAULT_GROUP);
    for (const r of store.instances(account)) {
      if (r.state !== 'terminated' && group) attachInterface(store, account, r.id, { subnet, groups: [group] });
    }
    store.markDefaultNetwork(account);
  });
}

/** The attributes EC2 reports, and their values for this account. */
function attributes(ctx: ApiContext & { readonly quotas: Quotas }): Record<string, string[]> {
  return {
    'supported-platforms': ['VPC'],
    'default-vpc': [ctx.store.defaultVpc(ctx.account.id)?.id ?? 'none'],
    'max-instances': [String(ctx.quotas.limits.instances)],
    'vpc-max-security-groups-per-interface': [String(ctx.quotas.limits.groupsPerInterface)],
    // This host has no Elastic IP addresses.
    'max-elastic-ips': ['0'],
    'vpc-max-elastic-ips': ['0'],
  };
}

export const describeAccountAttributes: Action = (c) => {
  const ctx = c as ApiContext & { readonly quotas: Quotas };
  const all = attributes(ctx);
  const names = ctx.params.list('AttributeName');
  for (const n of names) {
    if (!Object.hasOwn(all, n)) throw new Ec2Error('InvalidParameterValue', `Value (${n.slice(0, 64)}) for parameter attributeName is invalid.`);
  }
  const chosen = names.length > 0 ? names : Object.keys(all);
  return {
    accountAttributeSet: list(chosen.map((n) => ({ attributeName: n, attributeValueSet: list((all[n] ?? []).map((v) => ({ attributeValue: v }))) }))),
  };
};
