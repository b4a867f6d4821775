// Quark export naming → canonical ErrorCorrectedLinear data. The files are written here by hand
// from known codes and scales, following Quark's packing (MXFP4: two E2M1 codes per byte, element 2i
// low; INT4: eight codes per int32 in the reorder order [0,2,4,6,1,3,5,7], per-group weight
// transposed to [K, N/8] with scales [K/G, N]), so the expected weights are known independently.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, dequantize, importQuarkCheckpoint, writeSafetensors, type SafetensorsTensorInput } from '../lib/index.js';

const dir = mkdtempSync(join(tmpdir(), 'svdq-quark-'));
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
const e2m1 = (c: number): number => (c & 8 ? -1 : 1) * E2M1[c & 7];
const f32 = (name: string, shape: number[], values: number[]): SafetensorsTensorInput => ({ name, dtype: 'F32', shape, data: new Uint8Array(Float32Array.from(values).buffer) });

function forwardRef(x: number[], m: number, k: number, w: number[], n: number, l1: number[], l2: number[], r: number, b: number[]): number[] {
  const y: number[] = [];
  for (let i = 0; i < m; i++) {
    const d = Array.from({ length: r }, (_, q) => { let s = 0; for (let j = 0; j < k; j++) s += x[i * k + j] * l1[q * k + j]; return s; });
    for (let o = 0; o < n; o++) {
      let s = b[o];
      for (let j = 0; j < k; j++) s += x[i * k + j] * w[o * k + j];
      for (let q = 0; q < r; q++) s += d[q] * l2[o * r + q];
      y.push(s);
    }
  }
  return y;
}

t.test('MXFP4: packed E2M1 + E8M0 scales + l1/l2 + bias', async (t) => {
  const n = 3, k = 64, r = 2;
  const code = (i: number, j: number) => (i * 7 + j) % 16;
  const expW: number[] = [];
  const packed = new Uint8Array(n * k / 2);
  const scales = new Uint8Array(n * 2);
  for (let i = 0; i < n; i++) for (let g = 0; g < 2; g++) scales[i * 2 + g] = 127 + i - 2 * g;
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) {
    expW.push(e2m1(code(i, j)) * 2 ** (scales[i * 2 + (j >> 5)] - 127));
    packed[(i * k + j) >> 1] |= (j & 1) === 0 ? code(i, j) : code(i, j) << 4;
  }
  const l1 = Array.from({ length: r * k }, (_, i) => ((i % 9) - 4) / 16);
  const l2 = Array.from({ length: n * r }, (_, i) => (i - 2) / 8);
  const b = [0.5, -1, 2];
  const file = join(dir, 'mx.safetensors');
  await writeSafetensors(file, [
    { name: 'blocks.0.proj.layer.weight', dtype: 'U8', shape: [n, k / 2], data: packed },
    { name: 'blocks.0.proj.layer.weight_scale', dtype: 'U8', shape: [n, 2], data: scales },
    f32('blocks.0.proj.layer.bias', [n], b),
    f32('blocks.0.proj.correction.l1.weight', [r, k], l1),
    f32('blocks.0.proj.correction.l2.weight', [n, r], l2),
  ]);
  const layers = await importQuarkCheckpoint(file);
  t.equal(layers.length, 1);
  const L = layers[0];
  t.equal(L.name, 'blocks.0.proj');
  t.equal(L.source, 'mxfp4');
  t.equal(L.layer.scheme, 'mxfp4');
  t.equal(L.layer.rank, r);
  t.same(Array.from((await dequantize(L.layer.weight)).data), expW, 'dequantized weights are the hand-computed values');
  t.same(Array.from(L.layer.lDown!.data), l1);
  t.same(Array.from(L.layer.lUp!.data), l2);
  t.same(Array.from(L.layer.bias!.data), b);
});

function int4Words(values: number[][]): Int32Array {
  // Quark's Pack_4_bits (reorder): rows of `values`, packed along the row, 8 per int32.
  const rows = values.length, cols = values[0].length, words = Math.ceil(cols / 8);
  const order = [0, 2, 4, 6, 1, 3, 5, 7];
  const out = new Int32Array(rows * words);
  for (let a = 0; a < rows; a++) for (let c = 0; c < words; c++) for (let i = 0; i < 8; i++) {
    const idx = c * 8 + order[i];
    if (idx < cols) out[a * words + c] |= (values[a][idx] & 0xf) << (4 * i);
  }
  return out;
}

