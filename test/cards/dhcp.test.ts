// The network card's DHCP server: what each client message gets (RFC 2131's rules for a fixed address per port),
// the reply's bytes (BOOTP, options, IPv4 checksum), that the switch answers a VM's DHCP itself and never floods
// it, drops a guest's rogue server, and that 100,000 malformed or mutated frames crash nothing and get no answer
// but to their own port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BOOTP, DHCP, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, LEASE_SECONDS, MAGIC_COOKIE, OPTION, answerDhcp, checksum, hostNameOf, type DhcpLease,
} from '../../src/cards/net/dhcp.js';
import { VirtualSwitch, type SwitchPort } from '../../src/cards/net/switch.js';
import { macForAddress } from '../../src/virtio/net-addressing.js';

const ip = (a: number, b: number, c: number, d: number): number => (((a << 24) | (b << 16) | (c << 8) | d) >>> 0);
const GATEWAY = ip(10, 77, 0, 1);
const NETWORK = { prefix: 24, gateway: GATEWAY, gatewayMac: macForAddress(GATEWAY, 24), dns: GATEWAY };
const A = ip(10, 77, 0, 5), B = ip(10, 77, 0, 6);
const macA = macForAddress(A, 24), macB = macForAddress(B, 24);
const lease = (address: number): DhcpLease => ({ ...NETWORK, ip: address });
const be16 = (v: number): number[] => [(v >>> 8) & 0xff, v & 0xff];
const be32 = (v: number): number[] => [...be16(v >>> 16), ...be16(v)];
const u16 = (f: Uint8Array, at: number): number => ((f[at] ?? 0) << 8) | (f[at + 1] ?? 0);
const u32 = (f: Uint8Array, at: number): number => u16(f, at) * 0x10000 + u16(f, at + 2);

interface ClientMessage { type: number; mac?: Uint8Array; xid?: number; flags?: number; ciaddr?: number; source?: number; options?: number[] }

/** A client's message as busybox udhcpc sends it: broadcast, from 0.0.0.0 (or its address when renewing). */
function client({ type, mac = macA, xid = 0x1234abcd, flags = 0, ciaddr = 0, source = 0, options = [] }: ClientMessage): Uint8Array {
  const bootp = new Uint8Array(BOOTP.options);
  bootp.set([1, 1, 6, 0, ...be32(xid), 0, 0, ...be16(flags), ...be32(ciaddr)]);
  bootp.set(mac, BOOTP.chaddr);
  bootp.set(be32(MAGIC_COOKIE), BOOTP.cookie);
  const body = [...bootp, OPTION.MESSAGE_TYPE, 1, type, 55, 4, 1, 3, 6, 12, ...options, OPTION.END];
  const udp = [...be16(DHCP_CLIENT_PORT), ...be16(DHCP_SERVER_PORT), ...be16(8 + body.length), 0, 0, ...body];
  const ipv4 = [0x45, 0, ...be16(20 + udp.length), 0, 0, 0, 0, 64, 17, 0, 0, ...be32(source), ...be32(0xffffffff), ...udp];
  return Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...mac, 0x08, 0x00, ...ipv4]);
}

interface Reply { to: Uint8Array; type: number; yiaddr: number; xid: number; destination: number; options: Map<number, number[]> }

/** Reads a reply back field by field, checking its IPv4 and UDP framing on the way. */
function read(f: Uint8Array): Reply {
  assert.equal(u16(f, 12), 0x0800);
  assert.equal(f[14], 0x45);
  assert.equal(checksum(f.subarray(14, 34)), 0, 'the IPv4 header checksum holds');
  assert.equal(u16(f, 16), f.length - 14, 'IPv4 total length');
  assert.equal(u32(f, 26), GATEWAY, 'from the gateway');
  assert.deepEqual([u16(f, 34), u16(f, 36), u16(f, 38)], [DHCP_SERVER_PORT, DHCP_CLIENT_PORT, f.length - 34]);
  const b = 42;
  assert.equal(f[b + BOOTP.op], 2);
  assert.equal(u32(f, b + BOOTP.cookie), MAGIC_COOKIE);
  const options = new Map<number, number[]>();
  for (let i = b + BOOTP.options; f[i] !== OPTION.END; i += 2 + (f[i + 1] ?? 0)) options.set(f[i] ?? 0, [...f.subarray(i + 2, i + 2 + (f[i + 1] ?? 0))]);
  return { to: f.slice(0, 6), type: options.get(OPTION.MESSAGE_TYPE)?.[0] ?? 0, yiaddr: u32(f, b + BOOTP.yiaddr), xid: u32(f, b + BOOTP.xid), destination: u32(f, 30), options };
}

