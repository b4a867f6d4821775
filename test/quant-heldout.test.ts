// Issue 20 items 2 and 3: every choice of quantizeLinear scored on held-out tokens, in-sample and
// held-out errors reported, and GPTQ that cannot overfit (damping chosen on held-out tokens when
// the Hessian is rank-deficient or ill-conditioned, fall-back to RTN, warnings).
import t from 'tap';
import { Tensor, Sequential, Linear } from '../lib/index.js';
import {
  LayerStatsCollector, buildLayer, deployedError, matmulNT, quantizeLinear, quantizeModel, resolveConfig, smoothingFactors,
  syntheticLayer, weightColumnAbsMax, GPTQ_DAMP_STEPS,
} from '../lib/quant/index.js';

const n = 192, k = 384;

/** A synthetic layer, a collector over its first `tokens` tokens, and 2048 fresh tokens never seen. */
async function setup(tokens: number, seed: number, edit?: (x: Float32Array) => void) {
  const syn = syntheticLayer({ outFeatures: n, inFeatures: k, tokens: tokens + 2048, seed });
  edit?.(syn.x);
  const stats = LayerStatsCollector.forConfig(k, resolveConfig({ gptq: true }), 'blocks.0.ff');
  await stats.observeAsync(Tensor.fromStorage(syn.x.slice(0, tokens * k), [tokens, k], 'f32'));
  const fresh = syn.x.slice(tokens * k);
  const yFresh = await matmulNT(fresh, 2048, k, syn.weight, n, syn.bias);
  return {
    syn, stats,
    w: Tensor.fromStorage(syn.weight, [n, k], 'f32'),
    b: Tensor.fromStorage(syn.bias!, [n], 'f32'),
    freshError: (layer: Parameters<typeof deployedError>[0]) => deployedError(layer, fresh, 2048, yFresh),
  };
}

t.test('the α search is scored on held-out tokens; the report gives in-sample and held-out errors', async (t) => {
  const s = await setup(1024, 3);
  const r = await quantizeLinear(s.w, s.b, s.stats, { rank: 16, searchAlpha: true, gptq: false, alphaCandidates: [0.2, 0.4, 0.6, 0.8] }, 'l');
  t.ok(r.report.heldOut);
  t.same(r.report.calibrationTokens, { fit: s.stats.fitTokenCount, score: s.stats.scoreTokenCount });
  t.equal(r.report.evalTokens, s.stats.scoreSampleCount);
  t.equal(r.report.inSample.tokens, s.stats.sampleCount);
  const best = r.report.candidates.reduce((a, c) => (c.relError < a.relError ? c : a));
  t.equal(r.report.alpha, best.alpha, 'the winner has the least held-out error');
  t.equal(r.report.errorAfter, best.relError);
  t.equal(r.report.inSample.errorAfter, best.inSampleError);
  // Recomputed independently: λ from the fit tokens' abs-max, the error on the score reservoir.
  const lam = smoothingFactors(s.stats.actAbsMax, weightColumnAbsMax(s.syn.weight, n, k), best.alpha, best.beta);
  const { layer } = await buildLayer(s.syn.weight, n, k, s.syn.bias, { scheme: 'w4a4', rule: 'even', rank: 16, lambda: lam, svd: { seed: 0x5d0e } });
  const score = s.stats.scoreSamples();
  const yScore = await matmulNT(score.data, score.shape[0], k, s.syn.weight, n, s.syn.bias);
  t.equal(await deployedError(layer, score.data, score.shape[0], yScore), best.relError, 'held-out error = the score reservoir\'s');
  t.ok(r.report.errorAfter < r.report.errorBefore);
  t.same(r.report.warnings, []);
  t.equal(r.report.gptq, null);
});

t.test('GPTQ with fewer fit tokens than inputs: damping chosen on held-out tokens, never worse than RTN', async (t) => {
  const s = await setup(128, 5);
  t.ok(s.stats.fitTokenCount < k);
  const g = await quantizeLinear(s.w, s.b, s.stats, { rank: 16, searchAlpha: false, gptq: true }, 'blocks.0.ff');
  const rep = g.report.gptq!;
  t.match(rep.risk, new RegExp(`^${s.stats.fitTokenCount} fit tokens for K = ${k} inputs`));
  t.same(rep.candidates.map((c) => c.damp), GPTQ_DAMP_STEPS.map((x) => x * 0.01), 'the damping ladder');
  const first = rep.candidates[0];
  // The overfitting the guard exists for: at the default damping GPTQ looks better than RTN on the
  // tokens it was fitted to and is worse on held-out ones.
  t.ok(first.inSampleError < rep.rtnInSampleError * 0.95, `in-sample: GPTQ ${first.inSampleError} vs RTN ${rep.rtnInSampleError}`);
  t.ok(first.relError > rep.rtnError, `held-out: GPTQ ${first.relError} vs RTN ${rep.rtnError}`);
  const best = rep.candidates.reduce((a, c) => (c.relError < a.relError ? c : a));
  t.equal(rep.damp, best.damp);
  t.equal(rep.fallback, !(best.relError < rep.rtnError));
  t.equal(g.report.residual, rep.fallback ? 'rtn' : 'gptq');
  t.ok(g.report.errorAfter <= rep.rtnError, 'the guarded layer is never worse than RTN on the held-out tokens');
  // On 2048 tokens nobody has seen, the guarded layer beats both RTN and unguarded GPTQ.
  const rtn = await quantizeLinear(s.w, s.b, s.stats, { rank: 16, searchAlpha: false, gptq: false }, 'l');
  const guarded = await s.freshError(g.layer), plain = await s.freshError(rtn.layer);
  const lam = smoothingFactors(s.stats.actAbsMax, weightColumnAbsMax(s.syn.weight, n, k), 0.5);
  const unguarded = (await buildLayer(s.syn.weight, n, k, s.syn.bias, {
    scheme: 'w4a4', rule: 'even', rank: 16, lambda: lam, svd: { seed: 0x5d0e },
    gptq: { config: { blockSize: 128, damp: 0.01, actOrder: false }, hessian: await s.stats.hessian(lam) },
  })).layer;
  const over = await s.freshError(unguarded);
  t.ok(guarded < plain && guarded < over, `fresh tokens: guarded ${guarded}, RTN ${plain}, GPTQ at damp 0.01 ${over}`);
  t.equal(g.report.warnings.length, 1);
  t.match(g.report.warnings[0], new RegExp(`layer 'blocks\\.0\\.ff': GPTQ at risk of overfitting \\(${s.stats.fitTokenCount} fit tokens for K = ${k} inputs`));
  t.match(g.report.warnings[0], new RegExp(`${s.stats.fitTokenCount} fit \\+ ${s.stats.scoreTokenCount} held-out tokens, K = ${k}`));
});

