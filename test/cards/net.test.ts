// The network card end to end: attachments get successive addresses (as their MAC) and may claim a free one back;
// two of our VMs ping each other and the host's uplink through it, and a guest that changes its MAC is cut off;
// a VM whose address another attachment took while the card restarted stops with the reason; Debian's QEMU
// (`-netdev vhost-user`, under TCG) boots our guest on it and pings the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/base/log.js';
import { CpioWriter } from '../../src/images/cpio.js';
import { ensureBaseInitramfs } from '../../src/images/initramfs.js';
import { ensureKernel } from '../../src/images/kernel.js';
import { projectRoot } from '../../src/images/paths.js';
import { runRequestArchive } from '../../src/images/run-request.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { formatMac } from '../../src/virtio/net-addressing.js';
import { EXIT_VM_FAILED } from '../../src/cli/run.js';
import { azote } from '../framework/cli.js';
import { backend, connectWhenTaken, type Backend } from '../framework/backend.js';
import { requireKvm } from '../framework/kvm.js';
import { requireNetAdmin, requireQemu, runQemuGuest } from '../framework/host-tools.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const dir = mkdtempSync(path.join(tmpdir(), 'azote-net-card-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const AZOTE = path.join(projectRoot(), 'bin', 'azote.js');

const macOf = (f: VhostUserFrontend): string => formatMac(f.getConfig(6));

/** Waits for the card's log (it reaches this process through the event loop) to say `re`. */
async function logged(card: Backend, re: RegExp): Promise<void> {
  for (let i = 0; i < 100 && !re.test(card.log()); i++) await sleep(100);
  assert.match(card.log(), re);
}

test('network card: each attachment gets the next address as its MAC; a free address can be claimed, a taken one not', async () => {
  const socket = path.join(dir, 'addr.sock');
  const card = await backend(process.execPath, [AZOTE, 'card', 'net', '--socket', socket, '--subnet', '10.60.4.0/30'], socket);
  const open: VhostUserFrontend[] = [];
  try {
    const a = VhostUserFrontend.connect(socket);
    open.push(a);
    assert.equal(macOf(a), '02:1e:0a:3c:04:02', 'the first guest address of 10.60.4.0/30');
    assert.throws(() => VhostUserFrontend.connect(socket), /the backend closed the connection/, 'a /30 has one guest address');
    await logged(card, /an attachment was refused: every address of the subnet is in use/);
    a.close();
    open.length = 0;
    // Once the card has seen the first frontend go, the address is handed out again.
    const b = await connectWhenTaken(socket, 100);
    assert.ok(b, 'a frontend is taken again');
    open.push(b);
    assert.equal(macOf(b), '02:1e:0a:3c:04:02', 'the address is free again');
    b.close();
    open.length = 0;
  } finally {
    for (const f of open) f.close();
    card.stop();
  }
  const wide = path.join(dir, 'claim.sock');
  const card2 = await backend(process.execPath, [AZOTE, 'card', 'net', '--socket', wide, '--subnet', '10.60.8.0/24'], wide);
  try {
    const a = VhostUserFrontend.connect(wide), b = VhostUserFrontend.connect(wide);
    open.push(a, b);
    assert.deepEqual([macOf(a), macOf(b)], ['02:18:0a:3c:08:02', '02:18:0a:3c:08:03']);
    b.setConfig(0, Uint8Array.of(0x02, 0x18, 10, 60, 8, 40));
    assert.equal(macOf(b), '02:18:0a:3c:08:28', 'claimed');
    assert.throws(() => b.setConfig(0, Uint8Array.of(0x02, 0x18, 10, 60, 8, 2)), /refused/, 'taken by a');
    assert.throws(() => b.setConfig(0, Uint8Array.of(0x02, 0x18, 10, 61, 8, 9)), /refused/, 'another subnet');
    assert.throws(() => b.setConfig(0, Uint8Array.of(0x02, 0x18, 10, 60, 8, 1)), /refused/, 'the gateway');
    assert.equal(macOf(b), '02:18:0a:3c:08:28', 'a refusal changes nothing, and the session goes on');
    await logged(card2, /configuration write was refused.*is attached already/);
  } finally {
    for (const f of open) f.close();
    card2.stop();
  }
});

test('azote card net: a subnet that is not a network address is a one-line error', async () => {
  const r = await azote(['card', 'net', '--socket', path.join(dir, 'bad.sock'), '--subnet', '10.1.2.3/24']);
  assert.equal(r.status, 125);
  assert.match(r.stderr, /^azote: --subnet 10\.1\.2\.3\/24 is not a network address .*: write it as A\.B\.C\.D\/P/m);
});

