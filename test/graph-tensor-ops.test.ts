// The model graph's tensor ops against plain references written here from their definitions
// (NumPy/PyTorch semantics): broadcasting arithmetic and its fused forms, LayerNorm + modulation,
// shape ops (permute, slice, split, concat, expand, upsampling, padding), GroupNorm, Conv2d,
// cross-attention with a key bias, embeddings.
import t from 'tap';
import {
  Tensor, add, sub, mul, div, modulate, gatedAdd, layerNormModulate, permute, transpose, slice, split, chunk, concat, expand,
  upsampleNearest2d, pad2d, flatten, unsqueeze, squeeze, groupNorm, Conv2d, scaledDotProductAttention, embedding,
  timestepEmbedding, sincosPosEmbed2d, ArgumentError,
} from '../lib/index.js';
import { randomTensor, rng } from './support/graph-reference.js';

const r = rng(42);

function strides(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = s[d + 1] * shape[d + 1];
  return s;
}

/** The flat index in a tensor of `shape` of the broadcast multi-index `idx` of the output. */
function bIndex(shape: readonly number[], outShape: readonly number[], idx: number[]): number {
  const st = strides(shape);
  let off = 0;
  for (let d = 0; d < shape.length; d++) {
    const i = idx[outShape.length - shape.length + d];
    off += (shape[d] === 1 ? 0 : i) * st[d];
  }
  return off;
}

function forEachIndex(shape: readonly number[], fn: (idx: number[], flat: number) => void): void {
  const n = shape.reduce((a, b) => a * b, 1);
  const idx = new Array(shape.length).fill(0);
  for (let f = 0; f < n; f++) {
    let rem = f;
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d] = rem % shape[d];
      rem = Math.floor(rem / shape[d]);
    }
    fn(idx, f);
  }
}

const near = (a: number, b: number, tol = 1e-6): boolean => Math.abs(a - b) <= tol * (1 + Math.abs(b));

t.test('broadcasting add/sub/mul/div, modulate and gatedAdd equal the elementwise definitions', async (t) => {
  const cases: number[][][] = [
    [[3, 4, 5], [3, 4, 5], [3, 4, 5]], [[2, 7, 16], [2, 1, 16], [2, 1, 16]], [[2, 7, 16], [16], [1, 7, 1]],
    [[4, 1], [1, 6], [4, 6]], [[5], [], [5]], [[2, 3, 4, 5], [3, 1, 5], [2, 1, 1, 1]], [[1], [9], [9]],
  ];
  for (const [sa, sb, sc] of cases) {
    const a = randomTensor(sa, 2, r), b = randomTensor(sb, 2, r), c = randomTensor(sc, 2, r);
    const out = [Math.max(sa.length, sb.length), 0].map(() => 0);
    const outShape: number[] = [];
    const nd = Math.max(sa.length, sb.length, sc.length);
    for (let d = 0; d < nd; d++) outShape.push(Math.max(...[sa, sb, sc].map((s) => s[s.length - nd + d] ?? 1)));
    void out;
    const check = async (name: string, got: Tensor, f: (x: number, y: number, z: number) => number, shapes: number[][]) => {
      const bcast = shapes.length === 2
        ? Array.from({ length: Math.max(shapes[0].length, shapes[1].length) }, (_, d, n = Math.max(shapes[0].length, shapes[1].length)) => Math.max(shapes[0][shapes[0].length - n + d] ?? 1, shapes[1][shapes[1].length - n + d] ?? 1))
        : outShape;
      t.same(got.shape, bcast, `${name} ${JSON.stringify(shapes)}: shape`);
      let bad = 0;
      forEachIndex(bcast, (idx, flat) => {
        const x = a.data[bIndex(sa, bcast, idx)], y = b.data[bIndex(sb, bcast, idx)], z = shapes.length > 2 ? c.data[bIndex(sc, bcast, idx)] : 0;
        if (!near(got.data[flat] as number, Math.fround(f(x, y, z)))) bad++;
      });
      t.equal(bad, 0, `${name} ${JSON.stringify(shapes)}: values`);
    };
    await check('add', await add(a, b), (x, y) => x + y, [sa, sb]);
    await check('sub', await sub(a, b), (x, y) => x - y, [sa, sb]);
    await check('mul', await mul(a, b), (x, y) => x * y, [sa, sb]);
    await check('div', await div(a, b), (x, y) => x / y, [sa, sb]);
    await check('modulate', await modulate(a, b, c), (x, y, z) => x * (1 + y) + z, [sa, sb, sc]);
    await check('gatedAdd', await gatedAdd(a, b, c), (x, y, z) => x + y * z, [sa, sb, sc]);
  }
  t.same((await mul(Tensor.fromArray([1, 2, 3]), 2)).toArray(), [2, 4, 6], 'a number operand');
  await t.rejects(add(randomTensor([3, 4], 1, r), randomTensor([5], 1, r)), { name: 'ArgumentError', argument: 'b' });
});

