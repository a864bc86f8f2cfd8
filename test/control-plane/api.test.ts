// The EC2 API without VMs, through @aws-sdk/client-ec2 unmodified and through raw signed requests: what the host
// offers, key pairs, tags, authentication, isolation between accounts, and the errors a malformed request gets.
// Every success answer is checked against the SDK's service model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { assertEc2Error, assertMatchesModel, rawCall, startEc2, type Ec2Host } from '../framework/ec2.js';
import { amiId, images, INSTANCE_TYPES } from '../../src/control-plane/catalogue.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

let host: Ec2Host;
test.before(async () => { host = await startEc2(); });
test.after(async () => { await host.dispose(); });

test('the host answers DescribeRegions, DescribeAvailabilityZones, DescribeImages and DescribeInstanceTypes', async () => {
  const dev = host.account('offers');
  const ec2 = host.client(dev);
  const regions = await ec2.send(new sdk.DescribeRegionsCommand({}));
  assert.deepEqual(regions.Regions?.map((r) => r.RegionName), ['us-east-1']);
  const zones = await ec2.send(new sdk.DescribeAvailabilityZonesCommand({}));
  assert.deepEqual(zones.AvailabilityZones?.map((z) => [z.ZoneName, z.State]), [['us-east-1a', 'available']]);
  const imgs = await ec2.send(new sdk.DescribeImagesCommand({}));
  assert.deepEqual(imgs.Images?.map((i) => i.ImageId).sort(), images().map((i) => amiId(i)).sort());
  assert.ok(imgs.Images?.some((i) => i.Name === 'default' && i.Architecture === 'x86_64'), 'the default image (azote image build) is an AMI');
  const types = await ec2.send(new sdk.DescribeInstanceTypesCommand({}));
  const micro = types.InstanceTypes?.find((t) => t.InstanceType === 't3.micro');
  assert.deepEqual([micro?.VCpuInfo?.DefaultVCpus, micro?.MemoryInfo?.SizeInMiB], [1, 512]);
  assert.ok(!types.InstanceTypes?.some((t) => (t.VCpuInfo?.DefaultVCpus ?? 0) > host.capacity.cores), 'types the host cannot hold are not offered');
  await assert.rejects(ec2.send(new sdk.DescribeImagesCommand({ ImageIds: ['ami-0123456789abcdef0'] })), { name: 'InvalidAMIID.NotFound' });
  await assert.rejects(ec2.send(new sdk.DescribeInstanceTypesCommand({ InstanceTypes: ['x9.huge' as sdk._InstanceType] })), { name: 'InvalidInstanceType' });
  for (const action of ['DescribeRegions', 'DescribeAvailabilityZones', 'DescribeImages', 'DescribeInstanceTypes', 'DescribeInstances', 'DescribeKeyPairs', 'DescribeTags', 'DescribeInstanceStatus']) {
    const r = await rawCall(host.endpoint, dev, { Action: action });
    assert.equal(r.status, 200, r.body);
    assertMatchesModel(action, r.body);
  }
});

