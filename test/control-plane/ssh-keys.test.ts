// Key pair generation leaves the event loop free: while an RSA key is generated, other callbacks run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '../../src/control-plane/ssh-keys.js';

for (const type of ['rsa', 'ed25519'] as const) {
  test(`a new ${type} key pair is generated off the event loop`, async () => {
    let done = false, turns = 0;
    const turn = (): void => {
      turns++;
      if (!done) setImmediate(turn);
    };
    setImmediate(turn);
    let pair;
    try {
      const pending = generateKeyPair(type, 'k');
      assert.ok(pending instanceof Promise, 'generation is asynchronous');
      pair = await pending;
    } finally {
      done = true;
    }
    assert.ok(turns > 0, 'the event loop turned while the key was generated');
    assert.match(pair.openssh, type === 'rsa' ? /^ssh-rsa / : /^ssh-ed25519 /);
  });
}
