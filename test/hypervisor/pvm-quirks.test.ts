import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, failedInstruction } from '../../src/hypervisor/pvm-quirks.js';

test('nested-KVM quirks: instruction lengths of the instructions we step over', () => {
  assert.deepEqual(classify(Uint8Array.of(0xcc, 0x90)), { action: 'inject-bp', length: 1 });
  assert.deepEqual(classify(Uint8Array.of(0x9b)), { action: 'skip', length: 1, name: 'fwait' });
  // ldmxcsr (%rax); ldmxcsr 0x8(%rsp) with SIB + disp8; ldmxcsr disp32(%rip); REX-prefixed.
  assert.deepEqual(classify(Uint8Array.of(0x0f, 0xae, 0x10)), { action: 'skip', length: 3, name: 'ldmxcsr' });
  assert.deepEqual(classify(Uint8Array.of(0x0f, 0xae, 0x54, 0x24, 0x08)), { action: 'skip', length: 5, name: 'ldmxcsr' });
  assert.deepEqual(classify(Uint8Array.of(0x0f, 0xae, 0x15, 1, 2, 3, 4)), { action: 'skip', length: 7, name: 'ldmxcsr' });
  assert.deepEqual(classify(Uint8Array.of(0x41, 0x0f, 0xae, 0x10)), { action: 'skip', length: 4, name: 'ldmxcsr' });
  assert.equal(classify(Uint8Array.of(0x0f, 0xae, 0x18)), undefined, 'stmxcsr is not skipped');
  assert.equal(classify(Uint8Array.of(0x0f, 0x0b)), undefined, 'ud2 is not ours to hide');
  assert.equal(classify(Uint8Array.of(0x0f, 0xae, 0x15, 1)), undefined, 'a truncated instruction is refused');
});

test('nested-KVM quirks: instruction bytes are taken from the emulation-failure exit', () => {
  const words = [1n, 0x90cc03n /* size 3, bytes cc 90 .. */];
  assert.deepEqual([...(failedInstruction(words) ?? [])], [0xcc, 0x90, 0x00]);
  assert.equal(failedInstruction([0n, 0x1n]), undefined, 'no instruction-bytes flag');
  assert.equal(failedInstruction([]), undefined);
});
