// Which memory guests get: the probe's answer, the user's wish, the parameters a guest then needs, the measurement
// a quote shows, and the remembered probe (asked again for another kernel, or when the file is damaged).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  chooseProtection, describeProtection, protectionMeasurement, protectionParams, rememberedProbe,
} from '../../src/isolation/memory-protection.js';
import type { MemoryProbe } from '../../src/isolation/secret-probe.js';

const runs: MemoryProbe = { usable: true, kvmclock: false };
const refused: MemoryProbe = { usable: false, why: 'KVM_RUN of guest user code on secret memory: EFAULT' };

test('guest memory: secret where guests run on it, a memfd otherwise or when asked; secret asked for where it cannot be is an error', () => {
  assert.deepEqual(chooseProtection(runs), { kind: 'secret', noKvmclock: true });
  assert.deepEqual(chooseProtection({ usable: true, kvmclock: true }), { kind: 'secret', noKvmclock: false });
  assert.deepEqual(chooseProtection(refused), { kind: 'memfd', noKvmclock: false, why: refused.usable ? '' : refused.why });
  assert.equal(chooseProtection(runs, 'memfd').kind, 'memfd');
  assert.equal(chooseProtection(runs, 'secret').kind, 'secret');
  assert.throws(() => chooseProtection(refused, 'secret'), (e: Error & { code?: string }) => e.code === 'SecretMemoryUnavailable' && /EFAULT/.test(e.message));
  assert.match(describeProtection(chooseProtection(refused)), /readable by host root; secret memory not used: KVM_RUN/);
});

test('guest memory: a guest without kvmclock is told its TSC frequency; the measurement depends only on the protection', () => {
  assert.deepEqual(protectionParams({ noKvmclock: true }, () => 2596132), ['no-kvmclock', 'tsc_early_khz=2596132']);
  assert.deepEqual(protectionParams({ noKvmclock: false }, () => assert.fail('not asked')), []);
  const a = protectionMeasurement(chooseProtection(refused));
  const b = protectionMeasurement(chooseProtection({ usable: false, why: 'another reason' }));
  assert.deepEqual(a, b, 'why is not measured: the same memory is the same level');
  assert.notEqual(a.digest, protectionMeasurement(chooseProtection(runs)).digest);
  assert.equal(a.name, 'guest-memory');
  assert.match(a.digest, /^[0-9a-f]{96}$/);
});

test('guest memory: the probe is remembered per kernel and KVM; a damaged or foreign file is asked again', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-probe-'));
  try {
    const file = path.join(dir, 'probe.json');
    let asked = 0;
    const probe = (answer: MemoryProbe) => async (): Promise<MemoryProbe> => {
      asked++;
      return answer;
    };
    assert.deepEqual(await rememberedProbe(file, 'nested-pvm', probe(refused)), refused);
    assert.deepEqual(await rememberedProbe(file, 'nested-pvm', probe(runs)), refused, 'remembered');
    assert.equal(asked, 1);
    assert.deepEqual(await rememberedProbe(file, 'hardware', probe(runs)), runs, 'another KVM asks again');
    assert.equal(asked, 2);
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { key: string };
    for (const damaged of ['{', JSON.stringify({ key: saved.key, probe: { usable: 'yes' } }), JSON.stringify({ key: saved.key, probe: { usable: false, why: 'x'.repeat(500) } })]) {
      writeFileSync(file, damaged);
      assert.deepEqual(await rememberedProbe(file, 'hardware', probe(refused)), refused, damaged.slice(0, 40));
    }
    assert.equal(asked, 5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