t.test('INT4 per-group (G = 64, transposed weight and scale): dequantized weights and forward', async (t) => {
  const n = 16, k = 128, r = 3;
  const code = (i: number, j: number) => ((i * 3 + j * 5) % 16) - 8;
  const scale = (g: number, i: number) => (i + 1) * 0.01 * (g + 1);
  const transposed = Array.from({ length: k }, (_, j) => Array.from({ length: n }, (_, i) => code(i, j)));
  const words = int4Words(transposed);
  const sc: number[] = [];
  for (let g = 0; g < k / 64; g++) for (let i = 0; i < n; i++) sc.push(scale(g, i));
  const expW: number[] = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) expW.push(Math.fround(code(i, j) * Math.fround(scale(j >> 6, i))));
  const l1 = Array.from({ length: r * k }, (_, i) => ((i % 7) - 3) / 32);
  const l2 = Array.from({ length: n * r }, (_, i) => ((i % 5) - 2) / 4);
  const b = Array.from({ length: n }, (_, i) => i / 10);
  const file = join(dir, 'int4.safetensors');
  await writeSafetensors(file, [
    { name: 'fc.layer.weight', dtype: 'I32', shape: [k, n / 8], data: new Uint8Array(words.buffer) },
    f32('fc.layer.weight_scale', [k / 64, n], sc),
    { name: 'fc.layer.bias', dtype: 'BF16', shape: [n], data: new Uint8Array(Tensor.fromArray(b).to('bf16').data.buffer) },
    f32('fc.correction.l1.weight', [r, k], l1),
    f32('fc.correction.l2.weight', [n, r], l2),
  ]);
  const [L] = await importQuarkCheckpoint(file);
  t.equal(L.source, 'int4');
  t.equal(L.layer.scheme, 'w4a16');
  const got = (await dequantize(L.layer.weight)).data;
  let mism = 0;
  for (let i = 0; i < expW.length; i++) if (got[i] !== expW[i]) mism++;
  t.equal(mism, 0, 'dequantized weights are the hand-computed values');
  const bb = Array.from(Tensor.fromArray(b).to('bf16').to('f32').data);
  const m = 2;
  const x = Array.from({ length: m * k }, (_, i) => Math.cos(i * 0.3));
  const y = (await L.layer.call(Tensor.fromArray(x, [m, k]))).data;
  const yr = forwardRef(x, m, k, expW, n, l1, l2, r, bb);
  for (let i = 0; i < y.length; i++) if (Math.abs(y[i] - yr[i]) > 1e-4 * (1 + Math.abs(yr[i]))) { t.fail(`output ${i}: ${y[i]} vs ${yr[i]}`); break; }
  t.pass('w4a16 forward matches x·Wᵀ + (x·l1ᵀ)·l2ᵀ + b');
  const [L4] = await importQuarkCheckpoint(file, { int4Scheme: 'w4a4' });
  t.equal(L4.layer.scheme, 'w4a4');
});

t.test('INT4 per-channel with K not a multiple of 64 (K from l1)', async (t) => {
  const n = 4, k = 72, r = 1;
  const code = (i: number, j: number) => ((i + j) % 15) - 7;
  const words = int4Words(Array.from({ length: n }, (_, i) => Array.from({ length: k }, (_, j) => code(i, j))));
  const sc = [0.5, 0.25, 0.125, 1];
  const file = join(dir, 'int4pc.safetensors');
  await writeSafetensors(file, [
    { name: 'a.layer.weight', dtype: 'I32', shape: [n, k / 8], data: new Uint8Array(words.buffer) },
    f32('a.layer.weight_scale', [n], sc),
    f32('a.correction.l1.weight', [r, k], Array(k).fill(0.01)),
    f32('a.correction.l2.weight', [n, r], [1, 2, 3, 4]),
  ]);
  const [L] = await importQuarkCheckpoint(file);
  const got = Array.from((await dequantize(L.layer.weight)).data);
  const exp: number[] = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) exp.push(code(i, j) * sc[i]);
  t.same(got, exp);
  t.equal(L.layer.inFeatures, 72);
});

t.test('bad Quark files are typed errors', async (t) => {
  const file = join(dir, 'bad.safetensors');
  await writeSafetensors(file, [f32('x.weight', [1], [1])]);
  await t.rejects(importQuarkCheckpoint(file), { name: 'FileFormatError', message: /Quark's export naming/ });
  await writeSafetensors(file, [
    { name: 'p.layer.weight', dtype: 'U8', shape: [2, 32], data: new Uint8Array(64) },
    { name: 'p.layer.weight_scale', dtype: 'U8', shape: [2, 3], data: new Uint8Array(6) },
  ]);
  await t.rejects(importQuarkCheckpoint(file), { name: 'FileFormatError', message: /weight_scale/ });
  await writeSafetensors(file, [
    { name: 'p.layer.weight', dtype: 'U8', shape: [2, 16], data: new Uint8Array(32) },
    { name: 'p.layer.weight_scale', dtype: 'U8', shape: [2, 1], data: new Uint8Array([127, 127]) },
    f32('p.correction.l1.weight', [1, 32], Array(32).fill(0)),
  ]);
  await t.rejects(importQuarkCheckpoint(file), { name: 'FileFormatError', message: /correction\.l2\.weight' is missing/ });
  await writeSafetensors(file, [
    { name: 'p.layer.weight', dtype: 'U8', shape: [2, 16], data: new Uint8Array(32) },
    { name: 'p.layer.weight_scale', dtype: 'U8', shape: [2, 1], data: new Uint8Array([127, 127]) },
    f32('p.layer.weight_scale_2', [1], [1]),
  ]);
  await t.rejects(importQuarkCheckpoint(file), { name: 'FileFormatError', message: /NVFP4/ });
  await t.rejects(importQuarkCheckpoint(''), { name: 'ArgumentError', argument: 'file' });
  await t.rejects(importQuarkCheckpoint(file, { int4Scheme: 'w8a8' as never }), { name: 'ArgumentError', argument: 'options.int4Scheme' });
});
