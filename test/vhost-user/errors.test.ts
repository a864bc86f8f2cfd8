// What a card does with a frontend that breaks the protocol, and what our frontend does with a backend that does:
// each time a clear reason, only that session ends, and the card goes on serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as libc from '../../src/sys/libc.js';
import { projectRoot } from '../../src/images/paths.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { FLAG_VERSION, header, REQ } from '../../src/vhost-user/messages.js';
import { backend, connectWhenTaken, type Backend } from '../framework/backend.js';
import { secretMemory } from '../framework/secret-memory.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-vu-errors-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function blockCard(name: string): Promise<{ card: Backend; socket: string }> {
  const volume = path.join(dir, `${name}.img`);
  writeFileSync(volume, new Uint8Array(1 << 20));
  const base = path.join(dir, `${name}.sock`);
  const card = await backend(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block', '--socket', base, '--volume', `v=${volume}`], `${base}:v`);
  return { card, socket: `${base}:v` };
}

/**
 * The card still answers a well-behaved frontend: its configuration says the volume's size. (A volume takes one
 * frontend at a time: until the card has seen the last one go, a new one is turned away, so it tries again.)
 * Returns once the card has seen this one go too.
 */
async function stillServes(card: Backend, socket: string): Promise<void> {
  const gone = (card.log().match(/the frontend went away/g) ?? []).length;
  const f = await connectWhenTaken(socket, 50);
  assert.ok(f, 'the card takes a new frontend');
  try {
    assert.equal(new DataView(f.getConfig(8).buffer).getBigUint64(0, true), BigInt((1 << 20) / 512));
  } finally {
    f.close();
  }
  for (let i = 0; i < 50 && (card.log().match(/the frontend went away/g) ?? []).length <= gone; i++) await sleep(100);
}

async function logged(card: Backend, re: RegExp): Promise<void> {
  for (let i = 0; i < 50 && !re.test(card.log()); i++) await sleep(100);
  assert.match(card.log(), re);
}

test('a memory table larger than its fd: refused before anything is mapped; the card serves the next frontend', async () => {
  const { card, socket } = await blockCard('memtable');
  try {
    const f = VhostUserFrontend.connect(socket);
    const fd = libc.memfdCreate('small', libc.MFD_ALLOW_SEALING);
    libc.ftruncate(fd, 4096);
    libc.addSeals(fd, libc.F_SEAL_SHRINK);
    assert.throws(() => f.setMemTable([{ guestAddr: 0n, size: 1n << 20n, userAddr: 0x7f0000000000n, mmapOffset: 0n }], [fd]),
      /closed the connection|refused/);
    libc.close(fd);
    f.close();
    await logged(card, /memory region 0 \(offset 0, 0x100000 bytes\) goes past the end of its fd \(4096 bytes\)/);
    await stillServes(card, socket);
  } finally {
    card.stop();
  }
});

const MEBI = 1 << 20;
const region = { guestAddr: 0n, size: BigInt(MEBI), userAddr: 0x7f0000000000n, mmapOffset: 0n };

/** A memfd of 1 MiB with `seals` (none: not even sealable). */
function memfd(seals: number | undefined): number {
  const fd = libc.memfdCreate('azote-guest-test', seals === undefined ? 0 : libc.MFD_ALLOW_SEALING);
  libc.ftruncate(fd, MEBI);
  if (seals) libc.addSeals(fd, seals);
  return fd;
}

