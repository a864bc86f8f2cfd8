import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Uart16550 } from '../../src/hypervisor/devices/uart.js';

const THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

function uart() {
  const out: number[] = [];
  let irqs = 0;
  const u = new Uart16550((b) => out.push(...b), () => irqs++);
  return { u, out, irqs: () => irqs };
}

test('UART: transmit reaches the host, LSR always shows the transmitter empty', () => {
  const { u, out } = uart();
  for (const c of 'hi\n') u.write(THR, c.charCodeAt(0));
  assert.equal(Buffer.from(out).toString(), 'hi\n');
  assert.equal(u.read(LSR) & 0x60, 0x60);
  assert.equal(u.read(LSR) & 1, 0);
});

test('UART: divisor latch, scratch and line control registers hold their values', () => {
  const { u, out } = uart();
  u.write(LCR, 0x83);
  u.write(THR, 0x01);
  u.write(IER, 0x00);
  assert.equal(u.read(THR), 0x01);
  assert.equal(u.read(IER), 0x00);
  u.write(LCR, 0x03);
  assert.equal(u.read(LCR), 0x03);
  assert.equal(out.length, 0, 'writes to the divisor latch are not output');
  u.write(SCR, 0x5a);
  assert.equal(u.read(SCR), 0x5a);
});

test('UART: received bytes raise IRQ when enabled and are read in order', () => {
  const { u, irqs } = uart();
  u.enqueueInput(Buffer.from('ab'));
  assert.equal(irqs(), 0, 'no interrupt while RDI is disabled');
  assert.equal(u.read(IIR) & 0x0f, 0x01, 'no interrupt pending');
  u.write(IER, 0x01);
  assert.equal(irqs(), 1, 'enabling RDI with data waiting raises the interrupt');
  assert.equal(u.read(IIR) & 0x0f, 0x04);
  assert.equal(u.read(LSR) & 1, 1);
  assert.equal(u.read(THR), 0x61);
  assert.equal(u.read(THR), 0x62);
  assert.equal(u.read(LSR) & 1, 0);
  assert.equal(u.read(IIR) & 0x0f, 0x01);
  u.enqueueInput(Buffer.from('c'));
  assert.equal(irqs(), 2);
});

test('UART: THR-empty interrupt is raised on enable and after each byte, and cleared by reading IIR', () => {
  const { u, irqs } = uart();
  u.write(IER, 0x02);
  assert.equal(irqs(), 1);
  assert.equal(u.read(IIR) & 0x0f, 0x02);
  assert.equal(u.read(IIR) & 0x0f, 0x01, 'reading IIR acknowledged it');
  u.write(THR, 0x41);
  assert.equal(irqs(), 2);
  assert.equal(u.read(IIR) & 0x0f, 0x02);
});

test('UART: loopback mode echoes transmitted bytes and maps modem lines', () => {
  const { u, out } = uart();
  u.write(MCR, 0x10 | 0x0f);
  u.write(THR, 0x55);
  assert.equal(out.length, 0);
  assert.equal(u.read(THR), 0x55);
  assert.equal(u.read(MSR) & 0xf0, 0xf0);
});

test('UART: host input waits for the receiver, survives the driver\'s FIFO resets, and comes back in order', () => {
  const { u, irqs } = uart();
  const sent = Uint8Array.from({ length: 40 }, (_, i) => 0x30 + i);
  assert.equal(u.enqueueInput(sent), 40, 'with the receiver off everything waits on the host side');
  assert.equal(u.read(LSR) & 1, 0, 'the guest sees nothing yet');
  u.write(IIR, 0x03); // a starting driver resets its FIFOs
  u.write(IER, 0x01);
  assert.equal(irqs(), 1);
  const got: number[] = [];
  for (let i = 0; i < 10; i++) got.push(u.read(THR));
  u.write(IER, 0x00); // the port shuts down with a full FIFO unread ...
  u.write(IIR, 0x03); // ... and resets the FIFOs
  assert.equal(u.inputPending(), 30, 'unread bytes went back to the host queue');
  u.write(IER, 0x01);
  while (u.read(LSR) & 1) got.push(u.read(THR));
  assert.deepEqual(got, [...sent]);
  assert.equal(u.inputPending(), 0);
});

test('UART: with the receiver on, a FIFO reset discards only what the FIFO holds', () => {
  const { u } = uart();
  u.write(IER, 0x01);
  u.enqueueInput(new Uint8Array(20).fill(7));
  assert.equal(u.inputPending(), 20);
  u.write(IIR, 0x03);
  assert.equal(u.inputPending(), 4, 'the 16 bytes in the FIFO are gone, the 4 behind them are not');
});
