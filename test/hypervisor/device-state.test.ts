// Saved state of the legacy devices: a random guest and host history on A, saved through JSON and restored into a
// fresh B, then the same random continuation on both gives the same reads, output, interrupts and drained-input
// calls. Damaged, foreign-version and mutated records are refused with BadSnapshotState and change nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Uart16550, UART_MAX_SAVED_INPUT, UART_RX_FIFO_SIZE } from '../../src/hypervisor/devices/uart.js';
import { CmosRtc, RTC_INDEX_PORT, RTC_DATA_PORT } from '../../src/hypervisor/devices/rtc.js';
import { I8042 } from '../../src/hypervisor/devices/i8042.js';
import { AzotePorts } from '../../src/hypervisor/devices/azote-ports.js';
import { Bus } from '../../src/hypervisor/bus.js';
import { attachLegacyDevices } from '../../src/hypervisor/legacy-devices.js';
import { assertRefused, mutation, takenOrRefused, viaJson } from '../framework/saved-state.js';

type Event = readonly [string, ...number[]];

function loggedUart(): { u: Uart16550; log: Event[] } {
  const log: Event[] = [];
  const u = new Uart16550((b) => log.push(['out', ...b]), () => log.push(['irq']), () => log.push(['drained']));
  return { u, log };
}

const uartOp = fc.oneof(
  fc.record({ op: fc.constant('read' as const), offset: fc.integer({ min: 0, max: 8 }) }),
  fc.record({ op: fc.constant('write' as const), offset: fc.integer({ min: 0, max: 8 }),
    value: fc.oneof(fc.constantFrom(0x00, 0x01, 0x02, 0x03, 0x07, 0x0f, 0x10, 0x1f, 0x80, 0x83), fc.integer({ min: 0, max: 0xff })) }),
  fc.record({ op: fc.constant('input' as const), bytes: fc.uint8Array({ maxLength: 40 }) }),
);
type UartOp = typeof uartOp extends fc.Arbitrary<infer T> ? T : never;

function runUart(u: Uart16550, log: Event[], ops: readonly UartOp[]): void {
  for (const o of ops) {
    if (o.op === 'read') log.push(['read', o.offset, u.read(o.offset)]);
    else if (o.op === 'write') u.write(o.offset, o.value);
    else log.push(['queued', u.enqueueInput(o.bytes)]);
    log.push(['pending', u.inputPending()]);
  }
}

test('UART: saved and restored between any two steps, the continuation is the same, host input included', () => {
  fc.assert(fc.property(fc.array(uartOp, { maxLength: 80 }), fc.array(uartOp, { maxLength: 80 }), (before, after) => {
    const a = loggedUart();
    runUart(a.u, a.log, before);
    const saved = a.u.saveState();
    const b = loggedUart();
    b.u.restoreState(viaJson(saved));
    assert.equal(b.log.length, 0, 'restoring raises no interrupt and calls nothing');
    assert.deepEqual(b.u.saveState(), saved);
    assert.equal(b.u.inputPending(), a.u.inputPending());
    a.log.length = 0;
    runUart(a.u, a.log, after);
    runUart(b.u, b.log, after);
    assert.deepEqual(b.log, a.log);
    assert.deepEqual(b.u.saveState(), a.u.saveState());
  }), { numRuns: 1500, seed: 0x51a7e });
});

test('UART: bytes piped in before a snapshot reach the guest after it, in order', () => {
  const a = loggedUart();
  const piped = Uint8Array.from({ length: 100 }, (_, i) => i);
  a.u.enqueueInput(piped);
  const b = loggedUart();
  b.u.restoreState(viaJson(a.u.saveState()));
  b.u.write(1, 0x01); // the guest's driver turns the receiver on
  const got: number[] = [];
  while (b.u.read(5) & 1) got.push(b.u.read(0));
  assert.deepEqual(got, [...piped]);
  assert.ok(b.log.some((e) => e[0] === 'drained'), 'the host hears its input was taken');
});

test('UART: more queued input than a record holds is refused when saving, not cut short', () => {
  const { u } = loggedUart();
  u.enqueueInput(new Uint8Array(UART_MAX_SAVED_INPUT));
  const saved = u.saveState();
  const b = loggedUart();
  b.u.restoreState(viaJson(saved));
  assert.equal(b.u.inputPending(), UART_MAX_SAVED_INPUT, 'the largest record restores');
  u.enqueueInput(Uint8Array.of(1));
  assert.throws(() => u.saveState(), /SerialInputTooLarge|console input/);
});

