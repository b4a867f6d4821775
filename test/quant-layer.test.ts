// ErrorCorrectedLinear (reference) against NativeLowbitLayer, the quantizer bindings, quantizeLinear.
import t from 'tap';
import { Tensor } from '../lib/index.js';
import {
  ErrorCorrectedLinear, LayerStatsCollector, buildLayer, quantizeLinear, svdTopR, syntheticLayer, SeededRandom,
  smoothingFactors, weightColumnAbsMax, matmulNT, relativeError, residualRtn, gptqQuantize, refineLowRank,
} from '../lib/quant/index.js';
import type { SchemeName } from '../lib/formats/schemes.js';

const GROUP: Record<SchemeName, number> = { w4a4: 64, w4a16: 64, mxfp4: 32, nvfp4: 16, w8a8: 0 };

for (const scheme of ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as SchemeName[]) {
  t.test(`${scheme}: reference forward matches the native layer within lowbit.h's fp32 bound`, async (t) => {
    for (const [n, k, m, rank] of [[33, 100, 9, 8], [16, 64, 1, 0], [40, 129, 20, 5]]) {
      const syn = syntheticLayer({ outFeatures: n, inFeatures: k, tokens: m, seed: n + k, spikes: 3 });
      const lam = smoothingFactors(syn.x.reduce((acc, v, i) => { acc[i % k] = Math.max(acc[i % k], Math.abs(v)); return acc; }, new Float32Array(k)),
        weightColumnAbsMax(syn.weight, n, k), 0.5);
      const { layer } = await buildLayer(syn.weight, n, k, syn.bias, { scheme, rule: 'even', lambda: lam, rank });
      const x = Tensor.fromStorage(syn.x, [m, k], 'f32');
      const yRef = (await layer.forward(x)).data;
      const nat = await layer.toNative();
      const yNat = (await nat.forward(x)).data;
      nat.dispose();
      // Bound: (K + 2G + r + 8)·2⁻²⁴·S per output, for each of the two fp32 evaluations.
      const wq = await layer.dequantizedWeight();
      const xhat = layer.smoothInput(syn.x);
      const xq = await layer.quantizeActivations(xhat, m);
      const lDown = layer.lDown?.data, lUp = layer.lUp?.data;
      const g = GROUP[scheme] || k;
      let worst = 0;
      for (let i = 0; i < m; i++) {
        const dAbs = new Float64Array(rank);
        for (let r = 0; r < rank; r++) for (let j = 0; j < k; j++) dAbs[r] += Math.abs(xhat[i * k + j] * lDown![r * k + j]);
        for (let o = 0; o < n; o++) {
          let s = Math.abs(syn.bias![o]);
          for (let j = 0; j < k; j++) s += Math.abs(xq[i * k + j] * wq[o * k + j]);
          for (let r = 0; r < rank; r++) s += dAbs[r] * Math.abs(lUp![o * rank + r]);
          const bound = 2 * (k + 2 * g + rank + 8) * 2 ** -24 * s;
          const diff = Math.abs(yRef[i * n + o] - yNat[i * n + o]);
          worst = Math.max(worst, diff / bound);
        }
      }
      t.ok(worst <= 1, `[${n}x${k}] m=${m} r=${rank}: worst diff / bound = ${worst.toExponential(2)}`);
    }
  });
}

t.test('svdTopR: randomized matches exact on a decaying spectrum', async (t) => {
  const n = 120, k = 90, r = 8;
  const rng = new SeededRandom(5);
  const w = new Float32Array(n * k);
  for (let s = 0; s < 20; s++) {
    const u = Array.from({ length: n }, () => rng.normal()), v = Array.from({ length: k }, () => rng.normal());
    const sv = 10 * Math.pow(0.6, s);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) w[i * k + j] += sv * u[i] * v[j] / Math.sqrt(n * k);
  }
  const ex = await svdTopR(w, n, k, r, { method: 'exact' });
  const rd = await svdTopR(w, n, k, r, { method: 'randomized', oversample: 8, powerIters: 3 });
  const a = await matmulNT(new Float32Array(0), 0, 0, new Float32Array(0), 0); // empty product is allowed
  t.equal(a.length, 0);
  // L_up·L_down of both.
  const recon = async (f: typeof ex) => {
    const upT = new Float32Array(r * n);
    for (let i = 0; i < n; i++) for (let q = 0; q < r; q++) upT[q * n + i] = f.up[i * r + q];
    const downT = new Float32Array(k * r);
    for (let q = 0; q < r; q++) for (let j = 0; j < k; j++) downT[j * r + q] = f.down[q * k + j];
    return matmulNT(f.up, n, r, downT, k);
  };
  t.ok(relativeError(await recon(rd), await recon(ex)) < 1e-4);
  for (let q = 0; q + 1 < r; q++) t.ok(ex.sigma[q] >= ex.sigma[q + 1]);
});

