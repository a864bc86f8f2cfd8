// The network card's switch and addressing, on their own: who gets which frame, spoofing (Ethernet, ARP and IPv4
// sources), learning and ageing, and the MAC that carries a guest's address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checksum } from '../../src/cards/net/dhcp.js';
import { AGEING_MS, macKey, VirtualSwitch, type SwitchPort } from '../../src/cards/net/switch.js';
import { PORT_QUEUE_FRAMES, VmPort } from '../../src/cards/net/port.js';
import { MAX_FRAME } from '../../src/virtio/net.js';
import {
  addressFromMac, formatMac, macForAddress, parseSubnet, subnetRange,
} from '../../src/virtio/net-addressing.js';

const BROADCAST = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
/** The MAC the card gives 10.77.0.n/24. */
const mac = (n: number): Uint8Array => Uint8Array.of(0x02, 24, 10, 77, 0, n);
const ip = (n: number): number => ((10 << 24) | (77 << 16) | n) >>> 0;
const GATEWAY = ip(1);
/** The address a MAC names, or the gateway's for any other (a host behind the uplink). */
const ipOf = (m: Uint8Array): number => addressFromMac(m)?.address ?? GATEWAY;
const be16 = (v: number): number[] => [(v >>> 8) & 0xff, v & 0xff];
const be32 = (v: number): number[] => [...be16(v >>> 16), ...be16(v)];

function ethernet(to: Uint8Array, from: Uint8Array, type: number, payload: ArrayLike<number>): Uint8Array {
  return Uint8Array.from([...to, ...from, ...be16(type), ...Array.from(payload)]);
}

/** An IPv4 header (no options) for `body`; `fragment` is the flags and fragment offset field. */
function ipv4(source: number, destination: number, protocol: number, body: ArrayLike<number>, fragment = 0): number[] {
  return [0x45, 0, ...be16(20 + body.length), 0, 0, ...be16(fragment), 64, protocol, 0, 0, ...be32(source), ...be32(destination), ...Array.from(body)];
}

/** An IPv4 frame carrying `body` (protocol 253, for experiments), from the address the source MAC names. */
function frame(to: Uint8Array, from: Uint8Array, body = 'x', source = ipOf(from)): Uint8Array {
  return ethernet(to, from, 0x0800, ipv4(source, ipOf(to), 253, Buffer.from(body)));
}

/** An ARP packet (Ethernet/IPv4): operation 1 (request) or 2 (reply), sender and target. */
function arp(from: Uint8Array, op: number, senderMac: Uint8Array, senderIp: number, targetIp: number, to: Uint8Array = BROADCAST): Uint8Array {
  return ethernet(to, from, 0x0806, [0, 1, 8, 0, 6, 4, ...be16(op), ...senderMac, ...be32(senderIp), 0, 0, 0, 0, 0, 0, ...be32(targetIp)]);
}

/** A UDP datagram from 0.0.0.0 (as DHCP discovery is), to the broadcast address. */
function udpFromNowhere(from: Uint8Array, sport: number, dport: number, fragment = 0): Uint8Array {
  const udp = [...be16(sport), ...be16(dport), ...be16(8 + 4), 0, 0, 1, 2, 3, 4];
  return ethernet(BROADCAST, from, 0x0800, ipv4(0, 0xffffffff, 17, udp, fragment));
}

/** Attaches a port: a VM's (one with a MAC) with the lease its MAC names, as the card run by hand gives it. */
function plug(sw: VirtualSwitch, p: SwitchPort): void {
  sw.attach(p, p.mac && { ip: ipOf(p.mac), prefix: 24, gateway: GATEWAY, gatewayMac: macForAddress(GATEWAY, 24), dns: GATEWAY });
}

class Recorder implements SwitchPort {
  readonly got: Uint8Array[] = [];
  constructor(readonly name: string, readonly mac: Uint8Array | undefined) {}
  deliver(f: Uint8Array): void {
    this.got.push(f.slice());
  }
}

