/**
 * Every validation rule, each with a hand-built file, checked through both the in-memory parser and
 * the file reader (they must give the same FileFormatError).
 */
import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileFormatError } from '../lib/errors.js';
import { SAFETENSORS_MAX_HEADER_BYTES, openSafetensors, parseSafetensors } from '../lib/io/safetensors.js';
import { entry, patternBytes, rawSafetensors } from './support/safetensors-bytes.js';

let fileCounter = 0;

/** Asserts both readers reject `bytes` with the same FileFormatError, whose message matches `pattern`. */
async function rejects(t: Test, bytes: Uint8Array, pattern: RegExp, label?: string): Promise<void> {
  const path = join(t.testdirName, `case-${fileCounter++}.safetensors`);
  let parseError: unknown;
  try {
    parseSafetensors(bytes, path);
  } catch (error) {
    parseError = error;
  }
  t.type(parseError, FileFormatError, `${label ?? pattern}: parse throws FileFormatError`);
  if (!(parseError instanceof FileFormatError)) return;
  t.match(parseError.message, pattern, `${label ?? pattern}: message`);
  t.equal(parseError.file, path);
  t.ok(parseError.message.startsWith(`malformed file '${path}': `), 'message names the file');
  t.notMatch(parseError.message, /\n/, 'one line');

  await writeFile(path, bytes);
  let openError: unknown;
  try {
    const file = await openSafetensors(path);
    await file.close();
  } catch (error) {
    openError = error;
  }
  t.type(openError, FileFormatError, 'open rejects with FileFormatError');
  t.equal((openError as Error).message, parseError.message, 'file reader gives the same message');
}

/** Asserts both readers accept `bytes`; returns the parsed result. */
async function accepts(t: Test, bytes: Uint8Array) {
  const parsed = parseSafetensors(bytes);
  const path = join(t.testdirName, `ok-${fileCounter++}.safetensors`);
  await writeFile(path, bytes);
  const file = await openSafetensors(path);
  t.same(file.tensors, parsed.tensors.map(({ data: _data, ...info }) => ({ ...info })));
  await file.close();
  return parsed;
}

const F32_2 = (begin: number) => entry('F32', [2], begin, begin + 8);

t.beforeEach((t) => {
  t.testdir();
});

t.test('prefix: file too short', async (t) => {
  await rejects(t, new Uint8Array(0), /file is 0 bytes long: expected at least 8 bytes/);
  await rejects(t, new Uint8Array(7), /file is 7 bytes long/);
});

t.test('prefix: header length beyond the cap or the file', async (t) => {
  await rejects(t, rawSafetensors('{}', 0, { headerLength: BigInt(SAFETENSORS_MAX_HEADER_BYTES) + 1n }), /header length field says 104857601 bytes: expected at most 104857600/);
  await rejects(t, rawSafetensors('{}', 0, { headerLength: 0xffffffffffffffffn }), /header length field says 18446744073709551615 bytes/);
  await rejects(t, rawSafetensors('{}', 0, { headerLength: 3n }), /header length field says 3 bytes but only 2 bytes follow/);
  await rejects(t, rawSafetensors('{}', 0, { headerLength: BigInt(SAFETENSORS_MAX_HEADER_BYTES) }), /only 2 bytes follow/);
  await rejects(t, rawSafetensors('', 0), /header is not valid JSON/, 'zero-length header');
});

t.test('header: encoding, JSON syntax, top-level type', async (t) => {
  await rejects(t, rawSafetensors(new Uint8Array([0x7b, 0xff, 0x7d])), /header is not valid UTF-8/);
  await rejects(t, rawSafetensors(new Uint8Array([0x7b, 0x22, 0xc3, 0x22, 0x3a, 0x31, 0x7d])), /not valid UTF-8/, 'truncated sequence');
  await rejects(t, rawSafetensors('\ufeff{}'), /header is not valid JSON/, 'byte order mark');
  await rejects(t, rawSafetensors('{"a":'), /header is not valid JSON/);
  await rejects(t, rawSafetensors('{} x'), /header is not valid JSON/);
  await rejects(t, rawSafetensors('{}\0\0'), /header is not valid JSON/, 'NUL padding');
  await rejects(t, rawSafetensors('{"a\nb":1,'), /header is not valid JSON .*: expected a JSON object$/, 'one line even if the text had newlines');
  await rejects(t, rawSafetensors('[]'), /header is \[\]: expected a JSON object/);
  await rejects(t, rawSafetensors('null'), /header is null: expected a JSON object/);
  await rejects(t, rawSafetensors('"{}"'), /header is "\{\}": expected a JSON object/);
  await rejects(t, rawSafetensors('42'), /header is 42: expected a JSON object/);
});

