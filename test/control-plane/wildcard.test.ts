// EC2 filter wildcards: the greedy matcher agrees with a plain dynamic-programming matcher on any pattern and value,
// keeps EC2's escapes, and refuses patterns beyond its caps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Ec2Error } from '../../src/control-plane/errors.js';
import { compileWildcard, MAX_PATTERN_LENGTH, MAX_WILDCARDS, wildcardMatches } from '../../src/control-plane/wildcard.js';

type Token = { kind: 'star' } | { kind: 'any' } | { kind: 'char'; c: string };

/** The reference: EC2's syntax read token by token, matched by the textbook table over (token, position). */
function tokens(pattern: string): Token[] {
  const chars = Array.from(pattern);
  const out: Token[] = [];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] as string;
    const next = chars[i + 1];
    if (c === '\\' && (next === '*' || next === '?' || next === '\\')) {
      out.push({ kind: 'char', c: next });
      i++;
    } else if (c === '*') out.push({ kind: 'star' });
    else if (c === '?') out.push({ kind: 'any' });
    else out.push({ kind: 'char', c });
  }
  return out;
}

function reference(pattern: string, value: string): boolean {
  const p = tokens(pattern), s = Array.from(value);
  // m[i][j]: p's first i tokens match s's first j characters.
  const m = Array.from({ length: p.length + 1 }, () => new Array<boolean>(s.length + 1).fill(false));
  (m[0] as boolean[])[0] = true;
  for (let i = 1; i <= p.length; i++) {
    const t = p[i - 1] as Token, row = m[i] as boolean[], prev = m[i - 1] as boolean[];
    for (let j = 0; j <= s.length; j++) {
      if (t.kind === 'star') row[j] = (prev[j] ?? false) || (j > 0 && (row[j - 1] ?? false));
      else row[j] = j > 0 && (prev[j - 1] ?? false) && (t.kind === 'any' || t.c === s[j - 1]);
    }
  }
  return (m[p.length] as boolean[])[s.length] ?? false;
}

const matches = (pattern: string, value: string): boolean => wildcardMatches(compileWildcard(pattern), value);

test('wildcards: * any run, ? one character, everything else literal, the whole value', () => {
  for (const [pattern, value, expected] of [
    ['web', 'web', true], ['web', 'web1', false], ['web', 'we', false], ['', '', true], ['', 'a', false],
    ['*', '', true], ['*', 'anything', true], ['web*', 'web-1', true], ['*-1', 'web-1', true], ['*-1', 'web-2', false],
    ['w?b', 'wab', true], ['w?b', 'wb', false], ['i-????????', 'i-0123abcd', true], ['*a*a*', 'aa', true], ['*a*a*', 'a', false],
    ['a*b*c', 'abc', true], ['a*b*c', 'acb', false], ['ab*ba', 'aba', false], ['.*', 'x', false], ['.*', '.xyz', true],
    ['[a]', '[a]', true], ['(x|y)+', '(x|y)+', true], ['?', '\u{1F600}', true], ['a?c', 'a\u{1F600}c', true],
  ] as const) {
    assert.equal(matches(pattern, value), expected, `${pattern} on ${value}`);
  }
});

test('wildcards: a backslash makes *, ? and itself literal, as in EC2 (\\*amazon\\?\\\\ is the text *amazon?\\)', () => {
  assert.equal(matches('\\*amazon\\?\\\\', '*amazon?\\'), true);
  assert.equal(matches('\\*amazon\\?\\\\', 'xamazonx\\'), false);
  assert.equal(matches('a\\b', 'a\\b'), true, 'a backslash before another character is itself');
  assert.equal(matches('a\\', 'a\\'), true, 'a backslash at the end is itself');
});

test('wildcards: the backtracking case answers at once', () => {
  const name = 'a'.repeat(255);
  assert.equal(matches('*a*a*a*a*b', name), false);
  assert.equal(matches(`${'*a'.repeat(16)}*b`, name), false);
  assert.equal(matches(`${'*?'.repeat(16)}`, name), true);
});

test('wildcards: a value too long or with too many wildcards is refused with InvalidParameterValue', () => {
  assert.doesNotThrow(() => compileWildcard('x'.repeat(MAX_PATTERN_LENGTH)));
  assert.doesNotThrow(() => compileWildcard('*'.repeat(MAX_WILDCARDS)));
  assert.doesNotThrow(() => compileWildcard('\\*'.repeat(MAX_WILDCARDS + 1)), 'escaped stars are not wildcards');
  const refused = (e: unknown): boolean => e instanceof Ec2Error && e.code === 'InvalidParameterValue' && /at most/.test(e.message);
  assert.throws(() => compileWildcard('x'.repeat(MAX_PATTERN_LENGTH + 1)), refused);
  assert.throws(() => compileWildcard('?'.repeat(MAX_WILDCARDS + 1)), refused);
  assert.throws(() => compileWildcard('*a'.repeat(MAX_WILDCARDS + 1)), refused);
});

test('wildcards: the matcher agrees with the reference on any pattern and value, and refuses exactly what exceeds the caps', () => {
  // A small alphabet so that patterns and values meet often; long patterns, mostly literal, to reach both caps.
  const ch = fc.constantFrom('a', 'b', '*', '?', '\\', '\u{1F600}');
  const text = (max: number) => fc.array(ch, { maxLength: max }).map((cs) => cs.join(''));
  const sparse = fc.oneof({ weight: 17, arbitrary: fc.constantFrom('a', 'b') }, { weight: 2, arbitrary: fc.constantFrom('*', '?') },
    { weight: 1, arbitrary: fc.constant('\\') });
  const long = fc.array(sparse, { minLength: 200, maxLength: 300 }).map((cs) => cs.join(''));
  fc.assert(fc.property(fc.oneof(text(40), long), fc.oneof(text(40), long), (pattern, value) => {
    const toks = tokens(pattern);
    const wild = toks.filter((t) => t.kind !== 'char').length;
    const over = Array.from(pattern).length > MAX_PATTERN_LENGTH || wild > MAX_WILDCARDS;
    let compiled;
    try {
      compiled = compileWildcard(pattern);
    } catch (e) {
      assert.ok(over && e instanceof Ec2Error && e.code === 'InvalidParameterValue', `refused ${JSON.stringify(pattern)}: ${String(e)}`);
      return;
    }
    assert.ok(!over, `accepted ${JSON.stringify(pattern)} beyond the caps`);
    assert.equal(wildcardMatches(compiled, value), reference(pattern, value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)}`);
  }), { numRuns: 3000 });
  // Values made from the pattern's own literal text, so that matches are common, not only mismatches.
  fc.assert(fc.property(text(12), fc.array(fc.constantFrom('a', 'b', 'ab', ''), { maxLength: 8 }), (pattern, fills) => {
    const value = tokens(pattern).map((t, i) => (t.kind === 'char' ? t.c : t.kind === 'any' ? 'a' : (fills[i % Math.max(fills.length, 1)] ?? ''))).join('');
    assert.equal(matches(pattern, value), reference(pattern, value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)}`);
    assert.equal(reference(pattern, value), true, 'the value was built to match');
  }), { numRuns: 2000 });
});