test('switch: unicast to an assigned MAC reaches that port alone; broadcast reaches all but the sender', () => {
  const sw = new VirtualSwitch();
  const [a, b, c] = [new Recorder('a', mac(2)), new Recorder('b', mac(3)), new Recorder('c', mac(4))];
  const up = new Recorder('uplink', undefined);
  for (const p of [a, b, c, up]) plug(sw, p);
  sw.forward(a, frame(mac(3), mac(2)));
  assert.deepEqual([a.got.length, b.got.length, c.got.length, up.got.length], [0, 1, 0, 0]);
  sw.forward(b, frame(BROADCAST, mac(3)));
  assert.deepEqual([a.got.length, b.got.length, c.got.length, up.got.length], [1, 1, 1, 1]);
  assert.deepEqual(sw.counters, { forwarded: 1, flooded: 1, spoofed: 0, spoofedArp: 0, spoofedIp: 0, tagged: 0, otherProtocol: 0, malformed: 0, rogueDhcp: 0, dhcp: 0, gatewayArp: 0, routed: 0, ttlExpired: 0 });
});

test('switch: a VM port\'s frames with another source MAC are dropped, as are the uplink\'s with a VM\'s MAC', () => {
  const sw = new VirtualSwitch();
  const [a, b] = [new Recorder('a', mac(2)), new Recorder('b', mac(3))];
  const up = new Recorder('uplink', undefined);
  for (const p of [a, b, up]) plug(sw, p);
  sw.forward(a, frame(BROADCAST, mac(9)));
  sw.forward(a, frame(mac(3), mac(3)));
  sw.forward(up, frame(mac(3), mac(2)));
  assert.equal(sw.counters.spoofed, 3);
  assert.deepEqual([a.got.length, b.got.length, up.got.length], [0, 0, 0]);
  sw.forward(a, Uint8Array.of(1, 2, 3));
  sw.forward(a, frame(mac(3), BROADCAST));
  assert.equal(sw.counters.malformed, 2);
});

/** Two VM ports (10.77.0.2 and .3) and the uplink. */
function twoVms(): { sw: VirtualSwitch; a: Recorder; b: Recorder; up: Recorder; heard: () => number[] } {
  const sw = new VirtualSwitch();
  const [a, b] = [new Recorder('a', mac(2)), new Recorder('b', mac(3))];
  const up = new Recorder('uplink', undefined);
  for (const p of [a, b, up]) plug(sw, p);
  return { sw, a, b, up, heard: () => [a.got.length, b.got.length, up.got.length] };
}

test('switch: ARP from a VM whose sender is not its own MAC and address is dropped and counted; its own goes through', () => {
  const { sw, a, heard } = twoVms();
  sw.forward(a, arp(mac(2), 2, mac(2), ip(3), ip(1), mac(3))); // a reply that says 10.77.0.3 is at a
  sw.forward(a, arp(mac(2), 1, mac(2), ip(3), ip(1)));
  sw.forward(a, arp(mac(2), 2, mac(9), ip(2), ip(1))); // its address at another MAC
  sw.forward(a, arp(mac(2), 2, mac(2), 0, ip(1))); // a reply from 0.0.0.0 is no probe
  sw.forward(a, arp(mac(2), 2, mac(2), ip(200), ip(1))); // an address nobody has
  assert.deepEqual(heard(), [0, 0, 0], 'none of them reached anyone');
  assert.equal(sw.counters.spoofedArp, 5);
  assert.equal(sw.drops(a)?.spoofedArp, 5);
  sw.forward(a, arp(mac(2), 1, mac(2), ip(2), ip(2))); // gratuitous ARP for its own address
  sw.forward(a, arp(mac(2), 1, mac(2), ip(2), ip(3))); // who has .3, tell .2
  sw.forward(a, arp(mac(2), 2, mac(2), ip(2), ip(3), mac(3))); // its own reply
  sw.forward(a, arp(mac(2), 1, mac(2), 0, ip(9))); // an ARP probe (RFC 5227) claims no address
  assert.deepEqual(heard(), [0, 4, 3]);
  assert.equal(sw.counters.spoofedArp, 5);
});

