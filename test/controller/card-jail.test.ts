// Cards in jails of their own, without a VM: a block card and a network card started as the controller starts them
// (CardProcess, from the bundles the security chip verified), seen from outside the process: their own uid, no
// privileges, a seccomp filter, their own namespaces, a root holding only node, setpriv, their libraries and their
// component, and no descriptor but their stdio, their listening socket made by the controller and (the block card)
// their volume's file; no environment but PATH. They still serve: a read through the jailed block card returns the
// volume's data, before and after the card is killed and restarted on the same listening socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/base/log.js';
import { encodeLease, LEASE_BYTES } from '../../src/cards/net/port-lease.js';
import { CardLinks } from '../../src/controller/card-links.js';
import { CardProcess, FIRST_CARD_FD, type CardJail } from '../../src/controller/card-process.js';
import { provisionDevelopmentHost } from '../../src/controller/components.js';
import { coreGroups } from '../../src/controller/cores.js';
import { JAIL_UID_BASE, JailUids } from '../../src/controller/jail.js';
import { PidFiles } from '../../src/controller/pid-files.js';
import { SecurityChip } from '../../src/security-chip/chip.js';
import * as libc from '../../src/sys/libc.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { BLK_T } from '../../src/virtio/blk.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../src/virtio/split-queue.js';
import { skipLoudly } from '../framework/kvm.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';
import { JAILED_PROC, nodePidsWith, procStatus as status, rootTree as tree, until as poll } from '../framework/processes.js';
import { SharedGuest } from '../framework/shared-guest.js';

useOwnNetworkNamespace();

const dir = mkdtempSync(path.join(tmpdir(), 'azote-card-jail-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The card's node process (not the jail's tools above it, whose arguments name the entry too). */
const cardPid = (entry: string, socket: string, except?: number): number | undefined =>
  nodePidsWith(entry, socket).find((p) => p !== except);
const until = <T>(what: string, probe: () => T | undefined): Promise<T> => poll(what, probe, { tries: 300, everyMs: 100 });

/** A host for cards: a security chip with this build installed and booted, and a jail whose uids are never reused. */
function cardHost(name: string, cores: readonly number[]): { chip: SecurityChip; jail: CardJail } {
  const { chip } = SecurityChip.init(path.join(dir, `host-${name}`));
  provisionDevelopmentHost(chip, silentLogger);
  chip.boot();
  const uids = new JailUids(path.join(dir, `jail-uid-next-${name}`));
  const mountPoint = path.join(dir, `jail-${name}`);
  mkdirSync(mountPoint);
  return { chip, jail: { mountPoint, cores, memoryMiB: 256, uids: { take: () => uids.next(new Set()), give: () => undefined } } };
}


/** What the jail shows of `pid` from outside, checked as jail.test.ts checks a hypervisor's. */
function checkJailed(pid: number, component: string): void {
  const uids = status(pid, 'Uid').split(/\s+/);
  const uid = Number(uids[0]);
  assert.ok(uid >= JAIL_UID_BASE, `uid ${uid}: an unprivileged uid of its own`);
  assert.deepEqual(uids, [String(uid), String(uid), String(uid), String(uid)]);
  assert.equal(status(pid, 'Groups'), '');
  assert.equal(status(pid, 'NoNewPrivs'), '1');
  assert.equal(status(pid, 'Seccomp'), '2', 'a seccomp filter');
  assert.equal(status(pid, 'CapEff'), '0000000000000000');
  assert.equal(status(pid, 'CapBnd'), '0000000000000000');
  for (const ns of ['net', 'mnt', 'ipc', 'uts', 'pid']) {
    assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `a ${ns} namespace of its own`);
  }
  assert.match(status(pid, 'NSpid'), /^\d+\s+1$/, 'pid 1 of its own pid namespace');
  assert.deepEqual(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean), ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], 'no environment but PATH');
  const root = `/proc/${pid}/root`;
  assert.ok(existsSync(`${root}${component}`), 'its verified component is in its root');
  const allowed = (p: string): boolean => p === '/.old' || p === '/proc' || p === '/usr' || /^\/(usr\/)?(bin|lib|lib64)(\/|$)/.test(p)
    || component === p || component.startsWith(`${p}/`) || p.startsWith(`${component}/`);
  assert.deepEqual(tree(root, component).filter((p) => !allowed(p)), [], 'nothing else in its root');
  assert.deepEqual(readdirSync(`${root}/proc`).sort(), JAILED_PROC, 'its /proc shows only itself');
  assert.deepEqual(readdirSync(`${root}/.old`), [], 'the old root is gone');
  assert.deepEqual(readdirSync(`${root}/usr/bin`).sort(), ['node', 'setpriv'], 'no program but node and setpriv');
  assert.equal(readFileSync(`/proc/${pid}/net/unix`, 'utf8').trim().split('\n').length, 1, 'no Unix socket was made in its namespace');
  assert.match(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), /:\/azote\/card-test-/m, 'its own control group');
}

