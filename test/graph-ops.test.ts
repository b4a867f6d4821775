// The graph's native ops against plain double-precision references (test/support/graph-reference.ts)
// on small random inputs, including odd sizes (1, 3, 17, 129) and a [B, T, D] attention.
//
// Tolerances (fp32 kernels, per-row sums in double):
//   - layerNorm / rmsNorm: |y - ref| <= 1e-5 · (1 + |ref|) — a handful of fp32 roundings of an O(1)
//     value (u = 6e-8) stays below 1e-6; a wrong mean, variance or eps is off by far more.
//   - gelu / silu / add: |y - ref| <= 1e-6 + 1e-6 · |ref| — erf/tanh/exp in fp32 are within a few ulp.
//   - softmax: |y - ref| <= 1e-7 + 1e-5 · |ref| — exp rounding and one rounded division per value.
//   - attention: |y - ref| <= 1e-5 · (1 + Σ_j p_j·|v_j|) — two fp32 GEMMs around the softmax; the bound
//     is the magnitude of the weighted sum, as in the GEMM tests.
import t from 'tap';
import { Tensor } from '../lib/tensor.js';
import { ArgumentError } from '../lib/errors.js';
import { add, gelu, layerNorm, rmsNorm, scaledDotProductAttention, silu, softmax } from '../lib/graph/index.js';
import { native } from '../lib/native.js';
import {
  addRef, attentionRef, geluRef, layerNormRef, mapRef, mat, randomTensor, rmsNormRef, rng, siluRef, softmaxRef, worstRatio,
} from './support/graph-reference.js';

const SHAPES: number[][] = [[1, 1], [3, 17], [5, 129], [2, 3, 64], [1, 1000]];

t.test('layerNorm matches the reference (affine and not, several eps)', async (t) => {
  const r = rng(1);
  for (const shape of SHAPES) {
    const dim = shape[shape.length - 1];
    const x = randomTensor(shape, 3, r);
    for (let i = 0; i < x.numel; i += 7) x.data[i] += 5; // a non-zero mean
    const g = randomTensor([dim], 1, r);
    const b = randomTensor([dim], 1, r);
    for (const [weight, bias, eps] of [[g, b, 1e-5], [null, null, 1e-6], [g, null, 1e-3], [null, b, 0.1]] as const) {
      const y = await layerNorm(x, { weight, bias, eps });
      t.same(y.shape, x.shape);
      const ref = layerNormRef(mat(x), weight ? weight.data : null, bias ? bias.data : null, eps);
      const worst = worstRatio(y.data, ref.d, 1e-5, 1e-5);
      t.ok(worst <= 1, `[${shape}] affine=${weight !== null}/${bias !== null} eps=${eps}: worst ${worst.toFixed(3)} of tolerance`);
    }
  }
});

t.test('rmsNorm matches the reference', async (t) => {
  const r = rng(2);
  for (const shape of SHAPES) {
    const dim = shape[shape.length - 1];
    const x = randomTensor(shape, 3, r);
    const g = randomTensor([dim], 1, r);
    for (const [weight, eps] of [[g, 1e-6], [null, 1e-2]] as const) {
      const y = await rmsNorm(x, { weight, eps });
      const ref = rmsNormRef(mat(x), weight ? weight.data : null, eps);
      const worst = worstRatio(y.data, ref.d, 1e-5, 1e-5);
      t.ok(worst <= 1, `[${shape}] eps=${eps}: worst ${worst.toFixed(3)}`);
    }
  }
});

t.test('gelu (exact and tanh) and silu match the reference, including large |x|', async (t) => {
  const r = rng(3);
  const x = randomTensor([7, 129], 6, r);
  x.data.set([0, -0, 1e-8, -20, 20, -100, 100, 3.5, -3.5, 0.5]);
  for (const approximate of ['none', 'tanh'] as const) {
    const y = await gelu(x, { approximate });
    const worst = worstRatio(y.data, mapRef(mat(x), (v) => geluRef(v, approximate)).d, 1e-6, 1e-6);
    t.ok(worst <= 1, `gelu ${approximate}: worst ${worst.toFixed(3)}`);
  }
  const yd = await gelu(x);
  t.ok(Math.abs(yd.data[3]) < 1e-30 && Math.abs(yd.data[5]) < 1e-30, 'gelu(-20) and gelu(-100) underflow to 0 (no NaN)');
  t.equal(yd.data[6], 100, 'gelu(100) = 100');
  const s = await silu(x);
  const worst = worstRatio(s.data, mapRef(mat(x), siluRef).d, 1e-6, 1e-6);
  t.ok(worst <= 1, `silu: worst ${worst.toFixed(3)}`);
  t.ok(Math.abs(s.data[5]) < 1e-30, 'silu(-100) is 0 (no NaN)');
  t.equal(s.data[6], 100, 'silu(100) = 100');
});