t.test('layerNormModulate equals LayerNorm then x·(1 + scale) + shift per sample', async (t) => {
  const [b, n, d] = [3, 5, 40];
  const x = randomTensor([b, n, d], 3, r), scale = randomTensor([b, d], 1, r), shift = randomTensor([b, 1, d], 1, r);
  const gamma = randomTensor([d], 1, r), beta = randomTensor([d], 1, r);
  for (const affine of [false, true]) {
    const y = await layerNormModulate(x, scale, shift, { eps: 1e-6, ...(affine ? { weight: gamma, bias: beta } : {}) });
    let worst = 0;
    for (let s = 0; s < b; s++) {
      for (let i = 0; i < n; i++) {
        const row = x.data.subarray((s * n + i) * d, (s * n + i + 1) * d);
        const mean = row.reduce((p, v) => p + v, 0) / d;
        const v = row.reduce((p, q) => p + (q - mean) ** 2, 0) / d;
        for (let j = 0; j < d; j++) {
          let e = (row[j] - mean) / Math.sqrt(v + 1e-6);
          if (affine) e = e * gamma.data[j] + beta.data[j];
          e = e * (1 + scale.data[s * d + j]) + shift.data[s * d + j];
          worst = Math.max(worst, Math.abs(y.data[(s * n + i) * d + j] - e));
        }
      }
    }
    t.ok(worst < 1e-5, `affine ${affine}: max |diff| ${worst}`);
  }
  await t.rejects(layerNormModulate(x, randomTensor([2, d], 1, r), shift), { name: 'ArgumentError', argument: 'scale' });
});

t.test('shape ops move elements as PyTorch does', async (t) => {
  const x = randomTensor([2, 3, 4, 5], 1, r);
  const at = (tensor: Tensor, idx: number[]): number => tensor.data[idx.reduce((o, v, d) => o + v * strides(tensor.shape)[d], 0)] as number;
  const p = await permute(x, [2, 0, 3, 1]);
  t.same(p.shape, [4, 2, 5, 3]);
  let ok = true;
  forEachIndex(p.shape, (i, f) => { if (p.data[f] !== at(x, [i[1], i[3], i[0], i[2]])) ok = false; });
  t.ok(ok, 'permute');
  const tr = await transpose(x, -1, 1);
  t.same(tr.shape, [2, 5, 4, 3]);
  ok = true;
  forEachIndex(tr.shape, (i, f) => { if (tr.data[f] !== at(x, [i[0], i[3], i[2], i[1]])) ok = false; });
  t.ok(ok, 'transpose with a negative axis');
  const s = await slice(x, 2, 1, -1);
  t.same(s.shape, [2, 3, 2, 5]);
  ok = true;
  forEachIndex(s.shape, (i, f) => { if (s.data[f] !== at(x, [i[0], i[1], i[2] + 1, i[3]])) ok = false; });
  t.ok(ok, 'slice');
  const parts = await split(x, [1, 3, 1], 3);
  t.same(parts.map((q) => q.shape[3]), [1, 3, 1]);
  const back = await concat(parts, -1);
  t.same([...back.data], [...x.data], 'concat undoes split');
  const ch = await chunk(x, 2, 1);
  t.same(ch.map((q) => q.shape[1]), [2, 1], 'chunk: pieces of ceil(n / chunks)');
  t.same([...(await concat(ch, 1)).data], [...x.data]);
  const e = await expand(randomTensor([3, 1], 1, r).reshape([3, 1]), [2, 3, 4]);
  t.same(e.shape, [2, 3, 4]);
  t.equal(e.data[1 * 12 + 2 * 4 + 3], e.data[2 * 4], 'expand repeats along new and size-1 axes');
  const u = await upsampleNearest2d(x, 3);
  t.same(u.shape, [2, 3, 12, 15]);
  ok = true;
  forEachIndex(u.shape, (i, f) => { if (u.data[f] !== at(x, [i[0], i[1], Math.floor(i[2] / 3), Math.floor(i[3] / 3)])) ok = false; });
  t.ok(ok, 'nearest upsampling');
  const pd = await pad2d(x, [1, 2, 0, 1]);
  t.same(pd.shape, [2, 3, 5, 8]);
  ok = true;
  forEachIndex(pd.shape, (i, f) => {
    const [yy, xx] = [i[2], i[3] - 1];
    const want = yy < 4 && xx >= 0 && xx < 5 ? at(x, [i[0], i[1], yy, xx]) : 0;
    if (pd.data[f] !== want) ok = false;
  });
  t.ok(ok, 'pad2d');
  t.same(flatten(x, 1, 2).shape, [2, 12, 5]);
  t.same(unsqueeze(x, -1).shape, [2, 3, 4, 5, 1]);
  t.same(squeeze(unsqueeze(x, 0), 0).shape, [2, 3, 4, 5]);
  t.equal(flatten(x, 1).data, x.data, 'views share storage');
  await t.rejects(permute(x, [0, 0, 1, 2]), { name: 'ArgumentError', argument: 'dims' });
  await t.rejects(concat([x, randomTensor([2, 3, 5, 5], 1, r)], 3), { name: 'ArgumentError', argument: 'tensors[1]' });
  t.throws(() => squeeze(x, 0), ArgumentError);
});

