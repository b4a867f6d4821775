/**
 * Files past 4 GiB: a sparse file (no disk space used) whose small tensor lies beyond the 4 GiB
 * mark, which only positional reads with 64-bit positions can reach.
 */
import t from 'tap';
import { constants as bufferConstants } from 'node:buffer';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { IoError } from '../lib/errors.js';
import { openSafetensors } from '../lib/io/safetensors.js';
import { entry, rawSafetensors } from './support/safetensors-bytes.js';

const BIG = 4_300_000_000; // > 2^32 bytes
const SMALL = new Float32Array([1.5, -2, 3.25, 1e-3]);

t.test('reads a tensor that sits beyond 4 GiB in a sparse file', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'sparse.safetensors');
  const header = `{"big":${entry('U8', [BIG], 0, BIG)},"small":${entry('F32', [4], BIG, BIG + 16)}}`;
  const head = rawSafetensors(header);
  const dataStart = head.byteLength;

  const handle = await open(path, 'w');
  try {
    await handle.write(head, 0, head.byteLength, 0);
    await handle.truncate(dataStart + BIG + 16);
    await handle.write(new Uint8Array(SMALL.buffer), 0, 16, dataStart + BIG);
  } finally {
    await handle.close();
  }
  const { size, blocks } = await stat(path);
  t.equal(size, dataStart + BIG + 16);
  t.ok(blocks * 512 < 1 << 20, 'the file is sparse (uses almost no disk)');

  const file = await openSafetensors(path);
  t.teardown(() => file.close());
  t.equal(file.fileByteLength, size);
  t.same(file.tensors.map((x) => x.name), ['big', 'small']);
  t.equal(file.info('small').byteOffset, dataStart + BIG);
  t.ok(file.info('small').byteOffset > 2 ** 32, 'the small tensor starts past 4 GiB');

  const small = await file.readTensor('small');
  t.same(small.shape, [4]);
  t.same(Array.from(new Float32Array(small.data.buffer)), Array.from(SMALL));

  if (BIG > bufferConstants.MAX_LENGTH) {
    const error = await file.readTensor('big').catch((e: unknown) => e);
    t.type(error, IoError, 'a tensor larger than a Buffer can hold is a clear IoError');
    t.match((error as Error).message, /could not read tensor "big" from '.*sparse\.safetensors': the tensor is 4300000000 bytes: expected at most \d+ bytes, the largest buffer/);
  } else {
    t.comment(`Buffer max length ${bufferConstants.MAX_LENGTH} holds the big tensor; not reading 4.3 GB`);
  }
});
