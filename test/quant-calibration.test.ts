// LayerStatsCollector: abs-max, XᵀX and H_λ, bounded deterministic reservoir.
import t from 'tap';
import { Tensor } from '../lib/index.js';
import { LayerStatsCollector, SeededRandom, isScoreToken } from '../lib/quant/index.js';

function batch(rng: SeededRandom, m: number, k: number, offset: number): Tensor<'f32'> {
  const x = new Float32Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) x[i * k + j] = rng.normal() + (j === 0 ? offset + i : 0);
  return Tensor.fromStorage(x, [m, k], 'f32');
}

t.test('abs-max per input channel over [..., K] inputs', async (t) => {
  const c = new LayerStatsCollector(3, { maxSamples: 4 });
  c.observe(Tensor.fromArray([1, -5, 2, -3, 4, 0.5], [2, 3]));
  c.observe(Tensor.fromArray([0, 1, -7, 2, 0, 1, 0, 0, 0, 0, 0, 0], [2, 2, 3]));
  t.same(Array.from(c.actAbsMax), [3, 5, 7]);
  t.equal(c.tokenCount, 6);
  t.equal(c.sampleCount, 4);
  t.throws(() => c.observe(Tensor.fromArray([1, 2], [1, 2])), { code: 'ERR_SVDQ_ARGUMENT' });
});

t.test('NaN or Inf in calibration inputs: NonFiniteError naming the layer, token and channel; nothing recorded', async (t) => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const c = new LayerStatsCollector(3, { maxSamples: 4, hessian: true, name: 'blocks.0.fc1' });
    c.observe(Tensor.fromArray([1, -5, 2], [1, 3]));
    const before = { amax: Array.from(c.actAbsMax), samples: Array.from(c.samples().data), xtx: Array.from(await c.hessian()) };
    const x = Tensor.fromArray([9, 9, 9, 2, bad, 1], [2, 3]);
    t.throws(() => c.observe(x), {
      name: 'NonFiniteError', code: 'ERR_SVDQ_NONFINITE', tensor: 'blocks.0.fc1 (calibration input)', index: 4,
      message: new RegExp(`^tensor 'blocks\\.0\\.fc1 \\(calibration input\\)' holds a non-finite value \\(${String(bad).replace('-', '\\-')}\\) at flat index 4 \\(token 1, channel 1 of this batch\\): expected finite calibration inputs`),
    }, String(bad));
    await t.rejects(c.observeAsync(x), { name: 'NonFiniteError', index: 4 });
    t.same({ amax: Array.from(c.actAbsMax), samples: Array.from(c.samples().data), xtx: Array.from(await c.hessian()) }, before, 'a rejected batch changes nothing');
    t.equal(c.tokenCount, 1);
  }
});

t.test('reservoir: memory bounded whatever is fed; first tokens kept until full', async (t) => {
  const k = 16, cap = 32;
  const c = new LayerStatsCollector(k, { maxSamples: cap, seed: 7 });
  const bytes0 = c.bytes;
  const rng = new SeededRandom(1);
  c.observe(batch(rng, 10, k, 1000));
  t.same(c.samples().shape, [10, k]);
  t.equal(c.samples().data[0], Math.fround(c.samples().data[0]));
  for (let b = 0; b < 300; b++) c.observe(batch(rng, 37, k, b * 37));
  t.equal(c.bytes, bytes0, 'no growth');
  t.equal(c.sampleCount, cap);
  t.same(c.samples().shape, [cap, k]);
  t.equal(c.tokenCount, 10 + 300 * 37);
  // Sampling spreads over the stream: the kept tokens are not all from the start.
  const firstVals = Array.from({ length: cap }, (_, i) => c.samples().data[i * k]);
  t.ok(firstVals.some((v) => v > 2000), 'later tokens replaced early ones');
});

t.test('reservoir: deterministic by seed, independent of how the stream is split', async (t) => {
  const k = 8;
  const mk = (seed: number, split: number[]) => {
    const rng = new SeededRandom(42);
    const all = batch(rng, 500, k, 0).data;
    const c = new LayerStatsCollector(k, { maxSamples: 20, seed });
    let at = 0;
    for (const s of split) {
      c.observe(Tensor.fromStorage(all.slice(at * k, (at + s) * k), [s, k], 'f32'));
      at += s;
    }
    return c.samples().data;
  };
  const a = mk(3, [500]);
  const b = mk(3, [1, 99, 250, 150]);
  const d = mk(4, [500]);
  t.same(Array.from(a), Array.from(b));
  t.notSame(Array.from(a), Array.from(d));
});

