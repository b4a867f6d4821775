/**
 * Streaming calibration statistics of one linear layer's input (DESIGN.md §2, issue 4 item 1):
 * per-input-channel abs-max a_j, optionally XᵀX of the raw inputs (for GPTQ: the Hessian of the
 * smoothed inputs is derived exactly at quantization time as H_λ = diag(1/λ)·XᵀX·diag(1/λ), since λ
 * is not known while calibrating), and bounded reservoir samples of tokens for scoring.
 *
 * Fit and score split (issue 20 item 2): with `holdout` h > 0 every observed token is either a fit
 * token or a score token, decided by a hash of its position t in the stream and the seed alone
 * (token t is a score token when t > 0 and hash(seed, t) < h; token 0 always fits), so the split
 * does not depend on how the tokens were cut into observe() calls. Fit tokens feed a_j, XᵀX and the
 * fit reservoir; score tokens only the score reservoir, so that a choice scored on them (α, β,
 * GPTQ damping, GPTQ or RTN) is scored on tokens the statistics never saw. Tokens are split one by
 * one: a score token can be the neighbour of a fit token in the same image, which is held out from
 * the statistics but not from its context.
 *
 * Memory is bounded whatever the amount of data fed: K floats for a, K² floats for XᵀX (only when
 * enabled), maxSamples·K floats for the two reservoirs together (the score reservoir holds
 * round(maxSamples·h) tokens, the fit reservoir the rest).
 *
 * Each reservoir is Algorithm R with a seeded generator: after t tokens of its split every one of
 * them is held with probability capacity/t, and the sample depends only on the seed and the
 * sequence of tokens.
 */
