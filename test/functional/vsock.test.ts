// vsock end to end, in Firecracker's hybrid form: a host program reaches a guest port through the VM's Unix socket
// ("CONNECT <port>\n", "OK <host port>\n"), and a guest connection to the host reaches "<path>_<port>".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { azote } from '../framework/cli.js';
import { initrdWithGuestTools } from '../framework/guest-tools.js';
import { requireKvm } from '../framework/kvm.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-vsock-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** One hybrid-vsock exchange: connect, CONNECT, then send `text`, half-close and read the reply to the end. */
function exchange(sock: string, port: number, text: string): Promise<{ ok: string; reply: string } | undefined> {
  return new Promise((resolve) => {
    const c = net.createConnection(sock);
    let got = '';
    let ok: string | undefined;
    c.on('connect', () => c.write(`CONNECT ${port}\n`));
    c.on('data', (d) => {
      got += d.toString('utf8');
      if (ok === undefined && got.includes('\n')) {
        ok = got.slice(0, got.indexOf('\n'));
        got = got.slice(got.indexOf('\n') + 1);
        c.end(text);
      }
    });
    c.on('error', () => resolve(undefined));
    c.on('close', () => resolve(ok === undefined ? undefined : { ok, reply: got }));
  });
}

test('--vsock: the host reaches a guest port with CONNECT, and the guest reaches PATH_PORT on the host', async (t) => {
  if (!requireKvm(t)) return;
  const initrd = await initrdWithGuestTools();
  const sock = path.join(dir, 'vm.sock');
  // What the guest connects to: CID 2, port 6000 -> <sock>_6000.
  const server = net.createServer((c) => {
    let data = '';
    c.on('data', (d) => { data += d.toString('utf8'); });
    c.on('end', () => c.end(`host got ${data}`));
  }).listen(`${sock}_6000`);
  try {
    const run = azote(['run', '--initrd', initrd, '--vsock', sock, '--', 'sh', '-c',
      'vsockperf serve 5000 1 & vsockperf echo 6000 hello-host; wait'], { timeoutMs: 300_000 });
    // Until the guest listens on 5000, it answers CONNECT with a reset: try again.
    let answer: { ok: string; reply: string } | undefined;
    for (let i = 0; i < 600 && !answer; i++) {
      answer = await exchange(sock, 5000, 'ping-guest');
      if (!answer) await sleep(250);
    }
    const r = await run;
    assert.equal(r.status, 0, r.stderr);
    assert.ok(answer, 'the guest accepted a connection on port 5000');
    assert.match(answer.ok, /^OK \d+$/);
    assert.equal(answer.reply, 'ping-guest', 'the guest echoed what the host sent');
    assert.equal(r.stdout, 'host got hello-host\n');
  } finally {
    server.close();
  }
});

test('--vsock: a path another VM serves is refused with a one-line error', async (t) => {
  // The path is taken once the host is known to run VMs: without KVM, that is the error.
  if (!requireKvm(t)) return;
  const sock = path.join(dir, 'busy.sock');
  const holder = net.createServer().listen(sock);
  await new Promise((resolve) => holder.once('listening', resolve));
  try {
    const r = await azote(['run', '--vsock', sock, '--', 'true']);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /^azote: the vsock path .*busy\.sock is in use by another process: give each its own path$/m);
  } finally {
    holder.close();
  }
});
