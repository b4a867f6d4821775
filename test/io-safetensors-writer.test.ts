import t from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgumentError, IoError } from '../lib/errors.js';
import {
  SAFETENSORS_MAX_HEADER_BYTES,
  parseSafetensors,
  serializeSafetensors,
  writeSafetensors,
  type SafetensorsTensorsInput,
} from '../lib/io/safetensors.js';

const good = () => ({ name: 'w', dtype: 'F32' as const, shape: [2], data: new Float32Array([1, 2]) });

/** Bad inputs, the argument their ArgumentError must name, and a pattern for the message. */
const BAD_INPUTS: Array<[string, () => [unknown, unknown?], string, RegExp]> = [
  ['tensors is a string', () => ['nope'], 'tensors', /expected an array .* or a record/],
  ['tensors is null', () => [null], 'tensors', /got null/],
  ['entry is null', () => [[null]], 'tensors[0]', /expected an object with name, dtype, shape and data, got null/],
  ['name missing', () => [[{ ...good(), name: undefined }]], 'tensors[0].name', /a non-empty string, got undefined/],
  ['name empty', () => [[{ ...good(), name: '' }]], 'tensors[0].name', /a non-empty string/],
  ['name reserved', () => [[{ ...good(), name: '__metadata__' }]], 'tensors[0].name', /reserved for metadata/],
  ['duplicate names', () => [[good(), good()]], 'tensors[1].name', /not used by another tensor, got "w"/],
  ['unknown dtype', () => [[{ ...good(), dtype: 'F128' }]], 'tensors[0].dtype', /one of F64, F32, .*got "F128"/],
  ['shape not an array', () => [[{ ...good(), shape: 2 }]], 'tensors[0].shape', /array of non-negative safe integers, got 2/],
  ['negative dimension', () => [[{ ...good(), shape: [-2] }]], 'tensors[0].shape', /got \[-2\]/],
  ['fractional dimension', () => [[{ ...good(), shape: [0.5, 4] }]], 'tensors[0].shape', /got \[0.5, 4\]/],
  ['data is a plain array', () => [[{ ...good(), data: [1, 2] }]], 'tensors[0].data', /Uint8Array or other ArrayBufferView/],
  ['data too short', () => [[{ ...good(), shape: [3] }]], 'tensors[0].data', /expected 12 bytes \(F32 x 3 elements of shape \[3\]\), got Float32Array\(8 bytes\)/],
  ['data too long', () => [[{ ...good(), shape: [1] }]], 'tensors[0].data', /expected 4 bytes/],
  ['record entry bad', () => [{ a: { dtype: 'U8', shape: [2], data: new Uint8Array(1) } }], 'tensors["a"].data', /expected 2 bytes/],
  ['metadata not an object', () => [[good()], 'meta'], 'metadata', /an object of string values, got "meta"/],
  ['metadata array', () => [[good()], ['a']], 'metadata', /an object of string values/],
  ['metadata value not a string', () => [[good()], { a: 'ok', n: 3 }], 'metadata["n"]', /a string, got 3/],
];

t.test('invalid input: ArgumentError naming the argument, nothing written', async (t) => {
  for (const [label, make, argument, pattern] of BAD_INPUTS) {
    const [tensors, metadata] = make();
    const call = () => serializeSafetensors(tensors as SafetensorsTensorsInput, metadata as Record<string, string>);
    let error: unknown;
    try {
      call();
    } catch (e) {
      error = e;
    }
    t.type(error, ArgumentError, `${label}: serialize throws ArgumentError`);
    t.equal((error as ArgumentError).argument, argument, `${label}: names ${argument}`);
    t.match((error as Error).message, pattern, `${label}: message`);

    const dir = t.testdir({ 'model.safetensors': 'existing' });
    const path = join(dir, 'model.safetensors');
    await t.rejects(writeSafetensors(path, tensors as SafetensorsTensorsInput, metadata as Record<string, string>), ArgumentError, `${label}: write rejects`);
    t.equal(await readFile(path, 'utf8'), 'existing', `${label}: existing file untouched`);
    t.same(await readdir(dir), ['model.safetensors'], `${label}: no temporary file`);
  }
});

t.test('path must be a non-empty string', async (t) => {
  await t.rejects(writeSafetensors('', [good()]), ArgumentError);
  // @ts-expect-error deliberately wrong type
  await t.rejects(writeSafetensors(undefined, [good()]), ArgumentError);
});

t.test('a header over the size limit is refused at write time', async (t) => {
  const metadata = { big: 'x'.repeat(SAFETENSORS_MAX_HEADER_BYTES) };
  t.throws(() => serializeSafetensors([], metadata), ArgumentError);
  t.throws(() => serializeSafetensors([], metadata), /a header of at most 104857600 bytes/);
});

t.test('a write that fails after the temporary file exists leaves the old file and no temp file', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'model.safetensors');
  const oldBytes = serializeSafetensors([good()], { version: 'old' });
  await writeSafetensors(path, [good()], { version: 'old' });

  // The layout is made synchronously; detaching the second tensor's buffer right after the call
  // starts makes the writer fail once it reaches that tensor, after the header was written.
  const big = new Uint8Array(1 << 20).fill(7);
  const promise = writeSafetensors(path, [good(), { name: 'big', dtype: 'U8', shape: [big.byteLength], data: big }], { version: 'new' });
  structuredClone(big.buffer, { transfer: [big.buffer] });
  const error = await promise.catch((e: unknown) => e);
  t.type(error, ArgumentError);
  t.match((error as Error).message, /tensors\[1\]\.data.*detached or resized/);

  t.same(new Uint8Array(await readFile(path)), oldBytes, 'existing file byte-identical');
  t.same(await readdir(dir), ['model.safetensors'], 'no temporary file behind');
  t.same(parseSafetensors(new Uint8Array(await readFile(path))).metadata, { version: 'old' });
});

t.test('the serializer notices a detached buffer too', async (t) => {
  const data = new Uint8Array(4);
  const tensors = [{ name: 'a', dtype: 'U8' as const, shape: [4], data }];
  structuredClone(data.buffer, { transfer: [data.buffer] });
  // Detached before the call: the length check against the shape catches it as wrong data.
  t.throws(() => serializeSafetensors(tensors), ArgumentError);
});

t.test('writing into a missing directory or over a directory is an IoError', async (t) => {
  const dir = t.testdir({ taken: { 'keep.txt': 'keep' } });
  await t.rejects(writeSafetensors(join(dir, 'no', 'such', 'dir.safetensors'), [good()]), IoError);
  await t.rejects(writeSafetensors(join(dir, 'taken'), [good()]), IoError);
  t.same((await readdir(dir)).sort(), ['taken']);
  t.equal(await readFile(join(dir, 'taken', 'keep.txt'), 'utf8'), 'keep');
});

t.test('overwriting replaces the content completely', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'm.safetensors');
  const big = new Uint8Array(4096).fill(1);
  await writeSafetensors(path, [{ name: 'big', dtype: 'U8', shape: [4096], data: big }]);
  await writeSafetensors(path, [good()]);
  const bytes = new Uint8Array(await readFile(path));
  t.same(bytes, serializeSafetensors([good()]), 'no leftover bytes from the longer old file');
});