/** A VM running `script` on the card at `socket`, its output gathered as it comes. */
function startVm(socket: string, script: string): { out: () => string; err: () => string; ended: Promise<number | null>; kill(): void } {
  const vm = spawn(process.execPath, [AZOTE, 'run', '--net', `card:${socket}`, '--', 'sh', '-c', script],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AZOTE_LOG_LEVEL: 'info' } });
  let out = '', err = '';
  vm.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
  vm.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
  return { out: () => out, err: () => err, ended: new Promise((resolve) => vm.on('close', resolve)), kill: () => vm.kill('SIGKILL') };
}

test('two VMs on the network card ping each other and the uplink; a guest that changes its MAC is cut off', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t) || !requireNetAdmin(t)) return;
  const socket = path.join(dir, 'g2g.sock');
  const card = await backend(process.execPath, [AZOTE, 'card', 'net', '--socket', socket, '--subnet', '10.61.0.0/24',
    '--uplink', 'aztt-g2g0'], socket);
  // B answers until A has finished; A waits for B to come up, pings it and the gateway, then spoofs its MAC.
  const b = startVm(socket, 'echo up; sleep 600');
  const a = { vm: undefined as ReturnType<typeof startVm> | undefined };
  try {
    for (let i = 0; i < 100 && !/port attached.*10\.61\.0\.2/.test(card.log()); i++) await sleep(100);
    assert.match(card.log(), /network port attached .*ip=10\.61\.0\.2/);
    a.vm = startVm(socket, 'i=0; until ping -c 1 -W 1 10.61.0.2 >/dev/null; do i=$((i+1)); [ $i -lt 120 ] || exit 9; done; '
      + 'echo "me $AZOTE_GUEST_IP via $AZOTE_HOST_IP"; ping -c 3 10.61.0.2 >/tmp/g && grep -o "3 packets received" /tmp/g; '
      + 'ping -c 2 $AZOTE_HOST_IP >/tmp/h && grep -o "2 packets received" /tmp/h; '
      + 'ip link set eth0 address 02:18:0a:3d:00:63; ping -c 2 -W 2 10.61.0.2 >/dev/null; echo spoofed-ping-status=$?');
    const status = await a.vm.ended;
    assert.equal(status, 0, `${a.vm.out()}\n${a.vm.err()}\ncard: ${card.log()}`);
    assert.equal(a.vm.out(), 'me 10.61.0.3 via 10.61.0.1\n3 packets received\n2 packets received\nspoofed-ping-status=1\n');
    assert.match(a.vm.err(), /network: card .*, MAC 02:18:0a:3d:00:03, the guest's address by DHCP from the card/);
    await logged(card, /network port detached port=port2 ip=10\.61\.0\.3.*"spoofed":[1-9]/);
    assert.match(card.log(), /network port detached port=port2 .*"dhcp":[1-9]/, 'the guests asked the card\'s DHCP server');
    assert.match(b.out(), /^up$/m);
  } finally {
    a.vm?.kill();
    b.kill();
    card.stop();
  }
});

test('a network card killed (SIGKILL) and restarted: the VM reconnects, keeps its address, and its pings go through again', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t) || !requireNetAdmin(t)) return;
  const socket = path.join(dir, 'crash.sock');
  const args = [AZOTE, 'card', 'net', '--socket', socket, '--subnet', '10.63.0.0/24', '--uplink', 'aztt-crash0'];
  let card = await backend(process.execPath, args, socket);
  // Another attachment first, so that the VM's address is not the one a fresh card would hand out first.
  const other = VhostUserFrontend.connect(socket);
  const until = 'i=0; until ping -c 1 -W 1 $AZOTE_HOST_IP >/dev/null; do i=$((i+1)); [ $i -lt 120 ] || exit 9; done';
  const vm = startVm(socket, `${until}; echo first $AZOTE_GUEST_IP; sleep 8; ${until}; echo second`);
  try {
    for (let i = 0; i < 3000 && !vm.out().includes('first'); i++) await sleep(100);
    assert.equal(vm.out(), 'first 10.63.0.3\n', `${vm.err()}\ncard: ${card.log()}`);
    card.stop('SIGKILL');
    other.close();
    await sleep(1000);
    card = await backend(process.execPath, args, socket);
    assert.equal(await vm.ended, 0, `${vm.out()}\n${vm.err()}\ncard: ${card.log()}`);
    assert.equal(vm.out(), 'first 10.63.0.3\nsecond\n');
    assert.match(vm.err(), /the card went away/);
    assert.match(vm.err(), /the card is back/);
    assert.match(card.log(), /network port claimed its address port=port1 mac=02:18:0a:3f:00:03 ip=10\.63\.0\.3/);
  } finally {
    vm.kill();
    card.stop();
  }
});

