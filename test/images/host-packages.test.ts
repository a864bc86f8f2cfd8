// What `npm test` provisions: dpkg's view of installed packages, and the one line a user without root gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { searchableByOthers } from '../framework/other-user.js';
import path from 'node:path';
import { missingPackages, TEST_PACKAGES } from '../../src/images/host-packages.js';
import { projectRoot } from '../../src/images/paths.js';

test('missingPackages: installed ones are not missing, unknown ones are, bad names are refused', async () => {
  assert.deepEqual(await missingPackages(['dpkg', 'azote-no-such-package', 'coreutils']), ['azote-no-such-package']);
  await assert.rejects(missingPackages(['dpkg; rm -rf /']), /is not a Debian package name/);
});

test('every package the tests use is installed after npm test\'s pretest step', async () => {
  assert.deepEqual(await missingPackages(TEST_PACKAGES.map((p) => p.name)), []);
});

test('without root, a missing package is one line naming the exact apt-get command, and a failure', () => {
  const module = path.join(projectRoot(), 'dist', 'src', 'images', 'host-packages.js');
  const script = `const m = await import(${JSON.stringify(module)});
    try { await m.ensurePackages([{ name: 'azote-no-such-package', why: 'a test' }, { name: 'dpkg', why: 'a test' }], console); }
    catch (e) { console.log(e.oneLine()); process.exit(3); }`;
  const restore = searchableByOthers(module);
  let r;
  try {
    r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath,
      '--input-type=module', '-e', script], { encoding: 'utf8' });
  } finally {
    restore();
  }
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stdout, 'these Debian packages are not installed: azote-no-such-package: '
    + 'run: sudo apt-get install -y --no-install-recommends azote-no-such-package\n');
});
