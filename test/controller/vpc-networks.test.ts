// VPCs on the host, as a user meets them: the default VPC's instances get the addresses the control plane allocated
// in their subnet, by DHCP from their VPC's network card (with the router, DNS server and EC2's host name); the host
// reaches them through the VPC's uplink, and stock OpenSSH logs in with a created RSA key pair, a created Ed25519 one
// and an imported one, checking the host keys the console printed. A second VPC with the same CIDR has a card of its
// own (no uplink: the host routes that CIDR to the first): its instance has the same address as one of the first
// VPC's, and no frame passes between the two.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import * as sdk from '@aws-sdk/client-ec2';
import { startEc2 } from '../framework/ec2.js';
import { consoleUntil, defaultAmi, hostKeys } from '../framework/instances.js';
import { requireKvm } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { hostProcesses } from '../framework/processes.js';

useOwnNetworkNamespace();

const execFileAsync = promisify(execFile);

/** The sockets of the network cards running under `dataDir`. */
function netCardSockets(dataDir: string): string[] {
  return hostProcesses().map(({ args }) => ({ args, socket: args[args.indexOf('--socket') + 1] ?? '' }))
    .filter(({ args, socket }) => args.includes('--subnet') && socket.startsWith(`${dataDir}/`)).map(({ socket }) => socket);
}

/** The host's uplink TAPs to VPCs, with their IPv4 addresses. */
function uplinks(): string[] {
  return execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' }).split('\n')
    .map((l) => /^\d+: (azvpc\d+)\s+inet (\S+)/.exec(l)).filter((m) => m !== null).map((m) => `${m[1] ?? ''} ${m[2] ?? ''}`);
}

/**
 * Runs `command` over SSH as root with stock OpenSSH, checking the host key against `knownHosts`. A guest under nested
 * KVM sometimes answers a first connection too slowly for the banner exchange, or an ARP request too slowly for the
 * host to find it (No route to host) on a loaded machine: a few tries, each up to a minute, only to detect one that
 * never answers; every try's reason is kept for the failure message.
 */
async function ssh(key: string, knownHosts: string, ip: string, command: string): Promise<string> {
  const failures: string[] = [];
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const r = await execFileAsync('ssh', ['-i', key, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes',
        '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=60', '-o', 'IdentitiesOnly=yes', '-F', '/dev/null', `root@${ip}`, command],
      { encoding: 'utf8', timeout: 180_000 });
      return r.stdout;
    } catch (e) {
      const err = e as { stderr?: string; code?: number };
      failures.push(`try ${attempt + 1}: status ${err.code ?? '?'}: ${(err.stderr ?? '').trim()}`);
      if (!/timed out|Connection refused|reset|No route to host/.test(err.stderr ?? '')) break;
    }
  }
  return assert.fail(`ssh root@${ip} failed:\n${failures.join('\n')}`);
}

