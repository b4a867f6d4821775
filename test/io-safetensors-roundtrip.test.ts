import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgumentError, IoError } from '../lib/errors.js';
import {
  SAFETENSORS_DTYPES,
  dtypeByteSize,
  openSafetensors,
  parseSafetensors,
  serializeSafetensors,
  writeSafetensors,
  type SafetensorsDtype,
  type SafetensorsTensorInput,
} from '../lib/io/safetensors.js';
import { patternBytes } from './support/safetensors-bytes.js';

const EXPECTED_SIZES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function tensor(name: string, dtype: SafetensorsDtype, shape: number[], seed = 1): SafetensorsTensorInput {
  return { name, dtype, shape, data: patternBytes(dtypeByteSize(dtype) * numel(shape), seed) };
}

/** Every dtype in three shapes: regular, scalar and zero-size. */
function everyDtype(): SafetensorsTensorInput[] {
  const tensors: SafetensorsTensorInput[] = [];
  SAFETENSORS_DTYPES.forEach((dtype, i) => {
    tensors.push(tensor(`${dtype}.matrix`, dtype, [3, i + 1], i));
    tensors.push(tensor(`${dtype}.scalar`, dtype, [], i + 50));
    tensors.push(tensor(`${dtype}.empty`, dtype, [0, 4], i));
  });
  return tensors;
}

t.test('dtype table', async (t) => {
  t.same([...SAFETENSORS_DTYPES].sort(), Object.keys(EXPECTED_SIZES).sort());
  for (const dtype of SAFETENSORS_DTYPES) t.equal(dtypeByteSize(dtype), EXPECTED_SIZES[dtype], dtype);
  t.throws(() => dtypeByteSize('F128' as SafetensorsDtype), ArgumentError);
});

t.test('every dtype round-trips through a file, byte-exact', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'all.safetensors');
  const input = everyDtype();
  const metadata = { format: 'pt', note: 'ünïcödé ✓', empty: '', '__proto__': 'plain key' };
  await writeSafetensors(path, input, metadata);

  const fileBytes = new Uint8Array(await readFile(path));
  t.same(fileBytes, serializeSafetensors(input, metadata), 'file writer and serializer produce the same bytes');

  const file = await openSafetensors(path);
  t.teardown(() => file.close());
  t.equal(file.path, path);
  t.equal(file.fileByteLength, fileBytes.byteLength);
  t.same(Object.entries(file.metadata), Object.entries(metadata), 'metadata with the same keys, values and order');
  t.equal(Object.getPrototypeOf(file.metadata), null, 'metadata has no prototype: no key can reach Object.prototype');
  t.same(file.tensors.map((info) => info.name), input.map((x) => x.name), 'file order = given order');

  let offset = 8 + file.headerByteLength;
  for (const expected of input) {
    const info = file.info(expected.name);
    t.equal(info.dtype, expected.dtype);
    t.same(info.shape, expected.shape);
    t.equal(info.byteOffset, offset, `${expected.name} starts right after the previous tensor`);
    t.equal(info.byteLength, expected.data.byteLength);
    offset += info.byteLength;
    const read = await file.readTensor(expected.name);
    t.same(read, { name: expected.name, dtype: expected.dtype, shape: expected.shape, data: expected.data });
    t.equal(read.data.byteOffset, 0, 'readTensor data owns its buffer');
    t.same(fileBytes.subarray(info.byteOffset, info.byteOffset + info.byteLength), expected.data);
  }
  t.equal(offset, fileBytes.byteLength, 'tensors cover the data buffer to the end');

  const all = await file.readAll();
  t.same(all.map((x) => x.name), input.map((x) => x.name));
  t.same(all.map((x) => x.data), input.map((x) => x.data));

  // Re-serialising what was read gives the identical file.
  t.same(serializeSafetensors(all, file.metadata), fileBytes, 'read -> write is byte-exact');
});

t.test('in-memory parse matches, with views into the input bytes', async (t) => {
  const input = everyDtype();
  const bytes = serializeSafetensors(input, { a: 'b' });
  const parsed = parseSafetensors(bytes, 'memory');
  t.same(parsed.metadata, { a: 'b' });
  t.equal(parsed.fileByteLength, bytes.byteLength);
  t.same(parsed.tensors.map((x) => x.name), input.map((x) => x.name));
  for (const [i, info] of parsed.tensors.entries()) {
    t.equal(info.data.buffer, bytes.buffer, 'a view, not a copy');
    t.equal(info.data.byteOffset, info.byteOffset);
    t.same(info.data, input[i].data);
  }
  t.same(serializeSafetensors(parsed.tensors, parsed.metadata), bytes, 'parse -> serialize is byte-exact');
});

