/**
 * Quality benchmark (issue 4 item 8): `node --import tsx bench/quality.ts [--json FILE] [--threads N]
 * [--no-timings] [--large]`. Prints the table scheme × method × rank → ‖Y_q − Y‖/‖Y‖ of the deployed
 * layer on synthetic diffusion-transformer layers, one JSON record per cell
 * {kind: 'quality', scheme, method, rank, relError, layer}, and timings of quantizeLinear for one
 * 3072 → 12288 layer with rank 32 (fixed α RTN, 10-candidate α search on 1024 tokens, GPTQ residual).
 * Benchmarks never assert.
 */
import { writeFile } from 'node:fs/promises';
import { Tensor } from '../lib/tensor.js';
import { LayerStatsCollector, qualityStudy, quantizeLinear, syntheticLayer, QUALITY_METHODS } from '../lib/quant/index.js';
import type { QualityCell } from '../lib/quant/index.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const jsonFile = opt('--json');
const threads = Number(opt('--threads') ?? 2);
const records: object[] = [];

const layers = [
  { outFeatures: 256, inFeatures: 256, tokens: 2048, seed: 1 },
  ...(args.includes('--large') ? [{ outFeatures: 1024, inFeatures: 1024, tokens: 4096, seed: 2 }] : [{ outFeatures: 512, inFeatures: 512, tokens: 4096, seed: 2 }]),
];

for (const layer of layers) {
  const t0 = performance.now();
  const cells = await qualityStudy({ layer, schemes: ['w4a4', 'mxfp4'], rank: 32, sweepRanks: [0, 8, 16, 32, 64], threads });
  const label = `${layer.outFeatures}x${layer.inFeatures}`;
  console.log(`\n## Relative output error ‖Y_q − Y‖/‖Y‖, synthetic ${label} layer, ${layer.tokens / 2} calibration + ${layer.tokens / 2} evaluation tokens (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  console.log('| scheme | method | rank | relError |');
  console.log('|---|---|---|---|');
  const order = (c: QualityCell): number => QUALITY_METHODS.indexOf(c.method) * 1000 + c.rank;
  for (const scheme of ['w4a4', 'mxfp4']) {
    for (const c of cells.filter((x) => x.scheme === scheme).sort((a, b) => order(a) - order(b))) {
      console.log(`| ${c.scheme} | ${c.method} | ${c.rank} | ${c.relError.toFixed(4)} |`);
      records.push({ kind: 'quality', ...c, layer: label });
    }
  }
}

if (!args.includes('--no-timings')) {
  const n = 12288, k = 3072, m = 1024;
  console.log(`\n## quantizeLinear timings: ${k} → ${n}, rank 32, ${m} calibration tokens, ${threads} threads\n`);
  const g0 = performance.now();
  const syn = syntheticLayer({ outFeatures: n, inFeatures: k, tokens: m, seed: 3, spikes: 8, tailDof: 4 });
  const stats = new LayerStatsCollector(k, { hessian: true, maxSamples: m, threads });
  await stats.observeAsync(Tensor.fromStorage(syn.x, [m, k], 'f32'));
  console.log(`(setup: synthetic layer + calibration ${((performance.now() - g0) / 1000).toFixed(1)} s, not timed below)\n`);
  const w = Tensor.fromStorage(syn.weight, [n, k], 'f32');
  const bias = Tensor.fromStorage(syn.bias!, [n], 'f32');
  const runs: [string, object, number][] = [
    ['fixed α, RTN', { rank: 32, threads }, 3],
    ['10-candidate α search, RTN', { rank: 32, threads, searchAlpha: true }, 20],
    ['fixed α, GPTQ residual', { rank: 32, threads, gptq: true }, 20],
  ];
  console.log('| run | seconds | target s | α | errorBefore | errorAfter |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, cfg, target] of runs) {
    const { report } = await quantizeLinear(w, bias, stats, cfg, 'bench.ff');
    console.log(`| ${name} | ${report.seconds.toFixed(2)} | ${target} | ${report.alpha} | ${report.errorBefore.toFixed(4)} | ${report.errorAfter.toFixed(4)} |`);
    records.push({ kind: 'quantize-timing', run: name, N: n, K: k, rank: 32, tokens: m, threads, seconds: report.seconds, targetSeconds: target, alpha: report.alpha, errorBefore: report.errorBefore, errorAfter: report.errorAfter });
  }
}

if (jsonFile !== undefined) {
  await writeFile(jsonFile, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  console.log(`\nwrote ${records.length} records to ${jsonFile}`);
}