test('switch: IPv4 from a VM with another source is dropped and counted; DHCP discovery from 0.0.0.0 is the card\'s to answer', () => {
  const { sw, a, b, heard } = twoVms();
  sw.forward(a, frame(mac(3), mac(2), 'as .3', ip(3)));
  sw.forward(a, frame(BROADCAST, mac(2), 'as the gateway', GATEWAY));
  sw.forward(a, frame(mac(3), mac(2), 'from outside', 0x08080808));
  sw.forward(a, udpFromNowhere(mac(2), 68, 68)); // 0.0.0.0, not to the DHCP server's port
  sw.forward(a, udpFromNowhere(mac(2), 67, 67)); // 0.0.0.0, not from the DHCP client's port
  sw.forward(a, udpFromNowhere(mac(2), 68, 67, 0x2000)); // 0.0.0.0, a first fragment
  sw.forward(a, udpFromNowhere(mac(2), 68, 67, 0x0001)); // 0.0.0.0, a later fragment
  sw.forward(a, ethernet(BROADCAST, mac(2), 0x0800, ipv4(0, 0xffffffff, 6, new Uint8Array(20)))); // 0.0.0.0, TCP
  assert.deepEqual(heard(), [0, 0, 0], 'none of them reached anyone');
  assert.equal(sw.counters.spoofedIp, 8);
  assert.equal(sw.drops(a)?.spoofedIp, 8);
  assert.equal(sw.drops(b)?.spoofedIp, 0, 'counted on the port that sent them');
  sw.forward(a, frame(mac(3), mac(2), 'its own'));
  sw.forward(a, udpFromNowhere(mac(2), 68, 67)); // DHCP discovery (not well-formed: no answer), never switched
  assert.deepEqual(heard(), [0, 1, 0]);
  assert.equal(sw.counters.dhcp, 1);
  assert.deepEqual(sw.detach(a), { spoofed: 0, spoofedArp: 0, spoofedIp: 8, tagged: 0, otherProtocol: 0, malformed: 0, rogueDhcp: 0 },
    'what a port sent that was dropped goes with it (into the card\'s log)');
});

test('switch: short, truncated and inconsistent ARP and IPv4 frames, VLAN tags and other protocols from a VM are dropped and counted', () => {
  const { sw, a, heard } = twoVms();
  const goodArp = arp(mac(2), 1, mac(2), ip(2), ip(3));
  const goodIp = frame(BROADCAST, mac(2), 'abcd');
  for (let n = 0; n < goodArp.length; n++) sw.forward(a, goodArp.subarray(0, n));
  for (let n = 0; n < goodIp.length; n++) sw.forward(a, goodIp.subarray(0, n));
  const bad = (edit: (f: Uint8Array) => void, of = goodIp): Uint8Array => {
    const f = of.slice();
    edit(f);
    return f;
  };
  sw.forward(a, bad((f) => { f[14] = 0x65; })); // IPv6 in an IPv4 type
  sw.forward(a, bad((f) => { f[14] = 0x44; })); // a header shorter than 20 bytes
  sw.forward(a, bad((f) => { f[14] = 0x4f; })); // a header longer than the frame
  sw.forward(a, bad((f) => { f[17] = 0xff; })); // a total length beyond the frame
  sw.forward(a, bad((f) => { f[16] = 0; f[17] = 4; })); // a total length shorter than the header
  sw.forward(a, bad((f) => { f[19] = 8; }, goodArp)); // ARP for 8-byte hardware addresses
  sw.forward(a, bad((f) => { f[17] = 0xdd; }, goodArp)); // ARP for another protocol
  sw.forward(a, bad((f) => { f[15] = 6; }, goodArp)); // ARP for another hardware type
  assert.deepEqual(heard(), [0, 0, 0]);
  assert.equal(sw.drops(a)?.malformed, goodArp.length + goodIp.length + 8);
  // DHCP discovery cut short of its UDP header is not DHCP discovery.
  const dhcp = udpFromNowhere(mac(2), 68, 67);
  sw.forward(a, bad((f) => { f[17] = 20; f[16] = 0; }, dhcp));
  assert.equal(sw.drops(a)?.spoofedIp, 1);
  sw.forward(a, ethernet(BROADCAST, mac(2), 0x8100, [0, 5, 8, 0, ...ipv4(ip(2), ip(3), 253, [1])])); // 802.1Q
  sw.forward(a, ethernet(BROADCAST, mac(2), 0x88a8, [0, 5, 0x81, 0, 0, 6, 8, 0])); // 802.1ad
  sw.forward(a, ethernet(BROADCAST, mac(2), 0x86dd, new Uint8Array(60))); // IPv6
  sw.forward(a, ethernet(BROADCAST, mac(2), 0x0026, new Uint8Array(40))); // an 802.3 length (LLC)
  assert.deepEqual([sw.drops(a)?.tagged, sw.drops(a)?.otherProtocol], [2, 2]);
  assert.deepEqual(heard(), [0, 0, 0]);
});

