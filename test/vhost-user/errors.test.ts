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
    const fd = libc.memfdCreate('small');
    libc.ftruncate(fd, 4096);
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
