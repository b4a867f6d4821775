/**
 * Streaming calibration statistics of one linear layer's input (DESIGN.md §2, issue 4 item 1):
 * per-input-channel abs-max a_j, optionally XᵀX of the raw inputs (for GPTQ: the Hessian of the
 * smoothed inputs is derived exactly at quantization time as H_λ = diag(1/λ)·XᵀX·diag(1/λ), since λ
 * is not known while calibrating), and a bounded reservoir sample of tokens for the α search.
 *
 * Memory is bounded whatever the amount of data fed: K floats for a, K² floats for XᵀX (only when
 * enabled), maxSamples·K floats for the reservoir.
 *
 * The reservoir is Algorithm R with a seeded generator: after t tokens every token is held with
 * probability maxSamples/t, and the sample depends only on the seed and the sequence of tokens
 * (not on how they were split into observe() calls).
 */
import { ArgumentError, NonFiniteError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { hessianAccumulate } from './ops.js';

export interface LayerStatsOptions {
  /** Accumulate XᵀX of the raw inputs (needed for GPTQ). Default false. */
  hessian?: boolean;
  /** Most tokens kept in the reservoir. Default 1024; 0 keeps none. */
  maxSamples?: number;
  /** Seed of the reservoir sampling. Default 0x5D0E. */
  seed?: number;
  /** Name used in error messages. */
  name?: string;
  /** Native threads for the Hessian (0: physical cores). */
  threads?: number;
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

export class LayerStatsCollector {
  readonly inFeatures: number;
  readonly name: string;
  readonly maxSamples: number;
  readonly seed: number;
  /** a_j = max over the observed tokens of |X_tj|. */
  readonly actAbsMax: Float32Array;
  /** XᵀX [K, K] of the raw inputs, or null when not collected. */
  readonly xtx: Float32Array | null;
  private readonly reservoir: Float32Array;
  private readonly rng: () => number;
  private readonly threads: number;
  private tokens = 0;
  private pending: Promise<void> = Promise.resolve();

  constructor(inFeatures: number, options: LayerStatsOptions = {}) {
    if (!Number.isInteger(inFeatures) || inFeatures < 1 || inFeatures > 1 << 24) throw new ArgumentError('inFeatures', 'an integer in [1, 16777216]', inFeatures);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
    const { hessian = false, maxSamples = 1024, seed = 0x5d0e, name = 'layer', threads = 0 } = options;
    if (typeof hessian !== 'boolean') throw new ArgumentError('options.hessian', 'a boolean', hessian);
    if (!Number.isInteger(maxSamples) || maxSamples < 0 || maxSamples * inFeatures > 2 ** 31) throw new ArgumentError('options.maxSamples', 'an integer >= 0 with maxSamples·K <= 2^31', maxSamples);
    if (!Number.isInteger(seed) || seed < 0) throw new ArgumentError('options.seed', 'an integer >= 0', seed);
    if (hessian && inFeatures * inFeatures > 2 ** 30) throw new ArgumentError('options.hessian', `false for K = ${inFeatures} (XᵀX would need ${inFeatures}² floats)`, hessian);
    this.inFeatures = inFeatures;
    this.name = String(name);
    this.maxSamples = maxSamples;
    this.seed = seed;
    this.threads = threads;
    this.actAbsMax = new Float32Array(inFeatures);
    this.xtx = hessian ? new Float32Array(inFeatures * inFeatures) : null;
    this.reservoir = new Float32Array(maxSamples * inFeatures);
    this.rng = makeRng(seed);
  }

  /** Tokens observed so far. */
  get tokenCount(): number {
    return this.tokens;
  }

  /** Tokens held in the reservoir (min(tokenCount, maxSamples)). */
  get sampleCount(): number {
    return Math.min(this.tokens, this.maxSamples);
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
    return this.actAbsMax.byteLength + (this.xtx?.byteLength ?? 0) + this.reservoir.byteLength;
  }

  private rows(x: Tensor): Float32Array {
    if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new ArgumentError('x', `a tensor whose last dimension is ${this.inFeatures} (inputs of '${this.name}')`, x instanceof Tensor ? x.toString() : x);
    }
    return x.dtype === 'f32' ? (x.data as Float32Array) : (x.to('f32').data as Float32Array);
  }

  private observeRows(data: Float32Array): void {
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
    for (let i = 0; i < data.length; i++) {
      const v = Math.abs(data[i]);
      const j = i % k;
      if (v > amax[j]) amax[j] = v;
    }
    for (let t = 0; t < m; t++, this.tokens++) {
      let slot = this.tokens;
      if (slot >= this.maxSamples) {
        slot = Math.floor(this.rng() * (this.tokens + 1));
        if (slot >= this.maxSamples) continue;
      }
      this.reservoir.set(data.subarray(t * k, (t + 1) * k), slot * k);
    }
  }

  /**
   * Records x [..., K]. The abs-max and the reservoir are updated at once; XᵀX (when enabled) is
   * accumulated off the main thread on a copy of x — await flush() (or use observeAsync) before
   * reading it.
   */
  observe(x: Tensor): void {
    const data = this.rows(x);
    this.observeRows(data);
    if (this.xtx !== null && data.length > 0) {
      const copy = data.slice();
      const h = this.xtx;
      const m = copy.length / this.inFeatures;
      this.pending = this.pending.then(() => hessianAccumulate(h, copy, m, this.inFeatures, 1, this.threads));
    }
  }

  /** observe(x) and wait for its XᵀX update (no copy of x is kept beyond the call). */
  async observeAsync(x: Tensor): Promise<void> {
    const data = this.rows(x);
    this.observeRows(data);
    await this.pending;
    if (this.xtx !== null && data.length > 0) await hessianAccumulate(this.xtx, data, data.length / this.inFeatures, this.inFeatures, 1, this.threads);
  }

  /** Waits for every pending XᵀX update. */
  async flush(): Promise<void> {
    await this.pending;
  }

  /** The reservoir's tokens [sampleCount, K] (a copy), in slot order. */
  samples(): Tensor<'f32'> {
    const m = this.sampleCount;
    return Tensor.fromStorage(this.reservoir.slice(0, m * this.inFeatures), [m, this.inFeatures], 'f32');
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