/** Its descriptors besides stdio and Node's own pipes and anonymous inodes: each a listening socket or a file of `files`. */
function checkDescriptors(pid: number, sockets: readonly string[], files: readonly string[]): void {
  const unix = readFileSync('/proc/self/net/unix', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  const listening = new Set(sockets.map((s) => unix.find((r) => r[7] === s)?.[6] ?? assert.fail(`no socket ${s} in the controller's namespace`)));
  const fileIds = new Set(files.map((f) => `${statSync(f).dev}:${statSync(f).ino}`));
  const seen = { sockets: new Set<string>(), files: new Set<string>() };
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    const socket = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (Number(fd) <= 2) {
      assert.match(link, /^(socket|pipe):/, `its stdio (fd ${fd}) are the controller's pipes`);
    } else if (socket !== undefined) {
      assert.ok(listening.has(socket), `fd ${fd} (${link}) is its listening socket`);
      seen.sockets.add(socket);
    } else if (!/^(pipe|anon_inode):/.test(link)) { // pipes and anonymous inodes: Node's own
      const st = statSync(`/proc/${pid}/fd/${fd}`);
      const root = statSync(`/proc/${pid}/root`);
      if (st.dev === root.dev && st.ino === root.ino) continue; // its own root, which Node opens
      assert.ok(fileIds.has(`${st.dev}:${st.ino}`), `fd ${fd} (${link}) is a file it was given`);
      seen.files.add(`${st.dev}:${st.ino}`);
    }
  }
  assert.equal(seen.sockets.size, sockets.length, 'each listening socket');
  assert.equal(seen.files.size, files.length, 'each file');
}

const MEM = 1 << 20;
const Q: QueueConfig = { size: 16, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000, indirect: false, eventIdx: false };
const HEADER = 0x5000, STATUS = 0x6000, DATA = 0x8000;

