// The controller's connections to a hypervisor's cards, against a real network card: asking again cuts the
// connection handed before, even while the hypervisor's copy stays open, so asking can never use up the card.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CardLinks } from '../../src/controller/card-links.js';
import * as libc from '../../src/sys/libc.js';
import { projectRoot } from '../../src/images/paths.js';
import { backend } from '../framework/backend.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const dir = mkdtempSync(path.join(tmpdir(), 'azote-card-links-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const count = (log: string, re: RegExp): number => (log.match(re) ?? []).length;

test('a hypervisor that asks for its card again and again holds one connection: the one before is cut each time', async () => {
  const socket = path.join(dir, 'net.sock');
  // A /29: five addresses. Twenty requests would use them all up if the connections handed before stayed alive.
  const card = await backend(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'net', '--socket', socket, '--subnet', '10.66.0.0/29'], socket);
  const links = new CardLinks(new Map([['network', socket]]));
  const handed: number[] = [];
  try {
    for (let i = 1; i <= 20; i++) {
      handed.push(links.renew('network')); // kept open, as the hypervisor's copies would be
      for (let w = 0; w < 50 && count(card.log(), /network port attached/g) < i; w++) await sleep(100);
      assert.equal(count(card.log(), /network port attached/g), i, `request ${i} attached a port`);
    }
    for (let w = 0; w < 50 && count(card.log(), /network port detached/g) < 19; w++) await sleep(100);
    assert.equal(count(card.log(), /network port detached/g), 19, 'every connection but the last was cut');
    assert.doesNotMatch(card.log(), /attachment was refused/);
    // The card may accept the new connection before it reads the old one's end: at most two are ever attached.
    const addresses = new Set([...card.log().matchAll(/network port attached .*ip=(\S+)/g)].map((m) => m[1]));
    assert.ok([...addresses].every((a) => a === '10.66.0.2' || a === '10.66.0.3'), `addresses used: ${[...addresses].join(', ')}`);
    assert.throws(() => links.renew('storage'), /no card storage/);
    links.close();
    for (let w = 0; w < 50 && count(card.log(), /network port detached/g) < 20; w++) await sleep(100);
    assert.equal(count(card.log(), /network port detached/g), 20, 'closing cuts the last one');
  } finally {
    for (const fd of handed) libc.close(fd);
    card.stop();
  }
});