test('switch: addresses behind the uplink are learned, and forgotten after the ageing time', () => {
  let now = 0;
  const sw = new VirtualSwitch(() => now);
  const a = new Recorder('a', mac(2));
  const up = new Recorder('uplink', undefined), other = new Recorder('other uplink', undefined);
  for (const p of [a, up, other]) plug(sw, p);
  const host = Uint8Array.of(0x0a, 0, 0, 0, 0, 1);
  sw.forward(up, frame(mac(2), host));
  assert.equal(a.got.length, 1);
  sw.forward(a, frame(host, mac(2)));
  assert.deepEqual([up.got.length, other.got.length], [1, 0], 'learned: to the uplink alone');
  now += AGEING_MS + 1;
  sw.forward(a, frame(host, mac(2)));
  assert.deepEqual([up.got.length, other.got.length], [2, 1], 'aged out: flooded');
  sw.detach(up);
  sw.forward(a, frame(BROADCAST, mac(2)));
  assert.equal(up.got.length, 2, 'a detached port gets nothing');
});

test('switch: whatever the frames, no port hears its own, no spoofed frame goes anywhere, assigned MACs are exact', () => {
  fc.assert(fc.property(
    fc.array(fc.record({
      from: fc.integer({ min: 0, max: 4 }),
      to: fc.oneof(fc.integer({ min: 2, max: 8 }).map(mac), fc.constant(BROADCAST), fc.uint8Array({ minLength: 6, maxLength: 6 })),
      source: fc.oneof(fc.constant(undefined), fc.uint8Array({ minLength: 6, maxLength: 6 })),
    }), { maxLength: 60 }),
    (sends) => {
      const sw = new VirtualSwitch();
      const ports = [new Recorder('a', mac(2)), new Recorder('b', mac(3)), new Recorder('c', mac(4)),
        new Recorder('up', undefined), new Recorder('up2', undefined)];
      for (const p of ports) plug(sw, p);
      const tags = new Map<string, number>();
      sends.forEach((s, i) => {
        const from = ports[s.from] as Recorder;
        const src = s.source ?? from.mac ?? Uint8Array.of(0x0a, 0, 0, 0, 1, s.from);
        tags.set(`#${i}`, s.from);
        sw.forward(from, frame(s.to, src, `#${i}`));
      });
      for (const [i, p] of ports.entries()) {
        for (const f of p.got) {
          const tag = Buffer.from(f.subarray(34)).toString();
          assert.notEqual(tags.get(tag), i, 'a port heard its own frame');
          const sender = ports[tags.get(tag) ?? -1] as Recorder;
          const src = macKey(f, 6);
          if (sender.mac) assert.equal(src, macKey(sender.mac), 'a VM port\'s frame went out with another source');
          else assert.ok(![2, 3, 4].some((n) => macKey(mac(n)) === src), 'the uplink passed a VM\'s MAC');
          const dst = macKey(f, 0);
          const owner = ports.findIndex((q) => q.mac && macKey(q.mac) === dst);
          if (owner >= 0) assert.equal(owner, i, 'a frame for an assigned MAC reached another port');
        }
      }
    },
  ), { numRuns: 2000 });
});