test('key pairs: created (RSA, Ed25519), imported, described, tagged, deleted; names are unique per account', async () => {
  const dev = host.account('keys');
  const ec2 = host.client(dev);
  const rsa = await ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'rsa-key', TagSpecifications: [{ ResourceType: 'key-pair', Tags: [{ Key: 'team', Value: 'a' }] }] }));
  assert.match(rsa.KeyMaterial ?? '', /^-----BEGIN RSA PRIVATE KEY-----/);
  assert.match(rsa.KeyFingerprint ?? '', /^([0-9a-f]{2}:){19}[0-9a-f]{2}$/);
  const ed = await ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'ed-key', KeyType: 'ed25519' }));
  assert.match(ed.KeyMaterial ?? '', /^-----BEGIN OPENSSH PRIVATE KEY-----/);
  // ssh-keygen reads both private keys and derives the public keys we keep.
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-keys-'));
  try {
    for (const [name, material] of [['rsa', rsa.KeyMaterial], ['ed', ed.KeyMaterial]] as const) {
      writeFileSync(path.join(dir, name), `${material ?? ''}\n`, { mode: 0o600 });
      const pub = execFileSync('ssh-keygen', ['-y', '-f', path.join(dir, name)], { encoding: 'utf8' }).trim().split(' ').slice(0, 2).join(' ');
      const described = await ec2.send(new sdk.DescribeKeyPairsCommand({ KeyNames: [name === 'rsa' ? 'rsa-key' : 'ed-key'], IncludePublicKey: true }));
      assert.equal(described.KeyPairs?.[0]?.PublicKey, pub, `${name}: the public key we keep is the private key's`);
    }
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'mine')]);
    const mine = readFileSync(path.join(dir, 'mine.pub'));
    const imported = await ec2.send(new sdk.ImportKeyPairCommand({ KeyName: 'mine', PublicKeyMaterial: mine }));
    const expected = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(dir, 'mine.pub')], { encoding: 'utf8' }).split(' ')[1]?.replace(/^SHA256:/, '');
    assert.equal(imported.KeyFingerprint, `${expected ?? ''}=`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'rsa-key' })), { name: 'InvalidKeyPair.Duplicate' });
  await assert.rejects(ec2.send(new sdk.ImportKeyPairCommand({ KeyName: 'junk', PublicKeyMaterial: Buffer.from('not a key') })), { name: 'InvalidParameterValue' });
  const all = await ec2.send(new sdk.DescribeKeyPairsCommand({}));
  assert.deepEqual(all.KeyPairs?.map((k) => [k.KeyName, k.KeyType]), [['ed-key', 'ed25519'], ['mine', 'ed25519'], ['rsa-key', 'rsa']]);
  const tagged = await ec2.send(new sdk.DescribeKeyPairsCommand({ Filters: [{ Name: 'tag:team', Values: ['a'] }] }));
  assert.deepEqual(tagged.KeyPairs?.map((k) => k.KeyName), ['rsa-key']);
  await assert.rejects(ec2.send(new sdk.DescribeKeyPairsCommand({ KeyNames: ['nope'] })), { name: 'InvalidKeyPair.NotFound' });
  // Another account has none of them, and may use the same names.
  const other = host.client(host.account('keys-other'));
  assert.deepEqual((await other.send(new sdk.DescribeKeyPairsCommand({}))).KeyPairs, []);
  await other.send(new sdk.CreateKeyPairCommand({ KeyName: 'rsa-key' }));
  await assert.rejects(other.send(new sdk.DescribeKeyPairsCommand({ KeyPairIds: [rsa.KeyPairId ?? ''] })), { name: 'InvalidKeyPair.NotFound' });
  await ec2.send(new sdk.DeleteKeyPairCommand({ KeyName: 'rsa-key' }));
  await ec2.send(new sdk.DeleteKeyPairCommand({ KeyName: 'never-was' }));
  assert.deepEqual((await ec2.send(new sdk.DescribeKeyPairsCommand({}))).KeyPairs?.map((k) => k.KeyName), ['ed-key', 'mine']);
  const created = await rawCall(host.endpoint, host.account('keys-raw'), { Action: 'CreateKeyPair', KeyName: 'x', KeyType: 'ed25519' });
  assertMatchesModel('CreateKeyPair', created.body);
});

