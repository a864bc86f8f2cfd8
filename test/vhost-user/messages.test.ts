// vhost-user messages against byte vectors written from docs/interop/vhost-user.rst, refusals, and a fuzz run of
// arbitrary bytes through the decoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeHeader, decodePayload, encode, F_PROTOCOL_FEATURES, FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, MAX_PAYLOAD,
  ProtocolError, REQ, VRING_NOFD_MASK, type Message,
} from '../../src/vhost-user/messages.js';

const hex = (s: string): Uint8Array => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (h) => parseInt(h, 16));

/** Messages and their bytes, little-endian as the specification says; each decodes back to itself. */
const vectors: Array<[string, Message, boolean, string]> = [
  ['GET_FEATURES request', { request: REQ.GET_FEATURES, flags: FLAG_VERSION, payload: { kind: 'none' } }, false,
    '01000000 01000000 00000000'],
  ['GET_FEATURES reply with PROTOCOL_FEATURES', {
    request: REQ.GET_FEATURES, flags: FLAG_VERSION | FLAG_REPLY, payload: { kind: 'u64', value: 1n << F_PROTOCOL_FEATURES },
  }, true, '01000000 05000000 08000000 00000040 00000000'],
  ['SET_VRING_NUM 256 on queue 1 with NEED_REPLY', {
    request: REQ.SET_VRING_NUM, flags: FLAG_VERSION | FLAG_NEED_REPLY, payload: { kind: 'vring-state', index: 1, num: 256 },
  }, false, '08000000 09000000 08000000 01000000 00010000'],
  ['SET_VRING_ADDR: descriptor, used, available, log in that order', {
    request: REQ.SET_VRING_ADDR, flags: FLAG_VERSION,
    payload: { kind: 'vring-addr', addr: { index: 0, flags: 0, desc: 0x7f0000001000n, used: 0x7f0000003000n, avail: 0x7f0000002000n, log: 0n } },
  }, false, '09000000 01000000 28000000 00000000 00000000 0010000000 7f0000 0030000000 7f0000 0020000000 7f0000 0000000000000000'],
  ['SET_MEM_TABLE with one region', {
    request: REQ.SET_MEM_TABLE, flags: FLAG_VERSION,
    payload: { kind: 'mem-table', regions: [{ guestAddr: 0n, size: 0x8000000n, userAddr: 0x7f1200000000n, mmapOffset: 0n }] },
  }, false, `05000000 01000000 28000000 01000000 00000000 0000000000000000 0000000800000000 00000000127f0000 0000000000000000`],
  ['SET_VRING_KICK without an fd (polling)', {
    request: REQ.SET_VRING_KICK, flags: FLAG_VERSION, payload: { kind: 'u64', value: VRING_NOFD_MASK | 1n },
  }, false, '0c000000 01000000 08000000 01010000 00000000'],
  ['GET_CONFIG reply with 8 bytes', {
    request: REQ.GET_CONFIG, flags: FLAG_VERSION | FLAG_REPLY,
    payload: { kind: 'config', offset: 0, flags: 0, data: Uint8Array.of(0, 0x10, 0, 0, 0, 0, 0, 0) },
  }, true, '18000000 05000000 14000000 00000000 08000000 00000000 0010000000000000'],
];

test('vhost-user: messages encode to the specification\'s bytes and decode back', () => {
  for (const [what, m, reply, bytes] of vectors) {
    const b = encode(m);
    assert.deepEqual(b, hex(bytes), what);
    const h = decodeHeader(b);
    assert.deepEqual(h, { request: m.request, flags: m.flags, size: b.length - 12 }, what);
    assert.deepEqual(decodePayload(h.request, reply, b.subarray(12)), m.payload, what);
  }
});

test('vhost-user: a wrong version, an oversized payload, a payload of the wrong size, too many regions are refused', () => {
  const refused = (f: () => unknown, re: RegExp): void => assert.throws(f, (e: unknown) => e instanceof ProtocolError && re.test(e.message));
  refused(() => decodeHeader(hex('01000000 02000000 00000000')), /version 2/);
  refused(() => decodeHeader(hex('05000000 01000000 ffff0000')), /payload of 65535 bytes/);
  refused(() => decodeHeader(hex('0100')), /header of 2 bytes/);
  refused(() => decodePayload(REQ.SET_FEATURES, false, new Uint8Array(4)), /4 bytes, expected 8/);
  refused(() => decodePayload(REQ.SET_MEM_TABLE, false, hex('09000000 00000000')), /9 regions/);
  refused(() => decodePayload(REQ.SET_MEM_TABLE, false, hex('02000000 00000000')), /expected 72/);
  refused(() => decodePayload(REQ.GET_CONFIG, false, hex('00000000 08000000 00000000 00')), /expected 20/);
  refused(() => encode({ request: REQ.SET_CONFIG, flags: FLAG_VERSION, payload: { kind: 'config', offset: 0, flags: 0, data: new Uint8Array(300) } }), /at most 256/);
});

test('vhost-user: 100,000 arbitrary messages decode or are refused with a ProtocolError, nothing else', () => {
  let decoded = 0, refused = 0;
  fc.assert(fc.property(fc.integer({ min: 0, max: 45 }), fc.boolean(), fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 16 }),
    (request, reply, body, head) => {
      for (const f of [() => decodePayload(request, reply, body), () => decodeHeader(head)]) {
        try {
          f();
          decoded++;
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          refused++;
        }
      }
    }), { numRuns: 50_000, seed: 0x7e05 });
  assert.ok(decoded + refused >= 100_000 && decoded > 1000 && refused > 1000, `${decoded} decoded, ${refused} refused`);
  assert.ok(MAX_PAYLOAD >= 8 + 8 * 32);
});
