// The security chip with this build's real bundles: install, verification before launch, tampering, rollback,
// signatures, measurements and quotes; and the controller refusing to launch a tampered hypervisor.
import { chooseProtection, protectionMeasurement } from '../../src/isolation/memory-protection.js';
import { probeHostMemory } from '../../src/isolation/secret-probe.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import {
  buildBundles, COMPONENTS, componentFiles, CONTROLLER, nodeRuntime, verifyController, VerifiedRuntime,
} from '../../src/controller/components.js';
import { amiId, images } from '../../src/control-plane/catalogue.js';
import { buildBundle, replay, SecurityChip, verifyQuote, type Quote } from '../../src/security-chip/chip.js';
import { devReleaseKey } from '../../src/security-chip/keys.js';
import { readTgz, writeTgz } from '../../src/security-chip/tar.js';
import { projectRoot } from '../../src/images/paths.js';
import { startEc2 } from '../framework/ec2.js';
import { createLogger } from '../../src/base/log.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const dir = mkdtempSync(path.join(tmpdir(), 'azote-chip-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function freshHost(name: string): { chip: SecurityChip; bundles: Map<string, Buffer>; key: NonNullable<ReturnType<typeof devReleaseKey>> } {
  const hostDir = path.join(dir, name);
  const { chip, createdDevKey } = SecurityChip.init(hostDir);
  assert.ok(createdDevKey);
  const key = devReleaseKey(hostDir);
  assert.ok(key);
  return { chip, key, bundles: new Map(buildBundles(key, 100).map((b) => [b.name, b.bundle])) };
}

test('bundles hold their entry\'s whole import closure, every file with its digest; tar reads them', () => {
  const hv = componentFiles(COMPONENTS[0] ?? CONTROLLER);
  for (const f of ['dist/src/hypervisor/instance-main.js', 'dist/src/hypervisor/vm.js', 'dist/src/isolation/vcpus.js',
    'dist/src/hypervisor/io-thread.js', 'dist/src/kvm/kvm.js', 'dist/src/protocols/channel.js', 'dist/src/sys/fd-watcher-thread.js',
    'node_modules/koffi/index.js', 'package.json']) assert.ok(hv.includes(f), f);
  assert.ok(!hv.some((f) => f.includes('control-plane') || f.includes('/cli/')), 'no control plane or CLI code in the hypervisor');
  const { bundles } = freshHost('closure');
  const file = path.join(dir, 'hypervisor.tgz');
  writeFileSync(file, bundles.get('hypervisor') ?? Buffer.alloc(0));
  const listed = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listed.slice(0, 2), ['manifest.json', 'manifest.sig']);
  assert.equal(listed.length, hv.length + 2);
});

test('install and verify: a signed, intact bundle is admitted and measured; the store lists it', () => {
  const { chip, bundles } = freshHost('install');
  for (const b of bundles.values()) chip.install(b);
  assert.deepEqual(chip.components().map((c) => [c.name, c.build]), [['card-block', 100], ['card-net', 100], ['controller', 100], ['hypervisor', 100]]);
  const hv = chip.admit('hypervisor');
  assert.ok(hv.entryPath.endsWith(path.join('files', 'dist', 'src', 'hypervisor', 'instance-main.js')));
  assert.equal(chip.eventLog().length, 1);
  assert.deepEqual(chip.pcrs(), replay(chip.eventLog()));
  // The installed hypervisor runs from the store: its entry loads, with koffi, from there alone.
  const out = execFileSync(process.execPath, ['--input-type=module', '-e',
    `await import(${JSON.stringify(path.join(hv.dir, 'dist', 'src', 'kvm', 'kvm.js'))}); console.log('loaded')`], { encoding: 'utf8', cwd: tmpdir() });
  assert.equal(out.trim(), 'loaded');
});