test('tags: created on this account\'s resources, described with filters and pages, deleted', async () => {
  const dev = host.account('tags');
  const ec2 = host.client(dev);
  const key = await ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'k', KeyType: 'ed25519' }));
  const id = key.KeyPairId ?? '';
  await ec2.send(new sdk.CreateTagsCommand({ Resources: [id], Tags: Array.from({ length: 7 }, (_, i) => ({ Key: `k${i}`, Value: `v${i}` })) }));
  const first = await ec2.send(new sdk.DescribeTagsCommand({ MaxResults: 5 }));
  assert.equal(first.Tags?.length, 5);
  assert.ok(first.NextToken);
  const second = await ec2.send(new sdk.DescribeTagsCommand({ MaxResults: 5, NextToken: first.NextToken }));
  assert.deepEqual(second.Tags?.map((t) => t.Key), ['k5', 'k6']);
  assert.equal(second.NextToken, undefined);
  const some = await ec2.send(new sdk.DescribeTagsCommand({ Filters: [{ Name: 'key', Values: ['k1', 'k3'] }] }));
  assert.deepEqual(some.Tags?.map((t) => [t.ResourceId, t.ResourceType, t.Key, t.Value]), [[id, 'key-pair', 'k1', 'v1'], [id, 'key-pair', 'k3', 'v3']]);
  await ec2.send(new sdk.DeleteTagsCommand({ Resources: [id], Tags: [{ Key: 'k0' }, { Key: 'k1', Value: 'wrong' }] }));
  assert.deepEqual((await ec2.send(new sdk.DescribeTagsCommand({ Filters: [{ Name: 'key', Values: ['k0', 'k1'] }] }))).Tags?.map((t) => t.Key), ['k1']);
  await assert.rejects(ec2.send(new sdk.CreateTagsCommand({ Resources: ['i-0123456789abcdef0'], Tags: [{ Key: 'a', Value: 'b' }] })), { name: 'InvalidInstanceID.NotFound' });
  await assert.rejects(ec2.send(new sdk.CreateTagsCommand({ Resources: ['bogus-1'], Tags: [{ Key: 'a', Value: 'b' }] })), { name: 'InvalidID' });
  await assert.rejects(ec2.send(new sdk.CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'aws:x', Value: 'b' }] })), { name: 'InvalidParameterValue' });
  // Another account sees none of it, and cannot tag it: a foreign id answers as a missing one.
  const other = host.client(host.account('tags-other'));
  assert.deepEqual((await other.send(new sdk.DescribeTagsCommand({}))).Tags, []);
  await assert.rejects(other.send(new sdk.CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'a', Value: 'b' }] })), { name: 'InvalidKeyPair.NotFound' });
});

test('volumes: created as sparse files, described, tagged, refused where EC2 refuses, deleted', async () => {
  const dev = host.account('vols');
  const ec2 = host.client(dev);
  const v = await ec2.send(new sdk.CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 2, VolumeType: 'gp3',
    TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'purpose', Value: 'data' }] }] }));
  assert.equal(v.State, 'available');
  const file = path.join(host.dataDir, 'volumes', `${v.VolumeId ?? ''}.img`);
  assert.equal(statSync(file).size, 2 * 2 ** 30);
  assert.ok(statSync(file).blocks * 512 < 2 ** 20, 'sparse');
  const listed = await ec2.send(new sdk.DescribeVolumesCommand({ Filters: [{ Name: 'tag:purpose', Values: ['data'] }, { Name: 'status', Values: ['available'] }] }));
  assert.deepEqual(listed.Volumes?.map((x) => [x.VolumeId, x.Size, x.AvailabilityZone]), [[v.VolumeId, 2, 'us-east-1a']]);
  await assert.rejects(ec2.send(new sdk.CreateVolumeCommand({ AvailabilityZone: 'us-west-2a', Size: 1 })), { name: 'InvalidParameterValue' });
  await assert.rejects(ec2.send(new sdk.CreateVolumeCommand({ AvailabilityZone: 'us-east-1a' })), { name: 'MissingParameter' });
  await assert.rejects(ec2.send(new sdk.AttachVolumeCommand({ VolumeId: v.VolumeId, InstanceId: 'i-0123456789abcdef0', Device: '/dev/sdf' })), { name: 'InvalidInstanceID.NotFound' });
  await assert.rejects(ec2.send(new sdk.DetachVolumeCommand({ VolumeId: v.VolumeId })), { name: 'IncorrectState' });
  await assert.rejects(host.client(host.account('vols-other')).send(new sdk.DeleteVolumeCommand({ VolumeId: v.VolumeId })), { name: 'InvalidVolume.NotFound' });
  assertMatchesModel('DescribeVolumes', (await rawCall(host.endpoint, dev, { Action: 'DescribeVolumes' })).body);
  const raw = await rawCall(host.endpoint, dev, { Action: 'CreateVolume', AvailabilityZone: 'us-east-1a', Size: '1' });
  assertMatchesModel('CreateVolume', raw.body);
  await ec2.send(new sdk.DeleteVolumeCommand({ VolumeId: v.VolumeId }));
  assert.ok(!existsSync(file), 'the file is gone');
  await assert.rejects(ec2.send(new sdk.DescribeVolumesCommand({ VolumeIds: [v.VolumeId ?? ''] })), { name: 'InvalidVolume.NotFound' });
});

