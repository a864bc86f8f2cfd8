import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, failedInstruction, withoutPvHypercalls } from '../../src/isolation/pvm-quirks.js';

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

test('nested-KVM quirks: KVM features used through hypercalls are not offered', () => {
  const entry = { function: 0, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 };
  const leaf1 = { ...entry, function: 1, eax: 0xa10f11, ecx: 0x81202000 };
  const kvm = { ...entry, function: 0x40000001, eax: 0x1007efb };
  const [a, b] = withoutPvHypercalls([leaf1, kvm]);
  assert.deepEqual(a, leaf1, 'other leaves are kept');
  // PV_UNHALT (7), PV_SEND_IPI (11) and PV_SCHED_YIELD (13) go; kvmclock, PV EOI, PV TLB flush and the rest stay.
  assert.equal(b?.eax, 0x1007efb & ~0x2880);
  assert.equal(kvm.eax, 0x1007efb, 'the input is not modified');
});