test('memory a frontend could shrink under the card (SIGBUS): refused with a named error; the card serves the next frontend', async () => {
  const { card, socket } = await blockCard('shrinkable');
  const file = path.join(dir, 'guest-ram');
  writeFileSync(file, new Uint8Array(MEBI));
  const cases: Array<[string, () => number, RegExp]> = [
    ['a memfd without seals', () => memfd(undefined), /memory region 0's fd is not sealed with F_SEAL_SHRINK/],
    ['a sealable memfd sealed against growing only', () => memfd(libc.F_SEAL_GROW), /memory region 0's fd is not sealed with F_SEAL_SHRINK/],
    ['a regular file', () => libc.open(file, libc.O_RDWR), /memory region 0's fd is neither a memfd nor secret memory/],
  ];
  try {
    for (const [what, open, why] of cases) {
      const since = card.log().length;
      const f = await connectWhenTaken(socket, 50);
      assert.ok(f, `the card takes a frontend (${what})`);
      const fd = open();
      try {
        assert.throws(() => f.setMemTable([region], [fd]), /closed the connection|refused/, what);
      } finally {
        libc.close(fd);
        f.close();
      }
      for (let i = 0; i < 50 && !why.test(card.log().slice(since)); i++) await sleep(100);
      const said = card.log().slice(since);
      assert.match(said, why, what);
      assert.match(said, /the frontend could shrink it under the card's mapping: share guest memory as a memfd sealed with F_SEAL_SHRINK/);
      await stillServes(card, socket);
    }
  } finally {
    card.stop();
  }
});

test('memory that cannot shrink is mapped: a memfd sealed as QEMU and our engine seal it, and secret memory', async () => {
  const { card, socket } = await blockCard('sealed');
  try {
    const sealed = memfd(libc.F_SEAL_SHRINK | libc.F_SEAL_GROW | libc.F_SEAL_SEAL);
    const f = VhostUserFrontend.connect(socket);
    try {
      f.setMemTable([region], [sealed]);
      // The frontend's own attempt to pull the pages from under the card fails.
      assert.throws(() => libc.ftruncate(sealed, 4096), /EPERM/);
    } finally {
      libc.close(sealed);
      f.close();
    }
    await stillServes(card, socket);
    const secret = secretMemory(MEBI);
    const g = await connectWhenTaken(socket, 50);
    assert.ok(g, 'the card takes the next frontend');
    try {
      g.setMemTable([region], [secret]);
      assert.throws(() => libc.ftruncate(secret, 4096), /EINVAL/);
    } finally {
      libc.close(secret);
      g.close();
    }
    await stillServes(card, socket);
    assert.doesNotMatch(card.log(), /could shrink it/);
  } finally {
    card.stop();
  }
});

test('features that were not offered, and a message of another protocol version: that session ends, the card goes on', async () => {
  const { card, socket } = await blockCard('features');
  try {
    const f = VhostUserFrontend.connect(socket);
    assert.throws(() => f.setFeatures(1n << 60n), /closed the connection|refused/);
    f.close();
    await logged(card, /features 0x[0-9a-f]+ were not offered/);
    await stillServes(card, socket);
    // A GET_FEATURES header with version 2 in its flags.
    const raw = Buffer.alloc(header.size);
    raw.writeUInt32LE(REQ.GET_FEATURES, 0);
    raw.writeUInt32LE((FLAG_VERSION & ~0x3) | 0x2, 4);
    const s = net.createConnection(socket);
    const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
    s.on('error', () => undefined);
    s.write(raw);
    await closed;
    await logged(card, /version/i);
    await stillServes(card, socket);
  } finally {
    card.stop();
  }
});

test('a backend that never answers: our frontend gives up after its timeout, naming the request', async () => {
  const socket = path.join(dir, 'silent.sock');
  // The frontend waits synchronously, so the silent backend runs in another process.
  const server = `const n=require('net');const h=[];n.createServer(c=>h.push(c)).listen(${JSON.stringify(socket)},()=>console.log('up'));`
    + 'setTimeout(()=>process.exit(0),30000)';
  const p = spawn(process.execPath, ['-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise((r) => p.stdout.once('data', r));
    const started = Date.now();
    assert.throws(() => VhostUserFrontend.connect(socket), /did not answer request 1 within 5000 ms/);
    assert.ok(Date.now() - started >= 4900);
  } finally {
    p.kill();
  }
});
