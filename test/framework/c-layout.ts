// Checks struct layouts and constants against C headers: writes a small C program that prints sizeof and offsetof
// for every field, compiles it with the host's gcc, and returns what it printed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StructLayout } from '../../src/base/struct.js';

export interface CFacts {
  sizes: Map<string, number>;
  offsets: Map<string, number>;
  constants: Map<string, bigint>;
}

export function readCFacts(includes: string[], layouts: StructLayout<string>[], constants: string[] = [],
  prelude = ''): CFacts {
  const lines: string[] = [];
  for (const l of layouts) {
    if (!l.cType) continue;
    lines.push(`printf("size %s %zu\\n", ${JSON.stringify(l.name)}, sizeof(${l.cType}));`);
    for (const [name, f] of Object.entries(l.fields)) {
      const member = f.c ?? name;
      lines.push(`printf("off %s.%s %zu\\n", ${JSON.stringify(l.name)}, ${JSON.stringify(name)}, offsetof(${l.cType}, ${member}));`);
    }
  }
  for (const k of constants) lines.push(`printf("const %s %llu\\n", "${k}", (unsigned long long)(${k}));`);
  const src = `${includes.map((i) => `#include <${i}>`).join('\n')}
#include <stdio.h>
#include <stddef.h>
${prelude}
int main(void) {
${lines.join('\n')}
return 0;
}
`;
  const dir = mkdtempSync(path.join(tmpdir(), 'azote-layout-'));
  try {
    const c = path.join(dir, 'layout.c');
    const exe = path.join(dir, 'layout');
    writeFileSync(c, src);
    execFileSync('gcc', ['-o', exe, c], { stdio: ['ignore', 'ignore', 'inherit'] });
    const out = execFileSync(exe, { encoding: 'utf8' });
    const facts: CFacts = { sizes: new Map(), offsets: new Map(), constants: new Map() };
    for (const line of out.trim().split('\n')) {
      const [kind, key, value] = line.split(' ');
      if (!kind || !key || value === undefined) continue;
      if (kind === 'size') facts.sizes.set(key, Number(value));
      else if (kind === 'off') facts.offsets.set(key, Number(value));
      else facts.constants.set(key, BigInt(value));
    }
    return facts;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every mismatch between our layouts and the C facts, as readable lines (empty when all agree). */
export function layoutMismatches(layouts: StructLayout<string>[], facts: CFacts): string[] {
  const bad: string[] = [];
  for (const l of layouts) {
    if (!l.cType) continue;
    const size = facts.sizes.get(l.name);
    if (size !== l.size) bad.push(`${l.name}: size ${l.size}, C says ${size}`);
    for (const [name, f] of Object.entries(l.fields)) {
      const off = facts.offsets.get(`${l.name}.${name}`);
      if (off !== f.offset) bad.push(`${l.name}.${name}: offset ${f.offset}, C says ${off}`);
    }
  }
  return bad;
}
