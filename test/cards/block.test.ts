// vhost-user block both ways with real peers: Debian's QEMU (under TCG, which needs no /dev/kvm) boots our guest
// with `-device vhost-user-blk` on our block card's socket; our hypervisor (`azote run --volume`) uses our card and
// qemu-storage-daemon's vhost-user-blk export. Each time the guest writes a pattern, flushes, and the file holds it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/base/log.js';
import { CpioWriter } from '../../src/images/cpio.js';
import { ensureBaseInitramfs } from '../../src/images/initramfs.js';
import { ensureKernel } from '../../src/images/kernel.js';
import { projectRoot } from '../../src/images/paths.js';
import { runRequestArchive } from '../../src/images/run-request.js';
import { azote } from '../framework/cli.js';
import { requireKvm } from '../framework/kvm.js';
import { requireQemu, runQemuGuest } from '../framework/host-tools.js';
import { backend } from '../framework/backend.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-card-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('block card: QEMU\'s vhost-user-blk boots our guest against it; a flushed write reaches the volume file', { timeout: 300_000 }, async () => {
  requireQemu();
  const kernel = (await ensureKernel(silentLogger)).vmlinux;
  execFileSync('make', ['-s', '-C', path.join(projectRoot(), 'guest', 'init'), 'qemu', `OUT=${dir}`]);
  const initrd = path.join(dir, 'initrd.cpio');
  const script = 'cat /sys/block/vda/size; printf card-pattern > /tmp/p; dd if=/tmp/p of=/dev/vda seek=8 conv=fsync 2>/dev/null; '
    + 'dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null';
  writeFileSync(initrd, Buffer.concat([readFileSync(await ensureBaseInitramfs(silentLogger)),
    new CpioWriter().file('init', readFileSync(path.join(dir, 'qemu', 'init')), 0o755).finish(),
    runRequestArchive(['sh', '-c', script])]));
  const volume = path.join(dir, 'vol.img');
  writeFileSync(volume, new Uint8Array(32 << 20));
  const base = path.join(dir, 'blk.sock');
  const socket = `${base}:vol`;
  const card = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block', '--socket', base,
    '--volume', `vol=${volume}`],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let cardLog = '';
  card.stderr.setEncoding('utf8').on('data', (s: string) => { cardLog += s; });
  try {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(100);
    assert.ok(existsSync(socket), `the card made its socket: ${cardLog}`);
    const qemu = await runQemuGuest(kernel, initrd, '', ['-chardev', `socket,id=c0,path=${socket}`, '-device', 'vhost-user-blk,chardev=c0']);
    // isa-debug-exit: (status << 1) | 1, so 1 is the script's 0.
    assert.equal(qemu.status, 1, `${qemu.out}\ncard: ${cardLog}`);
    assert.match(qemu.out, /^65536\r?\ncard-pattern/m, 'the guest saw the volume\'s size and read its write back');
    const onDisk = readFileSync(volume);
    assert.equal(onDisk.subarray(8 * 512, 8 * 512 + 12).toString(), 'card-pattern');
    assert.ok(onDisk.subarray(0, 8 * 512).every((b) => b === 0), 'nothing else was written');
    assert.match(cardLog, /vhost-user frontend connected/);
  } finally {
    card.kill('SIGTERM');
  }
});

const WRITE_AND_FLUSH = (text: string): string[] => ['sh', '-c',
  `cat /sys/block/vda/size; printf ${text} > /tmp/p; dd if=/tmp/p of=/dev/vda seek=3 conv=fsync 2>/dev/null && echo flushed`];

test('azote run --volume: our hypervisor with our block card, then with qemu-storage-daemon', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  requireQemu();
  // Each backend: its command, and the socket the VM attaches (the card serves volume "v" on SOCKET:v).
  const cases: Array<[string, (volume: string, socket: string) => [string, string[], string]]> = [
    ['azote card', (volume, socket) => [process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block',
      '--socket', socket, '--volume', `v=${volume}`], `${socket}:v`]],
    ['qemu-storage-daemon', (volume, socket) => ['qemu-storage-daemon', ['--blockdev', `driver=file,node-name=file0,filename=${volume}`,
      '--export', `type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path=${socket},writable=on`], socket]],
  ];
  for (const [name, make] of cases) {
    const volume = path.join(dir, `${name.replace(/\W/g, '-')}.img`);
    writeFileSync(volume, new Uint8Array(16 << 20));
    const [cmd, args, socket] = make(volume, path.join(dir, `${name.replace(/\W/g, '-')}.sock`));
    const b = await backend(cmd, args, socket);
    try {
      const r = await azote(['run', '--volume', socket, '--', ...WRITE_AND_FLUSH('via-vhost-user')], { timeoutMs: 300_000 });
      assert.equal(r.status, 0, `${name}: ${r.stderr}\n${b.log()}`);
      assert.equal(r.stdout, `${(16 << 20) / 512}\nflushed\n`, name);
      assert.equal(readFileSync(volume).subarray(3 * 512, 3 * 512 + 14).toString(), 'via-vhost-user', name);
    } finally {
      b.stop();
    }
  }
});

