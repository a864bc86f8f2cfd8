// The JSON records that carry vCPU and VM state in a snapshot: valid ones round trip exactly, anything else is
// refused with BadSnapshotState and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AzoteError } from '../../src/base/errors.js';
import {
  kvmDebugregs, kvmFpu, kvmLapicState, kvmPitState2, kvmRegs, kvmSregs, kvmVcpuEvents, kvmXcrs,
} from '../../src/kvm/structs.js';
import { parseVcpuStateRecord, vcpuStateRecord, type VcpuState } from '../../src/kvm/vcpu-state.js';
import { parseVmStateRecord, vmStateRecord, type VmState } from '../../src/kvm/vm-state.js';

const bytes = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

const vcpuState: fc.Arbitrary<VcpuState> = fc.record({
  regs: bytes(kvmRegs.size), sregs: bytes(kvmSregs.size), fpu: bytes(kvmFpu.size),
  // The legacy area, AVX-512's and AMX's sizes.
  xsave: fc.constantFrom(4096, 4160, 11008).chain(bytes),
  xcrs: bytes(kvmXcrs.size), debugregs: bytes(kvmDebugregs.size), lapic: bytes(kvmLapicState.size),
  events: bytes(kvmVcpuEvents.size), mpState: fc.integer({ min: 0, max: 4 }),
  tscKhz: fc.integer({ min: 1, max: 0xffffffff }),
  msrs: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), u64), { selector: ([i]) => i, maxLength: 80 }),
});

const vmState: fc.Arbitrary<VmState> = fc.record({
  picMaster: bytes(512), picSlave: bytes(512), ioapic: bytes(512), pit: bytes(kvmPitState2.size), clockNs: u64,
});

/** What a snapshot file gives back: the record after JSON. */
const viaJson = (r: unknown): unknown => JSON.parse(JSON.stringify(r));

function refused(parse: () => unknown, what?: RegExp): void {
  assert.throws(parse, (e: unknown) => {
    assert.ok(e instanceof AzoteError, `threw ${String(e)}`);
    assert.equal(e.code, 'BadSnapshotState');
    assert.match(e.fix ?? '', /--cold/);
    assert.match(e.message, /^(vCPU|VM) state: /, 'names the record');
    if (what) assert.match(e.message, what);
    return true;
  });
}

/** Parses, or is refused with BadSnapshotState: nothing else may come out of a damaged record. */
function parsesOrRefused(parse: () => unknown): void {
  try {
    parse();
  } catch (e) {
    assert.ok(e instanceof AzoteError && e.code === 'BadSnapshotState', `threw ${String(e)}`);
  }
}

const cases = [
  { name: 'vcpu', state: vcpuState as fc.Arbitrary<unknown>, record: (s: unknown) => vcpuStateRecord(s as VcpuState), parse: parseVcpuStateRecord },
  { name: 'vm', state: vmState as fc.Arbitrary<unknown>, record: (s: unknown) => vmStateRecord(s as VmState), parse: parseVmStateRecord },
] as const;

for (const c of cases) {
  test(`${c.name} state records round trip exactly through JSON`, () => {
    fc.assert(fc.property(c.state, (s) => {
      // fc.record makes objects without a prototype; the spread compares fields only.
      assert.deepEqual(c.parse(viaJson(c.record(s))), { ...(s as object) });
    }), { numRuns: 50 });
  });

  test(`${c.name} state records with a field missing, truncated or replaced are refused with BadSnapshotState only`, () => {
    fc.assert(fc.property(c.state, fc.nat(), fc.integer({ min: 1, max: 8 }), fc.jsonValue(), (s, pick, cut, other) => {
      const rec = viaJson(c.record(s)) as Record<string, unknown>;
      const keys = Object.keys(rec);
      const key = keys[pick % keys.length] ?? 'kind';
      const { [key]: _dropped, ...without } = rec;
      refused(() => c.parse(without), new RegExp(`${key} is missing`));
      const v = rec[key];
      // Cutting base64 always changes its length or padding, which fixed-size fields refuse. A cut decimal number ("10"
      // to "1") may stay valid, and so may a cut XSAVE area: its exact size is the restoring VM's, checked there.
      if (typeof v === 'string' && !['kind', 'clockNs', 'xsave'].includes(key)) {
        refused(() => c.parse({ ...rec, [key]: v.slice(0, -cut) }));
      }
      parsesOrRefused(() => c.parse({ ...rec, [key]: other }));
    }), { numRuns: 100 });
  });

  test(`${c.name} state of another version or kind, or not a record at all, is refused`, () => {
    fc.assert(fc.property(c.state, fc.jsonValue().filter((v) => v !== 1), (s, version) => {
      refused(() => c.parse({ ...(viaJson(c.record(s)) as object), version }), /version/);
    }), { numRuns: 30 });
    fc.assert(fc.property(fc.anything(), (v) => refused(() => c.parse(v))), { numRuns: 200 });
    fc.assert(fc.property(c.state, (s) => {
      refused(() => c.parse({ ...(viaJson(c.record(s)) as object), kind: c.name === 'vm' ? 'vcpu' : 'vm' }), /kind/);
      refused(() => c.parse({ ...(viaJson(c.record(s)) as object), extra: 1 }), /extra is not a field of this record/);
    }), { numRuns: 10 });
  });
}