test('DISCOVER is offered the port\'s address with mask, router, DNS, host name and an hour\'s lease; REQUEST for it is acknowledged', () => {
  const offer = read(answerDhcp(client({ type: DHCP.DISCOVER }), macA, lease(A)) ?? assert.fail('no offer'));
  assert.equal(offer.type, DHCP.OFFER);
  assert.equal(offer.yiaddr, A);
  assert.equal(offer.xid, 0x1234abcd);
  assert.deepEqual(offer.to, macA, 'unicast to the client\'s MAC');
  assert.equal(offer.destination, A);
  assert.deepEqual(offer.options.get(OPTION.SERVER_ID), [10, 77, 0, 1]);
  assert.deepEqual(offer.options.get(OPTION.SUBNET_MASK), [255, 255, 255, 0]);
  assert.deepEqual(offer.options.get(OPTION.ROUTER), [10, 77, 0, 1]);
  assert.deepEqual(offer.options.get(OPTION.DNS), [10, 77, 0, 1]);
  assert.equal(Buffer.from(offer.options.get(OPTION.HOST_NAME) ?? []).toString(), 'ip-10-77-0-5');
  assert.deepEqual(offer.options.get(OPTION.LEASE_TIME), be32(LEASE_SECONDS));
  assert.equal(hostNameOf(ip(172, 31, 5, 9)), 'ip-172-31-5-9');

  const request = client({ type: DHCP.REQUEST, options: [OPTION.REQUESTED_IP, 4, ...be32(A), OPTION.SERVER_ID, 4, ...be32(GATEWAY)] });
  const ack = read(answerDhcp(request, macA, lease(A)) ?? assert.fail('no ack'));
  assert.equal(ack.type, DHCP.ACK);
  assert.equal(ack.yiaddr, A);
  // Renewing: unicast from its address, which it names in ciaddr.
  const renew = read(answerDhcp(client({ type: DHCP.REQUEST, ciaddr: A, source: A }), macA, lease(A)) ?? assert.fail('no renewal'));
  assert.equal(renew.type, DHCP.ACK);
  // The broadcast flag: the reply is broadcast.
  assert.deepEqual(read(answerDhcp(client({ type: DHCP.DISCOVER, flags: 0x8000 }), macA, lease(A)) ?? assert.fail('no offer')).to, Uint8Array.of(255, 255, 255, 255, 255, 255));
});

test('another address is refused with a broadcast NAK; another server\'s REQUEST, RELEASE, DECLINE and another MAC get nothing; INFORM gets the options alone', () => {
  const nak = read(answerDhcp(client({ type: DHCP.REQUEST, options: [OPTION.REQUESTED_IP, 4, ...be32(B)] }), macA, lease(A)) ?? assert.fail('no nak'));
  assert.equal(nak.type, DHCP.NAK);
  assert.equal(nak.yiaddr, 0);
  assert.equal(nak.destination, 0xffffffff);
  assert.equal(nak.options.has(OPTION.LEASE_TIME), false);
  assert.equal(answerDhcp(client({ type: DHCP.REQUEST, options: [OPTION.REQUESTED_IP, 4, ...be32(A), OPTION.SERVER_ID, 4, ...be32(ip(10, 77, 0, 9))] }), macA, lease(A)), undefined);
  assert.equal(answerDhcp(client({ type: DHCP.RELEASE, ciaddr: A, source: A }), macA, lease(A)), undefined);
  assert.equal(answerDhcp(client({ type: DHCP.DECLINE }), macA, lease(A)), undefined);
  assert.equal(answerDhcp(client({ type: DHCP.DISCOVER, mac: macB }), macA, lease(A)), undefined, 'chaddr must be the port\'s MAC');
  const inform = read(answerDhcp(client({ type: DHCP.INFORM, ciaddr: A, source: A }), macA, lease(A)) ?? assert.fail('no answer to INFORM'));
  assert.equal(inform.type, DHCP.ACK);
  assert.equal(inform.yiaddr, 0);
  assert.equal(inform.options.has(OPTION.LEASE_TIME), false);
  assert.deepEqual(inform.options.get(OPTION.ROUTER), [10, 77, 0, 1]);
});

