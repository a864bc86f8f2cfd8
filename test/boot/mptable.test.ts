import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildMptable, MAX_MPTABLE_CPUS } from '../../src/boot/mptable.js';
import { MPTABLE } from '../../src/boot/layout.js';
import { MAX_VIRTIO_DEVICES, virtioSlot } from '../../src/hypervisor/virtio-mmio-slots.js';

function sum(b: Uint8Array): number {
  return b.reduce((a, x) => (a + x) & 0xff, 0);
}

test('MP table: floating pointer and config table checksum to zero and list every CPU', () => {
  for (const cpus of [1, 2, 4, MAX_MPTABLE_CPUS]) {
    const t = buildMptable(cpus);
    const dv = new DataView(t.buffer);
    assert.equal(new TextDecoder().decode(t.subarray(0, 4)), '_MP_');
    assert.equal(sum(t.subarray(0, 16)), 0);
    assert.equal(dv.getUint32(4, true), MPTABLE + 16);
    const hdr = t.subarray(16);
    assert.equal(new TextDecoder().decode(hdr.subarray(0, 4)), 'PCMP');
    const len = dv.getUint16(16 + 4, true);
    assert.equal(sum(hdr.subarray(0, len)), 0);
    const count = dv.getUint16(16 + 34, true);
    let p = 16 + 44, processors = 0, bsp = 0;
    for (let i = 0; i < count; i++) {
      const type = t[p];
      if (type === 0) {
        processors++;
        if ((t[p + 3] ?? 0) & 2) bsp++;
        p += 20;
      } else {
        p += 8;
      }
    }
    assert.equal(processors, cpus);
    assert.equal(bsp, 1);
    assert.equal(p, 16 + len);
  }
});

test('MP table refuses CPU counts it cannot describe', () => {
  assert.throws(() => buildMptable(0), /vCPUs/);
  assert.throws(() => buildMptable(MAX_MPTABLE_CPUS + 1), /vCPUs/);
});

test('MP table: every virtio-mmio slot\'s interrupt is routed to the IOAPIC input of the same number', () => {
  const t = buildMptable(1);
  const dv = new DataView(t.buffer);
  const count = dv.getUint16(16 + 34, true);
  const routed = new Map<number, number>();
  let ioapicId = -1;
  for (let i = 0, p = 16 + 44; i < count; i++) {
    const type = t[p] ?? 0;
    if (type === 2) ioapicId = t[p + 1] ?? -1;
    // An I/O interrupt entry (type 3), vectored (INT, 0): source bus IRQ -> destination IOAPIC id and pin.
    if (type === 3 && t[p + 1] === 0) {
      assert.equal(t[p + 6], ioapicId);
      routed.set(t[p + 5] ?? -1, t[p + 7] ?? -1);
    }
    p += type === 0 ? 20 : 8;
  }
  assert.ok(MAX_VIRTIO_DEVICES >= 16, `${MAX_VIRTIO_DEVICES} slots`);
  for (let i = 0; i < MAX_VIRTIO_DEVICES; i++) {
    const { irq } = virtioSlot(i);
    assert.equal(routed.get(irq), irq, `slot ${i}: IRQ ${irq}`);
  }
});
