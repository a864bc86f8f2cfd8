// The lease the controller writes first on each connection to a network card: what it encodes comes back whole, and
// any other bytes (random, or a lease with a field out of range) are refused with the reason, never thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeLease, encodeLease, LEASE_BYTES, type PortLease } from '../../src/cards/net/port-lease.js';

const ip = (a: number, b: number, c: number, d: number): number => (((a << 24) | (b << 16) | (c << 8) | d) >>> 0);
const LEASE: PortLease = { mac: Uint8Array.of(0x02, 0x12, 0x34, 0x56, 0x78, 0x9a), ip: ip(172, 31, 16, 4), prefix: 20, gateway: ip(172, 31, 16, 1), dns: ip(172, 31, 0, 2) };

test('a port lease comes back as it was encoded, in 24 bytes', () => {
  const bytes = encodeLease(LEASE);
  assert.equal(bytes.length, LEASE_BYTES);
  const back = decodeLease(bytes);
  assert.ok(typeof back !== 'string', back as string);
  assert.deepEqual({ ...back, mac: [...back.mac] }, { ...LEASE, mac: [...LEASE.mac] });
});

test('a lease with a field out of range is refused with the reason', () => {
  const refused = (change: Partial<PortLease>): string => decodeLease(encodeLease({ ...LEASE, ...change })) as string;
  assert.match(refused({ mac: Uint8Array.of(0x01, 0, 0, 0, 0, 1) }), /not a unicast address/);
  assert.match(refused({ mac: new Uint8Array(6) }), /not a unicast address/);
  assert.match(refused({ prefix: 31 }), /prefix \/31/);
  assert.match(refused({ ip: ip(172, 31, 16, 0) }), /not a host address/);
  assert.match(refused({ ip: ip(172, 31, 31, 255) }), /not a host address/);
  assert.match(refused({ ip: ip(172, 31, 16, 1) }), /not a host address/, 'the gateway\'s');
  assert.match(refused({ gateway: ip(172, 31, 0, 1) }), /gateway is outside/);
  const wrongMagic = encodeLease(LEASE);
  wrongMagic[0] = 0;
  assert.match(decodeLease(wrongMagic) as string, /not a port lease/);
  assert.match(decodeLease(new Uint8Array(23)) as string, /not a port lease/);
});

test('100,000 random and mutated leases: never a throw; whatever is taken is a host address of its subnet', () => {
  const mutated = fc.array(fc.tuple(fc.nat(LEASE_BYTES - 1), fc.nat(255)), { maxLength: 6 }).map((edits) => {
    const b = encodeLease(LEASE);
    for (const [at, v] of edits) b[at] = v;
    return b;
  });
  fc.assert(fc.property(fc.oneof(mutated, fc.uint8Array({ minLength: LEASE_BYTES, maxLength: LEASE_BYTES })), (b) => {
    const l = decodeLease(b);
    if (typeof l === 'string') return;
    const size = 2 ** (32 - l.prefix);
    const network = l.ip - (l.ip % size);
    assert.ok(l.ip > network && l.ip < network + size - 1 && l.ip !== l.gateway);
    assert.equal(l.gateway - (l.gateway % size), network);
  }), { numRuns: 100_000, seed: 24 });
});
