/**
 * Scans of JSON text that `JSON.parse` does not do: duplicate keys and nesting depth.
 *
 * `JSON.parse` keeps the last of two equal keys and says nothing, so a file whose header names a
 * tensor twice would silently lose one entry. This scanner walks the text once (iteratively, so deep
 * nesting cannot overflow the stack) and reports the first object that repeats a key. It expects
 * text that `JSON.parse` already accepted; on anything else it stops without a finding.
 *
 * jsonNestingDepth measures how deeply arrays and objects nest, so a reader can refuse a header
 * nested thousands of levels deep before any recursive code (validation, error messages) sees it.
 */

/** Where a repeated key was found. */
export interface DuplicateJsonKey {
  /** The repeated key, decoded (so `"a"` and `"\u0061"` count as the same key). */
  readonly key: string;
  /**
   * Keys (object members) and indices (array elements) leading from the top-level value to the
   * object that holds the repeated key; empty when it is the top-level object.
   */
  readonly path: ReadonlyArray<string | number>;
}

interface Frame {
  readonly isObject: boolean;
  /** Keys seen so far (objects only). */
  readonly keys: Set<string> | undefined;
  /** Object: the next string is a key. */
  expectKey: boolean;
  /** Object: the last key seen; array: the current element index. */
  position: string | number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Returns the first repeated key in any object of `text`, or undefined when all keys are unique. */
export function findDuplicateJsonKey(text: string): DuplicateJsonKey | undefined {
  const stack: Frame[] = [];
  const length = text.length;
  let i = 0;
  while (i < length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = findStringEnd(text, i);
      if (end < 0) return undefined;
      const top = stack.length > 0 ? stack[stack.length - 1] : undefined;
      if (top !== undefined && top.isObject && top.expectKey) {
        const key = decodeJsonString(text, i, end);
        if (key === undefined) return undefined;
        if (top.keys!.has(key)) {
          return { key, path: stack.slice(0, -1).map((frame) => frame.position) };
        }
        top.keys!.add(key);
        top.position = key;
        top.expectKey = false;
      }
      i = end + 1;
      continue;
    }
    switch (c) {
      case 0x7b: // {
        stack.push({ isObject: true, keys: new Set(), expectKey: true, position: '' });
        break;
      case 0x5b: // [
        stack.push({ isObject: false, keys: undefined, expectKey: false, position: 0 });
        break;
      case 0x7d: // }
      case 0x5d: // ]
        stack.pop();
        break;
      case 0x2c: {
        // ,
        const top = stack[stack.length - 1];
        if (top === undefined) return undefined;
        if (top.isObject) top.expectKey = true;
        else top.position = (top.position as number) + 1;
        break;
      }
      default:
        // Whitespace, ':', numbers and literals carry no keys.
        break;
    }
    i++;
  }
  return undefined;
}

/** Index of the closing quote of the string starting at `start`, or -1 if it never closes. */
function findStringEnd(text: string, start: number): number {
  let j = start + 1;
  const length = text.length;
  while (j < length) {
    const c = text.charCodeAt(j);
    if (c === QUOTE) return j;
    j += c === BACKSLASH ? 2 : 1;
  }
  return -1;
}

function decodeJsonString(text: string, start: number, end: number): string | undefined {
  const raw = text.slice(start + 1, end);
  if (raw.indexOf('\\') < 0) return raw;
  try {
    const decoded: unknown = JSON.parse(text.slice(start, end + 1));
    return typeof decoded === 'string' ? decoded : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The deepest nesting of arrays and objects in `text` (0 for a scalar, 1 for `{}`), counting only
 * brackets outside strings; stops counting once `limit` is exceeded and returns limit + 1.
 */
export function jsonNestingDepth(text: string, limit = Number.MAX_SAFE_INTEGER): number {
  let depth = 0;
  let deepest = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = findStringEnd(text, i);
      if (end < 0) break;
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return limit + 1;
      }
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return deepest;
}