t.test('groupNorm equals the definition (statistics per sample and group)', async (t) => {
  const [n, c, h, w, g] = [2, 6, 3, 4, 3];
  const x = randomTensor([n, c, h, w], 2, r), gamma = randomTensor([c], 1, r), beta = randomTensor([c], 1, r);
  const y = await groupNorm(x, g, { weight: gamma, bias: beta, eps: 1e-6 });
  const per = (c / g) * h * w;
  let worst = 0;
  for (let s = 0; s < n * g; s++) {
    const seg = x.data.subarray(s * per, (s + 1) * per);
    const mean = seg.reduce((a, b) => a + b, 0) / per;
    const v = seg.reduce((a, b) => a + (b - mean) ** 2, 0) / per;
    for (let i = 0; i < per; i++) {
      const ch = (s % g) * (c / g) + Math.floor(i / (h * w));
      const e = ((seg[i] - mean) / Math.sqrt(v + 1e-6)) * gamma.data[ch] + beta.data[ch];
      worst = Math.max(worst, Math.abs(y.data[s * per + i] - e));
    }
  }
  t.ok(worst < 1e-5, `max |diff| ${worst}`);
});

t.test('Conv2d equals the direct convolution (stride, padding, 1×1, patch embedding)', async (t) => {
  const configs = [
    { cin: 3, cout: 5, k: 3, stride: 1, pad: 1, h: 7, w: 6 }, { cin: 4, cout: 8, k: 2, stride: 2, pad: 0, h: 8, w: 8 },
    { cin: 6, cout: 3, k: 1, stride: 1, pad: 0, h: 5, w: 5 }, { cin: 2, cout: 4, k: 3, stride: 2, pad: 0, h: 9, w: 7 },
  ];
  for (const c of configs) {
    const conv = new Conv2d(c.cin, c.cout, c.k, { stride: c.stride, padding: c.pad });
    conv.setParameter('weight', randomTensor([c.cout, c.cin, c.k, c.k], 0.5, r));
    conv.setParameter('bias', randomTensor([c.cout], 0.5, r));
    const x = randomTensor([2, c.cin, c.h, c.w], 1, r);
    const y = await conv.call(x);
    const ho = Math.floor((c.h + 2 * c.pad - c.k) / c.stride) + 1, wo = Math.floor((c.w + 2 * c.pad - c.k) / c.stride) + 1;
    t.same(y.shape, [2, c.cout, ho, wo]);
    let worst = 0;
    forEachIndex(y.shape, ([b, o, oy, ox], f) => {
      let acc = conv.bias!.data[o];
      for (let i = 0; i < c.cin; i++) {
        for (let ky = 0; ky < c.k; ky++) {
          for (let kx = 0; kx < c.k; kx++) {
            const iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
            if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
            acc += conv.weight.data[((o * c.cin + i) * c.k + ky) * c.k + kx] * x.data[((b * c.cin + i) * c.h + iy) * c.w + ix];
          }
        }
      }
      worst = Math.max(worst, Math.abs(y.data[f] - acc));
    });
    t.ok(worst < 1e-4, `${JSON.stringify(c)}: max |diff| ${worst}`);
  }
});

