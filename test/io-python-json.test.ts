// Python-flavoured JSON (lib/io/python-json.ts): reading the non-finite tokens Python writes, and
// writing what `json.dumps(value, indent=2, sort_keys=True)` writes. Expected strings are Python's
// documented repr/json output, written out by hand.
import t from 'tap';
import { parsePythonJson, pythonFloatRepr, stringifyPythonJson } from '../lib/io/python-json.js';

t.test('reads NaN, Infinity and -Infinity, which JSON.parse rejects', async (t) => {
  const value = parsePythonJson('{"a": -Infinity, "b": Infinity, "c": NaN, "d": [1, 2.5e-05], "e": null}') as Record<string, unknown>;
  t.equal(value.a, -Infinity);
  t.equal(value.b, Infinity);
  t.ok(Number.isNaN(value.c));
  t.same(value.d, [1, 2.5e-5]);
  t.equal(value.e, null);
  t.throws(() => parsePythonJson('{"a": 1,'), SyntaxError);
});

t.test("floats in Python's repr", async (t) => {
  const cases: Array<[number, string]> = [
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [2.5e-7, '2.5e-07'],
    [0.02, '0.02'],
    [1, '1.0'],
    [3, '3.0'],
    [-0.5, '-0.5'],
    [1.15, '1.15'],
    [0, '0.0'],
    [-0, '-0.0'],
    [123456789.125, '123456789.125'],
    [1e15, '1000000000000000.0'],
    [1e16, '1e+16'],
    [1.2345678901234568e17, '1.2345678901234568e+17'],
    [-Infinity, '-Infinity'],
    [Number.NaN, 'NaN'],
  ];
  for (const [value, repr] of cases) t.equal(pythonFloatRepr(value), repr, String(value));
});

t.test('json.dumps(indent=2, sort_keys=True) layout', async (t) => {
  const text = stringifyPythonJson(
    { b: [1, 2], a: 'é"\n', c: {}, d: [], z: { y: true, x: null }, shift: 3, steps: 3, lst: [0.5, 1] },
    { floatKeys: new Set(['shift', 'lst']) },
  );
  t.equal(text, [
    '{',
    '  "a": "\\u00e9\\"\\n",',
    '  "b": [',
    '    1,',
    '    2',
    '  ],',
    '  "c": {},',
    '  "d": [],',
    '  "lst": [',
    '    0.5,',
    '    1.0',
    '  ],',
    '  "shift": 3.0,',
    '  "steps": 3,',
    '  "z": {',
    '    "x": null,',
    '    "y": true',
    '  }',
    '}',
  ].join('\n'));
});
