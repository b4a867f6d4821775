/**
 * The quality benchmark: the relative output error ‖Y_q − Y‖/‖Y‖ of the deployed layer for each
 * scheme × method × rank on synthetic diffusion-transformer layers, and timings of quantizeLinear
 * on one 3072 → 12288 layer with rank 32 (fixed α RTN, 10-candidate α search, GPTQ residual).
 * Benchmarks never assert.
 */

import os from 'node:os';
import { Tensor } from '../tensor.js';
import { singleRunFlags, type Flag } from './reliability.js';
import {
  LayerStatsCollector,
  QUALITY_METHODS,
  qualityStudy,
  quantizeLinear,
  syntheticLayer,
  type QualityCell,
} from '../quant/index.js';
import type { SVDQuantConfigInput, SyntheticLayerOptions } from '../quant/index.js';

export interface QualityBenchConfig {
  /** Threads of the study and of quantizeLinear. */
  threads: number;
  /** The second layer is 1024×1024 with 4096 tokens instead of 512×512. */
  large?: boolean;
  /** Only the first (256×256) layer. */
  quick?: boolean;
  /** Time quantizeLinear on a 3072 → 12288 layer (tens of seconds). */
  timings?: boolean;
}

export interface QualityRecord extends QualityCell {
  kind: 'quality';
  /** `outFeatures x inFeatures` of the synthetic layer. */
  layer: string;
}

export interface QuantizeTimingRecord {
  kind: 'quantize-timing';
  run: string;
  N: number;
  K: number;
  rank: number;
  tokens: number;
  threads: number;
  seconds: number;
  targetSeconds: number;
  alpha: number | null;
  errorBefore: number;
  errorAfter: number;
  /** Reliability flags (lib/bench/reliability.ts): a single run, so only the machine's load. */
  flags: Flag[];
}

export type QualityBenchRecord = QualityRecord | QuantizeTimingRecord;

export interface QualityLayerResult {
  label: string;
  outFeatures: number;
  inFeatures: number;
  /** Calibration plus evaluation tokens (half each). */
  tokens: number;
  seconds: number;
  records: QualityRecord[];
}

export interface QuantizeTimingsResult {
  N: number;
  K: number;
  rank: number;
  tokens: number;
  threads: number;
  /** Synthetic layer and calibration, not part of the timed runs. */
  setupSeconds: number;
  records: QuantizeTimingRecord[];
}

export interface QualityBenchResult {
  layers: QualityLayerResult[];
  timings?: QuantizeTimingsResult;
  records: QualityBenchRecord[];
}

/** One step of the quality suite, as the progress hooks see it. */
export interface QualityStep {
  index: number;
  total: number;
  label: string;
}

export interface QualityBenchHooks {
  onStart?(step: QualityStep): void;
  onLayer?(layer: QualityLayerResult): void;
  onTimings?(timings: QuantizeTimingsResult): void;
}

const QUALITY_SCHEMES = ['w4a4', 'mxfp4'] as const;
const TIMING_RUNS: ReadonlyArray<[string, SVDQuantConfigInput, number]> = [
  ['fixed α, RTN', { searchAlpha: false, gptq: false }, 3],
  ['10-candidate α search, RTN', { searchAlpha: true, gptq: false }, 20],
  ['fixed α, GPTQ residual', { searchAlpha: false, gptq: true }, 20],
];

type LayerSpec = SyntheticLayerOptions & { outFeatures: number; inFeatures: number; tokens: number };

function qualityLayers(config: QualityBenchConfig): LayerSpec[] {
  const layers: LayerSpec[] = [{ outFeatures: 256, inFeatures: 256, tokens: 2048, seed: 1 }];
  if (config.quick) return layers;
  layers.push(
    config.large
      ? { outFeatures: 1024, inFeatures: 1024, tokens: 4096, seed: 2 }
      : { outFeatures: 512, inFeatures: 512, tokens: 4096, seed: 2 },
  );
  return layers;
}

export async function runQualityBench(config: QualityBenchConfig, hooks: QualityBenchHooks = {}): Promise<QualityBenchResult> {
  const { threads } = config;
  const layers = qualityLayers(config);
  const total = layers.length + (config.timings ? 1 + TIMING_RUNS.length : 0);
  let index = 0;
  const result: QualityBenchResult = { layers: [], records: [] };

  for (const layer of layers) {
    const label = `${layer.outFeatures}x${layer.inFeatures}`;
    hooks.onStart?.({ index: index++, total, label: `quality study, synthetic ${label} layer` });
    const t0 = performance.now();
    const cells = await qualityStudy({ layer, schemes: [...QUALITY_SCHEMES], rank: 32, sweepRanks: [0, 8, 16, 32, 64], threads });
    const seconds = (performance.now() - t0) / 1000;
    const order = (c: QualityCell): number => QUALITY_METHODS.indexOf(c.method) * 1000 + c.rank;
    const records: QualityRecord[] = [];
    for (const scheme of QUALITY_SCHEMES) {
      for (const c of cells.filter((x) => x.scheme === scheme).sort((a, b) => order(a) - order(b))) {
        records.push({ kind: 'quality', ...c, layer: label });
      }
    }
    const layerResult: QualityLayerResult = {
      label,
      outFeatures: layer.outFeatures,
      inFeatures: layer.inFeatures,
      tokens: layer.tokens,
      seconds,
      records,
    };
    result.layers.push(layerResult);
    result.records.push(...records);
    hooks.onLayer?.(layerResult);
  }

  if (config.timings) {
    const n = 12288, k = 3072, m = 1024, rank = 32;
    hooks.onStart?.({ index: index++, total, label: `quantizeLinear setup: synthetic ${k} -> ${n} layer, ${m} calibration tokens` });
    const g0 = performance.now();
    const syn = syntheticLayer({ outFeatures: n, inFeatures: k, tokens: m, seed: 3, spikes: 8, tailDof: 4 });
    const stats = new LayerStatsCollector(k, { hessian: true, maxSamples: m, holdout: 0.25, threads });
    await stats.observeAsync(Tensor.fromStorage(syn.x, [m, k], 'f32'));
    const timings: QuantizeTimingsResult = { N: n, K: k, rank, tokens: m, threads, setupSeconds: (performance.now() - g0) / 1000, records: [] };
    const w = Tensor.fromStorage(syn.weight, [n, k], 'f32');
    const bias = Tensor.fromStorage(syn.bias!, [n], 'f32');
    for (const [name, extra, target] of TIMING_RUNS) {
      hooks.onStart?.({ index: index++, total, label: `quantizeLinear ${k} -> ${n}, ${name}` });
      const loadBefore = os.loadavg()[0];
      const { report } = await quantizeLinear(w, bias, stats, { rank, threads, ...extra }, 'bench.ff');
      const flags = singleRunFlags([loadBefore, os.loadavg()[0]], os.cpus().length);
      timings.records.push({
        kind: 'quantize-timing', run: name, N: n, K: k, rank, tokens: m, threads, seconds: report.seconds, targetSeconds: target,
        alpha: report.alpha, errorBefore: report.errorBefore, errorAfter: report.errorAfter, flags,
      });
    }
    result.timings = timings;
    result.records.push(...timings.records);
    hooks.onTimings?.(timings);
  }
  return result;
}
