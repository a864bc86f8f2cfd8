// Every port access a guest can make, thrown at the legacy devices as the hypervisor wires them: nothing throws,
// reads stay within the access size, only the documented writes stop the VM or report a status, and the
// shutdown-request port reads 1 exactly when the host asked the guest to shut down (0 otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Bus } from '../../src/hypervisor/bus.js';
import { attachLegacyDevices } from '../../src/hypervisor/legacy-devices.js';

/** Ports with a device behind them, their neighbours, and anything else in the 16-bit port space. */
const port = fc.oneof(
  fc.integer({ min: 0x3f6, max: 0x401 }),
  fc.constantFrom(0x60, 0x64, 0x70, 0x71, 0x510, 0x511, 0x512, 0x50f),
  fc.integer({ min: 0, max: 0xffff }),
);
const access = fc.oneof(
  fc.record({ op: fc.constant('in' as const), port, size: fc.constantFrom(1, 2, 4) }),
  fc.record({ op: fc.constant('out' as const), port, size: fc.constantFrom(1, 2, 4), value: fc.integer({ min: 0, max: 0xffffffff }) }),
  fc.record({ op: fc.constant('input' as const), bytes: fc.uint8Array({ maxLength: 32 }) }),
);

test('legacy devices: 100,000 random guest port accesses and host input, no exception, sane results', () => {
  let accesses = 0;
  fc.assert(fc.property(fc.array(access, { minLength: 50, maxLength: 100 }), fc.boolean(), (script, shutdownRequested) => {
    const bus = new Bus();
    let outputBytes = 0;
    let resets = 0;
    const statuses: number[] = [];
    const markers: number[] = [];
    const { uart } = attachLegacyDevices(bus, {
      output: (b) => { outputBytes += b.length; },
      serialInterrupt: () => undefined,
      serialInputDrained: () => undefined,
      reset: () => { resets++; },
      exitStatus: (s) => statuses.push(s),
      marker: (m) => markers.push(m),
      shutdownRequested: () => shutdownRequested,
    });
    let expectedResets = 0;
    const expectedStatuses: number[] = [];
    const expectedMarkers: number[] = [];
    for (const a of script) {
      accesses++;
      if (a.op === 'input') {
        const before = uart.inputPending();
        uart.enqueueInput(a.bytes);
        assert.equal(uart.inputPending(), before + a.bytes.length, 'host input is queued, never dropped');
      } else if (a.op === 'in') {
        const v = bus.portRead(a.port, a.size);
        assert.ok(Number.isInteger(v) && v >= 0 && v <= 2 ** (8 * a.size) - 1, `in 0x${a.port.toString(16)}/${a.size} = ${v}`);
        if (a.port === 0x512) assert.equal(v, shutdownRequested ? 1 : 0, 'the shutdown request reads 1 when asked, else 0');
      } else {
        bus.portWrite(a.port, a.size, a.value);
        if (a.port === 0x64 && (a.value & 0xff) === 0xfe) expectedResets++;
        if (a.port === 0x510) expectedStatuses.push(a.value & 0xff);
        if (a.port === 0x511) expectedMarkers.push(a.value & 0xff);
      }
    }
    assert.equal(resets, expectedResets, 'only 0xfe on port 0x64 resets');
    assert.deepEqual(statuses, expectedStatuses, 'exit statuses are the low byte written to 0x510');
    assert.deepEqual(markers, expectedMarkers);
    assert.ok(outputBytes <= script.length, 'at most one byte transmitted per access');
  }), { numRuns: 2000, seed: 0x5eed });
  assert.ok(accesses >= 100_000, `${accesses} accesses`);
});
