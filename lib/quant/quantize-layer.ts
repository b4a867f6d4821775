/**
 * SVDQuant of one linear layer (DESIGN.md §2): smoothing (fixed α, or a per-layer search over α —
 * and optionally β — scored on the DEPLOYED layer: smoothing, low-rank branch, residual quantization
 * and activation quantization all active, run by the native kernel), the low-rank branch from the
 * top-r SVD of Ŵ (optionally refined), and the residual quantized by round-to-nearest or by GPTQ on
 * H_λ = diag(1/λ)·XᵀX·diag(1/λ).
 *
 * Held-out scoring (issue 20): the collector splits the calibration tokens into fit tokens (the
 * statistics: abs-max, XᵀX) and score tokens (calibration.ts). Every choice made here — α and β,
 * GPTQ's damping, GPTQ or RTN — is scored on the score tokens, and the report gives the errors on
 * both (held-out and in-sample). GPTQ is guarded: at risk of overfitting (fewer fit tokens than
 * inputs, or an ill-conditioned Hessian) stronger dampings are tried, and RTN replaces GPTQ when it
 * scores no worse on the held-out tokens; both are reported and warned about.
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
import type { GptqOutcome, LowRankFactors } from './ops.js';
import { scaleColumns, smoothingFactors, weightColumnAbsMax } from './smoothing.js';

export interface AlphaCandidateScore {
  alpha: number;
  beta: number;
  /** Deployed error on the tokens choices are scored on (held out when the report's heldOut). */
  relError: number;
  /** The same on the fit tokens (in-sample). */
  inSampleError: number;
}

export interface GptqDampScore {
  /** Damping asked for (fraction of mean diag H). */
  damp: number;
  /** Damping GPTQ actually added (absolute; raised when the Cholesky failed). */
  dampAdded: number;
  /** Deployed error on the scoring tokens (held out when the report's heldOut). */
  relError: number;
  /** The same on the fit tokens (in-sample): GPTQ's own objective favours it. */
  inSampleError: number;
}

