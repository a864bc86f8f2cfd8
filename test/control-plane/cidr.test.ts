// IPv4 CIDR logic against a plain reference (sets of addresses): parsing round trips and refuses host bits,
// containment and overlap agree with the address sets, and allocation gives the lowest free usable address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cidrString, contains, firstFree, overlaps, parseCidr, parseIp, size, usableCount, usableRange, type Cidr } from '../../src/control-plane/cidr.js';

/** A block of prefix /20 or longer inside 10.0.0.0/16, so that address sets stay small. */
const block = fc.integer({ min: 20, max: 32 }).chain((prefix) =>
  fc.integer({ min: 0, max: 2 ** (prefix - 16) - 1 }).map((n): Cidr => ({ network: 0x0a000000 + n * 2 ** (32 - prefix), prefix })));
const addresses = (c: Cidr): Set<number> => new Set(Array.from({ length: size(c) }, (_, i) => c.network + i));

test('a block written and parsed again is the same; host bits, bad prefixes and bad addresses are refused', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (prefix, ip) => {
    const network = ip - (ip % 2 ** (32 - prefix));
    const c = { network, prefix };
    assert.deepEqual(parseCidr(cidrString(c)), c);
    if (network !== ip) assert.equal(parseCidr(`${[ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.')}/${prefix}`), undefined);
  }));
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0/8', '256.0.0.0/8', '010.0.0.0/8', '10.0.0.0/08', ' 10.0.0.0/8', '10.0.0.0/8 ', 'a.b.c.d/8', '']) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
  assert.equal(parseIp('1.2.3.4'), 0x01020304);
});

test('containment and overlap agree with the blocks\' address sets', () => {
  fc.assert(fc.property(block, block, (a, b) => {
    const [sa, sb] = [addresses(a), addresses(b)];
    assert.equal(contains(a, b), [...sb].every((x) => sa.has(x)));
    assert.equal(overlaps(a, b), [...sb].some((x) => sa.has(x)));
    assert.equal(overlaps(a, b), overlaps(b, a));
  }));
});

test('allocation gives the lowest free address from the fifth to the one before the last, and nothing when all are taken', () => {
  fc.assert(fc.property(block.filter((c) => c.prefix <= 28), fc.array(fc.nat(), { maxLength: 40 }), (c, picks) => {
    const { first, last } = usableRange(c);
    const taken = new Set(picks.map((p) => first + (p % (last - first + 1))));
    const got = firstFree(c, taken);
    const expected = [...addresses(c)].filter((x) => x >= c.network + 4 && x <= c.network + size(c) - 2 && !taken.has(x)).sort((x, y) => x - y)[0];
    assert.equal(got, expected);
    assert.equal(usableCount(c), last - first + 1);
    const full = new Set(Array.from({ length: usableCount(c) }, (_, i) => first + i));
    assert.equal(firstFree(c, full), undefined);
  }));
  assert.equal(usableCount({ network: 0xac1f0000, prefix: 20 }), 4091, 'a default subnet (/20) has 4091, as AWS says');
});