import { ArgumentError, NonFiniteError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { hessianAccumulate } from './ops.js';
import type { SVDQuantConfig } from './config.js';

export interface LayerStatsOptions {
  /** Accumulate XᵀX of the raw inputs (needed for GPTQ). Default false. */
  hessian?: boolean;
  /** Most tokens kept in the reservoirs (fit and score together). Default 1024; 0 keeps none. */
  maxSamples?: number;
  /** Fraction of the tokens held out as score tokens, in [0, 0.9]. Default 0 (all tokens fit). */
  holdout?: number;
  /** Seed of the reservoir sampling. Default 0x5D0E. */
  seed?: number;
  /** Name used in error messages. */
  name?: string;
  /** Native threads for the Hessian (0: physical cores). */
  threads?: number;
}

/** A uniform number in [0, 1) from (seed, token position): the fit / score split's hash. */
export function splitHash(seed: number, t: number): number {
  let z = (Math.imul((seed >>> 0) ^ 0x2545f491, 0x9e3779b1) ^ (t >>> 0) ^ Math.imul(Math.floor(t / 4294967296), 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0;
  return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
}

/** Whether token t of a stream is a score token under (seed, holdout). */
export function isScoreToken(seed: number, holdout: number, t: number): boolean {
  return holdout > 0 && t > 0 && splitHash(seed, t) < holdout;
}

/** splitmix32-style generator: deterministic uniform numbers in [0, 1). */
function makeRng(seed: number): () => number {
  let s = (seed >>> 0) ^ 0x9e3779b9;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

/** A seeded Algorithm R reservoir of token rows. */
class Reservoir {
  private readonly rows: Float32Array;
  private readonly rng: () => number;
  private seen = 0;
  constructor(readonly capacity: number, private readonly k: number, seed: number) {
    this.rows = new Float32Array(capacity * k);
    this.rng = makeRng(seed);
  }
  get held(): number {
    return Math.min(this.seen, this.capacity);
  }
  get bytes(): number {
    return this.rows.byteLength;
  }
  offer(row: Float32Array): void {
    let slot = this.seen++;
    if (slot >= this.capacity) {
      slot = Math.floor(this.rng() * this.seen);
      if (slot >= this.capacity) return;
    }
    this.rows.set(row, slot * this.k);
  }
  tensor(): Tensor<'f32'> {
    const m = this.held;
    return Tensor.fromStorage(this.rows.slice(0, m * this.k), [m, this.k], 'f32');
  }
}

export class LayerStatsCollector {
  readonly inFeatures: number;
  readonly name: string;
  /** Most tokens held by the two reservoirs together. */
  readonly maxSamples: number;
  /** Fraction of the tokens held out as score tokens. */
  readonly holdout: number;
  readonly seed: number;
  /** a_j = max over the observed fit tokens of |X_tj|. */
  readonly actAbsMax: Float32Array;
  /** XᵀX [K, K] of the raw fit tokens, or null when not collected. */
  readonly xtx: Float32Array | null;
  private readonly fit: Reservoir;
  private readonly score: Reservoir;
  private readonly threads: number;
  private tokens = 0;
  private fitTokens = 0;
  private pending: Promise<void> = Promise.resolve();

  constructor(inFeatures: number, options: LayerStatsOptions = {}) {
    if (!Number.isInteger(inFeatures) || inFeatures < 1 || inFeatures > 1 << 24) throw new ArgumentError('inFeatures', 'an integer in [1, 16777216]', inFeatures);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
    const { hessian = false, maxSamples = 1024, holdout = 0, seed = 0x5d0e, name = 'layer', threads = 0 } = options;
    if (typeof hessian !== 'boolean') throw new ArgumentError('options.hessian', 'a boolean', hessian);
    if (!Number.isInteger(maxSamples) || maxSamples < 0 || maxSamples * inFeatures > 2 ** 31) throw new ArgumentError('options.maxSamples', 'an integer >= 0 with maxSamples·K <= 2^31', maxSamples);
    if (typeof holdout !== 'number' || !(holdout >= 0 && holdout <= 0.9)) throw new ArgumentError('options.holdout', 'a number in [0, 0.9]', holdout);
    if (!Number.isInteger(seed) || seed < 0) throw new ArgumentError('options.seed', 'an integer >= 0', seed);
    if (hessian && inFeatures * inFeatures > 2 ** 30) throw new ArgumentError('options.hessian', `false for K = ${inFeatures} (XᵀX would need ${inFeatures}² floats)`, hessian);
    this.inFeatures = inFeatures;
    this.name = String(name);
    this.maxSamples = maxSamples;
    this.holdout = holdout;
    this.seed = seed;
    this.threads = threads;
    this.actAbsMax = new Float32Array(inFeatures);
    this.xtx = hessian ? new Float32Array(inFeatures * inFeatures) : null;
    const scoreCapacity = holdout > 0 ? Math.round(maxSamples * holdout) : 0;
    this.fit = new Reservoir(maxSamples - scoreCapacity, inFeatures, seed);
    this.score = new Reservoir(scoreCapacity, inFeatures, (seed ^ 0x3c6ef372) >>> 0);
  }

  /** The collector quantizeLinear expects under `config` (holdout, reservoir size, XᵀX for GPTQ, seed). */
  static forConfig(inFeatures: number, config: SVDQuantConfig, name = 'layer'): LayerStatsCollector {
    return new LayerStatsCollector(inFeatures, {
      hessian: config.gptq !== false, maxSamples: config.alphaSearchMaxSamples, holdout: config.holdout, seed: config.seed, name, threads: config.threads,
    });
  }

  /** Tokens observed so far (fit and score). */
  get tokenCount(): number {
    return this.tokens;
  }

  /** Fit tokens observed so far: those behind a_j and XᵀX. */
  get fitTokenCount(): number {
    return this.fitTokens;
  }

  /** Score (held-out) tokens observed so far. */
  get scoreTokenCount(): number {
    return this.tokens - this.fitTokens;
  }

  /** Fit tokens held in the fit reservoir. */
  get sampleCount(): number {
    return this.fit.held;
  }

  /** Score tokens held in the score reservoir. */
  get scoreSampleCount(): number {
    return this.score.held;
  }

  /**
   * Non-finite input values accepted: always 0, since observe() rejects a batch holding NaN or Inf
   * (NonFiniteError naming the layer, token and channel) before it changes any statistic.
   */
  get nonFiniteCount(): number {
    return 0;
  }

  /** Bytes held by this collector: constant after construction. */
  get bytes(): number {
    return this.actAbsMax.byteLength + (this.xtx?.byteLength ?? 0) + this.fit.bytes + this.score.bytes;
  }

  private rows(x: Tensor): Float32Array {
    if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new ArgumentError('x', `a tensor whose last dimension is ${this.inFeatures} (inputs of '${this.name}')`, x instanceof Tensor ? x.toString() : x);
    }
    return x.dtype === 'f32' ? (x.data as Float32Array) : (x.to('f32').data as Float32Array);
  }

  /** Updates the abs-max and the reservoirs; returns the fit tokens' rows (data itself when all fit). */
  private observeRows(data: Float32Array): Float32Array {
    const k = this.inFeatures;
    const m = data.length / k;
    const amax = this.actAbsMax;
    // The whole batch is checked first, so a rejected batch changes nothing.
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        throw new NonFiniteError(`${this.name} (calibration input)`, i, data[i],
          `finite calibration inputs (NaN or Inf would make the layer's smoothing and error report meaningless: check the calibration data and the layers before '${this.name}')`,
          ` (token ${Math.floor(i / k)}, channel ${i % k} of this batch)`);
      }
    }
    const fitRows: number[] = [];
    for (let t = 0; t < m; t++, this.tokens++) {
      const row = data.subarray(t * k, (t + 1) * k);
      const score = isScoreToken(this.seed, this.holdout, this.tokens);
      for (let j = 0; j < k; j++) {
        const v = Math.abs(row[j]);
        if (!score && v > amax[j]) amax[j] = v;
      }
      if (score) {
        this.score.offer(row);
      } else {
        this.fit.offer(row);
        this.fitTokens++;
        fitRows.push(t);
      }
    }
    if (fitRows.length === m) return data;
    const out = new Float32Array(fitRows.length * k);
    fitRows.forEach((t, i) => out.set(data.subarray(t * k, (t + 1) * k), i * k));
    return out;
  }

  /**
   * Records x [..., K]. The abs-max and the reservoirs are updated at once; XᵀX (when enabled) is
   * accumulated off the main thread on a copy of the fit rows — await flush() (or use observeAsync)
   * before reading it.
   */
  observe(x: Tensor): void {
    const data = this.rows(x);
    const fitRows = this.observeRows(data);
    if (this.xtx !== null && fitRows.length > 0) {
      const copy = fitRows === data ? data.slice() : fitRows;
      const h = this.xtx;
      const m = copy.length / this.inFeatures;
      this.pending = this.pending.then(() => hessianAccumulate(h, copy, m, this.inFeatures, 1, this.threads));
    }
  }

  /** observe(x) and wait for its XᵀX update (no copy of x is kept beyond the call). */
  async observeAsync(x: Tensor): Promise<void> {
    const data = this.rows(x);
    const fitRows = this.observeRows(data);
    await this.pending;
    if (this.xtx !== null && fitRows.length > 0) await hessianAccumulate(this.xtx, fitRows, fitRows.length / this.inFeatures, this.inFeatures, 1, this.threads);
  }

  /** Waits for every pending XᵀX update. */
  async flush(): Promise<void> {
    await this.pending;
  }

  /** The fit reservoir's tokens [sampleCount, K] (a copy), in slot order. */
  samples(): Tensor<'f32'> {
    return this.fit.tensor();
  }

  /** The score reservoir's tokens [scoreSampleCount, K] (a copy), in slot order. */
  scoreSamples(): Tensor<'f32'> {
    return this.score.tensor();
  }

  /**
   * H_λ = diag(1/λ)·XᵀX·diag(1/λ) [K, K]: the Hessian of the smoothed inputs X̂ = X·diag(λ)⁻¹
   * (λ omitted: XᵀX). Awaits pending updates. Throws if XᵀX was not collected.
   */
  async hessian(lambda?: Float32Array): Promise<Float32Array> {
    if (this.xtx === null) throw new ArgumentError('stats', `a collector created with { hessian: true } (layer '${this.name}')`);
    await this.flush();
    const k = this.inFeatures;
    const out = new Float32Array(k * k);
    if (lambda === undefined) {
      out.set(this.xtx);
      return out;
    }
    if (lambda.length !== k) throw new ArgumentError('lambda', `${k} values`, lambda.length);
    const inv = new Float64Array(k);
    for (let j = 0; j < k; j++) inv[j] = 1 / lambda[j];
    for (let i = 0; i < k; i++) {
      const row = i * k;
      const si = inv[i];
      for (let j = 0; j < k; j++) out[row + j] = this.xtx[row + j] * si * inv[j];
    }
    return out;
  }
}