t.test('cross-attention with a key bias equals softmax(q·kᵀ·scale + bias)·v per head', async (t) => {
  const [b, tq, tk, heads, hd] = [2, 5, 7, 2, 4];
  const q = randomTensor([b, tq, heads * hd], 1, r), k = randomTensor([b, tk, heads * hd], 1, r), v = randomTensor([b, tk, heads * hd], 1, r);
  const bias = Tensor.fromArray([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -10000, -10000, -10000], [b, tk]);
  const y = await scaledDotProductAttention(q, k, v, heads, { keyBias: bias });
  t.same(y.shape, [b, tq, heads * hd]);
  let worst = 0;
  const d = heads * hd;
  for (let s = 0; s < b; s++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < tq; i++) {
        const scores = Array.from({ length: tk }, (_, j) => {
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += q.data[(s * tq + i) * d + h * hd + e] * k.data[(s * tk + j) * d + h * hd + e];
          return dot / Math.sqrt(hd) + bias.data[s * tk + j];
        });
        const m = Math.max(...scores);
        const p = scores.map((x) => Math.exp(x - m));
        const z = p.reduce((a, c) => a + c, 0);
        for (let e = 0; e < hd; e++) {
          let o = 0;
          for (let j = 0; j < tk; j++) o += (p[j] / z) * v.data[(s * tk + j) * d + h * hd + e];
          worst = Math.max(worst, Math.abs(y.data[(s * tq + i) * d + h * hd + e] - o));
        }
      }
    }
  }
  t.ok(worst < 1e-5, `max |diff| ${worst}`);
  await t.rejects(scaledDotProductAttention(q, k, v, heads, { keyBias: Tensor.fromArray([0, 0]) }), { name: 'ArgumentError', argument: 'options.keyBias' });
});

t.test('embedding lookup, sinusoidal timestep and 2-D sin-cos embeddings', async (t) => {
  const table = randomTensor([5, 3], 1, r);
  const e = embedding(table, Tensor.fromIntegers([4, 0, 4], [3]));
  t.same(e.shape, [3, 3]);
  t.same([...e.data.subarray(0, 3)], [...table.data.subarray(12, 15)]);
  t.throws(() => embedding(table, [5]), { name: 'ArgumentError', argument: 'ids' });
  // t = 0: sin 0 = 0, cos 0 = 1; flipSinToCos puts the cosines first. Frequencies exp(−ln(1e4)·i/(half − 1)).
  const te = timestepEmbedding([0, 100], 8, { flipSinToCos: true, downscaleFreqShift: 1 });
  t.same([...te.data.subarray(0, 8)], [1, 1, 1, 1, 0, 0, 0, 0]);
  const freq = [1, Math.exp(-Math.log(1e4) / 3), Math.exp(-2 * Math.log(1e4) / 3), 1e-4];
  for (let i = 0; i < 4; i++) {
    t.ok(near(te.data[8 + i], Math.cos(100 * freq[i]), 1e-5) && near(te.data[12 + i], Math.sin(100 * freq[i]), 1e-5), `frequency ${i}`);
  }
  // Grid of 2×2 patches, dim 8: the first half encodes the column, the second the row; omega_d = 1/1e4^(d/2).
  const pe = sincosPosEmbed2d(8, 2, 2);
  const row = (tok: number) => [...pe.data.subarray(tok * 8, tok * 8 + 8)];
  const enc = (p: number) => [Math.sin(p), Math.sin(p / 100), Math.cos(p), Math.cos(p / 100)].map(Math.fround);
  t.same(row(0), [...enc(0), ...enc(0)]);
  t.same(row(1), [...enc(1), ...enc(0)], 'token (row 0, col 1)');
  t.same(row(2), [...enc(0), ...enc(1)], 'token (row 1, col 0)');
});
