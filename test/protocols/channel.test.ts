// The channel between Azote's processes, on a real SOCK_SEQPACKET pair: messages arrive whole, in order and checked,
// with their descriptors; a peer that sends a message over the limit, bytes that are no JSON message, or descriptors
// a message may not carry is cut off with the reason, and what came with it is closed; a peer that goes away or
// stops reading ends the channel. Whatever bytes a peer sends, the reader never throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeSync } from 'node:fs';
import fc from 'fast-check';
import { Channel, ChannelError, channelPair, MAX_MESSAGE_BYTES } from '../../src/protocols/channel.js';
import { hypervisorMessage, type ControllerMessage, type HypervisorMessage } from '../../src/protocols/instance.js';
import { recvWithFds, sendWithFds } from '../../src/sys/fd-passing.js';
import * as libc from '../../src/sys/libc.js';

const encode = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

/** A controller-side channel over a new pair, and the raw other end, as a hypervisor would hold it. */
function open(): {
  channel: Channel<HypervisorMessage, ControllerMessage>; peer: number; received: Array<[HypervisorMessage, number[]]>;
  ended: Promise<ChannelError | undefined>;
} {
  const [ours, peer] = channelPair();
  const received: Array<[HypervisorMessage, number[]]> = [];
  let channel!: Channel<HypervisorMessage, ControllerMessage>;
  const ended = new Promise<ChannelError | undefined>((resolve) => {
    channel = new Channel<HypervisorMessage, ControllerMessage>(ours, hypervisorMessage, {
      message: (m, fds) => received.push([m, fds]),
      end: resolve,
    }, 'the test peer');
  });
  return { channel, peer, received, ended };
}

/** Whether every copy of `end`'s peer socket is closed (it reads end of file). */
function peerClosed(end: number): boolean {
  return libc.readSome(end, new Uint8Array(1)) === 0;
}

/** Sends one raw message on a non-blocking end, waiting while its buffer is full. */
async function sendRaw(fd: number, data: Uint8Array, fds: readonly number[] = []): Promise<void> {
  while (!sendWithFds(fd, data, fds)) await new Promise((r) => setTimeout(r, 5));
}

