/**
 * JSON as Python's `json` module reads and writes it, for config files written by diffusers
 * (`scheduler_config.json`, `config.json`): Python writes non-finite floats as the bare tokens
 * `NaN`, `Infinity` and `-Infinity` (diffusers' DPM-Solver config holds `-Infinity`), which
 * JSON.parse rejects. Reading uses json5, whose grammar includes those tokens; writing reproduces
 * `json.dumps(value, indent=2, sort_keys=True)` byte for byte, so a saved file diffs cleanly
 * against the one diffusers writes.
 */
import JSON5 from 'json5';

/** Parses JSON that may hold NaN / Infinity / -Infinity. Throws SyntaxError on malformed text. */
export function parsePythonJson(text: string): unknown {
  return JSON5.parse(text);
}

export interface PythonJsonOptions {
  /**
   * Keys (at any depth) whose numbers are Python floats: integral values are written `3.0`, as
   * Python writes a float, instead of `3`. Other integral numbers are written as ints.
   */
  readonly floatKeys?: ReadonlySet<string>;
}

/**
 * Formats a JSON value as Python's `json.dumps(value, indent=2, sort_keys=True)` does (without a
 * trailing newline): keys sorted, non-ASCII escaped, floats in Python's repr.
 */
export function stringifyPythonJson(value: unknown, options: PythonJsonOptions = {}): string {
  const floatKeys = options.floatKeys ?? new Set<string>();
  return format(value, '', false, floatKeys);
}

function format(value: unknown, indent: string, asFloat: boolean, floatKeys: ReadonlySet<string>): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return asFloat || !Number.isInteger(value) ? pythonFloatRepr(value) : String(value);
  if (typeof value === 'string') return pythonString(value);
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + format(v, inner, asFloat, floatKeys)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return '{}';
    const record = value as Record<string, unknown>;
    const items = keys.map((k) => `${inner}${pythonString(k)}: ${format(record[k], inner, floatKeys.has(k), floatKeys)}`);
    return `{\n${items.join(',\n')}\n${indent}}`;
  }
  throw new TypeError(`cannot write ${typeof value} as JSON`);
}

/** Python's json string: like JSON.stringify, but everything outside printable ASCII as \uXXXX. */
function pythonString(text: string): string {
  return JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * repr() of a Python float: the shortest digits that round-trip (the same digits JavaScript
 * picks), in fixed notation for decimal exponents -4..15 (always with a fractional part) and as
 * `d.ddde-XX` otherwise.
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exponentText] = x.toExponential().split('e');
  const exponent = Number(exponentText);
  const sign = mantissa.startsWith('-') ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (exponent < -4 || exponent >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
  const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
  const fraction = digits.slice(exponent + 1);
  return `${sign}${whole}.${fraction === '' ? '0' : fraction}`;
}
