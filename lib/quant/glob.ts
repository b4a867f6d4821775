/**
 * Globs on dotted module names: `*` matches any run of characters within one segment (no '.'),
 * `?` one character other than '.', `**` any run of characters across segments (dots included).
 * `**.` at the start or after a dot also matches zero segments, and `.**` at the end matches the
 * name itself: `**.attn` matches `attn` and `a.b.attn`; `blocks.**` matches `blocks` and `blocks.0.x`.
 */
import { ArgumentError } from '../errors.js';

const cache = new Map<string, RegExp>();

function escape(c: string): string {
  return /[\\^$.|+()[\]{}*?]/.test(c) ? `\\${c}` : c;
}

/** The anchored regular expression of a glob. */
export function globToRegExp(pattern: string): RegExp {
  if (typeof pattern !== 'string') throw new ArgumentError('pattern', 'a string', pattern);
  const hit = cache.get(pattern);
  if (hit !== undefined) return hit;
  let re = '';
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === '*' && pattern[i + 1] === '*') {
      let j = i + 2;
      while (pattern[j] === '*') j++;
      const atSegmentStart = i === 0 || pattern[i - 1] === '.';
      if (atSegmentStart && pattern[j] === '.') {
        re += '(?:.*\\.)?'; // `**.`: zero or more leading segments
        i = j + 1;
      } else if (atSegmentStart && i > 0 && j === pattern.length) {
        re = re.slice(0, -2) + '(?:\\..*)?'; // `.**` at the end: the name itself or anything below it
        i = j;
      } else {
        re += '.*';
        i = j;
      }
    } else if (c === '*') {
      re += '[^.]*';
      i++;
    } else if (c === '?') {
      re += '[^.]';
      i++;
    } else {
      re += escape(c);
      i++;
    }
  }
  const out = new RegExp(`^${re}$`, 's');
  if (cache.size > 1024) cache.clear();
  cache.set(pattern, out);
  return out;
}

/** Whether a dotted name matches a glob (the whole name must match). */
export function matchGlob(pattern: string, name: string): boolean {
  return globToRegExp(pattern).test(name);
}

/** The first pattern that matches the name, or undefined. */
export function firstMatch(patterns: readonly string[], name: string): string | undefined {
  for (const p of patterns) if (matchGlob(p, name)) return p;
  return undefined;
}