/** Reads the volume's first sector through the card at `socket`: its bytes. */
async function readSector(socket: string): Promise<Uint8Array> {
  const g = new SharedGuest(VhostUserFrontend.connect(socket), MEM, [Q]);
  try {
    const d = g.drivers[0];
    assert.ok(d);
    g.mem.writeU32(HEADER, BLK_T.IN);
    d.desc(d.c.descAddr, 0, BigInt(HEADER), 16, VIRTQ_DESC_F_NEXT, 1);
    d.desc(d.c.descAddr, 1, BigInt(DATA), 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    d.desc(d.c.descAddr, 2, BigInt(STATUS), 1, VIRTQ_DESC_F_WRITE);
    g.mem.bytes[STATUS] = 0xff;
    g.start();
    g.offer(0, 0);
    await until('the read to complete', () => (g.used(0) === 1 ? true : undefined));
    assert.equal(g.mem.bytes[STATUS], 0, 'VIRTIO_BLK_S_OK');
    return g.mem.bytes.slice(DATA, DATA + 512);
  } finally {
    g.close();
  }
}

test('a block card and a network card in their jails: own uid, no privileges, seccomp, own namespaces, minimal root, only the descriptors given; the block card serves, also once restarted', { timeout: 300_000 }, async (t) => {
  if (process.getuid?.() !== 0) {
    skipLoudly(t, 'the controller jails cards as root; without root they keep its uid in a user namespace');
    return;
  }
  const { chip, jail } = cardHost('jailed', coreGroups().flat());
  const pids = new PidFiles(path.join(dir, 'pids'));
  const volume = path.join(dir, 'vol.img');
  writeFileSync(volume, new Uint8Array(1 << 20).fill(0x5a));
  const base = path.join(dir, 'vol.sock');
  const blockSocket = `${base}:v`;
  const netSocket = path.join(dir, 'net.sock');
  const block = await CardProcess.start({
    name: 'volume v', group: `card-test-block-${process.pid}`, admit: () => chip.admit('card-block'), sockets: [blockSocket],
    files: [{ path: volume, readOnly: false }], jail,
    args: ['--socket', base, '--listen-fd', String(FIRST_CARD_FD), '--volume', `v=fd:${FIRST_CARD_FD + 1}`],
  }, pids, silentLogger);
  let net: CardProcess | undefined;
  try {
    net = await CardProcess.start({
      name: 'network', group: `card-test-net-${process.pid}`, admit: () => chip.admit('card-net'), sockets: [netSocket], files: [], jail,
      args: ['--socket', netSocket, '--listen-fd', String(FIRST_CARD_FD), '--subnet', '10.99.0.0/24'],
    }, pids, silentLogger);
    const blockPid = cardPid('cards/block/main.js', base) ?? assert.fail('the block card runs');
    const netPid = cardPid('cards/net/main.js', netSocket) ?? assert.fail('the network card runs');
    checkJailed(blockPid, chip.admit('card-block').dir);
    checkJailed(netPid, chip.admit('card-net').dir);
    assert.notEqual(status(blockPid, 'Uid'), status(netPid, 'Uid'), 'each card its own uid');
    checkDescriptors(blockPid, [blockSocket], [volume]);
    checkDescriptors(netPid, [netSocket], []);

    // The controller's connections to a network card begin with the port's lease: the port has the lease's MAC, which
    // the frontend may not change; a lease for an address or a MAC in use, or bytes that are no lease, get the
    // connection closed before any vhost-user message is answered.
    const lease = (macByte: number, host: number): Uint8Array => encodeLease({
      mac: Uint8Array.of(0x02, 0, 0, 0, 0, macByte), ip: ((10 << 24) | (99 << 16) | host) >>> 0, prefix: 24,
      gateway: ((10 << 24) | (99 << 16) | 1) >>> 0, dns: ((10 << 24) | (99 << 16) | 2) >>> 0,
    });
    const linkWith = (greeting: Uint8Array): CardLinks => new CardLinks(new Map([['network', netSocket]]), new Map([['network', greeting]]));
    const held = linkWith(lease(1, 10));
    const port = VhostUserFrontend.over(held.renew('network'));
    try {
      assert.deepEqual([...port.getConfig(6)], [0x02, 0, 0, 0, 0, 1], 'the MAC the lease gave');
      port.setConfig(0, Uint8Array.of(0x02, 0, 0, 0, 0, 1));
      assert.throws(() => port.setConfig(0, Uint8Array.of(0x02, 0, 0, 0, 0, 9)), /refused/, 'the port\'s MAC is its interface\'s');
      for (const refused of [lease(2, 10), lease(1, 11), new Uint8Array(LEASE_BYTES), lease(3, 0)]) {
        const other = linkWith(refused);
        assert.throws(() => VhostUserFrontend.over(other.renew('network')), /closed|ended|reply/);
        other.close();
      }
      assert.deepEqual([...port.getConfig(6)], [0x02, 0, 0, 0, 0, 1], 'the port held on through the refusals');
    } finally {
      port.close();
      held.close();
    }

    assert.ok((await readSector(blockSocket)).every((b) => b === 0x5a), 'a read through the jailed card returns the volume\'s data');
    // Killed, it is started again with the same listening socket: a frontend connects to the same path and is served.
    const firstUid = status(blockPid, 'Uid');
    assert.equal(block.serving, true);
    process.kill(blockPid, 'SIGKILL');
    // Until the new card says it serves, hypervisors asking for a connection are told to ask again.
    await until('the controller to see the card die', () => (block.serving ? undefined : true));
    await until('the card to serve again', () => (block.serving ? true : undefined));
    const again = cardPid('cards/block/main.js', base, blockPid) ?? assert.fail('a new block card');
    assert.ok((await readSector(blockSocket)).every((b) => b === 0x5a), 'the restarted card serves on the same path');
    checkJailed(again, chip.admit('card-block').dir);
    checkDescriptors(again, [blockSocket], [volume]);
    assert.notEqual(status(again, 'Uid'), firstUid, 'a fresh uid at each start');
  } finally {
    block.stop();
    net?.stop();
  }
  await until('the cards to end', () => (cardPid('cards/block/main.js', base) === undefined && cardPid('cards/net/main.js', netSocket) === undefined ? true : undefined));
  assert.equal(existsSync(blockSocket), false, 'a stopped card\'s socket is removed');
  assert.equal(existsSync(netSocket), false);
});

test('a block card whose volume is locked by another does not start: the start fails with the card\'s reason, and leaves no socket', { timeout: 120_000 }, async (t) => {
  if (process.getuid?.() !== 0) {
    skipLoudly(t, 'the controller jails cards as root');
    return;
  }
  const { chip, jail } = cardHost('locked', [0]);
  const volume = path.join(dir, 'locked.img');
  writeFileSync(volume, new Uint8Array(1 << 20));
  const holder = openSync(volume, 'r+');
  try {
    assert.ok(libc.flock(holder, libc.LOCK_EX | libc.LOCK_NB), 'the test holds the volume\'s lock');
    const base = path.join(dir, 'locked.sock');
    await assert.rejects(CardProcess.start({
      name: 'volume locked', group: `card-test-locked-${process.pid}`, admit: () => chip.admit('card-block'), sockets: [`${base}:v`],
      files: [{ path: volume, readOnly: false }], jail,
      args: ['--socket', base, '--listen-fd', String(FIRST_CARD_FD), '--volume', `v=fd:${FIRST_CARD_FD + 1}`],
    }, new PidFiles(path.join(dir, 'pids-locked')), silentLogger), { name: 'AzoteError', code: 'CardStart', message: /volume locked card did not start: .*in use by another VM/ });
    assert.equal(existsSync(`${base}:v`), false, 'its socket is removed');
  } finally {
    closeSync(holder);
  }
});