/** How GPTQ was guarded against overfitting (issue 20 item 3). */
export interface GptqReport {
  /** Why GPTQ was at risk of overfitting, or null: fewer fit tokens than inputs, or an ill-conditioned Hessian. */
  risk: string | null;
  /** Smallest fraction of a column's damped variance the later columns do not explain (ops.ts). */
  minPivotRatio: number;
  /** Every damping tried (one without risk or without held-out tokens). */
  candidates: GptqDampScore[];
  /** The damping of the GPTQ candidate with the least scored error. */
  damp: number;
  /** The RTN residual's error on the same tokens (same smoothing and low-rank branch). */
  rtnError: number;
  rtnInSampleError: number;
  /** True when RTN scored no worse than the best GPTQ candidate and replaced it. */
  fallback: boolean;
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
  /** The residual method of the final layer (GPTQ may have fallen back to RTN: see `gptq`). */
  residual: 'rtn' | 'gptq';
  /** Every candidate scored by the α search (empty without a search). */
  candidates: AlphaCandidateScore[];
  /** Refinement weight errors ‖Ŵ − L_t − Q(Ŵ − L_t)‖_F (empty without refinement). */
  refineErrors: number[];
  /** Calibration tokens observed: fit (abs-max, XᵀX) and score (held out). */
  calibrationTokens: { fit: number; score: number };
  /** Whether choices and errorBefore / errorAfter were scored on held-out tokens (false: no score tokens). */
  heldOut: boolean;
  /** Tokens errorBefore / errorAfter were measured on (the score reservoir; the fit one without score tokens). */
  evalTokens: number;
  /** ‖Y_q − Y‖/‖Y‖ of plain RTN of W (no smoothing, no low-rank branch), deployed scheme; NaN without tokens. */
  errorBefore: number;
  /** The same for the SVDQuant layer. */
  errorAfter: number;
  /** The same two errors on the fit reservoir: tokens the statistics were computed from. */
  inSample: { tokens: number; errorBefore: number; errorAfter: number };
  /** GPTQ's guard: dampings tried, RTN comparison, fall-back (null without GPTQ). */
  gptq: GptqReport | null;
  /** Why a result may be worse than it looks (overfitting risk, fall-back, in-sample scoring). */
  warnings: string[];
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
  /** A low-rank branch of Ŵ computed before (same λ and rank): reused instead of a new SVD. */
  lowRank?: LowRankFactors;
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
  /** The branch's factors before any folding (undefined at rank 0), for reuse with another residual. */
  lowRank: LowRankFactors | undefined;
  /** GPTQ's damping actually added and its conditioning figure (undefined for RTN). */
  gptq?: { dampAdded: number; minPivotRatio: number };
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
  if (r > 0 && o.lowRank !== undefined) {
    lr = o.lowRank;
  } else if (r > 0) {
    if ((o.refineIterations ?? 0) > 0) {
      const ref = await refineLowRank(what, n, k, r, format, o.rule, o.refineIterations!, svdOpts);
      lr = ref.lowRank;
      refineErrors = ref.errors;
    } else {
      lr = await svdTopR(what, n, k, r, svdOpts);
    }
  }
  let q: QuantizedTensor;
  let gptqInfo: BuiltLayer['gptq'];
  const keep = (g: GptqOutcome): QuantizedTensor => {
    gptqInfo = { dampAdded: g.dampAdded, minPivotRatio: g.minPivotRatio };
    return g.q;
  };
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
      q = keep(await gptqQuantize(rFolded, n, k, hr, format, o.rule, { ...o.gptq.config, threads }));
    } else {
      q = (await residualRtn(rFolded, n, k, undefined, format, o.rule, threads)).q;
    }
  } else if (o.gptq) {
    const { residual } = await residualRtn(what, n, k, lr, format, o.rule, threads, true);
    q = keep(await gptqQuantize(residual!, n, k, o.gptq.hessian, format, o.rule, { ...o.gptq.config, threads }));
  } else {
    q = (await residualRtn(what, n, k, lr, format, o.rule, threads)).q;
  }
  const layer = new ErrorCorrectedLinear({
    scheme: o.scheme, weight: q, actScaleRule: o.rule,
    ...(lam !== undefined && o.fold !== true ? { smooth: Tensor.fromStorage(lam, [k], 'f32') } : {}),
    ...(lr !== undefined && r > 0 ? { lDown: Tensor.fromStorage(down!, [r, k], 'f32'), lUp: Tensor.fromStorage(lr.up, [n, r], 'f32') } : {}),
    ...(bias !== undefined ? { bias: Tensor.fromStorage(bias, [n], 'f32') } : {}),
  });
  return { layer, refineErrors, lowRank: lr, ...(gptqInfo !== undefined ? { gptq: gptqInfo } : {}) };
}

/** ‖Y_layer − yRef‖/‖yRef‖ of the deployed (native) layer on x [m, K]. */
export async function deployedError(layer: ErrorCorrectedLinear, x: Float32Array, m: number, yRef: Float32Array, threads = 0): Promise<number> {
  return (await deployedErrors(layer, [{ x, m, yRef }], threads))[0];
}

/** Tokens and the unquantized layer's outputs on them. */
export interface TokenSet {
  x: Float32Array;
  m: number;
  yRef: Float32Array;
}