test('one flipped byte in an installed file: the launch is refused, naming the file; so is a file added', () => {
  const { chip, bundles } = freshHost('tamper');
  chip.install(bundles.get('hypervisor') ?? Buffer.alloc(0));
  const victim = path.join(chip.hostDir, 'components', 'hypervisor', 'files', 'dist', 'src', 'hypervisor', 'vm.js');
  const original = readFileSync(victim);
  const flipped = Buffer.from(original);
  flipped[100] = (flipped[100] ?? 0) ^ 1;
  writeFileSync(victim, flipped);
  assert.throws(() => chip.admit('hypervisor'), /refused hypervisor: dist\/src\/hypervisor\/vm\.js does not match its signed digest/);
  assert.equal(chip.eventLog().length, 0, 'nothing refused is measured');
  writeFileSync(victim, original);
  chip.verify('hypervisor');
  appendFileSync(path.join(chip.hostDir, 'components', 'hypervisor', 'files', 'dist', 'src', 'evil.js'), 'x');
  assert.throws(() => chip.verify('hypervisor'), /dist\/src\/evil\.js is in the store but not in the signed manifest/);
  assert.throws(() => chip.verify('card-net'), /refused card-net: it is not installed/);
});

test('anti-rollback and signatures: older builds, changed bundles, foreign keys and unsigned bundles are refused', () => {
  const { chip, key } = freshHost('rollback');
  const make = (build: number, signer = key): Buffer => buildBundle({ name: 'card-net', version: '0.1.0', build, entry: 'dist/src/cards/net/main.js',
    root: projectRoot(), files: componentFiles(COMPONENTS[2] ?? CONTROLLER) }, signer);
  chip.install(make(200));
  assert.throws(() => chip.install(make(199)), /card-net build 199 \(0\.1\.0\) is older than the installed build 200/);
  chip.install(make(200));
  chip.install(make(201));
  assert.equal(chip.components()[0]?.build, 201);
  const other = generateKeyPairSync('ed25519').privateKey;
  assert.throws(() => chip.install(make(300, other)), /signature does not verify with this host's release key/);
  const entries = readTgz(make(300));
  const unsigned = writeTgz([...entries].filter(([n]) => n !== 'manifest.sig').map(([name, e]) => ({ name, data: e.data, mode: e.mode })));
  assert.throws(() => chip.install(unsigned), /no manifest\.json and manifest\.sig/);
  const changed = writeTgz([...entries].map(([name, e]) => ({ name, data: name.endsWith('card.js') ? Buffer.concat([e.data, Buffer.from('//')]) : e.data, mode: e.mode })));
  assert.throws(() => chip.install(changed), /does not match its signed digest/);
  assert.throws(() => chip.install(Buffer.from('not a bundle')), /not a valid archive/);
  assert.equal(chip.components()[0]?.build, 201, 'nothing refused was installed');
});

test('the controller\'s own code is verified against its signed component before the host starts: a changed file refuses it', () => {
  const { chip, bundles } = freshHost('controller');
  assert.throws(() => verifyController(chip), /refused controller: it is not installed/);
  chip.install(bundles.get('controller') ?? Buffer.alloc(0));
  // A copy of the code `azote up` runs, as an installed build would be.
  const root = path.join(dir, 'controller-copy');
  const files = componentFiles(CONTROLLER);
  assert.ok(files.includes('dist/src/control-plane/api.js') && files.includes('dist/src/controller/controller.js'));
  assert.ok(files.includes('node_modules/better-sqlite3/package.json'), 'library versions are signed');
  for (const f of files) {
    mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    copyFileSync(path.join(projectRoot(), f), path.join(root, f));
  }
  const verified = verifyController(chip, root);
  assert.equal(verified.component.name, 'controller');
  assert.equal(chip.measure(verified.component).pcr, 0);
  assert.equal(verified.runtime.expected.sha384, nodeRuntime().sha384, 'the Node binary is signed with it');
  appendFileSync(path.join(root, 'dist/src/control-plane/api.js'), '\n// changed after signing\n');
  assert.throws(() => verifyController(chip, root), /refused the controller: dist\/src\/control-plane\/api\.js does not match its signed digest/);
});

test('a controller bundle signed for another Node binary: the host does not start, and no launch passes', () => {
  const { chip, key } = freshHost('runtime');
  const other = { ...nodeRuntime(), version: 'v0.0.1', sha384: 'ab'.repeat(48) };
  chip.install(buildBundle({ name: 'controller', version: '0.0.0', build: 100, entry: CONTROLLER.entry, root: projectRoot(),
    files: componentFiles(CONTROLLER), runtime: other }, key));
  assert.throws(() => verifyController(chip), /refused the Node runtime: .* is not the signed one \(v0\.0\.1\)/);
  assert.throws(() => new VerifiedRuntime(other).check(), /refused the Node runtime/);
  assert.doesNotThrow(() => new VerifiedRuntime(nodeRuntime()).check());
});

test('quotes: verified with the host\'s key; any change to the registers, the log or the nonce is caught', () => {
  const { chip, bundles } = freshHost('quote');
  for (const b of bundles.values()) chip.install(b);
  chip.boot();
  chip.admit('card-net');
  chip.admit('hypervisor');
  chip.admit('hypervisor');
  const trusted = readFileSync(path.join(chip.hostDir, 'keys', 'attestation.pub'), 'utf8');
  const q = chip.attest('nonce-123');
  verifyQuote(q, createPublicKey(trusted));
  assert.equal(q.eventLog.length, 3);
  assert.notEqual(q.pcrs[1], q.pcrs[0]);
  const altered: Array<[string, Quote]> = [
    ['nonce', { ...q, nonce: 'nonce-124' }],
    ['log', { ...q, eventLog: q.eventLog.slice(0, 2) }],
    ['log entry', { ...q, eventLog: q.eventLog.map((e, i) => (i === 0 ? { ...e, version: '9.9.9' } : e)) }],
    ['register', { ...q, pcrs: q.pcrs.map((p, i) => (i === 1 ? '0'.repeat(96) : p)) }],
  ];
  for (const [what, bad] of altered) assert.throws(() => verifyQuote(bad, createPublicKey(trusted)), /BadQuote|does not verify|does not give/, what);
  const stranger = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey;
  assert.throws(() => verifyQuote(q, stranger), /another attestation key/);
});

test('azote up refuses to launch an instance whose hypervisor was tampered with, and says which file', { timeout: 120_000 }, async () => {
  const lines: string[] = [];
  const host = await startEc2(undefined, { log: createLogger('test', { write: (l) => { lines.push(l); } }, 'warn') });
  try {
    const ec2 = host.client(host.account('dev'));
    // The host's start was verified and measured: the controller's own code first (PCR0), then the jail's tools
    // (PCR0), then what guests' memory is (PCR4, as its probe of KVM found it); each account's network card (PCR3) is
    // measured when it starts, with the account's first instance.
    const chip = SecurityChip.open(path.join(host.dataDir, 'host'));
    const log = chip.eventLog();
    assert.deepEqual(log.map((e) => [e.pcr, e.component]), [[0, 'controller'], [0, 'jail-tools'], [4, 'guest-memory']]);
    const m = protectionMeasurement(chooseProtection(probeHostMemory()));
    assert.deepEqual(log[2], { pcr: 4, component: m.name, version: m.version, build: m.build, digest: m.digest });
    assert.equal(log[0]?.digest, chip.components().find((c) => c.name === 'controller')?.digest);
    const victim = path.join(host.dataDir, 'host', 'components', 'hypervisor', 'files', 'dist', 'src', 'hypervisor', 'vm.js');
    appendFileSync(victim, '\n// changed after installation\n');
    const image = images().find((i) => i.name === 'default');
    assert.ok(image);
    const r = await ec2.send(new sdk.RunInstancesCommand({ ImageId: amiId(image), InstanceType: 't3.nano', MinCount: 1, MaxCount: 1 }));
    const id = r.Instances?.[0]?.InstanceId ?? '';
    let reason = '';
    for (let i = 0; i < 100 && !reason; i++) {
      const d = (await ec2.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations?.[0]?.Instances?.[0];
      if (d?.State?.Name === 'stopped') reason = d.StateReason?.Message ?? '';
      else await new Promise((res) => setTimeout(res, 100));
    }
    // The tenant sees EC2's reason; the host's log names the file.
    assert.equal(reason, 'Server.InternalError: Internal error on launch');
    assert.ok(lines.some((l) => l.includes(id) && /the security chip refused hypervisor: dist\/src\/hypervisor\/vm\.js does not match its signed digest/.test(l)),
      `the host log says which file: ${lines.join('')}`);
  } finally {
    await host.dispose();
  }
});
