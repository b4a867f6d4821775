/**
 * Quality study (issue 4 item 8): on synthetic diffusion-transformer layers, the relative output
 * error ‖Y_q − Y‖/‖Y‖ of the deployed layer (native kernel: weights AND activations quantized) for
 *   naive           RTN of W, no smoothing, no low-rank branch
 *   smoothquant     smoothing only (rank 0)
 *   lorc            no smoothing; Q(W) plus a rank-r branch fitted to the quantization error W − Q(W)
 *   svd             no smoothing; rank-r SVD of W, residual RTN
 *   svdquant        smoothing (runtime division) + rank-r SVD of Ŵ + residual RTN
 *   svdquant+gptq   the same with a GPTQ residual on H_λ
 *   svdquant-folded Quark's way: 1/λ folded into R and L_down, activations quantized unsmoothed
 * and a rank sweep of svdquant. Calibration (abs-max, XᵀX) uses the first half of the tokens; the
 * errors are measured on the other half.
 */
import { ArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { SCHEMES } from '../formats/schemes.js';
import type { MxScaleRule, SchemeName } from '../formats/schemes.js';
import { dequantize } from '../formats/quantize.js';
import { ErrorCorrectedLinear } from './error-corrected-linear.js';
import { LayerStatsCollector } from './calibration.js';
import { buildLayer, deployedError } from './quantize-layer.js';
import { matmulNT, residualRtn, svdTopR } from './ops.js';
import { smoothingFactors, weightColumnAbsMax } from './smoothing.js';
import { syntheticLayer } from './synthetic.js';
import type { SyntheticLayer, SyntheticLayerOptions } from './synthetic.js';
import { DEFAULT_GPTQ } from './config.js';
import type { GptqConfig } from './config.js';

export type QualityMethod = 'naive' | 'smoothquant' | 'lorc' | 'svd' | 'svdquant' | 'svdquant+gptq' | 'svdquant-folded';
export const QUALITY_METHODS: readonly QualityMethod[] = ['naive', 'smoothquant', 'lorc', 'svd', 'svdquant', 'svdquant+gptq', 'svdquant-folded'];

export interface QualityCell {
  scheme: SchemeName;
  method: QualityMethod;
  rank: number;
  relError: number;
}

export interface QualityOptions {
  schemes?: SchemeName[];
  /** Rank of the low-rank methods in the method comparison. Default 32. */
  rank?: number;
  /** Ranks of the svdquant sweep. Default [0, 8, 16, 32, 64]. */
  sweepRanks?: number[];
  methods?: QualityMethod[];
  alpha?: number;
  gptq?: GptqConfig;
  mxScaleRule?: MxScaleRule;
  /** The synthetic layer (tokens are split half calibration, half evaluation). Default 256×256, 2048 tokens. */
  layer?: SyntheticLayerOptions;
  threads?: number;
}

interface Prepared {
  syn: SyntheticLayer;
  n: number;
  k: number;
  evalX: Float32Array;
  evalM: number;
  yRef: Float32Array;
  stats: LayerStatsCollector;
  wmax: Float32Array;
}

async function prepare(syn: SyntheticLayer, threads: number): Promise<Prepared> {
  const { outFeatures: n, inFeatures: k, tokens } = syn;
  if (tokens < 2) throw new ArgumentError('options.layer.tokens', 'at least 2 (half calibration, half evaluation)', tokens);
  const calM = Math.floor(tokens / 2);
  const evalM = tokens - calM;
  const stats = new LayerStatsCollector(k, { hessian: true, maxSamples: 0, threads });
  await stats.observeAsync(Tensor.fromStorage(syn.x.slice(0, calM * k), [calM, k], 'f32'));
  const evalX = syn.x.slice(calM * k);
  const yRef = await matmulNT(evalX, evalM, k, syn.weight, n, syn.bias, threads);
  return { syn, n, k, evalX, evalM, yRef, stats, wmax: weightColumnAbsMax(syn.weight, n, k) };
}

/** One method's layer on a prepared synthetic layer. */
async function methodLayer(p: Prepared, scheme: SchemeName, method: QualityMethod, rank: number, o: Required<Pick<QualityOptions, 'alpha' | 'gptq' | 'mxScaleRule' | 'threads'>>): Promise<ErrorCorrectedLinear> {
  const { syn, n, k } = p;
  const base = { scheme, rule: o.mxScaleRule, threads: o.threads };
  const lam = (): Float32Array => smoothingFactors(p.stats.actAbsMax, p.wmax, o.alpha);
  switch (method) {
    case 'naive':
      return (await buildLayer(syn.weight, n, k, syn.bias, { ...base, rank: 0 })).layer;
    case 'smoothquant':
      return (await buildLayer(syn.weight, n, k, syn.bias, { ...base, rank: 0, lambda: lam() })).layer;
    case 'svd':
      return (await buildLayer(syn.weight, n, k, syn.bias, { ...base, rank })).layer;
    case 'svdquant':
      return (await buildLayer(syn.weight, n, k, syn.bias, { ...base, rank, lambda: lam() })).layer;
    case 'svdquant+gptq': {
      const l = lam();
      return (await buildLayer(syn.weight, n, k, syn.bias, { ...base, rank, lambda: l, gptq: { config: o.gptq, hessian: await p.stats.hessian(l) } })).layer;
    }
    case 'svdquant-folded':
      return (await buildLayer(syn.weight, n, k, syn.bias, { ...base, rank, lambda: lam(), fold: true })).layer;
    case 'lorc': {
      const format = SCHEMES[scheme].weights;
      const { q } = await residualRtn(syn.weight, n, k, undefined, format, o.mxScaleRule, o.threads);
      const deq = (await dequantize(q)).data;
      const e = new Float32Array(n * k);
      for (let i = 0; i < e.length; i++) e[i] = syn.weight[i] - deq[i];
      const r = Math.min(rank, n, k);
      const lr = await svdTopR(e, n, k, r, { threads: o.threads });
      return new ErrorCorrectedLinear({
        scheme, weight: q, actScaleRule: o.mxScaleRule,
        ...(r > 0 ? { lDown: Tensor.fromStorage(lr.down, [r, k], 'f32'), lUp: Tensor.fromStorage(lr.up, [n, r], 'f32') } : {}),
        ...(syn.bias ? { bias: Tensor.fromStorage(syn.bias, [n], 'f32') } : {}),
      });
    }
    default:
      throw new ArgumentError('method', `one of ${QUALITY_METHODS.join(', ')}`, method);
  }
}

/** The relative output error of one method on one synthetic layer. */
export async function methodError(syn: SyntheticLayer, scheme: SchemeName, method: QualityMethod, rank: number, options: QualityOptions = {}): Promise<number> {
  const o = { alpha: options.alpha ?? 0.5, gptq: options.gptq ?? { ...DEFAULT_GPTQ }, mxScaleRule: options.mxScaleRule ?? 'even', threads: options.threads ?? 0 };
  const p = await prepare(syn, o.threads);
  const layer = await methodLayer(p, scheme, method, rank, o);
  return deployedError(layer, p.evalX, p.evalM, p.yRef, o.threads);
}

/** The whole table: methods at `rank` (naive and smoothquant at rank 0) and the svdquant rank sweep. */
export async function qualityStudy(options: QualityOptions = {}): Promise<QualityCell[]> {
  const schemes = options.schemes ?? ['w4a4', 'mxfp4'];
  const rank = options.rank ?? 32;
  const sweep = options.sweepRanks ?? [0, 8, 16, 32, 64];
  const methods = options.methods ?? [...QUALITY_METHODS];
  const o = { alpha: options.alpha ?? 0.5, gptq: options.gptq ?? { ...DEFAULT_GPTQ }, mxScaleRule: options.mxScaleRule ?? 'even', threads: options.threads ?? 0 };
  const syn = syntheticLayer(options.layer ?? { outFeatures: 256, inFeatures: 256, tokens: 2048 });
  const p = await prepare(syn, o.threads);
  const cells: QualityCell[] = [];
  for (const scheme of schemes) {
    if (SCHEMES[scheme] === undefined) throw new ArgumentError('options.schemes', 'scheme names', scheme);
    const done = new Set<string>();
    const run = async (method: QualityMethod, r: number): Promise<void> => {
      const key = `${method}/${r}`;
      if (done.has(key)) return;
      done.add(key);
      const layer = await methodLayer(p, scheme, method, r, o);
      cells.push({ scheme, method, rank: r, relError: await deployedError(layer, p.evalX, p.evalM, p.yRef, o.threads) });
    };
    for (const method of methods) await run(method, method === 'naive' || method === 'smoothquant' ? 0 : rank);
    for (const r of sweep) await run('svdquant', r);
  }
  return cells;
}
