/**
 * SVDQuant configuration (names close to AMD Quark's SVDQuantConfig: svd_rank → rank, smooth_alpha →
 * smoothAlpha, search_alpha → searchAlpha, alpha_candidates → alphaCandidates,
 * alpha_search_max_samples → alphaSearchMaxSamples, exclude_patterns → exclude, min_layer_size →
 * minDim, use_gptq/gptq_* → gptq), its defaults, validation, and the progress callback type.
 */
import { ArgumentError } from '../errors.js';
import { MX_SCALE_RULES, SCHEME_NAMES } from '../formats/schemes.js';
import type { MxScaleRule, SchemeName } from '../formats/schemes.js';
import { firstMatch } from './glob.js';

export interface GptqConfig {
  /** Columns per lazy-update block (>= 1). Default 128. */
  blockSize: number;
  /** Fraction of mean(diag H) added to the diagonal (>= 0). Default 0.01. */
  damp: number;
  /** Process columns in descending diag(H). Default false. */
  actOrder: boolean;
}

export type SvdMethod = 'auto' | 'exact' | 'randomized';

export interface SvdConfig {
  /**
   * 'auto' (default): the exact SVD (Jacobi) when min(N, K) <= 256 or when the Krylov space
   * (powerIters + 1)·(rank + oversample) would reach min(N, K); else the randomized block Krylov SVD.
   */
  method: SvdMethod;
  /** Extra columns per block of the randomized SVD (block = rank + oversample). Default 16. */
  oversample: number;
  /** Krylov depth of the randomized SVD: blocks added by products with W·Wᵀ. Default 6. */
  powerIters: number;
}

/**
 * Sensitivity-aware precision (issue 20 item 4, sensitivity.ts): keep the layers that add most to
 * the model's output error at a higher-precision scheme, within a byte budget.
 */
export interface SensitivityConfig {
  /** Bytes the kept layers may add over the all-quantized model. */
  budgetBytes: number;
  /** What a kept layer becomes: 'w8a8' (the SVDQuant layer at w8a8) or 'none' (the original layer). Default 'w8a8'. */
  keep: 'w8a8' | 'none';
  /** Calibration batches (the first ones) the model's output error is measured on. Default 4. */
  batches: number;
}

export const DEFAULT_SENSITIVITY: Readonly<Omit<SensitivityConfig, 'budgetBytes'>> = Object.freeze({ keep: 'w8a8', batches: 4 });

export type ProgressStage = 'start' | 'smoothing' | 'alpha-search' | 'svd' | 'refine' | 'residual' | 'gptq' | 'evaluate' | 'done' | 'skipped';

export interface ProgressEvent {
  /** Dotted name of the layer. */
  layer: string;
  /** 0-based index of the layer among those being processed. */
  index: number;
  /** Number of layers being processed. */
  total: number;
  stage: ProgressStage;
}

export type ProgressCallback = (event: ProgressEvent) => void;

