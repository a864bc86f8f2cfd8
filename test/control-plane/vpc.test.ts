// The VPC API without VMs, through @aws-sdk/client-ec2 unmodified and raw signed calls: every account's default VPC,
// subnet and security group as a fresh AWS account has them (what Ansible and Terraform look up before a launch),
// VPCs, subnets, security groups and their rules created, described, tagged, refused with EC2's codes, deleted;
// limits; isolation between accounts; accounts and instances from before VPCs existed. Every success answer is
// checked against the SDK's service model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { createAccount } from '../../src/control-plane/accounts.js';
import { interfaceMac } from '../../src/control-plane/network-interfaces.js';
import { Store } from '../../src/control-plane/store.js';
import { assertEc2Error, assertMatchesModel, rawCall, startEc2, type Ec2Host } from '../framework/ec2.js';
import { consoleUntil } from '../framework/instances.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

let host: Ec2Host;
test.before(async () => { host = await startEc2(); });
test.after(async () => { await host.dispose(); });

/** The default VPC, subnet and group of a client's account. */
async function defaults(ec2: sdk.EC2Client): Promise<{ vpc: sdk.Vpc; subnet: sdk.Subnet; group: sdk.SecurityGroup }> {
  const vpc = (await ec2.send(new sdk.DescribeVpcsCommand({ Filters: [{ Name: 'isDefault', Values: ['true'] }] }))).Vpcs?.[0];
  assert.ok(vpc?.VpcId);
  const subnet = (await ec2.send(new sdk.DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.VpcId] }, { Name: 'default-for-az', Values: ['true'] }] }))).Subnets?.[0];
  assert.ok(subnet?.SubnetId);
  const group = (await ec2.send(new sdk.DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpc.VpcId] }, { Name: 'group-name', Values: ['default'] }] }))).SecurityGroups?.[0];
  assert.ok(group?.GroupId);
  return { vpc, subnet, group };
}

test('a fresh account has a default VPC, subnet and security group as a fresh AWS account has', async () => {
  const dev = host.account('fresh');
  const ec2 = host.client(dev);
  const attrs = await ec2.send(new sdk.DescribeAccountAttributesCommand({ AttributeNames: ['supported-platforms', 'default-vpc'] }));
  const { vpc, subnet, group } = await defaults(ec2);
  assert.deepEqual(attrs.AccountAttributes?.map((a) => [a.AttributeName, a.AttributeValues?.map((v) => v.AttributeValue)]),
    [['supported-platforms', ['VPC']], ['default-vpc', [vpc.VpcId]]]);
  assert.deepEqual([vpc.CidrBlock, vpc.State, vpc.IsDefault, vpc.InstanceTenancy, vpc.OwnerId, vpc.CidrBlockAssociationSet?.[0]?.CidrBlockState?.State],
    ['172.31.0.0/16', 'available', true, 'default', dev.accountId, 'associated']);
  assert.deepEqual([subnet.CidrBlock, subnet.AvailabilityZone, subnet.AvailabilityZoneId, subnet.DefaultForAz, subnet.AvailableIpAddressCount, subnet.State],
    ['172.31.0.0/20', 'us-east-1a', 'use1-az1', true, 4091, 'available']);
  assert.equal(subnet.SubnetArn, `arn:aws:ec2:us-east-1:${dev.accountId}:subnet/${subnet.SubnetId ?? ''}`);
  assert.equal(group.Description, 'default VPC security group');
  assert.deepEqual(group.IpPermissions, [{ IpProtocol: '-1', UserIdGroupPairs: [{ UserId: dev.accountId, GroupId: group.GroupId }], IpRanges: [], Ipv6Ranges: [], PrefixListIds: [] }]);
  assert.deepEqual(group.IpPermissionsEgress, [{ IpProtocol: '-1', UserIdGroupPairs: [], IpRanges: [{ CidrIp: '0.0.0.0/0' }], Ipv6Ranges: [], PrefixListIds: [] }]);
  // The same on every call: made once.
  assert.equal((await defaults(ec2)).vpc.VpcId, vpc.VpcId);
  assert.deepEqual((await ec2.send(new sdk.DescribeVpcsCommand({}))).Vpcs?.map((v) => v.VpcId), [vpc.VpcId]);
  for (const [action, extra] of [['DescribeAccountAttributes', {}], ['DescribeVpcs', {}], ['DescribeSubnets', {}], ['DescribeSecurityGroups', {}],
    ['DescribeNetworkInterfaces', {}], ['DescribeSecurityGroups', { 'GroupName.1': 'default' }]] as const) {
    const r = await rawCall(host.endpoint, dev, { Action: action, ...extra });
    assert.equal(r.status, 200, r.body);
    assertMatchesModel(action, r.body);
  }
  // Another account has its own, and sees none of these.
  const other = host.client(host.account('fresh-other'));
  const theirs = await defaults(other);
  assert.notEqual(theirs.vpc.VpcId, vpc.VpcId);
  await assert.rejects(other.send(new sdk.DescribeVpcsCommand({ VpcIds: [vpc.VpcId ?? ''] })), { name: 'InvalidVpcID.NotFound' });
  await assert.rejects(other.send(new sdk.DescribeSubnetsCommand({ SubnetIds: [subnet.SubnetId ?? ''] })), { name: 'InvalidSubnetID.NotFound' });
  await assert.rejects(other.send(new sdk.DescribeSecurityGroupsCommand({ GroupIds: [group.GroupId ?? ''] })), { name: 'InvalidGroup.NotFound' });
  await assert.rejects(other.send(new sdk.CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: '172.31.200.0/24' })), { name: 'InvalidVpcID.NotFound' });
});

