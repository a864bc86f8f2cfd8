// What this host's KVM does on secret memory, asked of KVM: measured here (kvm_pvm) guests run on it and kvmclock's
// page stays empty (../shared/ISOLATION-NOTES.md); on a sealed memfd, the control, both work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectKvmFlavour, Kvm } from '../../src/kvm/kvm.js';
import { probeGuestMemory } from '../../src/isolation/secret-probe.js';
import { requireKvm } from '../framework/kvm.js';

test('the probe: a guest on a sealed memfd runs with kvmclock; on secret memory it runs without (this machine), or is refused', (t) => {
  if (!requireKvm(t)) return;
  const kvm = Kvm.open();
  try {
    assert.deepEqual(probeGuestMemory(kvm, false), { usable: true, kvmclock: true }, 'the control: a memfd');
    const secret = probeGuestMemory(kvm, true);
    if (detectKvmFlavour() === 'nested-pvm') {
      assert.deepEqual(secret, { usable: true, kvmclock: false }, 'as measured on kvm_pvm');
    } else {
      // Hardware KVM resolves guest pages by GUP, which secret memory refuses: either answer is possible, said either way.
      t.diagnostic(`secret memory on this KVM: ${JSON.stringify(secret)}`);
      assert.ok(secret.usable || secret.why.length > 0);
    }
  } finally {
    kvm.close();
  }
});