t.test('GPTQ on an ill-conditioned Hessian (duplicated inputs, enough tokens) is guarded too', async (t) => {
  const s = await setup(2048, 7, (x) => {
    for (let i = 0; i < x.length / k; i++) for (let j = 0; j < 8; j++) x[i * k + 100 + j] = x[i * k + 200 + j];
  });
  const g = await quantizeLinear(s.w, s.b, s.stats, { rank: 16, gptq: true }, 'l');
  const rep = g.report.gptq!;
  t.ok(s.stats.fitTokenCount > k);
  t.ok(rep.minPivotRatio < 0.05, `min pivot ratio ${rep.minPivotRatio}`);
  t.match(rep.risk, /^ill-conditioned Hessian/);
  t.equal(rep.candidates.length, GPTQ_DAMP_STEPS.length);
  t.ok(g.report.errorAfter <= rep.rtnError);
  t.equal(g.report.warnings.length, 1);
});

t.test('GPTQ with plenty of tokens: no risk, one damping, kept when it beats RTN; no holdout: a warning', async (t) => {
  const s = await setup(4096, 9);
  const g = await quantizeLinear(s.w, s.b, s.stats, { rank: 16, searchAlpha: false, gptq: true }, 'l');
  const rep = g.report.gptq!;
  t.equal(rep.risk, null, `min pivot ratio ${rep.minPivotRatio}`);
  t.equal(rep.candidates.length, 1);
  t.notOk(rep.fallback);
  t.ok(rep.candidates[0].relError < rep.rtnError);
  t.equal(g.report.residual, 'gptq');
  t.same(g.report.warnings, []);

  const noHold = new LayerStatsCollector(k, { hessian: true, maxSamples: 512 });
  await noHold.observeAsync(Tensor.fromStorage(s.syn.x.slice(0, 512 * k), [512, k], 'f32'));
  const h = await quantizeLinear(s.w, s.b, noHold, { rank: 16, gptq: true, searchAlpha: true, alphaCandidates: [0.5] }, 'x.proj');
  t.notOk(h.report.heldOut);
  t.equal(h.report.evalTokens, 512);
  t.match(h.report.warnings.join('\n'), /layer 'x\.proj': no held-out tokens .*scored on the calibration tokens themselves/);
  t.notOk(h.report.gptq!.fallback, 'no fall-back decided in-sample');
});

t.test('quantizeModel: the split follows config.holdout; the report gathers the warnings', async (t) => {
  const model = new Sequential(new Linear(96, 64, { seed: 1 }), new Linear(64, 32, { seed: 2 }));
  const batch = (seed: number) => {
    const syn = syntheticLayer({ outFeatures: 1, inFeatures: 96, tokens: 40, seed });
    return [Tensor.fromStorage(syn.x, [40, 96], 'f32')];
  };
  const report = await quantizeModel(model, { rank: 4, searchAlpha: false, gptq: true }, [batch(1), batch(2)]);
  t.equal(report.layers.length, 2);
  for (const l of report.layers) {
    t.ok(l.heldOut);
    t.equal(l.calibrationTokens.fit + l.calibrationTokens.score, 80);
    t.ok(l.calibrationTokens.score > 5 && l.calibrationTokens.score < 35, `score tokens ${l.calibrationTokens.score}`);
  }
  // 80 tokens, ~60 fit, for K = 96 and 64: both layers at risk, both warned about.
  t.equal(report.warnings.length, 2);
  t.match(report.warnings[0], /^layer '0': GPTQ at risk of overfitting \(\d+ fit tokens for K = 96 inputs/);
  t.match(report.warnings[1], /^layer '1': GPTQ at risk of overfitting/);
  const none = await quantizeModel(new Sequential(new Linear(96, 64, { seed: 1 }), new Linear(64, 32, { seed: 2 })), { rank: 4, holdout: 0, searchAlpha: false, gptq: false }, [batch(1)]);
  for (const l of none.layers) t.equal(l.calibrationTokens.score, 0);
  t.same(none.warnings, [], 'no choice made: nothing to warn about');
});