test('VPCs and subnets: created, described with filters, tagged, refused where EC2 refuses, deleted', async () => {
  const dev = host.account('vpcs');
  const ec2 = host.client(dev);
  const created = await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '10.0.0.0/16', TagSpecifications: [{ ResourceType: 'vpc', Tags: [{ Key: 'Name', Value: 'lab' }] }] }));
  const vpcId = created.Vpc?.VpcId ?? '';
  assert.deepEqual([created.Vpc?.IsDefault, created.Vpc?.State, created.Vpc?.Tags], [false, 'available', [{ Key: 'Name', Value: 'lab' }]]);
  assertMatchesModel('CreateVpc', (await rawCall(host.endpoint, dev, { Action: 'CreateVpc', CidrBlock: '10.9.0.0/28' })).body);
  const own = await ec2.send(new sdk.DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }));
  assert.deepEqual(own.SecurityGroups?.map((g) => g.GroupName), ['default'], 'a new VPC has its own default group');
  const byTag = await ec2.send(new sdk.DescribeVpcsCommand({ Filters: [{ Name: 'tag:Name', Values: ['l*'] }] }));
  assert.deepEqual(byTag.Vpcs?.map((v) => v.VpcId), [vpcId]);
  for (const [cidr, code] of [['10.0.0.0/8', 'InvalidVpc.Range'], ['10.0.0.0/29', 'InvalidVpc.Range'], ['10.0.0.1/16', 'InvalidParameterValue'],
    ['banana', 'InvalidParameterValue'], ['10.0.0.256/24', 'InvalidParameterValue']] as const) {
    await assert.rejects(ec2.send(new sdk.CreateVpcCommand({ CidrBlock: cidr })), { name: code }, cidr);
  }
  const subnet = await ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.0.1.0/24', AvailabilityZone: 'us-east-1a',
    TagSpecifications: [{ ResourceType: 'subnet', Tags: [{ Key: 'tier', Value: 'web' }] }] }));
  const subnetId = subnet.Subnet?.SubnetId ?? '';
  assert.deepEqual([subnet.Subnet?.VpcId, subnet.Subnet?.AvailableIpAddressCount, subnet.Subnet?.DefaultForAz, subnet.Subnet?.MapPublicIpOnLaunch],
    [vpcId, 251, false, false]);
  assertMatchesModel('CreateSubnet', (await rawCall(host.endpoint, dev, { Action: 'CreateSubnet', VpcId: vpcId, CidrBlock: '10.0.2.0/28' })).body);
  for (const [cidr, code] of [['10.1.0.0/24', 'InvalidSubnet.Range'], ['10.0.0.0/15', 'InvalidSubnet.Range'], ['10.0.3.0/29', 'InvalidSubnet.Range'],
    ['10.0.1.128/25', 'InvalidSubnet.Conflict'], ['10.0.0.0/16', 'InvalidSubnet.Conflict'], ['10.0.1.0/33', 'InvalidParameterValue']] as const) {
    await assert.rejects(ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr })), { name: code }, cidr);
  }
  await assert.rejects(ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.0.4.0/24', AvailabilityZone: 'us-west-2a' })), { name: 'InvalidParameterValue' });
  await assert.rejects(ec2.send(new sdk.CreateSubnetCommand({ VpcId: 'vpc-0123456789abcdef0', CidrBlock: '10.0.4.0/24' })), { name: 'InvalidVpcID.NotFound' });
  await assert.rejects(ec2.send(new sdk.CreateSubnetCommand({ VpcId: 'vpc-zz', CidrBlock: '10.0.4.0/24' })), { name: 'InvalidVpcID.Malformed' });
  const filtered = await ec2.send(new sdk.DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }, { Name: 'cidr-block', Values: ['10.0.1.*'] }] }));
  assert.deepEqual(filtered.Subnets?.map((s) => [s.SubnetId, s.Tags]), [[subnetId, [{ Key: 'tier', Value: 'web' }]]]);
  const tags = await ec2.send(new sdk.DescribeTagsCommand({ Filters: [{ Name: 'resource-type', Values: ['vpc', 'subnet'] }] }));
  assert.deepEqual(tags.Tags?.map((t) => [t.ResourceId, t.ResourceType, t.Key]).sort(), [[subnetId, 'subnet', 'tier'], [vpcId, 'vpc', 'Name']].sort());
  await ec2.send(new sdk.CreateTagsCommand({ Resources: [vpcId, subnetId], Tags: [{ Key: 'env', Value: 'test' }] }));
  assert.equal((await ec2.send(new sdk.DescribeVpcsCommand({ Filters: [{ Name: 'tag:env', Values: ['test'] }] }))).Vpcs?.length, 1);
  // A VPC with a subnet or a group of its own cannot go; its default group goes with it.
  await assert.rejects(ec2.send(new sdk.DeleteVpcCommand({ VpcId: vpcId })), { name: 'DependencyViolation' });
  for (const s of (await ec2.send(new sdk.DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }))).Subnets ?? []) {
    await ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: s.SubnetId }));
  }
  await assert.rejects(ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: subnetId })), { name: 'InvalidSubnetID.NotFound' });
  const group = await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'web', Description: 'web servers', VpcId: vpcId }));
  await assert.rejects(ec2.send(new sdk.DeleteVpcCommand({ VpcId: vpcId })), { name: 'DependencyViolation' });
  await ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: group.GroupId }));
  await ec2.send(new sdk.DeleteVpcCommand({ VpcId: vpcId }));
  await assert.rejects(ec2.send(new sdk.DescribeVpcsCommand({ VpcIds: [vpcId] })), { name: 'InvalidVpcID.NotFound' });
  assert.deepEqual((await ec2.send(new sdk.DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }))).SecurityGroups, []);
  assert.deepEqual((await ec2.send(new sdk.DescribeTagsCommand({ Filters: [{ Name: 'resource-id', Values: [vpcId, subnetId] }] }))).Tags, []);
});

