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

test('UART: FIFO reset drops pending input; input beyond capacity is refused', () => {
  const { u } = uart();
  assert.equal(u.enqueueInput(new Uint8Array(5000)), 4096);
  u.write(IIR, 0x03);
  assert.equal(u.inputPending(), 0);
});
