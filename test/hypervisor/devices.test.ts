import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CmosRtc } from '../../src/hypervisor/devices/rtc.js';
import { I8042 } from '../../src/hypervisor/devices/i8042.js';
import { Bus } from '../../src/hypervisor/bus.js';

test('RTC: BCD time from the host clock, never updating, valid', () => {
  const rtc = new CmosRtc(() => new Date(Date.UTC(2026, 10, 23, 13, 45, 59)));
  const reg = (i: number): number => { rtc.write(0x70, i); return rtc.read(0x71); };
  assert.equal(reg(0x00), 0x59);
  assert.equal(reg(0x02), 0x45);
  assert.equal(reg(0x04), 0x13);
  assert.equal(reg(0x07), 0x23);
  assert.equal(reg(0x08), 0x11);
  assert.equal(reg(0x09), 0x26);
  assert.equal(reg(0x32), 0x20);
  assert.equal(reg(0x0a) & 0x80, 0, 'update in progress is never set');
  assert.equal(reg(0x0b) & 0x04, 0, 'BCD mode');
  assert.equal(reg(0x0d), 0x80);
  rtc.write(0x70, 0x80 | 0x40);
  rtc.write(0x71, 0x12);
  assert.equal(reg(0x40), 0x12, 'CMOS RAM stores bytes; bit 7 of the index is the NMI mask');
});

test('i8042: 0xfe on the command port resets, anything else does not', () => {
  let resets = 0;
  const k = new I8042(() => resets++);
  k.write(0x64, 0xaa);
  k.write(0x60, 0xfe);
  assert.equal(resets, 0);
  assert.equal(k.read(0x64) & 0x02, 0, 'input buffer empty');
  k.write(0x64, 0xfe);
  assert.equal(resets, 1);
});

test('bus: unclaimed ports and MMIO read as all ones and are counted', () => {
  const bus = new Bus();
  const seen: number[] = [];
  bus.addPorts('dev', 0x100, 4, { read: (p) => p, write: (p, _s, v) => seen.push(p, v) });
  assert.equal(bus.portRead(0x102, 1), 0x02);
  bus.portWrite(0x100, 4, 0xabcdef);
  assert.deepEqual(seen, [0x100, 0xabcdef]);
  assert.equal(bus.portRead(0x200, 1), 0xff);
  assert.equal(bus.portRead(0x200, 2), 0xffff);
  assert.equal(bus.portRead(0x200, 4), 0xffffffff);
  bus.portWrite(0x200, 1, 1);
  assert.equal(bus.mmioRead(0xd0000000, 4), 0xffffffffn);
  assert.equal(bus.mmioRead(0xd0000000, 8), 0xffffffffffffffffn);
  bus.mmioWrite(0xd0000000, 4, 1n);
  assert.deepEqual(bus.counters, { unknownPortReads: 3, unknownPortWrites: 1, unknownMmioReads: 2, unknownMmioWrites: 1 });
  assert.throws(() => bus.addPorts('other', 0x103, 2, { read: () => 0, write: () => {} }), /overlaps/);
});