t.test('XᵀX and H_λ = diag(1/λ)·XᵀX·diag(1/λ)', async (t) => {
  const k = 5;
  const rng = new SeededRandom(9);
  const c = new LayerStatsCollector(k, { hessian: true, maxSamples: 0 });
  const xs: Float32Array[] = [];
  for (let b = 0; b < 3; b++) {
    const x = batch(rng, 7, k, 0);
    xs.push(x.data);
    if (b === 1) await c.observeAsync(x);
    else c.observe(x);
  }
  const lam = Float32Array.from([1, 2, 0.5, 4, 1.5]);
  const h = await c.hessian(lam);
  const raw = await c.hessian();
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      let want = 0, wantHat = 0;
      for (const x of xs) for (let m = 0; m < 7; m++) {
        want += x[m * k + i] * x[m * k + j];
        wantHat += (x[m * k + i] / lam[i]) * (x[m * k + j] / lam[j]);
      }
      t.ok(Math.abs(raw[i * k + j] - want) <= 1e-4 * (1 + Math.abs(want)), `XᵀX[${i},${j}]`);
      t.ok(Math.abs(h[i * k + j] - wantHat) <= 1e-4 * (1 + Math.abs(wantHat)), `H_λ[${i},${j}]`);
    }
  }
  const none = new LayerStatsCollector(k);
  await t.rejects(none.hessian(), { code: 'ERR_SVDQ_ARGUMENT' });
});

t.test('fit / score split: deterministic by position and seed, statistics from fit tokens only', async (t) => {
  const k = 6, m = 4000;
  const rng = new SeededRandom(3);
  const all = batch(rng, m, k, 0).data;
  // A huge value in the first score token's row: it must not reach the abs-max or XᵀX.
  const firstScore = Array.from({ length: m }, (_, i) => i).find((i) => isScoreToken(11, 0.25, i))!;
  all[firstScore * k + 2] = 1e6;
  const feed = (split: number[]) => {
    const c = new LayerStatsCollector(k, { hessian: true, maxSamples: 400, holdout: 0.25, seed: 11 });
    let at = 0;
    for (const s of split) {
      c.observe(Tensor.fromStorage(all.slice(at * k, (at + s) * k), [s, k], 'f32'));
      at += s;
    }
    return c;
  };
  const a = feed([m]);
  const b = feed([1, 999, 1500, 1500]);
  await a.flush();
  await b.flush();
  t.equal(a.tokenCount, m);
  t.ok(Math.abs(a.scoreTokenCount / m - 0.25) < 0.03, `score fraction ${a.scoreTokenCount / m}`);
  t.equal(a.fitTokenCount + a.scoreTokenCount, m);
  t.notOk(isScoreToken(11, 0.25, 0), 'token 0 always fits');
  t.equal(a.scoreSampleCount, 100, 'score reservoir: round(400 · 0.25)');
  t.equal(a.sampleCount, 300, 'fit reservoir: the rest');
  t.same(Array.from(a.scoreSamples().data), Array.from(b.scoreSamples().data), 'independent of how the stream is cut');
  t.same(Array.from(a.samples().data), Array.from(b.samples().data));
  t.same(Array.from(a.actAbsMax), Array.from(b.actAbsMax));
  t.ok(a.actAbsMax[2] < 1e3, 'the score token is not in the abs-max');
  // abs-max and XᵀX equal those of the fit tokens alone.
  const fitRows: number[] = [];
  for (let i = 0; i < m; i++) if (!isScoreToken(11, 0.25, i)) fitRows.push(i);
  const want = new Float32Array(k);
  for (const i of fitRows) for (let j = 0; j < k; j++) want[j] = Math.max(want[j], Math.abs(all[i * k + j]));
  t.same(Array.from(a.actAbsMax), Array.from(want));
  const h = await a.hessian();
  let worst = 0;
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
    let s = 0;
    for (const r of fitRows) s += all[r * k + i] * all[r * k + j];
    worst = Math.max(worst, Math.abs(h[i * k + j] - s) / (1 + Math.abs(s)));
  }
  t.ok(worst < 1e-4, `XᵀX of the fit tokens (worst relative difference ${worst})`);
  // The score reservoir holds score tokens only.
  const scoreSet = new Set<number>();
  for (let i = 0; i < m; i++) if (isScoreToken(11, 0.25, i)) scoreSet.add(all[i * k]);
  const held = a.scoreSamples().data;
  t.ok(Array.from({ length: 100 }, (_, i) => held[i * k]).every((v) => scoreSet.has(v)));
  // Another seed: another split.
  const c = new LayerStatsCollector(k, { maxSamples: 0, holdout: 0.25, seed: 12 });
  c.observe(Tensor.fromStorage(all, [m, k], 'f32'));
  t.not(c.scoreTokenCount, a.scoreTokenCount);
  t.throws(() => new LayerStatsCollector(k, { holdout: 0.95 }), { code: 'ERR_SVDQ_ARGUMENT', argument: 'options.holdout' });
  t.throws(() => new LayerStatsCollector(k, { holdout: -0.1 }), { code: 'ERR_SVDQ_ARGUMENT', argument: 'options.holdout' });
});
