// A card dies with the controller that started it: the controller (here a small Node process that starts the
// network card in its jail as the controller does) is killed with SIGKILL, and its card ends too instead of holding
// its socket, addresses or a volume's lock. The card's pid file names it until then. A card's entry runs only as the
// controller starts it, handed its sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../../src/images/paths.js';
import { processStartTime } from '../../src/controller/pid-files.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

/** The network card's node process serving `socket` (not the jail's tools above it, whose arguments name it too). */
function cardPid(socket: string): number | undefined {
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const args = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (args[0] === process.execPath && args[1]?.endsWith('cards/net/main.js') && args.includes(socket)) return Number(p);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

const dist = (p: string): string => pathToFileURL(path.join(projectRoot(), 'dist', p)).href;

test('a card started by a controller dies when the controller is killed with SIGKILL', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-card-process-'));
  let controllerPid: number | undefined;
  try {
    const controller = spawn(process.execPath, ['--input-type=module', '-e', `
      import { mkdirSync } from 'node:fs';
      import { CardProcess } from ${JSON.stringify(dist('src/controller/card-process.js'))};
      import { provisionDevelopmentHost } from ${JSON.stringify(dist('src/controller/components.js'))};
      import { JailUids } from ${JSON.stringify(dist('src/controller/jail.js'))};
      import { PidFiles } from ${JSON.stringify(dist('src/controller/pid-files.js'))};
      import { SecurityChip } from ${JSON.stringify(dist('src/security-chip/chip.js'))};
      import { silentLogger } from ${JSON.stringify(dist('src/base/log.js'))};
      const dir = ${JSON.stringify(dir)};
      const { chip } = SecurityChip.init(dir + '/host');
      provisionDevelopmentHost(chip, silentLogger);
      chip.boot();
      const uids = new JailUids(dir + '/jail-uid-next');
      mkdirSync(dir + '/jail');
      const jail = { mountPoint: dir + '/jail', cores: [0], memoryMiB: 256, uids: { take: () => uids.next(new Set()), give: () => undefined } };
      await CardProcess.start({ name: 'network', group: 'card-test-dies-' + process.pid, admit: () => chip.admit('card-net'), sockets: [dir + '/net.sock'],
        files: [], jail, args: ['--socket', dir + '/net.sock', '--listen-fd', '3', '--subnet', '10.99.0.0/24'] }, new PidFiles(dir + '/pids'), silentLogger);
      process.stdout.write('started\\n');
      setInterval(() => undefined, 1000);
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    controllerPid = controller.pid;
    const exited = new Promise<void>((resolve) => controller.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      controller.stdout.setEncoding('utf8').on('data', (s: string) => { if (s.includes('started')) resolve(); });
      controller.once('exit', (code) => reject(new Error(`the controller ended (status ${code}) before its card started`)));
    });
    const [file] = readdirSync(path.join(dir, 'pids'));
    assert.equal(file, encodeURIComponent('card network'));
    const [pid, start] = readFileSync(path.join(dir, 'pids', file), 'utf8').trim().split(' ').map(String);
    assert.equal(processStartTime(Number(pid)), start, 'the pid file names the running card (its jail)');
    const card = cardPid(path.join(dir, 'net.sock'));
    assert.ok(card, 'the card runs in its jail');
    const cardStart = processStartTime(card);

    controller.kill('SIGKILL');
    await exited;
    for (let i = 0; i < 600 && (processStartTime(Number(pid)) === start || processStartTime(card) === cardStart); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(processStartTime(Number(pid)), undefined, 'its jail ended with its controller');
    assert.equal(processStartTime(card), undefined, 'the card ended with its controller');
  } finally {
    // The group a crashed controller leaves (empty) is reused by the next one; this test's is removed here.
    for (const h of ['', 'memory', 'cpu', 'cpuset', 'pids']) {
      const group = path.join('/sys/fs/cgroup', h, 'azote', `card-test-dies-${controllerPid}`);
      if (existsSync(group)) rmdirSync(group);
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a card entry not handed its socket, or given a malformed descriptor, ends at once with the reason', async () => {
  for (const entry of ['dist/src/cards/net/main.js', 'dist/src/cards/block/main.js']) {
    for (const [given, why] of [[[], /hands it its sockets \(--listen-fd\)/], [['--listen-fd', '12abc'], /--listen-fd "12abc" is not an inherited descriptor/],
      [['--listen-fd', '2'], /--listen-fd "2" is not an inherited descriptor/]] as const) {
      const r = spawnSync(process.execPath, [path.join(projectRoot(), entry), '--socket', '/nonexistent/card.sock', ...given], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, why);
    }
  }
});
