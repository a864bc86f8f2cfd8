// Runs the compiled tests one file at a time (VM tests share two cores and /dev/kvm) and prints the suite's wall time
// last. Arguments narrow the run to test files whose path contains one of them: `npm test -- cards/ netns`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return testFiles(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}

const filters = process.argv.slice(2);
const files = testFiles('dist/test').sort()
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w.replace(/\.ts$/, '').replace(/^test\//, ''))));
if (files.length === 0) {
  process.stderr.write(`no compiled test file matches ${filters.join(' ')} (run npm test once to compile)\n`);
  process.exit(1);
}
const started = Date.now();
// Tests run VMs in their own processes, whose vCPUs each hold one of libuv's pool threads (src/isolation/vcpus.ts).
const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' };
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
const s = Math.round((Date.now() - started) / 1000);
process.stdout.write(`test suite: ${files.length} files in ${Math.floor(s / 60)} min ${s % 60} s\n`);
process.exit(r.status ?? 1);
