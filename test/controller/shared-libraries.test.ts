// ldd's answers kept across processes: asked once per file as it is, asked again when the file changes, and a
// damaged or foreign cache file is no answers (never an error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { lddLibraries, SharedLibraries } from '../../src/controller/shared-libraries.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-shared-libraries-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function counting(): { ldd: (file: string) => string[]; asked: string[] } {
  const asked: string[] = [];
  return { asked, ldd: (file) => { asked.push(file); return [`/lib/for-${path.basename(file)}.so`]; } };
}

test('answers are kept per file across instances, asked again for a changed file, and dropped for a removed one', () => {
  const cache = path.join(dir, 'libraries.json');
  const a = path.join(dir, 'a'), b = path.join(dir, 'b');
  writeFileSync(a, 'a');
  writeFileSync(b, 'b');
  const first = counting();
  const one = new SharedLibraries(cache, first.ldd);
  assert.deepEqual(one.of(a), ['/lib/for-a.so']);
  assert.deepEqual(one.of(a), ['/lib/for-a.so']);
  one.of(b);
  one.save();
  assert.deepEqual(first.asked, [a, b], 'each file is asked about once');

  const second = counting();
  const two = new SharedLibraries(cache, second.ldd);
  assert.deepEqual(two.of(a), ['/lib/for-a.so']);
  assert.deepEqual(second.asked, [], 'the next process reads the answer');

  utimesSync(a, new Date(2000, 1, 1), new Date(2000, 1, 1));
  rmSync(b);
  assert.deepEqual(two.of(a), ['/lib/for-a.so']);
  assert.deepEqual(second.asked, [a], 'a changed file is asked about again');
  two.save();
  const kept = JSON.parse(readFileSync(cache, 'utf8')) as { files: Record<string, string[]> };
  assert.deepEqual(Object.keys(kept.files).map((k) => k.slice(k.indexOf(' ') + 1)), [a], 'the removed file\'s answer is dropped');
});

test('a damaged, foreign or hostile cache file gives no answers', () => {
  const cache = path.join(dir, 'bad.json');
  const a = path.join(dir, 'c');
  writeFileSync(a, 'c');
  for (const content of ['{', 'null', '[]', JSON.stringify({ version: 99, loaderCache: 'x', files: {} }),
    JSON.stringify({ version: 1, loaderCache: 'not this host', files: {} })]) {
    writeFileSync(cache, content);
    const c = counting();
    assert.deepEqual(new SharedLibraries(cache, c.ldd).of(a), ['/lib/for-c.so'], content);
    assert.deepEqual(c.asked, [a], content);
  }
  // This host's loader cache, but an answer that is not a list of absolute paths.
  const good = new SharedLibraries(cache, counting().ldd);
  good.of(a);
  good.save();
  const valid = JSON.parse(readFileSync(cache, 'utf8')) as { files: Record<string, unknown> };
  for (const key of Object.keys(valid.files)) valid.files[key] = ['relative/lib.so'];
  writeFileSync(cache, JSON.stringify(valid));
  const c = counting();
  new SharedLibraries(cache, c.ldd).of(a);
  assert.deepEqual(c.asked, [a]);
});

test('ldd itself: node loads libc, and a file it cannot read loads nothing', () => {
  assert.ok(lddLibraries(process.execPath).some((l) => /ld-linux|libc\.so/.test(l)));
  const text = path.join(dir, 'text');
  writeFileSync(text, 'not an ELF file');
  assert.deepEqual(lddLibraries(text), []);
});