test('UART: damaged records are refused with BadSnapshotState and change nothing', () => {
  const { u } = loggedUart();
  u.write(3, 0x83);
  u.write(0, 0x42);
  u.write(3, 0x03);
  u.enqueueInput(Buffer.from('kept'));
  const good = u.saveState() as unknown as Record<string, unknown>;
  const target = loggedUart().u;
  target.write(7, 0x99);
  target.enqueueInput(Buffer.from('mine'));
  const cases: Array<[unknown, RegExp]> = [
    [{ ...good, kind: 'cmos-rtc' }, /kind/], [{ ...good, version: 2 }, /version/], [{ ...good, version: '1' }, /version/],
    [{ ...good, ier: 0x10 }, /ier/], [{ ...good, lcr: 256 }, /lcr/], [{ ...good, mcr: 0x20 }, /mcr/], [{ ...good, scr: -1 }, /scr/],
    [{ ...good, dll: 1.5 }, /dll/], [{ ...good, dlm: '1' }, /dlm/], [{ ...good, thrEmptyPending: 1 }, /thrEmptyPending/],
    [{ ...good, rx: Buffer.alloc(UART_RX_FIFO_SIZE + 1).toString('base64') }, /rx/],
    [{ ...good, rx: 'AAA' }, /rx/], [{ ...good, rx: 'A=A=' }, /rx/], [{ ...good, rx: 'AB==' }, /rx/], [{ ...good, hostInput: '!!!!' }, /hostInput/],
    [{ ...good, extra: 1 }, /extra/], [{ ...good, ier: undefined }, /ier/], [Object.fromEntries(Object.entries(good).filter(([k]) => k !== 'fcr')), /fcr is missing/],
    [null, /not an object/], [[good], /not an object/], ['uart', /not an object/], [undefined, /not an object/],
    [Object.create(good), /kind is missing/],
  ];
  for (const [record, why] of cases) assertRefused(target, record, why);
  fc.assert(fc.property(mutation(), (m) => takenOrRefused(loggedUart().u, m(good))), { numRuns: 2000, seed: 0xbad });
});

test('RTC: index and CMOS storage survive a restore; time still comes from the clock', () => {
  const when = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  const port = fc.constantFrom(RTC_INDEX_PORT, RTC_DATA_PORT);
  const op = fc.record({ write: fc.boolean(), port, value: fc.integer({ min: 0, max: 0xff }) });
  const run = (rtc: CmosRtc, ops: ReadonlyArray<{ write: boolean; port: number; value: number }>): number[] =>
    ops.flatMap((o) => (o.write ? (rtc.write(o.port, o.value), []) : [rtc.read(o.port)]));
  fc.assert(fc.property(fc.array(op, { maxLength: 200 }), fc.array(op, { maxLength: 200 }), (before, after) => {
    const a = new CmosRtc(() => when);
    run(a, before);
    const b = new CmosRtc(() => when);
    b.restoreState(viaJson(a.saveState()));
    assert.deepEqual(run(b, after), run(a, after));
    assert.deepEqual(b.saveState(), a.saveState());
  }), { numRuns: 500, seed: 0x7c });
  const good = new CmosRtc().saveState();
  const target = new CmosRtc();
  target.write(RTC_INDEX_PORT, 0x40);
  target.write(RTC_DATA_PORT, 0x12);
  const clockByte = Buffer.alloc(128);
  clockByte[0] = 1;
  for (const [record, why] of [
    [{ ...good, index: 128 }, /index/], [{ ...good, ram: Buffer.alloc(127).toString('base64') }, /ram/],
    [{ ...good, ram: Buffer.alloc(129).toString('base64') }, /ram/], [{ ...good, ram: clockByte.toString('base64') }, /clock/],
    [{ ...good, version: 0 }, /version/], [{ kind: 'cmos-rtc', version: 1 }, /missing/],
  ] as Array<[unknown, RegExp]>) assertRefused(target, record, why);
  fc.assert(fc.property(mutation(), (m) => takenOrRefused(new CmosRtc(), m({ ...good }))), { numRuns: 1000, seed: 0x7d });
});

test('i8042 and Azote ports: records of their kind and version only', () => {
  const k = new I8042(() => undefined);
  const p = new AzotePorts(() => undefined, () => undefined, () => false);
  k.restoreState(viaJson(k.saveState()));
  p.restoreState(viaJson(p.saveState()));
  for (const [target, good] of [[k, k.saveState()], [p, p.saveState()]] as const) {
    assertRefused(target, { ...good, version: 2 }, /version/);
    assertRefused(target, { ...good, kind: 'uart16550' }, /kind/);
    assertRefused(target, { ...good, x: 0 }, /x is not a field/);
    fc.assert(fc.property(mutation(), (m) => takenOrRefused(target, m({ ...good }))), { numRuns: 500, seed: 0x8042 });
  }
  assertRefused(p, k.saveState(), /kind/);
});

test('legacy devices: every model attached is returned, and the bus reaches the restored state', () => {
  const hooks = {
    output: () => undefined, serialInterrupt: () => undefined, serialInputDrained: () => undefined, reset: () => undefined,
    exitStatus: () => undefined, marker: () => undefined, shutdownRequested: () => false,
  };
  const a = new Bus();
  const devices = attachLegacyDevices(a, hooks);
  a.portWrite(0x3ff, 1, 0x5a);
  a.portWrite(0x70, 1, 0x50);
  a.portWrite(0x71, 1, 0x77);
  const saved = viaJson({ uart: devices.uart.saveState(), rtc: devices.rtc.saveState(), i8042: devices.i8042.saveState(), azote: devices.azote.saveState() }) as Record<string, unknown>;
  const b = new Bus();
  const restored = attachLegacyDevices(b, hooks);
  restored.uart.restoreState(saved.uart);
  restored.rtc.restoreState(saved.rtc);
  restored.i8042.restoreState(saved.i8042);
  restored.azote.restoreState(saved.azote);
  assert.equal(b.portRead(0x3ff, 1), 0x5a);
  assert.equal(b.portRead(0x70, 1), 0x50);
  assert.equal(b.portRead(0x71, 1), 0x77);
});