export interface SVDQuantConfig {
  /** Target scheme (DESIGN.md §3). Default 'w4a4'. */
  scheme: SchemeName;
  /** Rank r of the low-rank branch (0: none). Default 32 (capped at min(N, K) per layer). */
  rank: number;
  /** Apply smoothing at all (false: λ = 1, no smoothing tensor). Default true. */
  smooth: boolean;
  /** α of λ_j = a_j^α / w_j^β when not searching. Default 0.5. */
  smoothAlpha: number;
  /** β; undefined: 1 − α (SmoothQuant's form). */
  smoothBeta: number | undefined;
  /**
   * Search α per layer on the deployed layer's output error (held-out tokens). Default true (issue
   * 20: on the built-in DiT it lifts image PSNR by 1–4 dB); an explicit smoothAlpha or smoothBeta
   * without searchAlpha turns it off (a given α is used as given).
   */
  searchAlpha: boolean;
  /** Candidates of the α search. Default 0.1, 0.2, ..., 1.0 (10 values). */
  alphaCandidates: number[];
  /** Search β too (deepcompressor's way): the grid alphaCandidates × betaCandidates. Default false. */
  searchBeta: boolean;
  /** Candidates of the β search. Default 0, 0.25, 0.5, 0.75, 1. */
  betaCandidates: number[];
  /** Most tokens per layer kept (reservoirs) for scoring choices and the error report. Default 1024. */
  alphaSearchMaxSamples: number;
  /**
   * Fraction of each layer's calibration tokens held out as score tokens (calibration.ts: a
   * deterministic hash of the token's position and the seed). Statistics (abs-max, XᵀX) come from
   * the other tokens; every choice (α, β, GPTQ damping, GPTQ or RTN) is scored on the held-out ones,
   * and the report gives both errors. 0: no split (choices scored in-sample, with a warning).
   * Default 0.25.
   */
  holdout: number;
  /** Globs on dotted layer names (`*` within a segment, `**` across segments); matches are skipped. */
  exclude: string[];
  /**
   * The architecture's exclude table (presets.ts), applied on top of `exclude`: 'auto' (default: the
   * preset of the model's diffusers class, if any), 'none', or a preset's name ('dit', ...).
   */
  preset: string;
  /** Skip layers with min(N, K) < minDim. Default 0. */
  minDim: number;
  /** Low-rank refinement iterations L ← SVD_r(Ŵ − Q(Ŵ − L)) (0: plain SVD). Default 0. */
  refineIterations: number;
  /**
   * GPTQ for the residual (default: DEFAULT_GPTQ, with the held-out guard of quantize-layer.ts that
   * falls back to RTN per layer), or false for round-to-nearest.
   */
  gptq: GptqConfig | false;
  /** MXFP4 scale rule for weights and activations. Default 'even'. */
  mxScaleRule: MxScaleRule;
  svd: SvdConfig;
  /** Sensitivity-aware precision (quantizeModel only), or false (default). */
  sensitivity: SensitivityConfig | false;
  /** Seed of the randomized SVD and the reservoir sampling. Default 0x5D0E. */
  seed: number;
  /** Native threads (0: physical cores). Default 0. */
  threads: number;
  onProgress: ProgressCallback | undefined;
}

export type SVDQuantConfigInput = Partial<Omit<SVDQuantConfig, 'gptq' | 'svd' | 'sensitivity'>> & {
  gptq?: Partial<GptqConfig> | boolean;
  svd?: Partial<SvdConfig>;
  sensitivity?: (Partial<SensitivityConfig> & { budgetBytes: number }) | false;
};

export const DEFAULT_GPTQ: Readonly<GptqConfig> = Object.freeze({ blockSize: 128, damp: 0.01, actOrder: false });

