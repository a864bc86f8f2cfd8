// What this host's KVM does on secret memory, asked of KVM: measured here (kvm_pvm) a guest's kernel code runs on it
// but its user code does not (KVM_RUN: EFAULT), and kvmclock's page stays empty; on a sealed memfd, the control, all
// of it works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectKvmFlavour, Kvm } from '../../src/kvm/kvm.js';
import { probeGuestMemory } from '../../src/isolation/secret-probe.js';
import { requireKvm } from '../framework/kvm.js';

test('the probe: a guest on a sealed memfd runs kernel and user code with kvmclock; on secret memory this machine runs no user code', (t) => {
  if (!requireKvm(t)) return;
  const kvm = Kvm.open();
  try {
    assert.deepEqual(probeGuestMemory(kvm, false), { usable: true, kvmclock: true }, 'the control: a memfd');
    const secret = probeGuestMemory(kvm, true);
    if (detectKvmFlavour() === 'nested-pvm') {
      assert.equal(secret.usable, false, 'as measured on kvm_pvm');
      assert.match(secret.usable ? '' : secret.why, /user code on secret memory: EFAULT/);
    } else {
      // Hardware KVM resolves guest pages by GUP, which secret memory refuses: either answer is possible, said either way.
      t.diagnostic(`secret memory on this KVM: ${JSON.stringify(secret)}`);
      assert.ok(secret.usable || secret.why.length > 0);
    }
  } finally {
    kvm.close();
  }
});
