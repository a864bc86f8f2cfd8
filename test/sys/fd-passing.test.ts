// File descriptors across a Unix socket (SCM_RIGHTS): layouts against the headers, and fds sent and used on the
// far side.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSync, writeSync } from 'node:fs';
import * as libc from '../../src/sys/libc.js';
import {
  cmsghdr, iovec, MAX_FDS, MSG_CMSG_CLOEXEC, MSG_CTRUNC, MSG_NOSIGNAL, msghdr, recvWithFds, SCM_RIGHTS, sendWithFds,
  SOL_SOCKET,
} from '../../src/sys/fd-passing.js';
import { layoutMismatches, readCFacts } from '../framework/c-layout.js';

test('msghdr, iovec, cmsghdr and the SCM_RIGHTS constants match <sys/socket.h>', () => {
  const layouts = [msghdr, iovec, cmsghdr];
  assert.deepEqual(layoutMismatches(layouts, readCFacts(['sys/socket.h', 'sys/uio.h'], layouts)), []);
  const ours: Array<[string, number]> = [['SOL_SOCKET', SOL_SOCKET], ['SCM_RIGHTS', SCM_RIGHTS], ['MSG_CTRUNC', MSG_CTRUNC],
    ['MSG_NOSIGNAL', MSG_NOSIGNAL], ['MSG_CMSG_CLOEXEC', MSG_CMSG_CLOEXEC]];
  const facts = readCFacts(['sys/socket.h'], [], ours.map(([n]) => n)).constants;
  for (const [name, value] of ours) assert.equal(facts.get(name), BigInt(value), name);
});

test('fds sent with a message arrive as new descriptors of the same files, usable on the far side', () => {
  const [a, b] = libc.socketpair();
  const mem = libc.memfdCreate('azote-fd-passing-test');
  writeSync(mem, Buffer.from('guest memory'), 0, 12, 0);
  const ev = libc.eventfd(0, libc.EFD_NONBLOCK);
  assert.equal(sendWithFds(a, new TextEncoder().encode('hello'), [mem, ev]), true);
  const got = recvWithFds(b, 64);
  assert.ok(got);
  assert.equal(Buffer.from(got.data).toString(), 'hello');
  assert.equal(got.fds.length, 2);
  assert.ok(got.fds.every((fd) => fd !== mem && fd !== ev), 'new descriptor numbers');
  const buf = Buffer.alloc(12);
  readSync(got.fds[0] ?? -1, buf, 0, 12, 0);
  assert.equal(buf.toString(), 'guest memory', 'the memfd is the same file');
  libc.eventfdSignal(got.fds[1] ?? -1);
  assert.equal(libc.eventfdRead(ev), 1n, 'the eventfd is the same counter');
  // Without fds, and with nothing waiting on a non-blocking socket.
  assert.equal(sendWithFds(b, Uint8Array.of(1, 2, 3)), true);
  assert.deepEqual(recvWithFds(a, 8), { data: Uint8Array.of(1, 2, 3), fds: [], truncated: false });
  const [c, d] = libc.socketpair(libc.SOCK_STREAM | libc.SOCK_NONBLOCK);
  assert.equal(recvWithFds(c, 8), undefined);
  assert.throws(() => sendWithFds(d, Uint8Array.of(0), new Array(MAX_FDS + 1).fill(mem)), /at most 8/);
  for (const fd of [a, b, c, d, mem, ev, ...got.fds]) libc.close(fd);
});
