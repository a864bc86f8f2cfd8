// A card dies with the controller that started it: the controller (here a small Node process that starts the
// network card as the controller does) is killed with SIGKILL, and its card ends too instead of holding its socket,
// addresses or a volume's lock. The card's pid file names it until then.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../../src/images/paths.js';
import { processStartTime } from '../../src/controller/pid-files.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

const dist = (p: string): string => pathToFileURL(path.join(projectRoot(), 'dist', p)).href;

test('a card started by a controller dies when the controller is killed with SIGKILL', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-card-process-'));
  try {
    const controller = spawn(process.execPath, ['--input-type=module', '-e', `
      import { CardProcess } from ${JSON.stringify(dist('src/controller/card-process.js'))};
      import { PidFiles } from ${JSON.stringify(dist('src/controller/pid-files.js'))};
      import { silentLogger } from ${JSON.stringify(dist('src/base/log.js'))};
      const dir = ${JSON.stringify(dir)};
      await CardProcess.start('network', () => ${JSON.stringify(path.join(projectRoot(), 'dist/src/cards/net/main.js'))},
        ['--socket', dir + '/net.sock', '--subnet', '10.99.0.0/24'], dir + '/net.sock', new PidFiles(dir + '/pids'), silentLogger);
      process.stdout.write('started\\n');
      setInterval(() => undefined, 1000);
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((resolve) => controller.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      controller.stdout.setEncoding('utf8').on('data', (s: string) => { if (s.includes('started')) resolve(); });
      controller.once('exit', (code) => reject(new Error(`the controller ended (status ${code}) before its card started`)));
    });
    const [file] = readdirSync(path.join(dir, 'pids'));
    assert.equal(file, encodeURIComponent('card network'));
    const [pid, start] = readFileSync(path.join(dir, 'pids', file), 'utf8').trim().split(' ').map(String);
    assert.equal(processStartTime(Number(pid)), start, 'the pid file names the running card');

    controller.kill('SIGKILL');
    await exited;
    for (let i = 0; i < 600 && processStartTime(Number(pid)) === start; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(processStartTime(Number(pid)), undefined, 'the card ended with its controller');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a card whose controller is already gone (another parent) ends at once, as does one given a malformed pid', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-card-process-'));
  try {
    const entry = path.join(projectRoot(), 'dist/src/cards/net/main.js');
    for (const [controller, why] of [[String(process.pid + 1_000_000), /the controller \(pid \d+\) that started this card is gone/], ['12abc', /is not a process id/]] as const) {
      const r = spawnSync(process.execPath, [entry, '--socket', path.join(dir, 'net.sock'), '--subnet', '10.99.0.0/24', '--controller', controller],
        { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, why);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
