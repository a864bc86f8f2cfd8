// EC2 filter values: `*` matches any run of characters, `?` any one character, and a backslash makes the `*`, `?` or
// `\` after it literal. Callers write these patterns, so they are never turned into a regular expression (a backtracking
// engine takes minutes on `*a*a*a*a*b`). A pattern is cut at its stars into pieces: the first piece must match at the
// start, the last at the end, and each one between at its leftmost place after the previous one. Leftmost is always
// right (a later place only leaves less room for what follows), so nothing is ever retried; each piece is found with a
// bit-parallel scan (shift-and), and the scans go once along the value in all: a match takes time linear in the value
// (times the longest piece's 32-bit words, at most 8 under the length cap).
import { invalid } from './errors.js';

/** The longest filter value accepted, in characters (a tag value has at most 256). */
export const MAX_PATTERN_LENGTH = 256;
/** The most wildcards (`*` and `?` together) in one filter value. */
export const MAX_WILDCARDS = 32;

/** A piece's code point that `?` stands for. */
const ANY = -1;

interface Piece {
  readonly points: readonly number[];
  /** For each code point of the piece, the bit set of its positions and those of `?`; `any` for other characters. */
  readonly masks: ReadonlyMap<number, Uint32Array>;
  readonly any: Uint32Array;
  /** The scan's state, reused (a scan runs to its end before another starts). */
  readonly state: Uint32Array;
}

export interface Wildcard {
  /** The pieces between stars; one piece means the pattern has no star and must match the whole value. */
  readonly pieces: readonly Piece[];
}

const codePoints = (s: string): number[] => Array.from(s, (c) => c.codePointAt(0) as number);

function piece(points: readonly number[]): Piece {
  const words = Math.max(1, Math.ceil(points.length / 32));
  const any = new Uint32Array(words);
  points.forEach((p, i) => { if (p === ANY) any[i >>> 5] = (any[i >>> 5] as number) | (1 << (i & 31)); });
  const masks = new Map<number, Uint32Array>();
  points.forEach((p, i) => {
    if (p === ANY) return;
    let mask = masks.get(p);
    if (!mask) masks.set(p, mask = Uint32Array.from(any));
    mask[i >>> 5] = (mask[i >>> 5] as number) | (1 << (i & 31));
  });
  return { points, masks, any, state: new Uint32Array(words) };
}

/** Parses a filter value, refusing one longer than MAX_PATTERN_LENGTH or with more than MAX_WILDCARDS wildcards. */
export function compileWildcard(pattern: string): Wildcard {
  const chars = codePoints(pattern);
  const shown = pattern.length > 64 ? `${pattern.slice(0, 64)}...` : pattern;
  if (chars.length > MAX_PATTERN_LENGTH) {
    throw invalid(`The filter value '${shown}' has ${chars.length} characters: at most ${MAX_PATTERN_LENGTH} are allowed`);
  }
  const star = 0x2a, question = 0x3f, backslash = 0x5c;
  const pieces: number[][] = [[]];
  let wildcards = 0;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i] as number;
    const current = pieces[pieces.length - 1] as number[];
    const next = chars[i + 1];
    if (c === backslash && (next === star || next === question || next === backslash)) {
      current.push(next);
      i++;
    } else if (c === star) {
      wildcards++;
      pieces.push([]);
    } else if (c === question) {
      wildcards++;
      current.push(ANY);
    } else {
      current.push(c);
    }
  }
  if (wildcards > MAX_WILDCARDS) {
    throw invalid(`The filter value '${shown}' has ${wildcards} wildcards ('*' and '?'): at most ${MAX_WILDCARDS} are allowed`);
  }
  return { pieces: pieces.map(piece) };
}

/** Whether `p` matches `s` at `at` (which leaves room for it). */
function matchesAt(s: readonly number[], at: number, p: Piece): boolean {
  for (let j = 0; j < p.points.length; j++) {
    const c = p.points[j];
    if (c !== ANY && c !== s[at + j]) return false;
  }
  return true;
}

/** Where `p` first fits whole in s[from, to), or -1: bit i of the state says that p's first i+1 characters end here. */
function find(s: readonly number[], from: number, to: number, p: Piece): number {
  const m = p.points.length;
  if (m === 0) return from;
  const { state, any } = p;
  state.fill(0);
  const top = (m - 1) >>> 5, topBit = 1 << ((m - 1) & 31);
  for (let i = from; i < to; i++) {
    const mask = p.masks.get(s[i] as number) ?? any;
    let carry = 1;
    for (let w = 0; w < state.length; w++) {
      const v = state[w] as number;
      state[w] = ((v << 1) | carry) & (mask[w] as number);
      carry = v >>> 31;
    }
    // Every occurrence is m long, so the first to end is the first to start.
    if (((state[top] as number) & topBit) !== 0) return i - m + 1;
  }
  return -1;
}

function matchesPoints(w: Wildcard, s: readonly number[]): boolean {
  const { pieces } = w;
  const first = pieces[0] as Piece;
  if (pieces.length === 1) return s.length === first.points.length && matchesAt(s, 0, first);
  const last = pieces[pieces.length - 1] as Piece;
  const end = s.length - last.points.length;
  if (end < first.points.length || !matchesAt(s, 0, first) || !matchesAt(s, end, last)) return false;
  let at = first.points.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const p = pieces[i] as Piece;
    const found = find(s, at, end, p);
    if (found < 0) return false;
    at = found + p.points.length;
  }
  return true;
}

/** Whether `value` matches any of `patterns`. */
export function anyMatches(patterns: readonly Wildcard[], value: string): boolean {
  const s = codePoints(value);
  return patterns.some((w) => matchesPoints(w, s));
}

export const wildcardMatches = (w: Wildcard, value: string): boolean => anyMatches([w], value);