t.test('header: duplicate keys', async (t) => {
  await rejects(t, rawSafetensors(`{"w":${F32_2(0)},"w":${F32_2(0)}}`, 8), /header names tensor "w" twice/);
  await rejects(t, rawSafetensors(`{"w":${F32_2(0)},"\\u0077":${F32_2(0)}}`, 8), /names tensor "w" twice/, 'escaped spelling');
  await rejects(t, rawSafetensors(`{"__metadata__":{},"__metadata__":{}}`), /header has the key "__metadata__" twice/);
  await rejects(t, rawSafetensors(`{"__metadata__":{"a":"1","a":"2"}}`), /__metadata__ has the key "a" twice/);
  await rejects(t, rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"dtype":"F32","data_offsets":[0,8]}}`, 8), /tensor "w" has the field "dtype" twice/);
});

t.test('metadata must be an object of strings', async (t) => {
  await rejects(t, rawSafetensors('{"__metadata__":"x"}'), /__metadata__ is "x": expected an object of string values/);
  await rejects(t, rawSafetensors('{"__metadata__":null}'), /__metadata__ is null/);
  await rejects(t, rawSafetensors('{"__metadata__":["a"]}'), /__metadata__ is \["a"\]/);
  await rejects(t, rawSafetensors('{"__metadata__":{"a":"ok","n":1}}'), /__metadata__ key "n" has value 1: expected a string/);
  await rejects(t, rawSafetensors('{"__metadata__":{"o":{}}}'), /__metadata__ key "o" has value an object: expected a string/);
});

t.test('tensor entries: type, names, fields', async (t) => {
  await rejects(t, rawSafetensors('{"w":5}'), /tensor "w": entry is 5: expected an object with fields dtype, shape, data_offsets/);
  await rejects(t, rawSafetensors('{"w":[]}'), /tensor "w": entry is \[\]/);
  await rejects(t, rawSafetensors('{"w":null}'), /tensor "w": entry is null/);
  await rejects(t, rawSafetensors(`{"":${F32_2(0)}}`, 8), /a tensor name is the empty string: expected non-empty tensor names/);
  await rejects(t, rawSafetensors('{"w":{"shape":[2],"data_offsets":[0,8]}}', 8), /tensor "w": missing field "dtype"/);
  await rejects(t, rawSafetensors('{"w":{"dtype":"F32","data_offsets":[0,8]}}', 8), /tensor "w": missing field "shape"/);
  await rejects(t, rawSafetensors('{"w":{"dtype":"F32","shape":[2]}}', 8), /tensor "w": missing field "data_offsets"/);
  await rejects(t, rawSafetensors('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}', 8), /tensor "w": unexpected field "extra": expected only fields dtype, shape, data_offsets/);
});

t.test('tensor entries: dtype', async (t) => {
  await rejects(t, rawSafetensors(`{"w":${entry('F128', [2], 0, 8)}}`, 8), /tensor "w": unknown dtype "F128": expected one of F64, F32, F16, BF16/);
  await rejects(t, rawSafetensors(`{"w":${entry('f32', [2], 0, 8)}}`, 8), /unknown dtype "f32"/, 'case-sensitive');
  await rejects(t, rawSafetensors('{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}', 8), /unknown dtype 4/);
  await rejects(t, rawSafetensors('{"w":{"dtype":"toString","shape":[2],"data_offsets":[0,8]}}', 8), /unknown dtype "toString"/, 'no prototype lookups');
});

t.test('tensor entries: shape', async (t) => {
  const bad = ['"2"', '[-1]', '[1.5]', '["2"]', '[[2]]', '[null]', '[9007199254740992]', '[1e400]', '{}'];
  for (const shape of bad) {
    await rejects(t, rawSafetensors(`{"w":{"dtype":"U8","shape":${shape},"data_offsets":[0,0]}}`), /tensor "w": shape is .*: expected an array of non-negative safe integers/, `shape ${shape}`);
  }
});

t.test('tensor entries: data_offsets', async (t) => {
  const bad = ['[0]', '[0,8,8]', '"0,8"', '[-1,7]', '[0,8.5]', '[8,0]', '[0,1e300]', '[null,8]', '{"0":0,"1":8}'];
  for (const offsets of bad) {
    await rejects(t, rawSafetensors(`{"w":{"dtype":"F32","shape":[2],"data_offsets":${offsets}}}`, 8), /tensor "w": data_offsets is .*: expected \[begin, end\] with non-negative safe integers and begin <= end/, `data_offsets ${offsets}`);
  }
  await rejects(t, rawSafetensors(`{"w":${F32_2(0)}}`, 7), /tensor "w": data_offsets end 8 is beyond the data buffer: expected at most 7/);
  await rejects(t, rawSafetensors(`{"w":${entry('F32', [2], 9007199254740980, 9007199254740988)}}`, 8), /end 9007199254740988 is beyond the data buffer/);
});

t.test('tensor entries: byte length must match dtype and shape', async (t) => {
  await rejects(t, rawSafetensors(`{"w":${entry('F32', [3], 0, 8)}}`, 8), /tensor "w": data_offsets \[0, 8\] span 8 bytes: expected 12 bytes \(F32 x 3 elements of shape \[3\]\)/);
  await rejects(t, rawSafetensors(`{"w":${entry('F16', [], 0, 1)}}`, 1), /span 1 bytes: expected 2 bytes/, 'scalar');
  await rejects(t, rawSafetensors(`{"w":${entry('U8', [0], 0, 1)}}`, 1), /span 1 bytes: expected 0 bytes/, 'zero-size');
  // 2^52 * 2^52 * 4 overflows doubles' integer range; it must not wrap around to a match.
  await rejects(t, rawSafetensors(`{"w":${entry('F32', [4503599627370496, 4503599627370496], 0, 0)}}`), /expected 81129638414606681695789005144064 bytes/, 'huge shape');
  await rejects(t, rawSafetensors(`{"w":${entry('U8', [4294967296, 4294967296], 0, 0)}}`), /span 0 bytes: expected 18446744073709551616 bytes/, 'u64 wrap-around');
});

t.test('layout: overlaps, gaps, uncovered bytes', async (t) => {
  await rejects(t, rawSafetensors(`{"a":${F32_2(0)},"b":${F32_2(4)}}`, 12), /tensor "b" \(data_offsets \[4, 12\]\) overlaps tensor "a" \(data_offsets \[0, 8\]\)/);
  await rejects(t, rawSafetensors(`{"a":${F32_2(0)},"b":${F32_2(0)}}`, 8), /overlaps tensor "a"/, 'identical ranges');
  await rejects(t, rawSafetensors(`{"a":${F32_2(0)},"z":${entry('U8', [0], 4, 4)}}`, 8), /tensor "z" \(data_offsets \[4, 4\]\) overlaps tensor "a"/, 'zero-size tensor inside another');
  await rejects(t, rawSafetensors(`{"a":${entry('F32', [1], 0, 4)},"b":${entry('F32', [1], 8, 12)}}`, 12), /gap of 4 bytes before tensor "b" \(data_offsets \[8, 12\]\)/);
  await rejects(t, rawSafetensors(`{"a":${entry('F32', [1], 4, 8)}}`, 8), /gap of 4 bytes before tensor "a"/, 'gap at the start');
  await rejects(t, rawSafetensors(`{"a":${entry('F32', [1], 0, 4)}}`, 8), /4 trailing bytes of the data buffer are not covered by any tensor/);
  await rejects(t, rawSafetensors('{}', 3), /3 trailing bytes of the data buffer are not covered/, 'no tensors');
  await rejects(t, rawSafetensors('{"__metadata__":{}}', 1), /1 trailing bytes/);
});

t.test('accepted edge cases', async (t) => {
  // Header order differs from data order; zero-size tensors at the start, middle and end; padding.
  const header =
    `{"c":${entry('U8', [3], 12, 15)},"e0":${entry('I64', [0], 0, 0)},` +
    `"a":${entry('F32', [3], 0, 12)},"e1":${entry('BOOL', [2, 0], 12, 12)},"e2":${entry('F64', [0], 15, 15)},` +
    `"__metadata__":{"k":"v"}}     `;
  const parsed = await accepts(t, rawSafetensors(header, 15));
  t.same(parsed.tensors.map((x) => x.name), ['e0', 'a', 'e1', 'c', 'e2'], 'sorted by data offsets');
  t.same(parsed.tensors.map((x) => x.byteLength), [0, 12, 0, 3, 0]);
  t.same(Array.from(parsed.tensors[3].data), Array.from(patternBytes(15).subarray(12)));
  t.same(parsed.metadata, { k: 'v' });

  const whitespace = await accepts(t, rawSafetensors(` \n\t{"s":${entry('BF16', [], 0, 2)}}\r\n `, 2));
  t.same(whitespace.tensors[0].shape, [], 'JSON whitespace around the object');
  const negativeZero = await accepts(t, rawSafetensors(`{"s":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}`));
  t.ok(Object.is(negativeZero.tensors[0].shape[0], 0), '-0 dimension normalised to 0');
  const empty = await accepts(t, rawSafetensors('{}'));
  t.same(empty.tensors, []);
});

t.test('keys that name Object.prototype members are ordinary tensor and metadata names (issue 18)', async (t) => {
  const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];
  const header = '{' + names.map((name, i) => `${JSON.stringify(name)}:${entry('F32', [1], 4 * i, 4 * i + 4)}`).join(',') +
    ',"__metadata__":{"__proto__":"p","constructor":"c"}}';
  const bytes = rawSafetensors(header, 4 * names.length);
  const parsed = parseSafetensors(bytes, 'proto.safetensors');
  t.same(parsed.tensors.map((x) => x.name), names, 'every tensor kept, in offset order');
  t.same(Object.entries(parsed.metadata), [['__proto__', 'p'], ['constructor', 'c']]);
  t.equal(Object.getPrototypeOf(parsed.metadata), null);
  t.equal(({} as Record<string, unknown>).p, undefined, 'Object.prototype untouched');
  const path = join(t.testdirName, 'proto.safetensors');
  await writeFile(path, bytes);
  const file = await openSafetensors(path);
  t.teardown(() => file.close());
  t.same(file.tensors.map((x) => x.name), names);
  t.same([...(await file.readTensor('__proto__')).data], [...bytes.subarray(bytes.byteLength - 20, bytes.byteLength - 16)]);
  // A missing field is missing, even when its name is an Object.prototype member.
  const noMeta = parseSafetensors(rawSafetensors(`{"a":${entry('F32', [1], 0, 4)}}`, 4));
  t.equal(noMeta.metadata.constructor, undefined, "metadata without 'constructor' reads undefined");
  await rejects(t, rawSafetensors(`{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"toString":1}}`, 4), /tensor "__proto__": unexpected field "toString"/);
  await rejects(t, rawSafetensors(`{"__proto__":{"dtype":"F32","shape":[1],"constructor":[0,4]}}`, 4), /tensor "__proto__": missing field "data_offsets"/);
});

t.test('a header nested deeper than the limit is a FileFormatError, not a stack overflow (issue 18)', async (t) => {
  for (const depth of [65, 1000, 100_000]) {
    const deep = `{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
    await rejects(t, rawSafetensors(deep), /^malformed file '.*': header nests arrays or objects more than 64 levels deep: expected at most 64 \(a valid header nests 3\)$/, `depth ${depth}`);
  }
  const objects = `{"a":${'{"b":'.repeat(200_000)}1${'}'.repeat(200_000)}}`;
  await rejects(t, rawSafetensors(objects), /more than 64 levels deep/, 'nested objects');
  // Brackets inside strings do not count; a header at the limit gets the ordinary messages.
  await rejects(t, rawSafetensors(`{"[[[[${'['.repeat(100)}":${entry('F32', [1], 0, 4)}}`, 0), /data_offsets end 4 is beyond the data buffer/);
  await rejects(t, rawSafetensors(`{"a":${'['.repeat(63)}${']'.repeat(63)}}`), /tensor "a": entry is \[\[\[\[\.\.\.\]\]\]\]: expected an object/, 'depth 64: a clear message with a bounded description');
});
