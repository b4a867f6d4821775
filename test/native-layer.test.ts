// The native CPU SVDQuant layer from TypeScript, against a reference written here from DESIGN.md §2
// with the formats API: X̂ = X/λ, Q_a per token (nvfp4: per-token tensor scale), dequantized
// operands multiplied in double, plus (X̂·L_downᵀ)·L_upᵀ and the bias.
import t from 'tap';
import { Tensor, quantize, dequantize, NativeLowbitLayer, SCHEMES, type SchemeName, nvfp4GlobalScale } from '../lib/index.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function randomTensor(shape: number[], scale: number, r: () => number): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(Array.from({ length: n }, () => r() * 2 * scale), shape);
}

async function reference(scheme: SchemeName, x: Tensor<'f32'>, wq: Tensor<'f32'>, smooth: Float32Array, lDown: Float32Array, lUp: Float32Array, rank: number, bias: Float32Array) {
  const [m, k] = x.shape;
  const n = wq.shape[0];
  const xhat = Tensor.zeros([m, k], 'f32');
  for (let i = 0; i < m * k; i++) xhat.data[i] = Math.fround(x.data[i] / smooth[i % k]);
  const act = SCHEMES[scheme].activations;
  let xq: Tensor<'f32'>;
  if (act === null) xq = xhat;
  else if (act === 'nvfp4') {
    xq = Tensor.zeros([m, k], 'f32');
    for (let i = 0; i < m; i++) {
      const row = Tensor.fromStorage(xhat.data.slice(i * k, (i + 1) * k), [1, k], 'f32');
      let amax = 0;
      for (const v of row.data) if (Number.isFinite(v)) amax = Math.max(amax, Math.abs(v));
      const q = await quantize(row, 'nvfp4', { role: 'activation', globalScale: nvfp4GlobalScale(amax) });
      xq.data.set((await dequantize(q)).data, i * k);
    }
  } else xq = await dequantize(await quantize(xhat, act, { role: 'activation' }));
  const y = new Float64Array(m * n);
  const bound = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const d = new Float64Array(rank);
    for (let r = 0; r < rank; r++) for (let j = 0; j < k; j++) d[r] += xhat.data[i * k + j] * lDown[r * k + j];
    for (let o = 0; o < n; o++) {
      let acc = 0, mag = 0;
      for (let j = 0; j < k; j++) { const p = xq.data[i * k + j] * wq.data[o * k + j]; acc += p; mag += Math.abs(p); }
      for (let r = 0; r < rank; r++) { const p = d[r] * lUp[o * rank + r]; acc += p; mag += Math.abs(p); }
      y[i * n + o] = acc + bias[o];
      bound[i * n + o] = mag + Math.abs(bias[o]);
    }
  }
  return { y, bound };
}

for (const scheme of ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as SchemeName[]) {
  t.test(`${scheme}: native layer matches the DESIGN §2 reference (all low-rank modes)`, async (t) => {
    const r = rng(7 + scheme.length);
    for (const [m, k, n, rank] of [[3, 100, 17, 8], [1, 129, 5, 0], [17, 64, 33, 1]]) {
      const x = randomTensor([m, k], 2, r);
      x.data[k + 3] = 40; // an outlier channel value
      const w = randomTensor([n, k], 0.1, r);
      const smooth = Float32Array.from({ length: k }, () => 0.5 + Math.abs(r()) * 2);
      const lDown = Float32Array.from({ length: rank * k }, () => r() * 0.05);
      const lUp = Float32Array.from({ length: n * rank }, () => r() * 0.05);
      const bias = Float32Array.from({ length: n }, () => r());
      const wq = await quantize(w, SCHEMES[scheme].weights, { name: 'w' });
      const layer = await NativeLowbitLayer.create({
        scheme, weight: wq,
        smooth: Tensor.fromStorage(smooth, [k], 'f32'),
        ...(rank > 0 ? { lDown: Tensor.fromStorage(lDown, [rank, k], 'f32'), lUp: Tensor.fromStorage(lUp, [n, rank], 'f32') } : {}),
        bias: Tensor.fromStorage(bias, [n], 'f32'),
      });
      t.ok(layer.bytes > 0, 'kernel format lives in native memory');
      const ref = await reference(scheme, x, await dequantize(wq), smooth, lDown, lUp, rank, bias);
      for (const mode of ['fused', 'side', 'unfused'] as const) {
        const y = await layer.forward(x, { lowRank: mode, threads: 2 });
        t.same(y.shape, [m, n]);
        let bad = 0;
        for (let i = 0; i < m * n; i++) {
          // fp32 tolerance (lowbit.h): (K + r + 8)·2^-24 of the sum of |terms|. The activation codes
          // are identical on both sides (the reference quantizes with the same formats kernels).
          if (!(Math.abs(y.data[i] - ref.y[i]) <= (k + rank + 8) * 2 ** -24 * ref.bound[i] + 1e-30)) bad++;
        }
        t.equal(bad, 0, `${scheme} m=${m} k=${k} n=${n} r=${rank} ${mode}: every output within tolerance`);
      }
      layer.dispose();
      t.equal(layer.bytes, 0);
      await t.rejects(layer.forward(x), { name: 'ArgumentError' });
    }
  });
}

t.test('bad layer data is a typed error', async (t) => {
  const w = await quantize(Tensor.zeros([4, 64], 'f32'), 'int4');
  await t.rejects(NativeLowbitLayer.create({ scheme: 'mxfp4', weight: w }), { name: 'ArgumentError', argument: 'data.weight' });
  await t.rejects(NativeLowbitLayer.create({ scheme: 'w4a4', weight: w, smooth: Tensor.zeros([3], 'f32') }), { name: 'ArgumentError', argument: 'data.smooth' });
  await t.rejects(NativeLowbitLayer.create({ scheme: 'w4a4', weight: w, lDown: Tensor.zeros([2, 64], 'f32') }), { argument: 'data.lDown/data.lUp' } as never);
  const zeroSmooth = Tensor.zeros([64], 'f32');
  await t.rejects(NativeLowbitLayer.create({ scheme: 'w4a4', weight: w, smooth: zeroSmooth }), /λ|smooth|zero/i, 'zero λ is refused by the native validation');
  const layer = await NativeLowbitLayer.create({ scheme: 'w4a4', weight: w });
  await t.rejects(layer.forward(Tensor.zeros([2, 63], 'f32')), { name: 'ArgumentError', argument: 'x' });
  await t.rejects(layer.forward(Tensor.zeros([2, 64], 'f32'), { lowRank: 'fast' as never }), { name: 'ArgumentError', argument: 'options.lowRank' });
  const nan = Tensor.zeros([2, 64], 'f32');
  nan.data[5] = NaN;
  const y = await layer.forward(nan);
  t.ok(Array.from(y.data.subarray(0, 4)).every(Number.isNaN), 'a NaN activation makes its token row NaN');
  t.ok(Array.from(y.data.subarray(4)).every((v) => v === 0), 'the other token is untouched');
  layer.dispose();
});