test('authentication: a bad signature, an unknown key, an expired or future date, no signature at all', async () => {
  const dev = host.account('auth');
  const ok = await rawCall(host.endpoint, dev, { Action: 'DescribeRegions' });
  assert.equal(ok.status, 200);
  assert.match(ok.requestId ?? '', /^[0-9a-f-]{36}$/);
  assert.ok(ok.body.includes(`<requestId>${ok.requestId ?? ''}</requestId>`));
  assertEc2Error(await rawCall(host.endpoint, { ...dev, secretAccessKey: 'wrong' }, { Action: 'DescribeRegions' }), 403, 'SignatureDoesNotMatch');
  assertEc2Error(await rawCall(host.endpoint, { ...dev, accessKeyId: 'AKIAUNKNOWNUNKNOWN00' }, { Action: 'DescribeRegions' }), 401, 'AuthFailure');
  assertEc2Error(await rawCall(host.endpoint, dev, { Action: 'DescribeRegions' }, { now: new Date(Date.now() - 6 * 60_000) }), 400, 'RequestExpired');
  assertEc2Error(await rawCall(host.endpoint, dev, { Action: 'DescribeRegions' }, { now: new Date(Date.now() + 6 * 60_000) }), 400, 'RequestExpired');
  // The body changed after signing.
  const tampered = await fetch(host.endpoint, { method: 'POST', body: 'Action=DescribeRegions&Version=2016-11-15' });
  assert.equal(tampered.status, 401);
  assert.match(await tampered.text(), /<Code>MissingAuthenticationToken<\/Code>/);
  const sdkWrong = new sdk.EC2Client({ endpoint: host.endpoint, region: 'us-east-1', maxAttempts: 1, credentials: { accessKeyId: dev.accessKeyId, secretAccessKey: 'nope' } });
  await assert.rejects(sdkWrong.send(new sdk.DescribeRegionsCommand({})), { name: 'SignatureDoesNotMatch' });
});

test('the model check itself: it finds a misnamed element, a bad number and a list without items', async () => {
  const { assertMatchesModel: check } = await import('../framework/ec2.js');
  const wrap = (inner: string): string => `<?xml version="1.0"?><DescribeRegionsResponse><requestId>r</requestId>${inner}</DescribeRegionsResponse>`;
  check('DescribeRegions', wrap('<regionInfo><item><regionName>x</regionName></item></regionInfo>'));
  assert.throws(() => check('DescribeRegions', wrap('<regionInfo><item><region>x</region></item></regionInfo>')), /<region> is not a member/);
  assert.throws(() => check('DescribeRegions', wrap('<regionInfo><entry><regionName>x</regionName></entry></regionInfo>')), /list entries are <item>/);
  assert.throws(() => check('DescribeInstanceStatus', '<?xml version="1.0"?><DescribeInstanceStatusResponse><requestId>r</requestId>'
    + '<instanceStatusSet><item><instanceState><code>run</code></instanceState></item></instanceStatusSet></DescribeInstanceStatusResponse>'), /is not a number/);
  assert.throws(() => check('DescribeRegions', '<DescribeRegionsResponse><requestId>r</requestId><regionInfo></DescribeRegionsResponse>'), /well-formed/);
});

