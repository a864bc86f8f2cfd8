// A starting controller kills what a crashed one left: each process its pid files name that still runs as that same
// process (pid and start time), and nothing else: a pid now used by another process, or a garbled file, is only
// forgotten.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { silentLogger } from '../../src/base/log.js';
import { PidFiles, processStartTime } from '../../src/controller/pid-files.js';

function sleeper(): { pid: number; exited: Promise<void> } {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  assert.ok(child.pid);
  return { pid: child.pid, exited };
}

test('reapStale kills the recorded processes still alive, spares a reused pid, and forgets every file', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-pids-'));
  const stale = sleeper();
  const other = sleeper();
  try {
    const pids = new PidFiles(dir);
    pids.record('card volume vol-1', stale.pid);
    // The same pid with another start time: a process that is not the one written down.
    writeFileSync(path.join(dir, 'hypervisor%20i-1'), `${other.pid} 1\n`);
    writeFileSync(path.join(dir, 'garbled'), 'not a pid file');
    const killed = await pids.reapStale(silentLogger);
    assert.deepEqual(killed, [stale.pid]);
    await stale.exited;
    assert.ok(processStartTime(other.pid) !== undefined, 'a process the file does not name is spared');
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    for (const p of [stale, other]) if (processStartTime(p.pid) !== undefined) process.kill(p.pid, 'SIGKILL');
    await Promise.all([stale.exited, other.exited]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('forget removes a record only for the pid it names (a restarted card keeps its successor\'s)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-pids-'));
  try {
    const pids = new PidFiles(dir);
    pids.record('card network', process.pid);
    pids.forget('card network', process.pid + 1);
    assert.deepEqual(readdirSync(dir), [encodeURIComponent('card network')]);
    pids.forget('card network', process.pid);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reapStale kills nothing for garbled file contents (fuzzed), and forgets them', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-pids-'));
  try {
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 40 }), async (text) => {
      // Never a well-formed record: one might name a live process by chance.
      fc.pre(!/^[1-9]\d* \d+\n$/.test(text));
      writeFileSync(path.join(dir, 'x'), text);
      assert.deepEqual(await new PidFiles(dir).reapStale(silentLogger), []);
      assert.deepEqual(readdirSync(dir), []);
    }), { numRuns: 300, seed: 0x9e1d });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