test('switch: whatever a guest sends, no frame from a VM leaves with an ARP sender or IPv4 source not its own', () => {
  const VMS = [2, 3, 4];
  const address = fc.oneof(fc.constantFrom(...VMS.map(ip), GATEWAY, 0), fc.integer({ min: 0, max: 0xffffffff }));
  const l3 = fc.oneof(
    fc.record({ kind: fc.constant('arp' as const), op: fc.integer({ min: 0, max: 3 }), senderMac: fc.oneof(fc.constantFrom(...VMS.map(mac)), fc.uint8Array({ minLength: 6, maxLength: 6 })), sender: address, target: address }),
    fc.record({ kind: fc.constant('ip' as const), source: address, protocol: fc.constantFrom(17, 6, 1, 253), sport: fc.constantFrom(67, 68, 53), dport: fc.constantFrom(67, 68, 53), fragment: fc.constantFrom(0, 0x4000, 0x2000, 1) }),
    fc.record({ kind: fc.constant('raw' as const), type: fc.constantFrom(0x0800, 0x0806, 0x8100, 0x86dd, 0x88a8, 0x1234), body: fc.uint8Array({ maxLength: 64 }) }),
  );
  fc.assert(fc.property(
    fc.array(fc.record({ from: fc.integer({ min: 0, max: 2 }), to: fc.oneof(fc.constantFrom(...VMS.map(mac)), fc.constant(BROADCAST)), l3, cut: fc.option(fc.nat({ max: 80 })) }), { maxLength: 40 }),
    (sends) => {
      const sw = new VirtualSwitch();
      const ports = [...VMS.map((n) => new Recorder(`vm${n}`, mac(n))), new Recorder('up', undefined)];
      for (const p of ports) plug(sw, p);
      const senders = new Map<string, Recorder>();
      sends.forEach((s, i) => {
        const from = ports[s.from] as Recorder;
        const own = from.mac ?? BROADCAST;
        // A frame to its sender's own MAC goes nowhere and is not counted: it is sent to all instead.
        const to = macKey(s.to) === macKey(own) ? BROADCAST : s.to;
        const f = s.l3.kind === 'arp' ? arp(own, s.l3.op, s.l3.senderMac, s.l3.sender, s.l3.target, to)
          : s.l3.kind === 'ip' ? ethernet(to, own, 0x0800, ipv4(s.l3.source, 0xffffffff, s.l3.protocol, [...be16(s.l3.sport), ...be16(s.l3.dport), 0, 12, 0, 0, 0, 0, 0, i], s.l3.fragment))
            : ethernet(to, own, s.l3.type, s.l3.body);
        const sent = s.cut === null ? f : f.subarray(0, s.cut);
        senders.set(Buffer.from(sent).toString('hex'), from);
        sw.forward(from, sent);
      });
      let delivered = 0;
      for (const p of ports) {
        for (const f of p.got) {
          // The card's own answers (DHCP, ARP for the gateway) come from the gateway's MAC, which no VM may send from.
          if (macKey(f, 6) === macKey(macForAddress(GATEWAY, 24))) {
            assert.ok(p.mac, 'the card answers VMs only');
            continue;
          }
          delivered++;
          const from = senders.get(Buffer.from(f).toString('hex'));
          assert.ok(from?.mac, 'only frames the VMs sent');
          const own = ipOf(from.mac);
          const view = new DataView(f.buffer, f.byteOffset, f.byteLength);
          const type = view.getUint16(12);
          if (type === 0x0806) {
            assert.ok(f.length >= 42, 'a whole ARP packet');
            assert.equal(macKey(f, 22), macKey(from.mac), 'ARP sender hardware address');
            const sender = view.getUint32(28);
            assert.ok(sender === own || (sender === 0 && view.getUint16(20) === 1), `ARP sender ${sender.toString(16)}`);
          } else {
            assert.equal(type, 0x0800, 'ARP and IPv4 only');
            const header = (view.getUint8(14) & 15) * 4;
            assert.ok(f.length >= 14 + header && header >= 20, 'a whole IPv4 header');
            const source = view.getUint32(26);
            const dhcp = source === 0 && view.getUint8(23) === 17 && (view.getUint16(20) & 0x3fff) === 0
              && view.getUint16(14 + header) === 68 && view.getUint16(16 + header) === 67;
            assert.ok(source === own || dhcp, `IPv4 source ${source.toString(16)}`);
          }
        }
      }
      // Each frame either went somewhere, was the card's to answer, or was counted, on the switch and on its port.
      const { forwarded, flooded, dhcp, gatewayArp, routed, ttlExpired, ...dropped } = sw.counters;
      const drops = Object.values(dropped).reduce((x, y) => x + y, 0);
      assert.equal(forwarded + flooded + dhcp + gatewayArp + routed + ttlExpired + drops, sends.length);
      const perPort = ports.map((p) => Object.values(sw.drops(p) ?? {}).reduce((x, y) => x + y, 0)).reduce((x, y) => x + y, 0);
      assert.equal(perPort, drops);
      assert.ok(delivered <= (forwarded + flooded) * ports.length);
    },
  ), { numRuns: 3000 });
});