t.test('the data buffer starts 8-byte aligned, header padded with spaces', async (t) => {
  for (let nameLength = 1; nameLength <= 16; nameLength++) {
    const bytes = serializeSafetensors([tensor('x'.repeat(nameLength), 'F32', [2])]);
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    t.equal((8 + headerLength) % 8, 0, `name length ${nameLength}: data starts at ${8 + headerLength}`);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
    t.match(text, /^\{.*\} *$/, 'JSON followed only by spaces');
    t.ok(text.length - text.trimEnd().length < 8, 'less than 8 bytes of padding');
    t.same(parseSafetensors(bytes).tensors[0].data, patternBytes(8, 1));
  }
});

t.test('no tensors and no metadata', async (t) => {
  const bytes = serializeSafetensors([]);
  t.equal(new TextDecoder().decode(bytes.subarray(8)).trimEnd(), '{}');
  const parsed = parseSafetensors(bytes);
  t.same(parsed.tensors, []);
  t.same(parsed.metadata, {});
  t.equal(bytes.byteLength % 8, 0);
});

t.test('empty metadata is omitted, typed-array views are written as their bytes', async (t) => {
  const backing = new Float32Array([9, 1, 2, 3, 9]);
  const view = backing.subarray(1, 4);
  const dataView = new DataView(new Uint8Array([0xaa, 1, 2, 3, 4, 0xbb]).buffer, 1, 4);
  const bytes = serializeSafetensors([
    { name: 'f', dtype: 'F32', shape: [3], data: view },
    { name: 'd', dtype: 'I16', shape: [2], data: dataView },
  ], {});
  t.notMatch(new TextDecoder().decode(bytes), /__metadata__/);
  const parsed = parseSafetensors(bytes);
  t.same(Array.from(new Float32Array(parsed.tensors[0].data.slice().buffer)), [1, 2, 3]);
  t.same(Array.from(parsed.tensors[1].data), [1, 2, 3, 4]);
});

t.test('a record of tensors is written in property order', async (t) => {
  const bytes = serializeSafetensors({
    b: { dtype: 'U8', shape: [1], data: new Uint8Array([2]) },
    a: { dtype: 'U8', shape: [2], data: new Uint8Array([1, 1]) },
  });
  const parsed = parseSafetensors(bytes);
  t.same(parsed.tensors.map((x) => [x.name, Array.from(x.data)]), [['b', [2]], ['a', [1, 1]]]);
});

t.test('tensor names need no escaping help from callers', async (t) => {
  const names = ['with "quotes"', 'back\\slash', 'new\nline', 'emoji 🙂', 'lone \ud800 surrogate', '__proto__', 'constructor'];
  const bytes = serializeSafetensors(names.map((name, i) => tensor(name, 'U8', [i + 1])));
  const parsed = parseSafetensors(bytes);
  t.same(parsed.tensors.map((x) => x.name), names);
});

t.test('reader: lookups, unknown names, close', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'x.safetensors');
  await writeSafetensors(path, [tensor('a', 'F16', [2, 2]), tensor('b', 'I8', [3])]);
  const file = await openSafetensors(path);
  t.ok(file.has('a'));
  t.notOk(file.has('c'));
  t.notOk(file.has('constructor'), 'no prototype keys');
  t.throws(() => file.info('c'), ArgumentError);
  t.throws(() => file.info('c'), /invalid argument 'name'.*"c"/);
  await t.rejects(file.readTensor('nope'), /"nope"/);
  await t.rejects(file.readTensor('nope'), ArgumentError);
  await file.close();
  await file.close(); // idempotent
  await t.rejects(file.readTensor('a'), IoError, 'reading after close is an IoError');
  await t.rejects(file.readTensor('a'), /closed/);
});

t.test('open: missing file and directories are IoErrors', async (t) => {
  const dir = t.testdir({ sub: {} });
  await t.rejects(openSafetensors(join(dir, 'missing.safetensors')), IoError);
  await t.rejects(openSafetensors(join(dir, 'missing.safetensors')), /could not open .*missing\.safetensors.*ENOENT/);
  await t.rejects(openSafetensors(join(dir, 'sub')), IoError);
  await t.rejects(openSafetensors(''), ArgumentError);
});