test('five VPCs per region, the default one included: VpcLimitExceeded beyond', async () => {
  const ec2 = host.client(host.account('vpc-limit'));
  for (let i = 1; i <= 4; i++) await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: `10.${i}.0.0/16` }));
  await assert.rejects(ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '10.5.0.0/16' })), { name: 'VpcLimitExceeded' });
  assert.equal((await ec2.send(new sdk.DescribeVpcsCommand({}))).Vpcs?.length, 5);
});

test('security groups: created, named, refused where EC2 refuses; rules authorized and revoked in both forms', async () => {
  const dev = host.account('groups');
  const ec2 = host.client(dev);
  const { vpc, group: dflt } = await defaults(ec2);
  const web = await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'web', Description: 'web servers',
    TagSpecifications: [{ ResourceType: 'security-group', Tags: [{ Key: 'role', Value: 'web' }] }] }));
  const webId = web.GroupId ?? '';
  assert.deepEqual(web.Tags, [{ Key: 'role', Value: 'web' }]);
  assertMatchesModel('CreateSecurityGroup', (await rawCall(host.endpoint, dev, { Action: 'CreateSecurityGroup', GroupName: 'raw', GroupDescription: 'raw' })).body);
  await assert.rejects(ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'web', Description: 'again' })), { name: 'InvalidGroup.Duplicate' });
  await assert.rejects(ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'default', Description: 'mine' })), { name: 'InvalidGroup.Reserved' });
  await assert.rejects(ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'sg-1', Description: 'x' })), { name: 'InvalidParameterValue' });
  await assert.rejects(ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'ok', Description: 'bad \u00e9' })), { name: 'InvalidParameterValue' });
  await assert.rejects(ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'ok', Description: 'x', VpcId: 'vpc-0123456789abcdef0' })), { name: 'InvalidVpcID.NotFound' });
  const described = await ec2.send(new sdk.DescribeSecurityGroupsCommand({ GroupNames: ['web'] }));
  assert.deepEqual(described.SecurityGroups?.map((g) => [g.GroupId, g.VpcId, g.Description, g.IpPermissions?.length]), [[webId, vpc.VpcId, 'web servers', 0]]);
  await assert.rejects(ec2.send(new sdk.DescribeSecurityGroupsCommand({ GroupNames: ['nope'] })), { name: 'InvalidGroup.NotFound' });
  await assert.rejects(ec2.send(new sdk.DescribeSecurityGroupsCommand({ GroupIds: ['sg-x'] })), { name: 'InvalidGroupId.Malformed' });

  // IpPermissions: TCP 22 and 443 from two blocks, all from the default group, ICMP echo; then the legacy form.
  const authorized = await ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: webId, IpPermissions: [
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '10.0.0.0/8', Description: 'office' }, { CidrIp: '192.168.1.0/24' }] },
    { IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: dflt.GroupId }] },
    { IpProtocol: 'icmp', FromPort: 8, ToPort: -1, IpRanges: [{ CidrIp: '0.0.0.0/0' }] },
  ] }));
  assert.equal(authorized.Return, true);
  assert.deepEqual(authorized.SecurityGroupRules?.map((r) => [r.IpProtocol, r.FromPort, r.ToPort, r.CidrIpv4, r.ReferencedGroupInfo?.GroupId, r.IsEgress]), [
    ['tcp', 22, 22, '10.0.0.0/8', undefined, false], ['tcp', 22, 22, '192.168.1.0/24', undefined, false], ['-1', -1, -1, undefined, dflt.GroupId, false],
    ['icmp', 8, -1, '0.0.0.0/0', undefined, false]]);
  const legacy = await rawCall(host.endpoint, dev, { Action: 'AuthorizeSecurityGroupIngress', GroupName: 'web', IpProtocol: '6', FromPort: '443', ToPort: '443', CidrIp: '0.0.0.0/0' });
  assert.equal(legacy.status, 200, legacy.body);
  assertMatchesModel('AuthorizeSecurityGroupIngress', legacy.body);
  const rules = (await ec2.send(new sdk.DescribeSecurityGroupsCommand({ GroupIds: [webId] }))).SecurityGroups?.[0]?.IpPermissions;
  assert.deepEqual(rules?.map((p) => [p.IpProtocol, p.FromPort, p.ToPort, p.IpRanges?.map((r) => [r.CidrIp, r.Description]), p.UserIdGroupPairs?.map((g) => g.GroupId)]), [
    ['tcp', 22, 22, [['10.0.0.0/8', 'office'], ['192.168.1.0/24', undefined]], []], ['-1', undefined, undefined, [], [dflt.GroupId]],
    ['icmp', 8, -1, [['0.0.0.0/0', undefined]], []], ['tcp', 443, 443, [['0.0.0.0/0', undefined]], []]]);
  const found = await ec2.send(new sdk.DescribeSecurityGroupsCommand({ Filters: [{ Name: 'ip-permission.from-port', Values: ['443'] }, { Name: 'ip-permission.cidr', Values: ['0.0.0.0/0'] }] }));
  assert.deepEqual(found.SecurityGroups?.map((g) => g.GroupId), [webId]);
  // The default group is referred to: it cannot go (nor could it anyway), and neither can a referred-to group.
  await assert.rejects(ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: dflt.GroupId })), { name: 'CannotDelete' });
  await assert.rejects(ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupName: 'default' })), { name: 'CannotDelete' });

  const refusals: Array<[sdk.IpPermission, string]> = [
    [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '10.0.0.0/8' }] }, 'InvalidPermission.Duplicate'],
    [{ IpProtocol: 'tcp', FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: '1.2.3.4/33' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'tcp', FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: '1.2.3.4/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'tcp', FromPort: 90, ToPort: 80, IpRanges: [{ CidrIp: '1.2.3.0/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'tcp', FromPort: 0, ToPort: 65536, IpRanges: [{ CidrIp: '1.2.3.0/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'udp', IpRanges: [{ CidrIp: '1.2.3.0/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'icmp', FromPort: -1, ToPort: 3, IpRanges: [{ CidrIp: '1.2.3.0/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'gre', IpRanges: [{ CidrIp: '1.2.3.0/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: '256', IpRanges: [{ CidrIp: '1.2.3.0/24' }] }, 'InvalidParameterValue'],
    [{ IpProtocol: 'tcp', FromPort: 1, ToPort: 2 }, 'MissingParameter'],
    [{ IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: 'sg-0123456789abcdef0' }] }, 'InvalidGroup.NotFound'],
    [{ IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: dflt.GroupId, UserId: '123456789012' }] }, 'InvalidGroup.NotFound'],
    [{ IpProtocol: '-1', Ipv6Ranges: [{ CidrIpv6: '::/0' }] }, 'InvalidParameterValue'],
  ];
  for (const [p, code] of refusals) {
    await assert.rejects(ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: webId, IpPermissions: [p] })), { name: code }, JSON.stringify(p));
  }
  await assert.rejects(ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: webId, IpPermissions: [
    { IpProtocol: 'tcp', FromPort: 5, ToPort: 5, IpRanges: [{ CidrIp: '5.5.5.0/24' }, { CidrIp: '5.5.5.0/24' }] }] })), { name: 'InvalidPermission.Duplicate' });
  assertEc2Error(await rawCall(host.endpoint, dev, { Action: 'AuthorizeSecurityGroupIngress', GroupId: webId, SourceSecurityGroupName: 'default', CidrIp: '1.0.0.0/8' }),
    400, 'InvalidParameterCombination');
  assertEc2Error(await rawCall(host.endpoint, dev, { Action: 'AuthorizeSecurityGroupIngress', GroupId: webId }), 400, 'MissingParameter');
  assertEc2Error(await rawCall(host.endpoint, dev, { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-0123456789abcdef0', IpProtocol: 'tcp', FromPort: '1', ToPort: '1', CidrIp: '1.0.0.0/8' }),
    400, 'InvalidGroup.NotFound');
  // A source group by name (legacy): all of TCP, UDP and ICMP from it.
  const fromDefault = await rawCall(host.endpoint, dev, { Action: 'AuthorizeSecurityGroupIngress', GroupId: webId, SourceSecurityGroupName: 'default' });
  assert.equal(fromDefault.status, 200, fromDefault.body);
  assert.equal((fromDefault.body.match(/<securityGroupRuleId>/g) ?? []).length, 3);

  // Egress: the default all-out rule, and one more.
  const out = await ec2.send(new sdk.AuthorizeSecurityGroupEgressCommand({ GroupId: webId, IpPermissions: [{ IpProtocol: 'udp', FromPort: 53, ToPort: 53, IpRanges: [{ CidrIp: '10.0.0.2/32' }] }] }));
  assertMatchesModel('AuthorizeSecurityGroupEgress', (await rawCall(host.endpoint, dev, { Action: 'AuthorizeSecurityGroupEgress', GroupId: webId,
    'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '25', 'IpPermissions.1.ToPort': '25', 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/8' })).body);
  assert.equal(out.SecurityGroupRules?.[0]?.IsEgress, true);
  await assert.rejects(ec2.send(new sdk.AuthorizeSecurityGroupEgressCommand({ GroupId: webId, IpPermissions: [{ IpProtocol: '-1', IpRanges: [{ CidrIp: '0.0.0.0/0' }] }] })),
    { name: 'InvalidPermission.Duplicate' });

  // Revoke: by permission (one known, one not), by rule id, and nothing known.
  const revoked = await ec2.send(new sdk.RevokeSecurityGroupIngressCommand({ GroupId: webId, IpPermissions: [
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '10.0.0.0/8' }] }, { IpProtocol: 'tcp', FromPort: 23, ToPort: 23, IpRanges: [{ CidrIp: '10.0.0.0/8' }] }] }));
  assert.deepEqual([revoked.Return, revoked.RevokedSecurityGroupRules?.length, revoked.UnknownIpPermissions?.map((p) => p.FromPort)], [true, 1, [23]]);
  assertMatchesModel('RevokeSecurityGroupIngress', (await rawCall(host.endpoint, dev, { Action: 'RevokeSecurityGroupIngress', GroupId: webId,
    IpProtocol: 'tcp', FromPort: '443', ToPort: '443', CidrIp: '0.0.0.0/0' })).body);
  await assert.rejects(ec2.send(new sdk.RevokeSecurityGroupIngressCommand({ GroupId: webId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '10.0.0.0/8' }] }] })),
    { name: 'InvalidPermission.NotFound' });
  const egressId = out.SecurityGroupRules?.[0]?.SecurityGroupRuleId ?? '';
  await ec2.send(new sdk.RevokeSecurityGroupEgressCommand({ GroupId: webId, SecurityGroupRuleIds: [egressId] }));
  await assert.rejects(ec2.send(new sdk.RevokeSecurityGroupEgressCommand({ GroupId: webId, SecurityGroupRuleIds: [egressId] })), { name: 'InvalidSecurityGroupRuleId.NotFound' });
  assertMatchesModel('RevokeSecurityGroupEgress', (await rawCall(host.endpoint, dev, { Action: 'RevokeSecurityGroupEgress', GroupId: webId,
    'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '25', 'IpPermissions.1.ToPort': '25', 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/8' })).body);

  // A group another group refers to cannot go until the rule does.
  const db = await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'db', Description: 'databases' }));
  await ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: db.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 5432, ToPort: 5432, UserIdGroupPairs: [{ GroupId: webId }] }] }));
  await assert.rejects(ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: webId })), { name: 'DependencyViolation' });
  await ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: db.GroupId }));
  const deleted = await rawCall(host.endpoint, dev, { Action: 'DeleteSecurityGroup', GroupId: webId });
  assertMatchesModel('DeleteSecurityGroup', deleted.body);
  await assert.rejects(ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: webId })), { name: 'InvalidGroup.NotFound' });
  // A group of another VPC cannot be a peer.
  const other = await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
  const elsewhere = await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'elsewhere', Description: 'x', VpcId: other.Vpc?.VpcId }));
  await assert.rejects(ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: elsewhere.GroupId, IpPermissions: [{ IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: dflt.GroupId }] }] })),
    { name: 'InvalidParameter' });
  // The same name in another VPC is another group.
  await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'web', Description: 'x', VpcId: other.Vpc?.VpcId }));
});