class Recorder implements SwitchPort {
  readonly got: Uint8Array[] = [];
  constructor(readonly name: string, readonly mac: Uint8Array | undefined) {}
  deliver(f: Uint8Array): void {
    this.got.push(f.slice());
  }
}

function network(): { sw: VirtualSwitch; a: Recorder; b: Recorder; up: Recorder } {
  const sw = new VirtualSwitch(Date.now);
  const a = new Recorder('a', macA), b = new Recorder('b', macB), up = new Recorder('uplink', undefined);
  sw.attach(a, lease(A));
  sw.attach(b, lease(B));
  sw.attach(up);
  return { sw, a, b, up };
}

test('the switch answers a VM\'s DHCP itself, to that VM alone, and drops a guest playing DHCP server', () => {
  const { sw, a, b, up } = network();
  sw.forward(a, client({ type: DHCP.DISCOVER }));
  assert.equal(a.got.length, 1);
  assert.equal(read(a.got[0] ?? new Uint8Array()).yiaddr, A);
  assert.deepEqual([b.got.length, up.got.length], [0, 0], 'nothing flooded: no other guest nor the host sees it');
  // B answers with its own source address, as a rogue server on the segment would.
  const rogue = answerDhcp(client({ type: DHCP.DISCOVER, mac: macB }), macB, lease(B)) ?? assert.fail('a reply to forge from');
  const forged = rogue.slice();
  forged.set(macB, 6);
  forged.set(be32(B), 26);
  sw.forward(b, forged);
  assert.deepEqual([a.got.length, up.got.length], [1, 0]);
  assert.equal(sw.drops(b)?.rogueDhcp, 1);
  assert.equal(sw.counters.dhcp, 1);
});

test('100,000 malformed and mutated DHCP frames: no exception, no answer but to the sender, every answer well-formed and for its own address', () => {
  // What still passes the switch's checks and is no DHCP (a mutated port, say) is switched as sent: the others may
  // get that frame itself, never an answer.
  const { sw, a, b, up } = network();
  const seeds = [client({ type: DHCP.DISCOVER }), client({ type: DHCP.REQUEST, options: [OPTION.REQUESTED_IP, 4, ...be32(A)] }),
    client({ type: DHCP.INFORM, ciaddr: A, source: A })];
  let answered = 0;
  const mutated = fc.tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(400), fc.nat(255)), { maxLength: 8 }), fc.nat(400))
    .map(([seed, edits, cut]) => {
      const f = seed.slice(0, Math.max(14, seed.length - (cut % 64 === 0 ? cut : 0)));
      for (const [at, v] of edits) if (at < f.length && at >= 12) f[at] = v; // keep the port's own MAC: the switch checks it
      return f;
    });
  const random = fc.uint8Array({ minLength: 0, maxLength: 600 }).map((body) => Uint8Array.from([...macA, ...macA, ...body]));
  fc.assert(fc.property(fc.oneof(mutated, random), (f) => {
    const before = a.got.length, otherBefore = [b.got.length, up.got.length];
    sw.forward(a, f);
    for (const got of [...b.got.slice(otherBefore[0]), ...up.got.slice(otherBefore[1])]) assert.deepEqual(got, f);
    for (const reply of a.got.slice(before)) {
      answered++;
      if (u16(reply, 12) === 0x0806) {
        // A mutation into an ARP request for the gateway: the card's answer names the gateway, to the port alone.
        assert.deepEqual([u16(reply, 20), u32(reply, 28), [...reply.subarray(22, 28)]], [2, GATEWAY, [...NETWORK.gatewayMac]]);
        continue;
      }
      const r = read(reply);
      assert.ok(r.yiaddr === A || r.yiaddr === 0, 'an answer only ever gives the port its own address');
    }
  }), { numRuns: 100_000, seed: 16 });
  assert.ok(answered > 0, 'some mutations are still well-formed and answered');
});
