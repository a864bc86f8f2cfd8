// The prctl and madvise constants the hypervisor and the cards harden themselves with match the C headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MADV_DONTDUMP, PR_SET_DUMPABLE, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, gettid, setThreadName } from '../../src/sys/libc.js';
import { readCFacts } from '../framework/c-layout.js';

test('PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, PR_SET_NAME and MADV_DONTDUMP match <sys/prctl.h> and <sys/mman.h>', () => {
  const ours: Array<[string, number]> = [['PR_SET_NO_NEW_PRIVS', PR_SET_NO_NEW_PRIVS], ['PR_SET_DUMPABLE', PR_SET_DUMPABLE], ['PR_SET_PDEATHSIG', PR_SET_PDEATHSIG], ['PR_SET_NAME', PR_SET_NAME], ['MADV_DONTDUMP', MADV_DONTDUMP]];
  const facts = readCFacts(['sys/prctl.h', 'sys/mman.h'], [], ours.map(([n]) => n)).constants;
  for (const [name, value] of ours) assert.equal(facts.get(name), BigInt(value), name);
});

test('setThreadName names the calling thread only, and refuses a name the kernel would cut', () => {
  const comm = (): string => readFileSync(`/proc/self/task/${gettid()}/comm`, 'utf8').trim();
  const before = comm();
  try {
    setThreadName('azote-test');
    assert.equal(comm(), 'azote-test');
    assert.throws(() => setThreadName('a-name-of-16-chr'), /longer than 15/);
  } finally {
    setThreadName(before);
  }
});