test('rules and groups have limits: RulesPerSecurityGroupLimitExceeded, SecurityGroupLimitExceeded, SubnetLimitExceeded', async () => {
  const limited = await startEc2(undefined, { limits: { rulesPerGroup: 3, securityGroups: 3, subnetsPerVpc: 2 } });
  try {
    const ec2 = limited.client(limited.account('limits'));
    const g = await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'a', Description: 'a' }));
    const ranges = (n: number): sdk.IpRange[] => Array.from({ length: n }, (_, i) => ({ CidrIp: `10.${i}.0.0/16` }));
    await assert.rejects(ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: g.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 1, ToPort: 1, IpRanges: ranges(4) }] })),
      { name: 'RulesPerSecurityGroupLimitExceeded' });
    await ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({ GroupId: g.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 1, ToPort: 1, IpRanges: ranges(3) }] }));
    // Egress counts apart: the all-out rule and two more.
    await ec2.send(new sdk.AuthorizeSecurityGroupEgressCommand({ GroupId: g.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 1, ToPort: 1, IpRanges: ranges(2) }] }));
    await assert.rejects(ec2.send(new sdk.AuthorizeSecurityGroupEgressCommand({ GroupId: g.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 2, ToPort: 2, IpRanges: ranges(1) }] })),
      { name: 'RulesPerSecurityGroupLimitExceeded' });
    // The default group and "a" count: one more, then no more.
    await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'b', Description: 'b' }));
    await assert.rejects(ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'c', Description: 'c' })), { name: 'SecurityGroupLimitExceeded' });
    const { vpc } = await defaults(ec2);
    await ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: '172.31.16.0/20' }));
    await assert.rejects(ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: '172.31.32.0/20' })), { name: 'SubnetLimitExceeded' });
  } finally {
    await limited.dispose();
  }
});