test('bad requests: unknown actions, missing and malformed parameters, oversized bodies; none leaks internals', async () => {
  const dev = host.account('bad');
  const call = (p: Record<string, string>): ReturnType<typeof rawCall> => rawCall(host.endpoint, dev, p);
  assertEc2Error(await call({ Action: 'LaunchRockets' }), 400, 'InvalidAction');
  assertEc2Error(await call({ Action: 'RunInstances', MinCount: '1', MaxCount: '1' }), 400, 'MissingParameter');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: 'ami-0123456789abcdef0', MinCount: '1', MaxCount: '1' }), 400, 'InvalidAMIID.NotFound');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: 'nope', MinCount: '1', MaxCount: '1' }), 400, 'InvalidAMIID.Malformed');
  const ami = images()[0];
  assert.ok(ami, 'an image (azote image build)');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: '1', MaxCount: '1', InstanceType: 'z9.big' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: '2', MaxCount: '1' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: 'x', MaxCount: '1' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: '1', MaxCount: '1', KeyName: 'none' }), 400, 'InvalidKeyPair.NotFound');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: '1', MaxCount: '1', UserData: '***' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: '1', MaxCount: '1', UserData: Buffer.alloc(16385).toString('base64') }), 400, 'InvalidParameterValue');
  const tooBig = INSTANCE_TYPES.find((t) => t.vcpus > host.capacity.cores || t.memoryMiB > host.capacity.memoryMiB);
  if (tooBig) assertEc2Error(await call({ Action: 'RunInstances', ImageId: amiId(ami), MinCount: '1', MaxCount: '1', InstanceType: tooBig.name }), 400, 'Unsupported');
  assertEc2Error(await call({ Action: 'DescribeInstances', 'InstanceId.1': 'i-12' }), 400, 'InvalidInstanceID.Malformed');
  assertEc2Error(await call({ Action: 'DescribeInstances', 'InstanceId.1': 'i-0123456789abcdef0' }), 400, 'InvalidInstanceID.NotFound');
  assertEc2Error(await call({ Action: 'DescribeInstances', 'Filter.1.Name': 'flavour', 'Filter.1.Value.1': 'x' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'DescribeInstances', MaxResults: '3' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'DescribeInstances', NextToken: 'garbage' }), 400, 'InvalidParameterValue');
  assertEc2Error(await call({ Action: 'TerminateInstances' }), 400, 'MissingParameter');
  assertEc2Error(await call({ Action: 'GetConsoleOutput', InstanceId: 'i-0123456789abcdef0' }), 400, 'InvalidInstanceID.NotFound');
  assertEc2Error(await rawCall(host.endpoint, dev, {}, { body: 'Action=DescribeRegions' }), 400, 'MissingParameter');
  assertEc2Error(await rawCall(host.endpoint, dev, {}, { body: 'Action=DescribeRegions&Version=2016-11-15&Version=2016-11-15' }), 400, 'InvalidParameterValue');
  assertEc2Error(await rawCall(host.endpoint, dev, {}, { body: `Action=DescribeRegions&Version=2016-11-15&Junk=${'x'.repeat(300 * 1024)}` }), 413, 'RequestEntityTooLarge');
  const weird = await rawCall(host.endpoint, dev, {}, { body: '%%%&&&==\u0000<xml>' });
  assert.ok(weird.status >= 400 && weird.status < 500, weird.body);
  assert.doesNotMatch(weird.body, /at .*\.js|Error: /, 'no stack trace');
});
