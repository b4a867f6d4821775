// The orderings the SVDQuant paper reports, on small synthetic diffusion-transformer layers, with
// margins: SVDQuant < SmoothQuant < naive; LoRC not clearly better than naive; error falls as the rank
// grows; runtime smoothing beats folded smoothing for w4a4; GPTQ residual <= RTN residual.
import t from 'tap';
import { qualityStudy, syntheticLayer } from '../lib/quant/index.js';
import type { QualityCell } from '../lib/quant/index.js';

const layers = [
  { outFeatures: 256, inFeatures: 256, tokens: 2048, seed: 1 },
  { outFeatures: 192, inFeatures: 320, tokens: 2048, seed: 7 },
];

for (const layer of layers) {
  t.test(`orderings on a ${layer.outFeatures}x${layer.inFeatures} synthetic layer (seed ${layer.seed})`, async (t) => {
    const cells = await qualityStudy({ layer, schemes: ['w4a4', 'mxfp4'], rank: 32, sweepRanks: [0, 8, 16, 32, 64] });
    const get = (scheme: string, method: string, rank: number): number => {
      const c = cells.find((x: QualityCell) => x.scheme === scheme && x.method === method && x.rank === rank);
      if (c === undefined) throw new Error(`missing ${scheme}/${method}/${rank}`);
      return c.relError;
    };
    for (const scheme of ['w4a4', 'mxfp4']) {
      const naive = get(scheme, 'naive', 0), sq = get(scheme, 'smoothquant', 0), lorc = get(scheme, 'lorc', 32);
      const svdq = get(scheme, 'svdquant', 32), gptq = get(scheme, 'svdquant+gptq', 32), folded = get(scheme, 'svdquant-folded', 32);
      t.comment(`${scheme}: naive ${naive.toFixed(4)} smoothquant ${sq.toFixed(4)} lorc ${lorc.toFixed(4)} svd ${get(scheme, 'svd', 32).toFixed(4)} svdquant ${svdq.toFixed(4)} +gptq ${gptq.toFixed(4)} folded ${folded.toFixed(4)}`);
      t.ok(svdq < 0.7 * sq, `${scheme}: svdquant ${svdq.toFixed(4)} well below smoothquant ${sq.toFixed(4)}`);
      // mxfp4's per-32 E8M0 groups already absorb much of the outlier range: smoothing alone gains less there.
      t.ok(sq < (scheme === 'w4a4' ? 0.8 : 1) * naive, `${scheme}: smoothquant ${sq.toFixed(4)} below naive ${naive.toFixed(4)}`);
      t.ok(lorc > 0.75 * naive, `${scheme}: lorc ${lorc.toFixed(4)} not clearly better than naive ${naive.toFixed(4)}`);
      t.ok(svdq < 0.5 * naive, `${scheme}: svdquant ${svdq.toFixed(4)} at most half of naive`);
      t.ok(gptq <= svdq * 1.0, `${scheme}: gptq ${gptq.toFixed(4)} <= rtn ${svdq.toFixed(4)}`);
      if (scheme === 'w4a4') t.ok(svdq < 0.8 * folded, `w4a4: runtime smoothing ${svdq.toFixed(4)} beats folded ${folded.toFixed(4)}`);
      const sweep = [0, 8, 16, 32, 64].map((r) => get(scheme, 'svdquant', r));
      for (let i = 1; i < sweep.length; i++) t.ok(sweep[i] < sweep[i - 1], `${scheme}: rank sweep falls (${sweep.map((v) => v.toFixed(4)).join(' > ')})`);
    }
  });
}

t.test('synthetic layers are deterministic by seed and have the intended statistics', async (t) => {
  const a = syntheticLayer({ outFeatures: 64, inFeatures: 128, tokens: 50, seed: 5 });
  const b = syntheticLayer({ outFeatures: 64, inFeatures: 128, tokens: 50, seed: 5 });
  const c = syntheticLayer({ outFeatures: 64, inFeatures: 128, tokens: 50, seed: 6 });
  t.same(Array.from(a.weight), Array.from(b.weight));
  t.same(Array.from(a.x), Array.from(b.x));
  t.notSame(Array.from(a.x.slice(0, 100)), Array.from(c.x.slice(0, 100)));
  const k = 128;
  const amax = new Float64Array(k);
  for (let i = 0; i < a.x.length; i++) amax[i % k] = Math.max(amax[i % k], Math.abs(a.x[i]));
  const normal = [...amax].filter((_, j) => !a.outliers.includes(j));
  const typical = normal.sort((x, y) => x - y)[Math.floor(normal.length / 2)];
  for (const j of a.outliers) t.ok(amax[j] > 5 * typical, `outlier channel ${j}: ${amax[j].toFixed(1)} vs typical ${typical.toFixed(1)}`);
  // Token-to-token variation of an outlier channel.
  const j = a.outliers[0];
  const vals = Array.from({ length: 50 }, (_, tk) => Math.abs(a.x[tk * k + j]));
  t.ok(Math.max(...vals) > 2 * Math.min(...vals));
});
