/**
 * SVDQuant of one linear layer (DESIGN.md §2): smoothing (fixed α, or a per-layer search over α —
 * and optionally β — scored on the DEPLOYED layer: smoothing, low-rank branch, residual quantization
 * and activation quantization all active, run by the native kernel on the calibration reservoir),
 * the low-rank branch from the top-r SVD of Ŵ (optionally refined), and the residual quantized by
 * round-to-nearest or by GPTQ on H_λ = diag(1/λ)·XᵀX·diag(1/λ).
 */
import { ArgumentError, NonFiniteError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { SCHEMES } from '../formats/schemes.js';
import type { MxScaleRule, SchemeName } from '../formats/schemes.js';
import type { QuantizedTensor } from '../formats/quantize.js';
import { resolveConfig } from './config.js';
import type { GptqConfig, ProgressStage, SVDQuantConfig, SVDQuantConfigInput, SvdConfig } from './config.js';
import { LayerStatsCollector } from './calibration.js';
import { ErrorCorrectedLinear } from './error-corrected-linear.js';
import { gptqQuantize, matmulNT, refineLowRank, relativeError, residualRtn, svdTopR } from './ops.js';
import type { LowRankFactors } from './ops.js';
import { scaleColumns, smoothingFactors, weightColumnAbsMax } from './smoothing.js';

export interface AlphaCandidateScore {
  alpha: number;
  beta: number;
  relError: number;
}

export interface LayerReport {
  name: string;
  scheme: SchemeName;
  outFeatures: number;
  inFeatures: number;
  /** α and β of the smoothing, or null without smoothing. */
  alpha: number | null;
  beta: number | null;
  rank: number;
  residual: 'rtn' | 'gptq';
  /** Every candidate scored by the α search (empty without a search). */
  candidates: AlphaCandidateScore[];
  /** Refinement weight errors ‖Ŵ − L_t − Q(Ŵ − L_t)‖_F (empty without refinement). */
  refineErrors: number[];
  /** Tokens the errors were measured on (the calibration reservoir). */
  evalTokens: number;
  /** ‖Y_q − Y‖/‖Y‖ of plain RTN of W (no smoothing, no low-rank branch), deployed scheme; NaN without tokens. */
  errorBefore: number;
  /** The same for the SVDQuant layer. */
  errorAfter: number;
  seconds: number;
}

export interface QuantizeLinearResult {
  layer: ErrorCorrectedLinear;
  report: LayerReport;
}

/** How one layer is built (the building block of quantizeLinear and of the quality study). */
export interface BuildOptions {
  scheme: SchemeName;
  rule: MxScaleRule;
  /** λ [K], or undefined for no smoothing. */
  lambda?: Float32Array;
  rank: number;
  svd?: Partial<SvdConfig> & { seed?: number };
  refineIterations?: number;
  /** GPTQ settings and the Hessian of the smoothed inputs (H_λ), or false / undefined for RTN. */
  gptq?: { config: GptqConfig; hessian: Float32Array } | false;
  /**
   * Quark's way: fold 1/λ back into R and L_down (R·diag(1/λ), L_down·diag(1/λ)) and keep no
   * runtime smoothing, so the activation quantizer sees the raw X.
   */
  fold?: boolean;
  threads?: number;
}

export interface BuiltLayer {
  layer: ErrorCorrectedLinear;
  refineErrors: number[];
}

/** Ŵ → low-rank branch → quantized residual → ErrorCorrectedLinear (no validation: internal). */
export async function buildLayer(w: Float32Array, n: number, k: number, bias: Float32Array | undefined, o: BuildOptions): Promise<BuiltLayer> {
  const format = SCHEMES[o.scheme].weights;
  const threads = o.threads ?? 0;
  const lam = o.lambda;
  const what = lam === undefined ? w : scaleColumns(w, n, k, lam);
  const r = Math.min(o.rank, n, k);
  const svdOpts = { method: o.svd?.method ?? 'auto', oversample: o.svd?.oversample ?? 16, powerIters: o.svd?.powerIters ?? 6, seed: o.svd?.seed ?? 0x5d0e5eed, threads };
  let lr: LowRankFactors | undefined;
  let refineErrors: number[] = [];
  if (r > 0) {
    if ((o.refineIterations ?? 0) > 0) {
      const ref = await refineLowRank(what, n, k, r, format, o.rule, o.refineIterations!, svdOpts);
      lr = ref.lowRank;
      refineErrors = ref.errors;
    } else {
      lr = await svdTopR(what, n, k, r, svdOpts);
    }
  }
  let q: QuantizedTensor;
  let down = lr?.down;
  if (o.fold === true && lam !== undefined) {
    const { residual } = await residualRtn(what, n, k, lr, format, o.rule, threads, true);
    const inv = new Float32Array(k);
    for (let j = 0; j < k; j++) inv[j] = 1 / lam[j];
    const rFolded = scaleColumns(residual!, n, k, inv);
    if (down !== undefined) down = scaleColumns(down, r, k, inv);
    if (o.gptq) {
      // H of the raw inputs = diag(λ)·H_λ·diag(λ).
      const hr = new Float32Array(k * k);
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) hr[i * k + j] = o.gptq.hessian[i * k + j] * lam[i] * lam[j];
      q = (await gptqQuantize(rFolded, n, k, hr, format, o.rule, { ...o.gptq.config, threads })).q;
    } else {
      q = (await residualRtn(rFolded, n, k, undefined, format, o.rule, threads)).q;
    }
  } else if (o.gptq) {
    const { residual } = await residualRtn(what, n, k, lr, format, o.rule, threads, true);
    q = (await gptqQuantize(residual!, n, k, o.gptq.hessian, format, o.rule, { ...o.gptq.config, threads })).q;
  } else {
    q = (await residualRtn(what, n, k, lr, format, o.rule, threads)).q;
  }
  const layer = new ErrorCorrectedLinear({
    scheme: o.scheme, weight: q, actScaleRule: o.rule,
    ...(lam !== undefined && o.fold !== true ? { smooth: Tensor.fromStorage(lam, [k], 'f32') } : {}),
    ...(lr !== undefined && r > 0 ? { lDown: Tensor.fromStorage(down!, [r, k], 'f32'), lUp: Tensor.fromStorage(lr.up, [n, r], 'f32') } : {}),
    ...(bias !== undefined ? { bias: Tensor.fromStorage(bias, [n], 'f32') } : {}),
  });
  return { layer, refineErrors };
}