t.test('GPTQ residual beats RTN on the calibration objective; refinement errors fall', async (t) => {
  const syn = syntheticLayer({ outFeatures: 64, inFeatures: 128, tokens: 1024, seed: 11 });
  const stats = new LayerStatsCollector(128, { hessian: true, maxSamples: 0 });
  await stats.observeAsync(Tensor.fromStorage(syn.x, [1024, 128], 'f32'));
  const h = await stats.hessian();
  for (const format of ['int4', 'mxfp4', 'nvfp4'] as const) {
    const rtn = await residualRtn(syn.weight, 64, 128, undefined, format, 'even');
    const gq = await gptqQuantize(syn.weight, 64, 128, h, format, 'even', { blockSize: 32, damp: 0.01, actOrder: false });
    const yRef = await matmulNT(syn.x, 1024, 128, syn.weight, 64);
    const { dequantize } = await import('../lib/formats/quantize.js');
    const eR = relativeError(await matmulNT(syn.x, 1024, 128, (await dequantize(rtn.q)).data, 64), yRef);
    const eG = relativeError(await matmulNT(syn.x, 1024, 128, (await dequantize(gq.q)).data, 64), yRef);
    t.ok(eG < eR, `${format}: gptq ${eG.toFixed(4)} < rtn ${eR.toFixed(4)}`);
    t.ok(gq.objective > 0 && gq.dampAdded > 0);
  }
  const ref = await refineLowRank(syn.weight, 64, 128, 8, 'int4', 'even', 5);
  t.ok(ref.errors.length >= 2);
  for (let i = 1; i <= ref.best; i++) t.ok(ref.errors[i] < ref.errors[i - 1]);
});

// The defaults are α search + guarded GPTQ (issue 20); each path is pinned explicitly here.
t.test('quantizeLinear: fixed α, α search (deployed objective), GPTQ, report, progress', async (t) => {
  const n = 96, k = 128, m = 512;
  const syn = syntheticLayer({ outFeatures: n, inFeatures: k, tokens: m, seed: 21 });
  const stats = new LayerStatsCollector(k, { hessian: true, maxSamples: 256 });
  for (let b = 0; b < 4; b++) stats.observe(Tensor.fromStorage(syn.x.slice(b * 128 * k, (b + 1) * 128 * k), [128, k], 'f32'));
  const w = Tensor.fromStorage(syn.weight, [n, k], 'f32');
  const bias = Tensor.fromStorage(syn.bias!, [n], 'f32');
  const stages: string[] = [];
  const fixed = await quantizeLinear(w, bias, stats, { rank: 16, searchAlpha: false, gptq: false, onProgress: (e) => stages.push(e.stage) }, 'blocks.0.ff');
  t.ok(fixed.layer instanceof ErrorCorrectedLinear);
  t.equal(fixed.report.name, 'blocks.0.ff');
  t.equal(fixed.report.alpha, 0.5);
  t.equal(fixed.report.beta, 0.5);
  t.equal(fixed.report.rank, 16);
  t.equal(fixed.report.evalTokens, 256);
  t.ok(fixed.report.errorAfter < fixed.report.errorBefore * 0.6, `after ${fixed.report.errorAfter} < before ${fixed.report.errorBefore}`);
  t.ok(fixed.report.seconds >= 0);
  t.equal(stages[0], 'start');
  t.equal(stages[stages.length - 1], 'done');

  const searched = await quantizeLinear(w, bias, stats, { rank: 16, searchAlpha: true, gptq: false, alphaCandidates: [0.1, 0.3, 0.5, 0.7, 0.9] }, 'l');
  t.equal(searched.report.candidates.length, 5);
  const best = Math.min(...searched.report.candidates.map((c) => c.relError));
  t.equal(searched.report.errorAfter, best, 'the winner is the candidate with the least deployed error');
  t.ok(searched.report.errorAfter <= fixed.report.errorAfter + 1e-12);
  const withBeta = await quantizeLinear(w, bias, stats, { rank: 16, searchAlpha: true, searchBeta: true, gptq: false, alphaCandidates: [0.3, 0.6], betaCandidates: [0.2, 0.5] }, 'l');
  t.equal(withBeta.report.candidates.length, 4);

  const g = await quantizeLinear(w, bias, stats, { rank: 16, searchAlpha: false, gptq: true }, 'l');
  t.equal(g.report.residual, 'gptq');
  t.ok(g.report.errorAfter < g.report.errorBefore);
  const refined = await quantizeLinear(w, bias, stats, { rank: 16, searchAlpha: false, gptq: false, refineIterations: 3 }, 'l');
  t.ok(refined.report.refineErrors.length >= 1);
  const r0 = await quantizeLinear(w, undefined, stats, { rank: 0, smooth: false, gptq: false, scheme: 'mxfp4' }, 'l');
  t.equal(r0.layer.rank, 0);
  t.equal(r0.layer.smooth, undefined);
  t.equal(r0.report.alpha, null);
  t.ok(Math.abs(r0.report.errorAfter - r0.report.errorBefore) < 1e-12, 'plain RTN equals the baseline');
});

t.test('quantizeLinear: bad input', async (t) => {
  const stats = new LayerStatsCollector(8, { maxSamples: 4 });
  stats.observe(Tensor.fromArray(Array.from({ length: 32 }, (_, i) => i % 5), [4, 8]));
  const w = Tensor.fromArray(Array.from({ length: 64 }, (_, i) => Math.sin(i)), [8, 8]);
  w.data[13] = NaN;
  await t.rejects(quantizeLinear(w, undefined, stats, {}, 'blocks.3.attn.to_k'), { code: 'ERR_SVDQ_NONFINITE', tensor: 'blocks.3.attn.to_k.weight', index: 13 });
  w.data[13] = 0;
  await t.rejects(quantizeLinear(w, undefined, new LayerStatsCollector(9), {}, 'x'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'stats' });
  await t.rejects(quantizeLinear(w, undefined, stats, { gptq: true }, 'x'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'stats' });
  await t.rejects(quantizeLinear(w, undefined, stats, { rank: -2 }, 'x'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'config.rank' });
  await t.rejects(quantizeLinear(w, Tensor.fromArray([1, 2]), stats, {}, 'x'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'bias' });
  const empty = new LayerStatsCollector(8, { maxSamples: 4 });
  await t.rejects(quantizeLinear(w, undefined, empty, { searchAlpha: true }, 'x'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'stats' });
});