t.test('softmax over the last dimension matches the reference; a row of -Inf gives NaN', async (t) => {
  const r = rng(4);
  for (const shape of SHAPES) {
    const x = randomTensor(shape, 20, r);
    const y = await softmax(x);
    const worst = worstRatio(y.data, softmaxRef(mat(x)).d, 1e-7, 1e-5);
    t.ok(worst <= 1, `[${shape}]: worst ${worst.toFixed(3)}`);
  }
  const x = Tensor.fromArray([-Infinity, -Infinity, 1, -Infinity, 1000, -1000], [3, 2]);
  const y = await softmax(x);
  t.ok(Number.isNaN(y.data[0]) && Number.isNaN(y.data[1]), 'all -Inf row is NaN');
  t.same([y.data[2], y.data[3], y.data[4], y.data[5]], [1, 0, 1, 0], 'extreme rows are exact');
});

t.test('add is exact', async (t) => {
  const r = rng(5);
  const a = randomTensor([3, 5, 7], 1, r);
  const b = randomTensor([3, 5, 7], 1, r);
  const y = await add(a, b);
  const want = Float32Array.from(addRef(mat(a), mat(b)).d);
  t.same(Array.from(y.data), Array.from(want), 'fp32 sums are correctly rounded');
});

t.test('attention matches the reference for [T, D] and [B, T, D]', async (t) => {
  const r = rng(6);
  for (const [batch, tokens, heads, hd] of [[1, 1, 1, 4], [1, 7, 2, 8], [2, 33, 3, 16], [3, 5, 4, 1]]) {
    const d = heads * hd;
    const shape = batch === 1 && tokens % 2 === 1 ? [tokens, d] : [batch, tokens, d];
    const q = randomTensor(shape, 2, r), k = randomTensor(shape, 2, r), v = randomTensor(shape, 1, r);
    const y = await scaledDotProductAttention(q, k, v, heads);
    t.same(y.shape, shape);
    const ref = attentionRef(mat(q), mat(k), mat(v), batch, heads);
    let vmax = 0;
    for (const e of v.data) vmax = Math.max(vmax, Math.abs(e));
    const worst = worstRatio(y.data, ref.d, 1e-5 * (1 + vmax), 0);
    t.ok(worst <= 1, `B=${batch} T=${tokens} H=${heads} hd=${hd}: worst ${worst.toFixed(3)}`);
  }
});

t.test('f16 and bf16 inputs are converted to f32', async (t) => {
  const x = Tensor.fromArray([0.5, -1, 2, 3], [2, 2]);
  const y16 = await gelu(x.to('f16'));
  const y32 = await gelu(x);
  t.same(Array.from(y16.data), Array.from(y32.data));
  t.equal(y16.dtype, 'f32');
});

t.test('op argument errors are typed and name the argument', async (t) => {
  const x = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
  const cases: [string, () => Promise<unknown>][] = [
    ['x', () => layerNorm(null as unknown as Tensor)],
    ['x', () => layerNorm(Tensor.zeros([4], 'i32') as unknown as Tensor)],
    ['options.weight', () => layerNorm(x, { weight: Tensor.zeros([3], 'f32') })],
    ['options.bias', () => layerNorm(x, { bias: Tensor.zeros([2, 1], 'f32') })],
    ['options.eps', () => layerNorm(x, { eps: -1 })],
    ['options.eps', () => rmsNorm(x, { eps: NaN })],
    ['options.approximate', () => gelu(x, { approximate: 'fast' as 'tanh' })],
    ['options.threads', () => silu(x, { threads: -1 })],
    ['b', () => add(x, Tensor.zeros([4], 'f32'))],
    ['q', () => scaledDotProductAttention(Tensor.zeros([4], 'f32'), x, x, 1)],
    ['k', () => scaledDotProductAttention(x, Tensor.zeros([2, 4], 'f32'), x, 1)],
    ['heads', () => scaledDotProductAttention(x, x, x, 3)],
    ['heads', () => scaledDotProductAttention(x, x, x, 0)],
  ];
  for (const [argument, fn] of cases) {
    const e = await fn().then(() => undefined, (err: unknown) => err);
    t.ok(e instanceof ArgumentError && e.argument === argument, `names '${argument}': ${(e as Error)?.message}`);
  }
});

t.test('native ops write into a caller\'s output or allocate their own (same values)', async (t) => {
  const r = rng(7);
  const x = randomTensor([33, 129], 4, r);
  const n = x.numel;
  const mine = new Float32Array(n);
  t.equal(await native().gelu(x.data, n, mine, 1, 0), undefined, 'with an output: resolves to undefined');
  const own = await native().gelu(x.data, n, null, 1, 0);
  t.ok(own instanceof Float32Array && own.length === n, 'without: a new Float32Array of n elements');
  t.same(Array.from(own), Array.from(mine));
  const big = await native().add(own, own, n, null, 0); // native memory, reported to V8
  t.equal(big[5], own[5] * 2);
  t.equal((await native().silu(x.data, 0, null, 0)).length, 0, 'an empty output');
  const e = await (async () => native().gelu(x.data, n, new Float32Array(n - 1), 1, 0))().then(() => undefined, (err: unknown) => err);
  t.ok(e instanceof Error && /'y'/.test((e as Error).message), `a short output array is rejected: ${(e as Error)?.message}`);
});