test('a vcpu record is checked field by field', () => {
  const s = fc.sample(vcpuState, { numRuns: 1, seed: 1 })[0];
  assert.ok(s);
  const rec = viaJson(vcpuStateRecord({ ...s, msrs: [[0x10, 5n]] })) as Record<string, unknown>;
  refused(() => parseVcpuStateRecord({ ...rec, regs: Buffer.alloc(143).toString('base64') }), /regs holds 143 bytes, not exactly 144/);
  refused(() => parseVcpuStateRecord({ ...rec, xsave: Buffer.alloc(4092).toString('base64') }), /xsave holds 4092 bytes/);
  refused(() => parseVcpuStateRecord({ ...rec, xsave: Buffer.alloc(4098).toString('base64') }), /xsave holds 4098 bytes/);
  refused(() => parseVcpuStateRecord({ ...rec, lapic: `${String(rec['lapic'])}\n` }), /lapic is a string of 1369 characters, not base64/);
  // 1024 bytes end in "xy==", y holding 2 bits of data and 4 of padding: a set padding bit decodes to the same bytes,
  // but is not what this Azote writes.
  const lapic = String(rec['lapic']);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const padded = `${lapic.slice(0, -3)}${alphabet[alphabet.indexOf(lapic.at(-3) ?? '') | 1] ?? ''}==`;
  assert.deepEqual(Buffer.from(padded, 'base64'), Buffer.from(lapic, 'base64'));
  refused(() => parseVcpuStateRecord({ ...rec, lapic: padded }), /lapic is not canonical base64/);
  refused(() => parseVcpuStateRecord({ ...rec, mpState: 5 }), /mpState/);
  refused(() => parseVcpuStateRecord({ ...rec, mpState: 1.5 }), /mpState/);
  refused(() => parseVcpuStateRecord({ ...rec, tscKhz: 0 }), /tscKhz/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [{ index: 0x10, value: '5' }, { index: 0x10, value: '6' }] }), /msrs\[1\] lists MSR 0x10 twice/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [{ index: 0x10, value: (1n << 64n).toString() }] }), /msrs\[0\]\.value/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [{ index: 0x10, value: '05' }] }), /msrs\[0\]\.value/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [{ index: 0x10, value: 5 }] }), /msrs\[0\]\.value/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [{ index: -1, value: '5' }] }), /msrs\[0\]\.index is -1, not an integer from 0 to 4294967295/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [{ index: 0x10 }] }), /msrs\[0\]\.value is missing/);
  refused(() => parseVcpuStateRecord({ ...rec, msrs: [[0x10, '5']] }), /msrs\[0\] is not an object/);
  const tooMany = Array.from({ length: 256 }, (_, index) => ({ index, value: '0' }));
  refused(() => parseVcpuStateRecord({ ...rec, msrs: tooMany }), /msrs is a list, not a list of 0 to 255 entries/);
  refused(() => parseVcpuStateRecord({ ...rec, version: 2 }), /version 2 is not 1, the one this Azote reads/);
  assert.deepEqual(parseVcpuStateRecord(rec).msrs, [[0x10, 5n]]);
});
