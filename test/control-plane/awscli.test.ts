// The EC2 API through Debian's AWS CLI v2, unmodified: the commands a user types, with its own signing, paging,
// waiters and error reporting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { startEc2 } from '../framework/ec2.js';
import { cli } from '../framework/awscli.js';
import { requireAwsCli } from '../framework/host-tools.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

test('aws ec2: offers, key pairs, tags and the errors it prints', async () => {
  requireAwsCli();
  const host = await startEc2();
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-awscli-'));
  try {
    const aws = cli(host, host.account('cli'));
    assert.equal((await aws('describe-regions', '--query', 'Regions[].RegionName')).stdout, 'us-east-1');
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    assert.equal((await aws('describe-images', '--query', 'Images[?Name==`default`].ImageId')).stdout, amiId(image));
    const key = await aws('create-key-pair', '--key-name', 'k1', '--query', 'KeyMaterial');
    assert.match(key.stdout, /^-----BEGIN RSA PRIVATE KEY-----/);
    writeFileSync(path.join(dir, 'id.pub'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBhNnPmSe7m4gTSyNIxLoVNs0F1/K5EKmDdppH35UY6x me@host\n');
    const imported = await aws('import-key-pair', '--key-name', 'mine', '--public-key-material', `fileb://${path.join(dir, 'id.pub')}`, '--query', 'KeyName');
    assert.equal(imported.stdout, 'mine', imported.stderr);
    assert.equal((await aws('describe-key-pairs', '--query', 'KeyPairs[].KeyName')).stdout.split(/\s+/).sort().join(' '), 'k1 mine');
    const id = (await aws('describe-key-pairs', '--key-names', 'k1', '--query', 'KeyPairs[0].KeyPairId')).stdout;
    assert.equal((await aws('create-tags', '--resources', id, '--tags', 'Key=team,Value=blue')).code, 0);
    assert.equal((await aws('describe-tags', '--filters', 'Name=resource-id,Values=' + id, '--query', 'Tags[].[Key,Value]')).stdout, 'team\tblue');
    const dup = await aws('create-key-pair', '--key-name', 'k1');
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /InvalidKeyPair\.Duplicate/);
    const missing = await aws('describe-instances', '--instance-ids', 'i-0123456789abcdef0');
    assert.match(missing.stderr, /\(InvalidInstanceID\.NotFound\) when calling the DescribeInstances operation/);
    const wrong = await cli(host, { accessKeyId: 'AKIAWRONGWRONGWRONG0', secretAccessKey: 'x' })('describe-regions');
    assert.match(wrong.stderr, /\(AuthFailure\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await host.dispose();
  }
});

test('aws ec2: run-instances, wait, describe with filters, get-console-output, stop, start, terminate', { timeout: 900_000 }, async (t) => {
  requireAwsCli();
  if (!requireKvm(t)) return;
  const host = await startEc2();
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-awscli-'));
  try {
    const aws = cli(host, host.account('cli'));
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    await aws('create-key-pair', '--key-name', 'mykey');
    writeFileSync(path.join(dir, 'init.sh'), '#!/bin/sh\necho "cli-user-data ran on $(hostname)"\n');
    const launched = await aws('run-instances', '--image-id', amiId(image), '--instance-type', 't3.micro', '--count', '2', '--key-name', 'mykey',
      '--user-data', `file://${path.join(dir, 'init.sh')}`, '--tag-specifications', 'ResourceType=instance,Tags=[{Key=env,Value=test}]',
      '--query', 'Instances[].InstanceId');
    assert.equal(launched.code, 0, launched.stderr);
    const ids = launched.stdout.split(/\s+/).sort();
    assert.equal(ids.length, 2);
    assert.equal((await aws('wait', 'instance-running', '--instance-ids', ...ids)).code, 0);
    const running = await aws('describe-instances', '--filters', 'Name=instance-state-name,Values=running', 'Name=tag:env,Values=test',
      '--query', 'Reservations[].Instances[].InstanceId');
    assert.deepEqual(running.stdout.split(/\s+/).sort(), ids);
    for (let i = 0; i < 120; i++) {
      const out = await aws('get-console-output', '--instance-id', ids[0] ?? '', '--query', 'Output');
      if (out.stdout.includes('cli-user-data ran on')) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const text = (await aws('get-console-output', '--instance-id', ids[0] ?? '', '--query', 'Output')).stdout;
    const address = (await aws('describe-instances', '--instance-ids', ids[0] ?? '', '--query', 'Reservations[0].Instances[0].PrivateIpAddress')).stdout.trim();
    assert.match(address, /^172\.31\.\d+\.\d+$/);
    assert.match(text, new RegExp(`cli-user-data ran on ip-${address.replace(/\./g, '-')}\\b`), 'the host name EC2 gives the address');
    assert.match(text, /Run \/sbin\/init as init process/);
    assert.equal((await aws('stop-instances', '--instance-ids', ids[0] ?? '')).code, 0);
    assert.equal((await aws('wait', 'instance-stopped', '--instance-ids', ids[0] ?? '')).code, 0);
    assert.equal((await aws('describe-instances', '--instance-ids', ids[0] ?? '', '--query', 'Reservations[0].Instances[0].State.Name')).stdout, 'stopped');
    assert.equal((await aws('start-instances', '--instance-ids', ids[0] ?? '')).code, 0);
    assert.equal((await aws('wait', 'instance-running', '--instance-ids', ids[0] ?? '')).code, 0);
    assert.equal((await aws('terminate-instances', '--instance-ids', ...ids)).code, 0);
    assert.equal((await aws('wait', 'instance-terminated', '--instance-ids', ...ids)).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await host.dispose();
  }
});

test('aws ec2: the default VPC, VPCs, subnets, security groups and their rules, and the errors it prints', async () => {
  requireAwsCli();
  const host = await startEc2();
  try {
    const aws = cli(host, host.account('cli-vpc'));
    const ok = async (...args: string[]): Promise<string> => {
      const r = await aws(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const refused = async (code: string, ...args: string[]): Promise<void> => {
      const r = await aws(...args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, new RegExp(`\\(${code.replace(/\./g, '\\.')}\\)`), args.join(' '));
    };
    const vpc = await ok('describe-vpcs', '--filters', 'Name=isDefault,Values=true', '--query', 'Vpcs[0].VpcId');
    assert.equal(await ok('describe-account-attributes', '--attribute-names', 'default-vpc', '--query', 'AccountAttributes[0].AttributeValues[0].AttributeValue'), vpc);
    assert.equal(await ok('describe-account-attributes', '--attribute-names', 'supported-platforms', '--query', 'AccountAttributes[0].AttributeValues[].AttributeValue'), 'VPC');
    assert.equal(await ok('describe-subnets', '--filters', `Name=vpc-id,Values=${vpc}`, 'Name=default-for-az,Values=true', '--query', 'Subnets[].[CidrBlock,AvailabilityZone]'),
      '172.31.0.0/20\tus-east-1a');
    const dflt = await ok('describe-security-groups', '--filters', `Name=vpc-id,Values=${vpc}`, 'Name=group-name,Values=default', '--query', 'SecurityGroups[0].GroupId');
    assert.match(dflt, /^sg-[0-9a-f]{17}$/);

    const mine = await ok('create-vpc', '--cidr-block', '10.20.0.0/16', '--tag-specifications', 'ResourceType=vpc,Tags=[{Key=Name,Value=cli}]', '--query', 'Vpc.VpcId');
    await refused('InvalidVpc.Range', 'create-vpc', '--cidr-block', '10.0.0.0/8');
    const subnet = await ok('create-subnet', '--vpc-id', mine, '--cidr-block', '10.20.1.0/24', '--availability-zone', 'us-east-1a', '--query', 'Subnet.SubnetId');
    await refused('InvalidSubnet.Conflict', 'create-subnet', '--vpc-id', mine, '--cidr-block', '10.20.1.0/25');
    await refused('InvalidSubnet.Range', 'create-subnet', '--vpc-id', mine, '--cidr-block', '10.21.0.0/24');
    assert.equal(await ok('describe-subnets', '--subnet-ids', subnet, '--query', 'Subnets[0].AvailableIpAddressCount'), '251');
    const sg = await ok('create-security-group', '--group-name', 'web', '--description', 'web servers', '--vpc-id', mine, '--query', 'GroupId');
    await refused('InvalidGroup.Duplicate', 'create-security-group', '--group-name', 'web', '--description', 'again', '--vpc-id', mine);
    await refused('InvalidGroup.Reserved', 'create-security-group', '--group-name', 'default', '--description', 'x', '--vpc-id', mine);
    await ok('authorize-security-group-ingress', '--group-id', sg, '--protocol', 'tcp', '--port', '22', '--cidr', '203.0.113.0/24');
    await ok('authorize-security-group-ingress', '--group-id', sg, '--ip-permissions', 'IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{CidrIp=0.0.0.0/0,Description=https}]');
    await refused('InvalidPermission.Duplicate', 'authorize-security-group-ingress', '--group-id', sg, '--protocol', 'tcp', '--port', '22', '--cidr', '203.0.113.0/24');
    await refused('InvalidParameterValue', 'authorize-security-group-ingress', '--group-id', sg, '--protocol', 'tcp', '--port', '22', '--cidr', '203.0.113.7/33');
    await ok('authorize-security-group-egress', '--group-id', sg, '--ip-permissions', 'IpProtocol=udp,FromPort=53,ToPort=53,IpRanges=[{CidrIp=10.20.0.2/32}]');
    assert.equal(await ok('describe-security-groups', '--group-ids', sg, '--query', 'SecurityGroups[0].IpPermissions[].[IpProtocol,FromPort,IpRanges[0].CidrIp]'),
      'tcp\t22\t203.0.113.0/24\ntcp\t443\t0.0.0.0/0');
    await ok('revoke-security-group-ingress', '--group-id', sg, '--protocol', 'tcp', '--port', '22', '--cidr', '203.0.113.0/24');
    await refused('InvalidPermission.NotFound', 'revoke-security-group-ingress', '--group-id', sg, '--protocol', 'tcp', '--port', '22', '--cidr', '203.0.113.0/24');
    await ok('revoke-security-group-egress', '--group-id', sg, '--ip-permissions', 'IpProtocol=udp,FromPort=53,ToPort=53,IpRanges=[{CidrIp=10.20.0.2/32}]');
    await refused('CannotDelete', 'delete-security-group', '--group-id', dflt);
    await refused('DependencyViolation', 'delete-vpc', '--vpc-id', mine);
    assert.equal(await ok('describe-network-interfaces', '--query', 'length(NetworkInterfaces)'), '0');
    await refused('DryRunOperation', 'create-vpc', '--cidr-block', '10.30.0.0/16', '--dry-run');
    await ok('delete-security-group', '--group-id', sg);
    await ok('delete-subnet', '--subnet-id', subnet);
    await ok('delete-vpc', '--vpc-id', mine);
    await refused('InvalidVpcID.NotFound', 'describe-vpcs', '--vpc-ids', mine);
  } finally {
    await host.dispose();
  }
});