test('VPCs: addresses from the subnet by DHCP, SSH from the host with created and imported keys, and a same-CIDR VPC that never meets them', { timeout: 900_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-vpc-'));
  const host = await startEc2(undefined, { shareCoresWithinAccount: true });
  try {
    const ec2 = host.client(host.account('dev'));
    const keyFile = (name: string, material: string): string => {
      const file = path.join(dir, name);
      writeFileSync(file, material.endsWith('\n') ? material : `${material}\n`);
      chmodSync(file, 0o600);
      return file;
    };
    const rsa = await ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'k-rsa', KeyType: 'rsa' }));
    const ed = await ec2.send(new sdk.CreateKeyPairCommand({ KeyName: 'k-ed25519', KeyType: 'ed25519' }));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'imported')]);
    await ec2.send(new sdk.ImportKeyPairCommand({ KeyName: 'k-imported', PublicKeyMaterial: readFileSync(path.join(dir, 'imported.pub')) }));
    const keys = [keyFile('rsa', rsa.KeyMaterial ?? ''), keyFile('ed25519', ed.KeyMaterial ?? ''), path.join(dir, 'imported')];

    const vpcs = (await ec2.send(new sdk.DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }))).Vpcs ?? [];
    const defaultVpc = vpcs[0]?.VpcId ?? assert.fail('a default VPC');
    const groups = await ec2.send(new sdk.DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [defaultVpc] }, { Name: 'group-name', Values: ['default'] }] }));
    await ec2.send(new sdk.AuthorizeSecurityGroupIngressCommand({
      GroupId: groups.SecurityGroups?.[0]?.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '0.0.0.0/0' }] }],
    }));
    const launch = async (keyName: string, subnetId?: string, userData?: string): Promise<string> => {
      const r = await ec2.send(new sdk.RunInstancesCommand({
        ImageId: defaultAmi(), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1, KeyName: keyName, SubnetId: subnetId,
        UserData: userData === undefined ? undefined : Buffer.from(userData).toString('base64'),
      }));
      return r.Instances?.[0]?.InstanceId ?? assert.fail('an instance');
    };
    const ids = [await launch('k-rsa'), await launch('k-ed25519'), await launch('k-imported')];
    const described = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: ids }))).Reservations?.flatMap((r) => r.Instances ?? []) ?? [];
    const address = new Map(described.map((i) => [i.InstanceId ?? '', i.PrivateIpAddress ?? '']));
    assert.deepEqual(ids.map((id) => address.get(id)), ['172.31.0.4', '172.31.0.5', '172.31.0.6'],
      'the default subnet\'s addresses, from .4 up (AWS keeps the first four), shown while pending');

    // Every guest up first: under nested KVM a guest still making its host keys slows the others' SSH servers.
    const consoles = await Promise.all(ids.map((id) => consoleUntil(ec2, id, /azote-instance: SSH server listening on port 22/, 900)));
    for (const [i, id] of ids.entries()) {
      const ip = address.get(id) ?? '';
      const text = consoles[i] ?? '';
      assert.match(text, new RegExp(`azote-instance: ${id} .* is up, address ${ip.replace(/\./g, '\\.')}\\b`), 'the guest got its address by DHCP');
      assert.deepEqual(uplinks(), ['azvpc0 172.31.0.1/16'], 'the default VPC\'s uplink holds its first address');
      const knownHosts = path.join(dir, `known-${i}`);
      writeFileSync(knownHosts, hostKeys(text).keys.map((k) => `${ip} ${k}\n`).join(''));
      const neighbour = address.get(ids[i === 0 ? 1 : 0] ?? '') ?? '';
      const out = await ssh(keys[i] ?? '', knownHosts, ip,
        `hostname; cat /etc/resolv.conf; ip route; ping -c 2 -W 5 ${neighbour} >/dev/null && echo "reached ${neighbour}"`);
      assert.equal(out, `ip-${ip.replace(/\./g, '-')}\nnameserver 172.31.0.2\ndefault via 172.31.0.1 dev eth0 \n`
        + `172.31.0.0/20 dev eth0 scope link  src ${ip} \nreached ${neighbour}\n`,
        `ssh to ${id} with key ${path.basename(keys[i] ?? '')}: EC2's host name, the VPC's DNS server and router, and a neighbour in the VPC`);
    }

    // A second VPC with the same CIDR: its instance gets the address the first VPC's first instance has, and never
    // reaches the first VPC's second instance (.5), however long it asks.
    const vpc2 = (await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '172.31.0.0/16' }))).Vpc?.VpcId ?? assert.fail('a VPC');
    const subnet2 = (await ec2.send(new sdk.CreateSubnetCommand({ VpcId: vpc2, CidrBlock: '172.31.0.0/20' }))).Subnet?.SubnetId;
    const lone = await launch('k-rsa', subnet2, '#!/bin/sh\nif ping -c 20 -W 1 172.31.0.5 >/dev/null; then echo "vpc-check: crossed"; else echo "vpc-check: isolated"; fi\n');
    const text = await consoleUntil(ec2, lone, /vpc-check: \w+/);
    assert.match(text, new RegExp(`azote-instance: ${lone} .* is up, address 172\\.31\\.0\\.4\\b`));
    assert.match(text, /vpc-check: isolated/);
    assert.equal(new Set(netCardSockets(host.dataDir)).size, 2, 'a network card per VPC');
    assert.deepEqual(uplinks(), ['azvpc0 172.31.0.1/16'], 'the second VPC has no uplink: its CIDR is the first one\'s');
    const stillFirst = await ssh(keys[0] ?? '', path.join(dir, 'known-0'), '172.31.0.4', 'cat /run/azote/metadata/instance-id');
    assert.equal(stillFirst.trim(), ids[0], 'the host\'s 172.31.0.4 is still the default VPC\'s instance');

    const all = [...ids, lone];
    await ec2.send(new sdk.TerminateInstancesCommand({ InstanceIds: all }));
    await sdk.waitUntilInstanceTerminated({ client: ec2, maxWaitTime: 300, minDelay: 1, maxDelay: 2 }, { InstanceIds: all });
  } finally {
    await host.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  // The cards were killed; a deadline only to detect a card that never goes.
  for (let i = 0; i < 100 && netCardSockets(host.dataDir).length > 0; i++) await sleep(100);
  assert.deepEqual(netCardSockets(host.dataDir), [], 'the cards stop with the host');
  assert.deepEqual(uplinks(), [], 'the uplinks go with the host');
});