/** deployedError on several token sets, converting the layer to its native form once. */
export async function deployedErrors(layer: ErrorCorrectedLinear, sets: readonly TokenSet[], threads = 0): Promise<number[]> {
  if (sets.every((s) => s.m === 0)) return sets.map(() => Number.NaN);
  const nat = await layer.toNative();
  try {
    const out: number[] = [];
    for (const s of sets) {
      if (s.m === 0) {
        out.push(Number.NaN);
        continue;
      }
      const y = await nat.forward(Tensor.fromStorage(s.x, [s.m, layer.inFeatures], 'f32'), { threads });
      out.push(relativeError(y.data, s.yRef));
      y.dispose();
    }
    return out;
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
  const tokenSet = async (x: Tensor<'f32'>): Promise<TokenSet> => {
    const m = x.shape[0];
    return { x: x.data, m, yRef: m > 0 ? await matmulNT(x.data, m, k, w, n, b, threads) : new Float32Array(0) };
  };
  const fit = await tokenSet(stats.samples());
  const score = await tokenSet(stats.scoreSamples());
  const heldOut = score.m > 0;
  // Choices are scored on the held-out tokens; without any, on the fit tokens (and said so).
  const judge = heldOut ? score : fit;
  const sets = [judge, fit];
  const warnings: string[] = [];
  const counts = `${stats.fitTokenCount} fit + ${stats.scoreTokenCount} held-out tokens`;
  if (cfg.searchAlpha && cfg.smooth && judge.m === 0) {
    throw new ArgumentError('stats', `a collector holding calibration tokens for the α search (layer '${name}' has none)`);
  }
  if (!heldOut && ((cfg.searchAlpha && cfg.smooth) || cfg.gptq !== false) && judge.m > 0) {
    warnings.push(`layer '${name}': no held-out tokens (${counts}; the collector's holdout is ${stats.holdout}): ` +
      `${cfg.gptq !== false ? 'GPTQ' : 'the α search'} was scored on the calibration tokens themselves, which favours overfitting`);
  }
  const base: BuildOptions = { scheme: cfg.scheme, rule: cfg.mxScaleRule, rank, svd: { ...cfg.svd, seed: cfg.seed }, threads };

  // Smoothing: fixed or searched on the deployed layer (RTN residual), scored on the held-out tokens.
  progress('smoothing');
  const wmax = weightColumnAbsMax(w, n, k);
  let alpha: number | null = null, beta: number | null = null;
  let lambda: Float32Array | undefined;
  const candidates: AlphaCandidateScore[] = [];
  let searched: BuiltLayer | undefined;
  let searchedErrors: number[] = [];
  if (cfg.smooth) {
    if (cfg.searchAlpha) {
      progress('alpha-search');
      let best = Number.POSITIVE_INFINITY;
      for (const a of cfg.alphaCandidates) {
        const betas = cfg.searchBeta ? cfg.betaCandidates : [cfg.smoothBeta ?? 1 - a];
        for (const bt of betas) {
          const lam = smoothingFactors(stats.actAbsMax, wmax, a, bt);
          const built = await buildLayer(w, n, k, b, { ...base, lambda: lam });
          const errs = await deployedErrors(built.layer, sets, threads);
          candidates.push({ alpha: a, beta: bt, relError: errs[0], inSampleError: errs[1] });
          if (errs[0] < best || (searched === undefined && !(errs[0] < best))) {
            best = errs[0];
            alpha = a;
            beta = bt;
            lambda = lam;
            searched = built;
            searchedErrors = errs;
          }
        }
      }
    } else {
      alpha = cfg.smoothAlpha;
      beta = cfg.smoothBeta ?? 1 - cfg.smoothAlpha;
      lambda = smoothingFactors(stats.actAbsMax, wmax, alpha, beta);
    }
  }

  // The RTN layer: the search's winner when nothing differs from how candidates were built.
  let rtn: BuiltLayer;
  let rtnErrors: number[];
  if (searched !== undefined && cfg.refineIterations === 0) {
    rtn = searched;
    rtnErrors = searchedErrors;
  } else {
    progress(cfg.refineIterations > 0 ? 'refine' : 'svd');
    rtn = await buildLayer(w, n, k, b, { ...base, lambda, refineIterations: cfg.refineIterations });
    rtnErrors = await deployedErrors(rtn.layer, sets, threads);
  }
  let built = rtn;
  let finalErrors = rtnErrors;
  let gptqReport: GptqReport | null = null;
  if (cfg.gptq !== false) {
    progress('gptq');
    const guard = await guardedGptq(w, n, k, b, base, lambda, rtn, rtnErrors, await stats.hessian(lambda), cfg.gptq, sets, heldOut,
      stats.fitTokenCount, threads);
    gptqReport = guard.report;
    built = guard.built;
    finalErrors = guard.errors;
    if (guard.report.risk !== null || guard.report.fallback) {
      const tried = guard.report.candidates.map((c) => `damp ${c.damp}: ${c.relError.toFixed(4)}`).join(', ');
      const outcome = guard.report.fallback
        ? `fell back to RTN (held-out error ${guard.report.rtnError.toFixed(4)} vs GPTQ ${tried})`
        : `kept GPTQ with damp ${guard.report.damp} (held-out error ${tried}; RTN ${guard.report.rtnError.toFixed(4)})`;
      warnings.push(`layer '${name}': GPTQ ${guard.report.risk !== null ? `at risk of overfitting (${guard.report.risk}), ` : ''}` +
        `${heldOut ? outcome : 'not checked on held-out tokens'}; ${counts}, K = ${k}`);
    }
  } else progress('residual');

  progress('evaluate');
  let errorBefore = Number.NaN, errorInBefore = Number.NaN;
  if (judge.m > 0 || fit.m > 0) {
    const plain = await buildLayer(w, n, k, b, { ...base, rank: 0 });
    [errorBefore, errorInBefore] = await deployedErrors(plain.layer, sets, threads);
  }
  progress('done');
  return {
    layer: built.layer,
    report: {
      name, scheme: cfg.scheme, outFeatures: n, inFeatures: k, alpha, beta, rank,
      residual: gptqReport !== null && !gptqReport.fallback ? 'gptq' : 'rtn', candidates, refineErrors: built.refineErrors,
      calibrationTokens: { fit: stats.fitTokenCount, score: stats.scoreTokenCount },
      heldOut, evalTokens: judge.m, errorBefore, errorAfter: finalErrors[0],
      inSample: { tokens: fit.m, errorBefore: errorInBefore, errorAfter: finalErrors[1] },
      gptq: gptqReport, warnings, seconds: (performance.now() - t0) / 1000,
    },
  };
}

/** Relative dampings tried when GPTQ is at risk, as multiples of the configured one (0 → these values). */
export const GPTQ_DAMP_STEPS: readonly number[] = Object.freeze([1, 10, 100, 1000]);
const GPTQ_ZERO_DAMP_LADDER: readonly number[] = Object.freeze([0, 0.01, 0.1, 1, 10]);
/**
 * minPivotRatio below this: some input is ≥ 95% explained by the inputs GPTQ processes after it (with
 * the default damping 0.01 an exactly duplicated input gives ~0.02, a rank-deficient Hessian ~0.01).
 */
export const GPTQ_ILL_CONDITIONED = 0.05;

/**
 * GPTQ that cannot overfit (issue 20 item 3): GPTQ with the configured damping; when the fit tokens
 * are fewer than K or the Hessian is ill-conditioned (and there are held-out tokens), stronger
 * dampings too, the one with the least held-out error kept; and RTN instead when it scores no
 * worse on the held-out tokens. Every GPTQ run reuses the RTN layer's low-rank branch.
 */
async function guardedGptq(w: Float32Array, n: number, k: number, b: Float32Array | undefined, base: BuildOptions,
  lambda: Float32Array | undefined, rtn: BuiltLayer, rtnErrors: number[], hessian: Float32Array, config: GptqConfig,
  sets: TokenSet[], heldOut: boolean, fitTokens: number, threads: number): Promise<{ built: BuiltLayer; errors: number[]; report: GptqReport }> {
  const run = async (damp: number): Promise<{ built: BuiltLayer; errors: number[]; score: GptqDampScore }> => {
    const built = await buildLayer(w, n, k, b, { ...base, lambda, lowRank: rtn.lowRank, gptq: { config: { ...config, damp }, hessian } });
    const errors = await deployedErrors(built.layer, sets, threads);
    return { built, errors, score: { damp, dampAdded: built.gptq!.dampAdded, relError: errors[0], inSampleError: errors[1] } };
  };
  const first = await run(config.damp);
  const minPivotRatio = first.built.gptq!.minPivotRatio;
  const risk = fitTokens < k ? `${fitTokens} fit tokens for K = ${k} inputs: a rank-deficient Hessian`
    : minPivotRatio < GPTQ_ILL_CONDITIONED ? `ill-conditioned Hessian: an input is ${((1 - minPivotRatio) * 100).toPrecision(4)}% explained by the others`
    : null;
  const runs = [first];
  if (risk !== null && heldOut) {
    const ladder = config.damp > 0 ? GPTQ_DAMP_STEPS.map((s) => s * config.damp) : GPTQ_ZERO_DAMP_LADDER;
    for (const damp of ladder) if (damp !== config.damp) runs.push(await run(damp));
  }
  let best = runs[0];
  for (const r of runs) if (r.errors[0] < best.errors[0]) best = r;
  // RTN wins ties: it is cheaper and cannot have overfitted.
  const fallback = heldOut && !(best.errors[0] < rtnErrors[0]);
  return {
    built: fallback ? rtn : best.built,
    errors: fallback ? rtnErrors : best.errors,
    report: {
      risk, minPivotRatio, candidates: runs.map((r) => r.score), damp: best.score.damp,
      rtnError: rtnErrors[0], rtnInSampleError: rtnErrors[1], fallback,
    },
  };
}
