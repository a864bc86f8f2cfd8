// The network card's switch and addressing, on their own: who gets which frame, spoofing, learning and ageing, and
// the MAC that carries a guest's address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AGEING_MS, macKey, VirtualSwitch, type SwitchPort } from '../../src/cards/net/switch.js';
import { PORT_QUEUE_FRAMES, VmPort } from '../../src/cards/net/port.js';
import { MAX_FRAME } from '../../src/virtio/net.js';
import {
  addressFromMac, formatMac, macForAddress, parseSubnet, subnetRange,
} from '../../src/virtio/net-addressing.js';

const BROADCAST = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
const mac = (n: number): Uint8Array => Uint8Array.of(0x02, 24, 10, 77, 0, n);

function frame(to: Uint8Array, from: Uint8Array, body = 'x'): Uint8Array {
  return Uint8Array.from([...to, ...from, 0x08, 0x00, ...Buffer.from(body)]);
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
  for (const p of [a, b, c, up]) sw.attach(p);
  sw.forward(a, frame(mac(3), mac(2)));
  assert.deepEqual([a.got.length, b.got.length, c.got.length, up.got.length], [0, 1, 0, 0]);
  sw.forward(b, frame(BROADCAST, mac(3)));
  assert.deepEqual([a.got.length, b.got.length, c.got.length, up.got.length], [1, 1, 1, 1]);
  assert.deepEqual(sw.counters, { forwarded: 1, flooded: 1, spoofed: 0, malformed: 0 });
});

test('switch: a VM port\'s frames with another source MAC are dropped, as are the uplink\'s with a VM\'s MAC', () => {
  const sw = new VirtualSwitch();
  const [a, b] = [new Recorder('a', mac(2)), new Recorder('b', mac(3))];
  const up = new Recorder('uplink', undefined);
  for (const p of [a, b, up]) sw.attach(p);
  sw.forward(a, frame(BROADCAST, mac(9)));
  sw.forward(a, frame(mac(3), mac(3)));
  sw.forward(up, frame(mac(3), mac(2)));
  assert.equal(sw.counters.spoofed, 3);
  assert.deepEqual([a.got.length, b.got.length, up.got.length], [0, 0, 0]);
  sw.forward(a, Uint8Array.of(1, 2, 3));
  sw.forward(a, frame(mac(3), BROADCAST));
  assert.equal(sw.counters.malformed, 2);
});

test('switch: addresses behind the uplink are learned, and forgotten after the ageing time', () => {
  let now = 0;
  const sw = new VirtualSwitch(() => now);
  const a = new Recorder('a', mac(2));
  const up = new Recorder('uplink', undefined), other = new Recorder('other uplink', undefined);
  for (const p of [a, up, other]) sw.attach(p);
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
      for (const p of ports) sw.attach(p);
      const tags = new Map<string, number>();
      sends.forEach((s, i) => {
        const from = ports[s.from] as Recorder;
        const src = s.source ?? from.mac ?? Uint8Array.of(0x0a, 0, 0, 0, 1, s.from);
        tags.set(`#${i}`, s.from);
        sw.forward(from, frame(s.to, src, `#${i}`));
      });
      for (const [i, p] of ports.entries()) {
        for (const f of p.got) {
          const tag = Buffer.from(f.subarray(14)).toString();
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

test('a VM port keeps at most PORT_QUEUE_FRAMES frames for its guest, drops larger-than-MTU ones, copies what it keeps', () => {
  let woken = 0;
  const port = new VmPort('p', mac(2), () => {}, () => { woken++; });
  const f = frame(mac(2), mac(3), 'kept');
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