test('RunInstances refuses a subnet or groups that are not the caller\'s, or of two networks; DryRun only says it would do', async () => {
  const dev = host.account('launch-refusals');
  const ec2 = host.client(dev);
  const image = images()[0];
  assert.ok(image, 'an image (azote image build)');
  const run = (extra: Partial<sdk.RunInstancesCommandInput>): Promise<unknown> =>
    ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), MinCount: 1, MaxCount: 1, InstanceType: 't3.nano', ...extra }));
  const { subnet } = await defaults(ec2);
  const other = await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
  const otherGroup = await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'x', Description: 'x', VpcId: other.Vpc?.VpcId }));
  const foreign = await defaults(host.client(host.account('launch-foreign')));
  await assert.rejects(run({ SubnetId: 'subnet-0123456789abcdef0' }), { name: 'InvalidSubnetID.NotFound' });
  await assert.rejects(run({ SubnetId: foreign.subnet.SubnetId }), { name: 'InvalidSubnetID.NotFound' });
  await assert.rejects(run({ SubnetId: 'subnet-x' }), { name: 'InvalidSubnetID.Malformed' });
  await assert.rejects(run({ SecurityGroupIds: [foreign.group.GroupId ?? ''] }), { name: 'InvalidGroup.NotFound' });
  await assert.rejects(run({ SecurityGroups: ['nope'] }), { name: 'InvalidGroup.NotFound' });
  await assert.rejects(run({ SubnetId: subnet.SubnetId, SecurityGroupIds: [otherGroup.GroupId ?? ''] }), { name: 'InvalidParameter' });
  await assert.rejects(run({ SubnetId: subnet.SubnetId, NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: subnet.SubnetId }] }), { name: 'InvalidParameterCombination' });
  await assert.rejects(run({ NetworkInterfaces: [{ DeviceIndex: 0, AssociatePublicIpAddress: true }] }), { name: 'InvalidParameterValue' });
  await assert.rejects(run({ PrivateIpAddress: '172.31.0.10' }), { name: 'InvalidParameterValue' });
  const six = await Promise.all(Array.from({ length: 6 }, (_, i) => ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: `g${i}`, Description: 'x' }))));
  await assert.rejects(run({ SecurityGroupIds: six.map((g) => g.GroupId ?? '') }), { name: 'SecurityGroupsPerInterfaceLimitExceeded' });
  await assert.rejects(run({ DryRun: true }), { name: 'DryRunOperation' });
  await assert.rejects(ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '10.1.0.0/16', DryRun: true })), { name: 'DryRunOperation' });
  assert.equal((await ec2.send(new sdk.DescribeVpcsCommand({}))).Vpcs?.length, 2, 'a dry run changes nothing');
  assertEc2Error(await rawCall(host.endpoint, dev, { Action: 'DescribeVpcs', DryRun: 'true' }), 412, 'DryRunOperation');
  assert.deepEqual((await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations, [], 'nothing was launched');
  // Without a default VPC, a launch needs a subnet.
  const { vpc } = await defaults(ec2);
  await ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: subnet.SubnetId }));
  await assert.rejects(run({}), { name: 'MissingInput' });
  for (const g of six) await ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: g.GroupId }));
  await ec2.send(new sdk.DeleteVpcCommand({ VpcId: vpc.VpcId }));
  await assert.rejects(run({}), { name: 'VPCIdNotSpecified' });
  const attrs = await ec2.send(new sdk.DescribeAccountAttributesCommand({ AttributeNames: ['default-vpc'] }));
  assert.equal(attrs.AccountAttributes?.[0]?.AttributeValues?.[0]?.AttributeValue, 'none', 'a deleted default VPC is not made again');
});