test('a VM whose address was given to another while its card restarted is not left with it: the refused claim is seen, and the VM stops with the reason', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const socket = path.join(dir, 'taken.sock'), next = path.join(dir, 'taken-next.sock');
  const args = (at: string): string[] => [AZOTE, 'card', 'net', '--socket', at, '--subnet', '10.64.0.0/24'];
  let card = await backend(process.execPath, args(socket), socket);
  const other = VhostUserFrontend.connect(socket);
  const vm = startVm(socket, 'echo first $AZOTE_GUEST_IP; sleep 600');
  let thief: VhostUserFrontend | undefined;
  try {
    for (let i = 0; i < 3000 && !vm.out().includes('first'); i++) await sleep(100);
    assert.equal(vm.out(), 'first 10.64.0.3\n', `${vm.err()}\ncard: ${card.log()}`);
    card.stop('SIGKILL');
    other.close();
    // The new card is out of the VM's reach until another attachment holds the VM's address; then it takes its place.
    card = await backend(process.execPath, args(next), next);
    thief = VhostUserFrontend.connect(next);
    thief.setConfig(0, Uint8Array.of(0x02, 24, 10, 64, 0, 3));
    assert.equal(macOf(thief), '02:18:0a:40:00:03');
    renameSync(next, socket);
    assert.equal(await vm.ended, EXIT_VM_FAILED, `${vm.out()}\n${vm.err()}\ncard: ${card.log()}`);
    assert.match(vm.err(), /the card that came back refused the device's configuration; asking again .*kept=02:18:0a:40:00:03 given=02:18:0a:40:00:02/);
    assert.match(vm.err(), /azote: the VM crashed: the network card restarted and would not give this VM its MAC 02:18:0a:40:00:03 back \(it offers 02:18:0a:40:00:02\): start it again/);
    assert.doesNotMatch(vm.err(), /the card is back/, 'the rings never went to the card under another address');
    assert.match(card.log(), /configuration write was refused.*10\.64\.0\.3 is attached already/);
  } finally {
    thief?.close();
    vm.kill();
    card.stop();
  }
});

test('network card: QEMU\'s -netdev vhost-user boots our guest on it with a MAC of QEMU\'s own; the guest takes its address by DHCP and pings the host through the uplink', { timeout: 300_000 }, async (t) => {
  if (!requireNetAdmin(t)) return;
  requireQemu();
  const kernel = (await ensureKernel(silentLogger)).vmlinux;
  execFileSync('make', ['-s', '-C', path.join(projectRoot(), 'guest', 'init'), 'qemu', `OUT=${dir}`]);
  const initrd = path.join(dir, 'initrd.cpio');
  writeFileSync(initrd, Buffer.concat([readFileSync(await ensureBaseInitramfs(silentLogger)),
    new CpioWriter().file('init', readFileSync(path.join(dir, 'qemu', 'init')), 0o755).finish(),
    runRequestArchive(['sh', '-c', 'ping -c 3 $AZOTE_HOST_IP >/tmp/p; grep -o "3 packets received" /tmp/p']),
  ]));
  const socket = path.join(dir, 'qemu-net.sock');
  const card = await backend(process.execPath, [AZOTE, 'card', 'net', '--socket', socket, '--subnet', '10.62.0.0/24',
    '--uplink', 'aztt-qemu0'], socket);
  try {
    // QEMU keeps its own MAC for a vhost-user netdev: the port takes it from the guest's first frame.
    const qemu = await runQemuGuest(kernel, initrd, 'azote.net=dhcp', ['-chardev', `socket,id=c0,path=${socket}`,
      '-netdev', 'vhost-user,id=n0,chardev=c0', '-device', 'virtio-net-device,netdev=n0,mac=52:54:00:12:34:56']);
    assert.equal(qemu.status, 1, `${qemu.out}\ncard: ${card.log()}`);
    assert.match(qemu.out, /^3 packets received\r?$/m);
    assert.match(card.log(), /network port attached port=port1 mac=02:18:0a:3e:00:02 ip=10\.62\.0\.2/);
    assert.match(card.log(), /network port took its frontend's MAC port=port1 mac=52:54:00:12:34:56 ip=10\.62\.0\.2/);
  } finally {
    card.stop();
  }
});
