// The network tests' helper really moves them out of the host's network namespace, and so does what they start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/images/paths.js';
import { CLONE_NEWNET } from '../../src/sys/libc.js';
import { readCFacts } from '../framework/c-layout.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

const netns = useOwnNetworkNamespace();

test('useOwnNetworkNamespace: this process and its children are in a namespace that is not the host\'s', () => {
  assert.notEqual(netns.ownInode, netns.hostInode);
  assert.equal(statSync('/proc/self/ns/net').ino, netns.ownInode);
  assert.equal(statSync(netns.hostPath).ino, netns.hostInode, 'the host\'s namespace stays reachable for checks');
  const child = execFileSync('readlink', ['/proc/self/ns/net'], { encoding: 'utf8' }).trim();
  assert.equal(child, readlinkSync('/proc/self/ns/net'), 'a child process inherits the namespace');
  assert.equal(useOwnNetworkNamespace(), netns, 'a second call keeps the same namespace');
});

test('useOwnNetworkNamespace: only lo, up; a device made here is not in the host\'s namespace', () => {
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).trim().split('\n');
  assert.equal(links.length, 1, links.join('\n'));
  assert.match(links[0] ?? '', /^1: lo: <LOOPBACK,UP,LOWER_UP>/);
  execFileSync('ip', ['tuntap', 'add', 'aztnstest0', 'mode', 'tap']);
  try {
    assert.match(execFileSync('ip', ['-o', 'link', 'show', 'aztnstest0'], { encoding: 'utf8' }), /aztnstest0/);
    const host = execFileSync('nsenter', [`--net=${netns.hostPath}`, 'ip', '-o', 'link', 'show'], { encoding: 'utf8' });
    assert.doesNotMatch(host, /aztnstest0/, 'the host never sees it');
  } finally {
    execFileSync('ip', ['link', 'del', 'aztnstest0']);
  }
});

test('CLONE_NEWNET matches <linux/sched.h>', () => {
  const facts = readCFacts(['linux/sched.h'], [], ['CLONE_NEWNET']).constants;
  assert.equal(facts.get('CLONE_NEWNET'), BigInt(CLONE_NEWNET));
});

/** What marks a test file as one that sends packets: a TAP or uplink, a network card, a VM on a network, an EC2 host. */
// `ping` as a word: "mapping in place" sends nothing.
const SENDS_PACKETS = /--uplink|'--net'|card', 'net'|startEc2\(|tuntap|netdev|createTap|\bping /;

test('every test file that sends packets calls useOwnNetworkNamespace() first', () => {
  const root = path.join(projectRoot(), 'test');
  const files = (function walk(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name))
      : e.name.endsWith('.test.ts') ? [path.join(dir, e.name)] : []));
  })(root);
  const networked = files.filter((f) => SENDS_PACKETS.test(readFileSync(f, 'utf8')));
  assert.ok(networked.length >= 8, `the pattern still finds the network tests (${networked.length})`);
  const missing = networked.filter((f) => !/^(const \w+ = )?useOwnNetworkNamespace\(\);$/m.test(readFileSync(f, 'utf8')))
    .map((f) => path.relative(projectRoot(), f));
  assert.deepEqual(missing, [], 'these send packets from the host\'s namespace');
});