test('accounts and instances from before VPCs get the default VPC, and an interface in it, at their next request', async () => {
  const old = await startEc2();
  try {
    await old.close();
    // Written while no `azote up` runs: an account and a stopped instance, as a data directory from before has them.
    const store = new Store(old.dataDir);
    const account = createAccount(store, old.dataDir, 'before');
    const image = images()[0];
    assert.ok(image);
    store.addInstance({
      id: 'i-0123456789abcdef0', account: account.accountId, reservation: 'r-0123456789abcdef0', image_id: amiId(image), instance_type: 't3.nano',
      vcpus: 1, memory_mib: 256, root_gib: 1, state: 'stopped', transition_reason: '', state_reason_code: null, state_reason_message: null,
      key_name: null, user_data: null, launch_index: 0, launch_time: new Date().toISOString(), client_token: null, private_ip: '172.31.0.2',
      mac: '02:14:ac:1f:00:02', cores: '', terminated_at: null, hibernation_configured: 0,
    });
    store.close();
    const again = await startEc2(old.dataDir);
    try {
      const ec2 = again.client(account);
      const { vpc, subnet, group } = await defaults(ec2);
      const instance = (await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations?.[0]?.Instances?.[0];
      assert.deepEqual([instance?.VpcId, instance?.SubnetId, instance?.SecurityGroups, instance?.PrivateIpAddress],
        [vpc.VpcId, subnet.SubnetId, [{ GroupId: group.GroupId, GroupName: 'default' }], '172.31.0.4'],
        'its interface\'s address, which its guest gets at its next start (the address it had came from the old per-account network)');
      const nic = instance?.NetworkInterfaces?.[0];
      assert.deepEqual([nic?.Attachment?.DeviceIndex, nic?.Status, nic?.MacAddress, nic?.PrivateIpAddress],
        [0, 'in-use', interfaceMac(nic?.NetworkInterfaceId ?? ''), '172.31.0.4']);
      const nics = await ec2.send(new sdk.DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: ['i-0123456789abcdef0'] }] }));
      assert.deepEqual(nics.NetworkInterfaces?.map((n) => [n.NetworkInterfaceId, n.Attachment?.InstanceId, n.Groups?.[0]?.GroupId]),
        [[nic?.NetworkInterfaceId, 'i-0123456789abcdef0', group.GroupId]]);
      assertMatchesModel('DescribeNetworkInterfaces', (await rawCall(again.endpoint, account, { Action: 'DescribeNetworkInterfaces' })).body);
      assertMatchesModel('DescribeInstances', (await rawCall(again.endpoint, account, { Action: 'DescribeInstances' })).body);
      for (const [name, value] of [['vpc-id', vpc.VpcId], ['subnet-id', subnet.SubnetId], ['instance.group-id', group.GroupId], ['instance.group-name', 'default']]) {
        const r = await ec2.send(new sdk.DescribeInstancesCommand({ Filters: [{ Name: name, Values: [value ?? ''] }] }));
        assert.equal(r.Reservations?.length, 1, name);
      }
      assert.equal((await ec2.send(new sdk.DescribeInstancesCommand({ Filters: [{ Name: 'vpc-id', Values: ['vpc-0123456789abcdef0'] }] }))).Reservations?.length, 0);
      // The instance's interface holds its subnet and group.
      assert.equal((await ec2.send(new sdk.DescribeSubnetsCommand({ SubnetIds: [subnet.SubnetId ?? ''] }))).Subnets?.[0]?.AvailableIpAddressCount, 4090);
      await assert.rejects(ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: subnet.SubnetId })), { name: 'DependencyViolation' });
      await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] }));
      assert.deepEqual((await ec2.send(new sdk.DescribeNetworkInterfacesCommand({}))).NetworkInterfaces, [], 'the interface goes with the instance');
      const gone = (await ec2.send(new sdk.DescribeInstancesCommand({}))).Reservations?.[0]?.Instances?.[0];
      assert.deepEqual([gone?.State?.Name, gone?.VpcId, gone?.NetworkInterfaces], ['terminated', undefined, []]);
      await ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: subnet.SubnetId }));
    } finally {
      await again.dispose();
    }
  } finally {
    await old.dispose();
  }
});

