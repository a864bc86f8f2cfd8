// What a core dump of a VMM process can give away. Guest memory is mapped MADV_DONTDUMP, so a dump of a process
// that is dumpable holds none of it (while the process's own heap is there, the control); and the instances'
// hypervisors are made non-dumpable, so provoking a dump of one writes nothing at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/images/paths.js';
import { skipLoudly } from '../framework/kvm.js';
import type { TestContext } from 'node:test';

// The bytes are computed in the child straight into their memory, so that no copy of them exists elsewhere in the
// process (a string literal would be in the dump as source text). The guest's pattern and the heap's differ.
const pattern = (seed: number) => (i: number): number => ((i * 131 + (i >> 7) * 17 + seed) ^ (i >> 3)) & 0xff;
const PATTERN_SOURCE = `((i * 131 + (i >> 7) * 17 + SEED) ^ (i >> 3)) & 0xff`;
const GUEST_SEED = 7, HEAP_SEED = 91;
const bytes = (seed: number): string => Buffer.from(Array.from({ length: 256 }, (_, i) => pattern(seed)(i))).toString('latin1');

/** Runs `script` (an ES module body) with core dumps allowed, in a new folder; returns the core file, if any. */
function dumpOf(script: string): { dir: string; core: string | undefined; stderr: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-core-'));
  const file = path.join(dir, 'child.mjs');
  writeFileSync(file, script);
  const r = spawnSync('sh', ['-c', `ulimit -c unlimited && exec ${JSON.stringify(process.execPath)} ${JSON.stringify(file)}`], { cwd: dir, encoding: 'utf8' });
  const core = readdirSync(dir).find((n) => /^core(\.\d+)?$/.test(n));
  return { dir, core: core && path.join(dir, core), stderr: r.stderr };
}

/** Whether `needle` (latin1) occurs in the file (read in chunks, as a core may be large). */
function contains(file: string, needle: string): boolean {
  const n = Buffer.from(needle, 'latin1');
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(8 << 20);
    let carry = Buffer.alloc(0);
    for (let read = readSync(fd, chunk); read > 0; read = readSync(fd, chunk)) {
      const window = Buffer.concat([carry, chunk.subarray(0, read)]);
      if (window.includes(n)) return true;
      carry = window.subarray(Math.max(0, window.length - n.length));
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

function coresAllowed(t: TestContext): boolean {
  const pattern = spawnSync('cat', ['/proc/sys/kernel/core_pattern'], { encoding: 'utf8' }).stdout.trim();
  return pattern.startsWith('core') || skipLoudly(t, `core dumps go to "${pattern}", not to a file in the process's folder`);
}

const memoryModule = path.join(projectRoot(), 'dist', 'src', 'memory', 'guest-memory.js');
const libcModule = path.join(projectRoot(), 'dist', 'src', 'sys', 'libc.js');

test('a core dump of a process holding guest memory has its heap but no guest page', { timeout: 120_000 }, (t) => {
  if (!coresAllowed(t)) return;
  const { dir, core } = dumpOf(`
    const { GuestMemory } = await import(${JSON.stringify(memoryModule)});
    const mem = GuestMemory.create(16 << 20);
    const guest = mem.slice(0, 1 << 20);
    for (let i = 0; i < guest.length; i++) guest[i] = ${PATTERN_SOURCE.replace('SEED', String(GUEST_SEED))};
    const heap = new Uint8Array(1 << 20);
    for (let i = 0; i < heap.length; i++) heap[i] = ${PATTERN_SOURCE.replace('SEED', String(HEAP_SEED))};
    globalThis.keep = [heap, mem];
    process.abort();`);
  try {
    assert.ok(core, 'the process dumped core');
    assert.ok(statSync(core).size > 0);
    assert.equal(contains(core, bytes(HEAP_SEED)), true, 'the control: the heap is in the dump');
    assert.equal(contains(core, bytes(GUEST_SEED)), false, 'no guest page is in the dump');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a hypervisor made non-dumpable, as instance-main.js makes itself, leaves no core dump at all', { timeout: 120_000 }, (t) => {
  if (!coresAllowed(t)) return;
  const { dir, core } = dumpOf(`
    const libc = await import(${JSON.stringify(libcModule)});
    libc.prctl(libc.PR_SET_DUMPABLE, 0);
    process.abort();`);
  try {
    assert.equal(core, undefined, 'no core file');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