export const DEFAULT_ALPHA_CANDIDATES: readonly number[] = Object.freeze([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
export const DEFAULT_BETA_CANDIDATES: readonly number[] = Object.freeze([0, 0.25, 0.5, 0.75, 1]);

export function defaultConfig(): SVDQuantConfig {
  return {
    scheme: 'w4a4',
    rank: 32,
    smooth: true,
    smoothAlpha: 0.5,
    smoothBeta: undefined,
    searchAlpha: true,
    alphaCandidates: [...DEFAULT_ALPHA_CANDIDATES],
    searchBeta: false,
    betaCandidates: [...DEFAULT_BETA_CANDIDATES],
    alphaSearchMaxSamples: 1024,
    holdout: 0.25,
    exclude: [],
    preset: 'auto',
    minDim: 0,
    refineIterations: 0,
    gptq: { ...DEFAULT_GPTQ },
    mxScaleRule: 'even',
    svd: { method: 'auto', oversample: 16, powerIters: 6 },
    sensitivity: false,
    seed: 0x5d0e,
    threads: 0,
    onProgress: undefined,
  };
}

const KNOWN_KEYS = new Set(Object.keys(defaultConfig()));

function isInt(v: unknown, lo: number, hi: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

function isReal(v: unknown, lo: number, hi: number): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi;
}

/** Throws ArgumentError naming the first bad field (e.g. 'config.rank'). */
export function validateConfig(config: SVDQuantConfig): void {
  if (config === null || typeof config !== 'object') throw new ArgumentError('config', 'an object', config);
  for (const key of Object.keys(config)) {
    if (!KNOWN_KEYS.has(key)) throw new ArgumentError(`config.${key}`, `no such field (known: ${[...KNOWN_KEYS].join(', ')})`, (config as unknown as Record<string, unknown>)[key]);
  }
  if (!SCHEME_NAMES.includes(config.scheme)) throw new ArgumentError('config.scheme', `one of ${SCHEME_NAMES.join(', ')}`, config.scheme);
  if (!isInt(config.rank, 0, 65536)) throw new ArgumentError('config.rank', 'an integer in [0, 65536]', config.rank);
  if (typeof config.smooth !== 'boolean') throw new ArgumentError('config.smooth', 'a boolean', config.smooth);
  if (!isReal(config.smoothAlpha, 0, 1)) throw new ArgumentError('config.smoothAlpha', 'a number in [0, 1]', config.smoothAlpha);
  if (config.smoothBeta !== undefined && !isReal(config.smoothBeta, 0, 1)) throw new ArgumentError('config.smoothBeta', 'undefined (1 − α) or a number in [0, 1]', config.smoothBeta);
  if (typeof config.searchAlpha !== 'boolean') throw new ArgumentError('config.searchAlpha', 'a boolean', config.searchAlpha);
  if (typeof config.searchBeta !== 'boolean') throw new ArgumentError('config.searchBeta', 'a boolean', config.searchBeta);
  for (const field of ['alphaCandidates', 'betaCandidates'] as const) {
    const v = config[field];
    if (!Array.isArray(v) || v.length < 1 || v.length > 1000 || !v.every((a) => isReal(a, 0, 1))) {
      throw new ArgumentError(`config.${field}`, 'a non-empty array (at most 1000) of numbers in [0, 1]', v);
    }
  }
  if (!isInt(config.alphaSearchMaxSamples, 0, 1 << 24)) throw new ArgumentError('config.alphaSearchMaxSamples', 'an integer in [0, 16777216]', config.alphaSearchMaxSamples);
  if (typeof config.preset !== 'string' || config.preset.length === 0) throw new ArgumentError('config.preset', "'auto', 'none' or a preset name", config.preset);
  if (!isReal(config.holdout, 0, 0.9)) throw new ArgumentError('config.holdout', 'a number in [0, 0.9]', config.holdout);
  if (!Array.isArray(config.exclude) || !config.exclude.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new ArgumentError('config.exclude', 'an array of non-empty glob strings', config.exclude);
  }
  if (!isInt(config.minDim, 0, 2 ** 31)) throw new ArgumentError('config.minDim', 'an integer >= 0', config.minDim);
  if (!isInt(config.refineIterations, 0, 1000)) throw new ArgumentError('config.refineIterations', 'an integer in [0, 1000]', config.refineIterations);
  if (config.gptq !== false) {
    const g = config.gptq;
    if (g === null || typeof g !== 'object') throw new ArgumentError('config.gptq', 'false or { blockSize, damp, actOrder }', g);
    for (const key of Object.keys(g)) {
      if (!['blockSize', 'damp', 'actOrder'].includes(key)) throw new ArgumentError(`config.gptq.${key}`, 'no such field (known: blockSize, damp, actOrder)', (g as unknown as Record<string, unknown>)[key]);
    }
    if (!isInt(g.blockSize, 1, 1 << 20)) throw new ArgumentError('config.gptq.blockSize', 'an integer in [1, 1048576]', g.blockSize);
    if (!isReal(g.damp, 0, 1e6)) throw new ArgumentError('config.gptq.damp', 'a finite number >= 0', g.damp);
    if (typeof g.actOrder !== 'boolean') throw new ArgumentError('config.gptq.actOrder', 'a boolean', g.actOrder);
  }
  if (!MX_SCALE_RULES.includes(config.mxScaleRule)) throw new ArgumentError('config.mxScaleRule', `one of ${MX_SCALE_RULES.join(', ')}`, config.mxScaleRule);
  const s = config.svd;
  if (s === null || typeof s !== 'object') throw new ArgumentError('config.svd', 'an object { method, oversample, powerIters }', s);
  if (!['auto', 'exact', 'randomized'].includes(s.method)) throw new ArgumentError('config.svd.method', "one of 'auto', 'exact', 'randomized'", s.method);
  if (!isInt(s.oversample, 0, 4096)) throw new ArgumentError('config.svd.oversample', 'an integer in [0, 4096]', s.oversample);
  if (!isInt(s.powerIters, 0, 64)) throw new ArgumentError('config.svd.powerIters', 'an integer in [0, 64]', s.powerIters);
  if (config.sensitivity !== false) {
    const v = config.sensitivity;
    if (v === null || typeof v !== 'object') throw new ArgumentError('config.sensitivity', 'false or { budgetBytes, keep, batches }', v);
    for (const key of Object.keys(v)) {
      if (!['budgetBytes', 'keep', 'batches'].includes(key)) throw new ArgumentError(`config.sensitivity.${key}`, 'no such field (known: budgetBytes, keep, batches)', (v as unknown as Record<string, unknown>)[key]);
    }
    if (!isInt(v.budgetBytes, 0, Number.MAX_SAFE_INTEGER)) throw new ArgumentError('config.sensitivity.budgetBytes', 'an integer >= 0', v.budgetBytes);
    if (v.keep !== 'w8a8' && v.keep !== 'none') throw new ArgumentError('config.sensitivity.keep', "'w8a8' or 'none'", v.keep);
    if (!isInt(v.batches, 1, 1 << 20)) throw new ArgumentError('config.sensitivity.batches', 'an integer >= 1', v.batches);
  }
  if (!isInt(config.seed, 0, 2 ** 53)) throw new ArgumentError('config.seed', 'an integer in [0, 2^53]', config.seed);
  if (!isInt(config.threads, 0, 1024)) throw new ArgumentError('config.threads', 'an integer in [0, 1024] (0: physical cores)', config.threads);
  if (config.onProgress !== undefined && typeof config.onProgress !== 'function') throw new ArgumentError('config.onProgress', 'a function or undefined', config.onProgress);
}

/** Defaults filled in (gptq: true → the default GPTQ settings), then validated. */
export function resolveConfig(input: SVDQuantConfigInput | SVDQuantConfig = {}): SVDQuantConfig {
  if (input === null || typeof input !== 'object') throw new ArgumentError('config', 'an object', input);
  const base = defaultConfig();
  const { gptq, svd, sensitivity, ...rest } = input as SVDQuantConfigInput;
  const out: SVDQuantConfig = { ...base };
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined || key === 'smoothBeta' || key === 'onProgress') (out as unknown as Record<string, unknown>)[key] = value;
  }
  if (gptq === false) out.gptq = false;
  else if (gptq === undefined || gptq === true) out.gptq = { ...DEFAULT_GPTQ };
  else if (gptq !== null && typeof gptq === 'object') out.gptq = { ...DEFAULT_GPTQ, ...gptq };
  else throw new ArgumentError('config.gptq', 'a boolean or { blockSize, damp, actOrder }', gptq);
  if (svd !== undefined) {
    if (svd === null || typeof svd !== 'object') throw new ArgumentError('config.svd', 'an object { method, oversample, powerIters }', svd);
    out.svd = { ...base.svd, ...svd };
  }
  if (sensitivity !== undefined && sensitivity !== false) {
    if (sensitivity === null || typeof sensitivity !== 'object') throw new ArgumentError('config.sensitivity', 'false or { budgetBytes, keep, batches }', sensitivity);
    out.sensitivity = { ...DEFAULT_SENSITIVITY, ...sensitivity };
  }
  // A given α (or β) is used as given unless the search is asked for explicitly.
  const r = rest as Record<string, unknown>;
  if (r.searchAlpha === undefined && (r.smoothAlpha !== undefined || r.smoothBeta !== undefined)) out.searchAlpha = false;
  if (Array.isArray(out.alphaCandidates)) out.alphaCandidates = [...out.alphaCandidates];
  if (Array.isArray(out.exclude)) out.exclude = [...out.exclude];
  validateConfig(out);
  return out;
}

export type LayerDecision = { quantize: true } | { quantize: false; reason: string };

/** Whether a layer named `name` with weight [N, K] is quantized under `config`, and why not. */
export function layerDecision(name: string, n: number, k: number, config: SVDQuantConfig): LayerDecision {
  const pattern = firstMatch(config.exclude, name);
  if (pattern !== undefined) return { quantize: false, reason: `excluded by pattern '${pattern}'` };
  if (Math.min(n, k) < config.minDim) return { quantize: false, reason: `min(N, K) = ${Math.min(n, k)} is below minDim ${config.minDim}` };
  return { quantize: true };
}