test('an instance launched in a subnet with a group: its interface, groups and filters; its guest has the address shown', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const dev = host.account('launch');
  const ec2 = host.client(dev);
  const image = images().find((i) => i.name === 'default');
  assert.ok(image, 'the default image (azote image build)');
  const vpc = (await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }))).Vpc?.VpcId ?? '';
  const subnet = (await ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpc, CidrBlock: '10.0.1.0/28' }))).Subnet?.SubnetId ?? '';
  const group = (await ec2.send(new sdk.CreateSecurityGroupCommand({ GroupName: 'app', Description: 'app', VpcId: vpc }))).GroupId ?? '';
  const run = await ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1,
    NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: subnet, Groups: [group] }],
    TagSpecifications: [{ ResourceType: 'network-interface', Tags: [{ Key: 'nic', Value: 'primary' }] }] }));
  const launched = run.Instances?.[0];
  const id = launched?.InstanceId ?? '';
  assert.deepEqual([launched?.VpcId, launched?.SubnetId, launched?.SecurityGroups], [vpc, subnet, [{ GroupId: group, GroupName: 'app' }]]);
  const nicId = launched?.NetworkInterfaces?.[0]?.NetworkInterfaceId ?? '';
  assert.match(nicId, /^eni-[0-9a-f]{17}$/);
  assert.equal((await ec2.send(new sdk.DescribeSubnetsCommand({ SubnetIds: [subnet] }))).Subnets?.[0]?.AvailableIpAddressCount, 10, 'its address is taken from the subnet');
  for (const [name, value] of [['vpc-id', vpc], ['subnet-id', subnet], ['instance.group-id', group], ['network-interface.network-interface-id', nicId]] as const) {
    const r = await ec2.send(new sdk.DescribeInstancesCommand({ Filters: [{ Name: name, Values: [value] }] }));
    assert.deepEqual(r.Reservations?.flatMap((x) => x.Instances ?? []).map((i) => i.InstanceId), [id], name);
  }
  await assert.rejects(ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: group })), { name: 'DependencyViolation' });
  await assert.rejects(ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: subnet })), { name: 'DependencyViolation' });
  // The interface's address is the subnet's first free one (AWS keeps the first four), shown from launch on; the guest
  // gets it by DHCP from its VPC's network card.
  assert.equal(launched?.PrivateIpAddress, '10.0.1.4');
  const nic = (await ec2.send(new sdk.DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [nicId] }))).NetworkInterfaces?.[0];
  await consoleUntil(ec2, id, new RegExp(`azote-instance: ${id} .* is up, address 10\\.0\\.1\\.4\\b`));
  const instance = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
  assert.deepEqual([nic?.Attachment?.InstanceId, nic?.Attachment?.DeviceIndex, nic?.Groups?.map((g) => g.GroupId), nic?.TagSet],
    [id, 0, [group], [{ Key: 'nic', Value: 'primary' }]]);
  assert.equal(nic?.PrivateIpAddress, instance?.PrivateIpAddress);
  assert.equal(nic?.MacAddress, instance?.NetworkInterfaces?.[0]?.MacAddress);
  assertMatchesModel('DescribeInstances', (await rawCall(host.endpoint, dev, { Action: 'DescribeInstances', 'InstanceId.1': id })).body);
  assertMatchesModel('DescribeNetworkInterfaces', (await rawCall(host.endpoint, dev, { Action: 'DescribeNetworkInterfaces' })).body);
  await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: [id] }));
  await sdk.waitUntilInstanceTerminated({ client: ec2, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: [id] });
  assert.deepEqual((await ec2.send(new sdk.DescribeNetworkInterfacesCommand({}))).NetworkInterfaces, []);
  await ec2.send(new sdk.DeleteSecurityGroupCommand({ GroupId: group }));
  await ec2.send(new sdk.DeleteSubnetCommand({ SubnetId: subnet }));
  await ec2.send(new sdk.DeleteVpcCommand({ VpcId: vpc }));
});