async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (done()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('messages arrive whole and in order, descriptors travel both ways, and a message of exactly the limit passes', async () => {
  const { channel, peer, received, ended } = open();
  const detail = 'x'.repeat(4000);
  for (let i = 0; i < 100; i++) await sendRaw(peer, encode({ kind: 'ended', end: 'crashed', detail: `${i} ${detail}` }));
  // Exactly MAX_MESSAGE_BYTES of JSON: whitespace pads a valid message to the limit.
  const exact = encode({ kind: 'booted' });
  const padded = new Uint8Array(MAX_MESSAGE_BYTES).fill(0x20);
  padded.set(exact);
  await sendRaw(peer, padded);
  await until('101 messages', () => received.length === 101);
  assert.deepEqual(received.slice(0, 100).map(([m]) => m.kind === 'ended' && Number(m.detail.split(' ')[0])), [...Array(100).keys()]);
  assert.deepEqual(received[100], [{ kind: 'booted' }, []]);
  // Controller to hypervisor: a card's connection travels as a descriptor of the same socket.
  const [card, cardPeer] = libc.socketpair(libc.SOCK_STREAM | libc.SOCK_NONBLOCK);
  assert.equal(channel.send({ kind: 'card', card: 'network' }, [card]), true);
  libc.close(card);
  const got = recvWithFds(peer, MAX_MESSAGE_BYTES);
  assert.ok(got);
  const fds = got.fds;
  assert.deepEqual(JSON.parse(new TextDecoder().decode(got.data)), { kind: 'card', card: 'network' });
  assert.equal(fds.length, 1);
  writeSync(fds[0] ?? -1, 'hi');
  const two = Buffer.alloc(2);
  await until('bytes through the handed socket', () => libc.readSome(cardPeer, two) === 2);
  assert.equal(two.toString(), 'hi');
  channel.close();
  assert.equal(channel.send({ kind: 'stop' }), false, 'a closed channel sends nothing');
  for (const fd of [peer, cardPeer, ...fds]) libc.close(fd);
  assert.equal(await Promise.race([ended, new Promise((r) => setTimeout(() => r('no end'), 200))]), 'no end', 'close() reports no end');
});

test('a message over the limit cuts the peer off, and the descriptors that came with it are closed', async () => {
  const { channel, peer, received, ended } = open();
  const [held, heldPeer] = libc.socketpair(libc.SOCK_STREAM | libc.SOCK_NONBLOCK);
  assert.equal(sendWithFds(peer, new Uint8Array(MAX_MESSAGE_BYTES + 1).fill(0x20), [held]), true);
  libc.close(held);
  const e = await ended;
  assert.ok(e instanceof ChannelError);
  assert.equal(e.code, 'ChannelMessageTooLarge');
  assert.match(e.message, /the test peer sent a message longer than 65536 bytes/);
  assert.deepEqual(received, []);
  assert.equal(channel.open, false);
  assert.ok(peerClosed(heldPeer), 'the descriptor that came with it was closed');
  assert.throws(() => sendWithFds(peer, encode({ kind: 'booted' })), /EPIPE|ECONNRESET/, 'the channel is closed: its peer is cut off');
  for (const fd of [peer, heldPeer]) libc.close(fd);
});

test('bytes that are no JSON, invalid UTF-8, an invalid message or a descriptor a message may not carry each cut the peer off', async () => {
  for (const [bytes, code, fds] of [
    [new TextEncoder().encode('{"kind":"booted"'), 'ChannelNotJson', 0],
    [Uint8Array.of(0x22, 0xff, 0xfe, 0x22), 'ChannelNotJson', 0],
    [encode({ kind: 'launch' }), 'ChannelInvalidMessage', 0],
    [encode([1, 2, 3]), 'ChannelInvalidMessage', 0],
    [encode({ kind: 'booted' }), 'ChannelInvalidMessage', 1],
  ] as const) {
    const { peer, received, ended } = open();
    sendWithFds(peer, encode({ kind: 'booted' }));
    const [held, heldPeer] = libc.socketpair(libc.SOCK_STREAM | libc.SOCK_NONBLOCK);
    sendWithFds(peer, bytes, fds === 1 ? [held] : []);
    libc.close(held);
    const e = await ended;
    assert.ok(e instanceof ChannelError, `${code}: ${String(e)}`);
    assert.equal(e.code, code);
    assert.deepEqual(received, [[{ kind: 'booted' }, []]], 'what came before was delivered');
    assert.ok(peerClosed(heldPeer));
    for (const fd of [peer, heldPeer]) libc.close(fd);
  }
});

test('a peer that goes away ends the channel without an error; one that does not read is cut off when its buffer is full', async () => {
  const gone = open();
  sendWithFds(gone.peer, encode({ kind: 'booted' }));
  libc.close(gone.peer);
  assert.equal(await gone.ended, undefined);
  assert.deepEqual(gone.received, [[{ kind: 'booted' }, []]], 'what it sent before leaving was delivered');
  assert.equal(gone.channel.open, false);

  const deaf = open();
  let sent = 0;
  while (deaf.channel.send({ kind: 'card-unavailable', card: 'network', why: 'x'.repeat(1000) })) sent++;
  const e = await deaf.ended;
  assert.ok(e instanceof ChannelError);
  assert.equal(e.code, 'ChannelFull');
  assert.match(e.message, /the test peer does not read its channel/);
  assert.ok(sent > 0);
  libc.close(deaf.peer);
});

test('whatever bytes a peer sends, the reader delivers valid messages or ends with a ChannelError, never throws', async () => {
  const message = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.jsonValue().map((v) => encode(v)),
    fc.constantFrom({ kind: 'booted' }, { kind: 'created' }, { kind: 'connect-card', card: 'network' }).map(encode),
    fc.nat(3 * MAX_MESSAGE_BYTES).map((n) => new Uint8Array(n).fill(0x7b)),
  );
  await fc.assert(fc.asyncProperty(fc.array(message, { maxLength: 8 }), async (messages) => {
    const { peer, received, ended } = open();
    for (const m of messages) {
      try {
        sendWithFds(peer, m);
      } catch (e) {
        // The channel already cut this peer off (or the message is larger than the socket takes at all).
        assert.match(String(e), /EPIPE|ECONNRESET|EMSGSIZE/);
      }
    }
    libc.close(peer);
    const e = await ended;
    assert.ok(e === undefined || e instanceof ChannelError);
    for (const [m] of received) assert.deepEqual(hypervisorMessage(m), m);
  }), { numRuns: 150 });
});


/** A separate process holding the other end as its descriptor 3 (as a hypervisor does) and running `script`. */
function peerProcess(end: number, script: string): ReturnType<typeof spawn> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'inherit', 'inherit', end] });
  libc.close(end);
  return child;
}

test('a peer process writing 64 MiB without any message boundary is cut off at its first message; another peer carries on', async () => {
  const flood = open();
  const calm = open();
  // Raw writes, as a compromised peer would make them: 128 KiB each, waiting while the socket is full, until
  // 64 MiB went or the channel was closed on it.
  const flooder = peerProcess(flood.peer, `
    import { writeSync } from 'node:fs';
    const chunk = Buffer.alloc(128 * 1024, 'x');
    let written = 0;
    while (written < 64 * 2 ** 20) {
      try { written += writeSync(3, chunk); } catch (e) {
        if (e.code === 'EPIPE' || e.code === 'ECONNRESET') break;
        if (e.code !== 'EAGAIN') throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
    console.log('flooder wrote', written);`);
  const calmer = peerProcess(calm.peer, `
    import { writeSync } from 'node:fs';
    writeSync(3, JSON.stringify({ kind: 'booted' }));
    setTimeout(() => writeSync(3, JSON.stringify({ kind: 'created' })), 500);
    setTimeout(() => {}, 60_000);`);
  const e = await flood.ended;
  assert.ok(e instanceof ChannelError);
  assert.equal(e.code, 'ChannelMessageTooLarge');
  assert.deepEqual(flood.received, []);
  const [code] = await once(flooder, 'exit') as [number | null];
  assert.equal(code, 0, 'the flooder saw its channel closed (EPIPE) and stopped');
  await until('the calm peer\'s messages', () => calm.received.length === 2);
  assert.deepEqual(calm.received.map(([m]) => m.kind), ['booted', 'created']);
  assert.equal(calm.channel.open, true);
  calm.channel.close();
  calmer.kill();
  await once(calmer, 'exit');
});