test('azote run --volume: a socket nobody serves is a one-line error naming the fix', async (t) => {
  if (!requireKvm(t)) return; // the card is reached once the VM exists
  const r = await azote(['run', '--volume', path.join(dir, 'nobody.sock'), '--', 'true']);
  assert.equal(r.status, 125);
  assert.match(r.stderr, /^azote: the volume's card at .*nobody\.sock cannot be used: vhost-user: cannot connect .*: start it first: azote card block/m);
});

test('a block card killed (SIGKILL) while the guest writes: restarted, the VM reconnects, no write is lost', { timeout: 600_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const volume = path.join(dir, 'crash.img');
  writeFileSync(volume, new Uint8Array(16 << 20));
  const socket = `${path.join(dir, 'crash.sock')}:vol-1`;
  const cardArgs = [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block', '--socket', path.join(dir, 'crash.sock'),
    '--volume', `vol-1=${volume}`];
  let card = await backend(process.execPath, cardArgs, socket);
  // 4 MiB of a known 4 KiB block, written with O_DIRECT (about a thousand requests) and then read back.
  const script = "printf '%4096s' x > /tmp/p; for i in 1 2 3 4 5 6 7 8 9 10; do cat /tmp/p /tmp/p > /tmp/q; mv /tmp/q /tmp/p; done; "
    + 'echo writing; dd if=/tmp/p of=/dev/vda bs=4096 oflag=direct conv=fsync 2>/dev/null && echo written; '
    + 'dd if=/dev/vda of=/tmp/r bs=4096 count=1024 iflag=direct 2>/dev/null; cmp /tmp/p /tmp/r && echo same';
  const vm = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'run', '--volume', socket, '--', 'sh', '-c', script],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AZOTE_LOG_LEVEL: 'info' } });
  let out = '', err = '';
  vm.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
  vm.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
  const ended = new Promise<number | null>((resolve) => vm.on('close', resolve));
  try {
    for (let i = 0; i < 3000 && !out.includes('writing'); i++) await sleep(100);
    assert.match(out, /writing/, `the guest got to its writes: ${err}`);
    await sleep(1500);
    card.stop('SIGKILL');
    await sleep(1000);
    card = await backend(process.execPath, cardArgs, socket);
    const status = await ended;
    assert.equal(status, 0, `${out}\n${err}`);
    assert.equal(out, 'writing\nwritten\nsame\n');
    assert.match(err, /the card went away/);
    assert.match(err, /the card is back/);
    const block = Buffer.from(`${' '.repeat(4095)}x`);
    const onDisk = readFileSync(volume);
    for (let b = 0; b < 1024; b++) assert.ok(onDisk.subarray(b * 4096, (b + 1) * 4096).equals(block), `block ${b} on the volume`);
  } finally {
    vm.kill('SIGKILL');
    card.stop();
  }
});

test('one block card serves several volumes, each on its own socket; one VM attaches two', { timeout: 300_000 }, async (t) => {
  if (!requireKvm(t)) return;
  const a = path.join(dir, 'a.img'), b = path.join(dir, 'b.img');
  writeFileSync(a, new Uint8Array(8 << 20));
  writeFileSync(b, new Uint8Array(4 << 20));
  const base = path.join(dir, 'multi.sock');
  const card = await backend(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block', '--socket', base,
    '--volume', `a=${a}`, '--volume', `b=${b},ro`], `${base}:b`);
  try {
    const r = await azote(['run', '--volume', `${base}:a`, '--volume', `${base}:b`, '--', 'sh', '-c',
      'cat /sys/block/vda/size /sys/block/vdb/size /sys/block/vdb/ro'], { timeoutMs: 300_000 });
    assert.equal(r.status, 0, `${r.stderr}\n${card.log()}`);
    assert.equal(r.stdout, `${(8 << 20) / 512}\n${(4 << 20) / 512}\n1\n`);
  } finally {
    card.stop();
  }
});

test('card volumes: NAME=FILE[,ro], or FILE named after itself; bad names are refused', async () => {
  const { parseVolume } = await import('../../src/cards/block/volume-spec.js');
  assert.deepEqual(parseVolume('vol-1=./vol1.img'), { name: 'vol-1', path: './vol1.img', readOnly: false });
  assert.deepEqual(parseVolume('/data/base.img,ro'), { name: 'base', path: '/data/base.img', readOnly: true });
  assert.throws(() => parseVolume('a b=./x.img'), /volume name "a b"/);
});
