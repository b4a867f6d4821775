import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tensor, quantize, dequantize, openSafetensors, writeSafetensors, tensorFromSafetensors, tensorToSafetensors,
} from '../lib/index.js';

t.test('tensors and quantized codes round-trip through a safetensors file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svdq-bridge-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const w = Tensor.fromArray(Array.from({ length: 3 * 40 }, (_, i) => Math.cos(i) * 3), [3, 40]);
  const q = await quantize(w, 'mxfp4');
  const h = w.to('bf16');
  const file = join(dir, 'layer.safetensors');
  await writeSafetensors(file, [
    tensorToSafetensors('w.bf16', h),
    tensorToSafetensors('w.codes', q.codes),
    tensorToSafetensors('w.scales', q.scales),
  ], { scheme: 'mxfp4' });
  const f = await openSafetensors(file);
  t.teardown(() => f.close());
  t.same(f.info('w.codes').shape, [3, 32], 'packed codes stored as U8 with the last dimension halved');
  const codes = tensorFromSafetensors(await f.readTensor('w.codes'), 'fp4_e2m1');
  const scales = tensorFromSafetensors(await f.readTensor('w.scales'), 'e8m0');
  t.same(codes.shape, [3, 64]);
  const back = await dequantize({ ...q, codes, scales });
  t.same(back.toArray(), (await dequantize(q)).toArray(), 'same dequantized values after the file');
  const hb = tensorFromSafetensors(await f.readTensor('w.bf16'));
  t.equal(hb.dtype, 'bf16');
  t.same(Array.from(hb.data as Uint16Array), Array.from(h.data));
  t.throws(() => tensorFromSafetensors({ name: 'x', dtype: 'F64', shape: [1], data: new Uint8Array(8) }), { name: 'ArgumentError', argument: 'entry.dtype' });
  t.throws(() => tensorFromSafetensors({ name: 'x', dtype: 'F32', shape: [1], data: new Uint8Array(4) }, 'int4'), /U8 tensor/);
});