/** ‖Y_layer − yRef‖/‖yRef‖ of the deployed (native) layer on x [m, K]. */
export async function deployedError(layer: ErrorCorrectedLinear, x: Float32Array, m: number, yRef: Float32Array, threads = 0): Promise<number> {
  if (m === 0) return Number.NaN;
  const nat = await layer.toNative();
  try {
    const y = await nat.forward(Tensor.fromStorage(x, [m, layer.inFeatures], 'f32'), { threads });
    return relativeError(y.data, yRef);
  } finally {
    nat.dispose();
  }
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/**
 * Quantizes one linear layer: weight [N, K], bias [N] or undefined, the layer's calibration
 * statistics, the configuration (defaults filled in), and the layer's dotted name (for errors and
 * the report). `position` feeds the progress callback.
 */
export async function quantizeLinear(weight: Tensor, bias: Tensor | undefined, stats: LayerStatsCollector,
  config: SVDQuantConfigInput | SVDQuantConfig = {}, name = 'layer', position: { index: number; total: number } = { index: 0, total: 1 }): Promise<QuantizeLinearResult> {
  const t0 = performance.now();
  const cfg = resolveConfig(config);
  if (typeof name !== 'string') throw new ArgumentError('name', 'a string', name);
  if (!(weight instanceof Tensor) || weight.ndim !== 2) throw new ArgumentError('weight', `a 2-D tensor [N, K] (layer '${name}')`, weight instanceof Tensor ? weight.toString() : weight);
  const [n, k] = weight.shape;
  if (n < 1 || k < 1) throw new ArgumentError('weight', `a non-empty [N, K] tensor (layer '${name}')`, weight.toString());
  if (bias !== undefined && (!(bias instanceof Tensor) || bias.numel !== n || bias.ndim !== 1)) {
    throw new ArgumentError('bias', `undefined or a tensor of shape [${n}] (layer '${name}')`, bias instanceof Tensor ? bias.toString() : bias);
  }
  if (!(stats instanceof LayerStatsCollector) || stats.inFeatures !== k) {
    throw new ArgumentError('stats', `a LayerStatsCollector with inFeatures ${k} (layer '${name}')`, stats instanceof LayerStatsCollector ? stats.inFeatures : stats);
  }
  const w = weight.dtype === 'f32' ? (weight.data as Float32Array) : (weight.to('f32').data as Float32Array);
  const bad = firstNonFinite(w);
  if (bad >= 0) throw new NonFiniteError(`${name}.weight`, bad, w[bad]);
  const b = bias === undefined ? undefined : bias.dtype === 'f32' ? (bias.data as Float32Array) : (bias.to('f32').data as Float32Array);
  if (b !== undefined) {
    const bb = firstNonFinite(b);
    if (bb >= 0) throw new NonFiniteError(`${name}.bias`, bb, b[bb]);
  }
  if (cfg.gptq !== false && stats.xtx === null) {
    throw new ArgumentError('stats', `a collector created with { hessian: true } for GPTQ (layer '${name}')`);
  }
  const progress = (stage: ProgressStage): void => cfg.onProgress?.({ layer: name, index: position.index, total: position.total, stage });
  progress('start');

  const threads = cfg.threads;
  const rank = Math.min(cfg.rank, n, k);
  const samples = stats.samples();
  const m = samples.shape[0];
  const xs = samples.data;
  if (cfg.searchAlpha && cfg.smooth && m === 0) {
    throw new ArgumentError('stats', `a collector holding calibration tokens for the α search (layer '${name}' has none)`);
  }
  const yRef = m > 0 ? await matmulNT(xs, m, k, w, n, b, threads) : new Float32Array(0);
  const base: BuildOptions = { scheme: cfg.scheme, rule: cfg.mxScaleRule, rank, svd: { ...cfg.svd, seed: cfg.seed }, threads };

  // Smoothing: fixed or searched on the deployed layer.
  progress('smoothing');
  const wmax = weightColumnAbsMax(w, n, k);
  let alpha: number | null = null, beta: number | null = null;
  let lambda: Float32Array | undefined;
  const candidates: AlphaCandidateScore[] = [];
  let searched: BuiltLayer | undefined;
  if (cfg.smooth) {
    if (cfg.searchAlpha) {
      progress('alpha-search');
      let best = Number.POSITIVE_INFINITY;
      for (const a of cfg.alphaCandidates) {
        const betas = cfg.searchBeta ? cfg.betaCandidates : [cfg.smoothBeta ?? 1 - a];
        for (const bt of betas) {
          const lam = smoothingFactors(stats.actAbsMax, wmax, a, bt);
          const built = await buildLayer(w, n, k, b, { ...base, lambda: lam });
          const err = await deployedError(built.layer, xs, m, yRef, threads);
          candidates.push({ alpha: a, beta: bt, relError: err });
          if (err < best || (searched === undefined && !(err < best))) {
            best = err;
            alpha = a;
            beta = bt;
            lambda = lam;
            searched = built;
          }
        }
      }
    } else {
      alpha = cfg.smoothAlpha;
      beta = cfg.smoothBeta ?? 1 - cfg.smoothAlpha;
      lambda = smoothingFactors(stats.actAbsMax, wmax, alpha, beta);
    }
  }

  // Final layer: reuse the search's winner when nothing differs from how candidates were built.
  let built: BuiltLayer;
  if (searched !== undefined && cfg.refineIterations === 0 && cfg.gptq === false) {
    built = searched;
  } else {
    progress(cfg.refineIterations > 0 ? 'refine' : 'svd');
    let gptq: BuildOptions['gptq'] = false;
    if (cfg.gptq !== false) {
      progress('gptq');
      gptq = { config: cfg.gptq, hessian: await stats.hessian(lambda) };
    } else progress('residual');
    built = await buildLayer(w, n, k, b, { ...base, lambda, refineIterations: cfg.refineIterations, gptq });
  }

  progress('evaluate');
  let errorBefore = Number.NaN, errorAfter = Number.NaN;
  if (m > 0) {
    const plain = await buildLayer(w, n, k, b, { ...base, rank: 0 });
    errorBefore = await deployedError(plain.layer, xs, m, yRef, threads);
    errorAfter = await deployedError(built.layer, xs, m, yRef, threads);
  }
  progress('done');
  return {
    layer: built.layer,
    report: {
      name, scheme: cfg.scheme, outFeatures: n, inFeatures: k, alpha, beta, rank,
      residual: cfg.gptq === false ? 'rtn' : 'gptq', candidates, refineErrors: built.refineErrors,
      evalTokens: m, errorBefore, errorAfter, seconds: (performance.now() - t0) / 1000,
    },
  };
}