test('switch: IPv4 a VM sends to its gateway for a VM of another subnet is routed to it (TTL one less, checksum right); other destinations go on', () => {
  const sw = new VirtualSwitch();
  const gatewayMac = macForAddress(GATEWAY, 24);
  const [a, b] = [new Recorder('a', mac(2)), new Recorder('b', Uint8Array.of(0x02, 0, 0, 0, 0, 0x10))];
  const up = new Recorder('uplink', undefined);
  const other = ((10 << 24) | (77 << 16) | (1 << 8) | 10) >>> 0; // 10.77.1.10, in another /24 of the card's network
  sw.attach(a, { ip: ip(2), prefix: 24, gateway: GATEWAY, gatewayMac, dns: GATEWAY });
  sw.attach(b, { ip: other, prefix: 24, gateway: other - 9, gatewayMac, dns: GATEWAY });
  sw.attach(up);
  const packet = ethernet(gatewayMac, mac(2), 0x0800, ipv4(ip(2), other, 253, Buffer.from('routed')));
  sw.forward(a, packet);
  assert.deepEqual([a.got.length, b.got.length, up.got.length], [0, 1, 0]);
  const got = b.got[0] ?? assert.fail('routed');
  assert.deepEqual([...got.subarray(0, 6)], [...(b.mac ?? [])], 'to the VM\'s MAC');
  assert.deepEqual([...got.subarray(6, 12)], [...gatewayMac], 'from the gateway\'s');
  assert.equal(got[22], 63, 'one hop less');
  assert.equal(checksum(got.subarray(14, 34)), 0, 'the header checksum verifies');
  assert.deepEqual([...got.subarray(34)], [...Buffer.from('routed')]);
  // A TTL of 1 dies here; a destination no VM holds goes on towards the uplink (the host holds the gateway's MAC).
  const dying = packet.slice();
  dying[22] = 1;
  sw.forward(a, dying);
  sw.forward(a, ethernet(gatewayMac, mac(2), 0x0800, ipv4(ip(2), 0x08080808, 253, Buffer.from('out'))));
  assert.deepEqual([a.got.length, b.got.length, up.got.length], [0, 1, 1]);
  assert.deepEqual([sw.counters.routed, sw.counters.ttlExpired], [1, 1]);
});

test('a VM port keeps at most PORT_QUEUE_FRAMES frames for its guest, drops larger-than-MTU ones, copies what it keeps', () => {
  let woken = 0;
  const port = new VmPort('p', mac(2), () => {}, () => { woken++; });
  const f = ethernet(mac(2), mac(3), 0x0800, Buffer.from('kept'));
  for (let i = 0; i < PORT_QUEUE_FRAMES + 5; i++) port.deliver(f);
  port.deliver(new Uint8Array(MAX_FRAME + 1));
  f.fill(0);
  assert.deepEqual([port.queued, woken, port.counters.queueDropped, port.counters.oversized], [PORT_QUEUE_FRAMES, 1, 5, 1]);
  const into = new Uint8Array(MAX_FRAME + 64);
  assert.equal(port.receive(into), 18);
  assert.equal(Buffer.from(into.subarray(14, 18)).toString(), 'kept');
});

test('network addressing: subnets, the gateway, and the MAC that carries a guest\'s address', () => {
  assert.deepEqual(parseSubnet('10.77.0.0/24'), { network: (10 << 24 | 77 << 16) >>> 0, prefix: 24 });
  for (const bad of ['10.77.0.1/24', '10.77.0.0/31', '10.77.0.0/7', '300.0.0.0/24', '10.77.0.0', 'x/24']) {
    assert.equal(parseSubnet(bad), undefined, bad);
  }
  const s = parseSubnet('192.168.8.0/22');
  assert.ok(s);
  const r = subnetRange(s);
  const m = macForAddress(r.first, s.prefix);
  assert.equal(formatMac(m), '02:16:c0:a8:08:02');
  assert.deepEqual(addressFromMac(m), { address: r.first, ip: '192.168.8.2', prefix: 22, gateway: '192.168.8.1' });
  assert.equal(addressFromMac(macForAddress(r.last, 22))?.ip, '192.168.11.254');
  assert.equal(addressFromMac(macForAddress(r.gateway, 22)), undefined, 'the gateway is no guest\'s');
  assert.equal(addressFromMac(macForAddress(r.last + 1, 22)), undefined, 'the broadcast address is no guest\'s');
  assert.equal(addressFromMac(Uint8Array.of(0x52, 0x54, 0, 1, 2, 3)), undefined, 'not an Azote MAC');
});
