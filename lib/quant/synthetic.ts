/**
 * Deterministic synthetic linear layers with the statistics of diffusion transformers (the SVDQuant
 * paper's Fig. 3–4): activations where a few input channels are 10–100× larger than the rest and vary
 * from token to token, and heavy-tailed weights (Student-t) with a few dominant singular directions.
 * Same options and seed → bit-identical data.
 */
import { ArgumentError } from '../errors.js';

export interface SyntheticLayerOptions {
  /** Output features N. Default 256. */
  outFeatures?: number;
  /** Input features K. Default 256. */
  inFeatures?: number;
  /** Tokens of activations. Default 256. */
  tokens?: number;
  seed?: number;
  /** Outlier activation channels. Default max(2, K/64). */
  outlierChannels?: number;
  /** Range of the outlier channels' magnitude relative to the rest. Default [10, 100]. */
  outlierScale?: [number, number];
  /** Dominant singular directions added to the weight. Default 8. */
  spikes?: number;
  /** Largest spike's singular value relative to the noise's spectral norm. Default 4. */
  spikeStrength?: number;
  /** Degrees of freedom of the Student-t weight entries. Default 4. */
  tailDof?: number;
  /** Include a bias. Default true. */
  bias?: boolean;
}

export interface SyntheticLayer {
  outFeatures: number;
  inFeatures: number;
  tokens: number;
  /** W [N, K] row-major. */
  weight: Float32Array;
  bias: Float32Array | undefined;
  /** X [tokens, K] row-major. */
  x: Float32Array;
  /** The outlier channels. */
  outliers: number[];
}

/** A seeded generator of uniform [0, 1) and standard normal numbers. */
export class SeededRandom {
  private s: number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.s = (seed >>> 0) ^ 0x6d2b79f5;
  }
  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  studentT(dof: number): number {
    let chi = 0;
    for (let i = 0; i < dof; i++) {
      const z = this.normal();
      chi += z * z;
    }
    return this.normal() / Math.sqrt(chi / dof);
  }
}

function unitVector(rng: SeededRandom, len: number): Float64Array {
  const v = new Float64Array(len);
  let s = 0;
  for (let i = 0; i < len; i++) {
    v[i] = rng.normal();
    s += v[i] * v[i];
  }
  const inv = 1 / Math.sqrt(s);
  for (let i = 0; i < len; i++) v[i] *= inv;
  return v;
}

export function syntheticLayer(options: SyntheticLayerOptions = {}): SyntheticLayer {
  const {
    outFeatures: n = 256, inFeatures: k = 256, tokens = 256, seed = 1,
    outlierScale = [10, 100], spikes = 8, spikeStrength = 4, tailDof = 4, bias = true,
  } = options;
  const nOut = options.outlierChannels ?? Math.max(2, Math.floor(k / 64));
  for (const [key, v, lo] of [['outFeatures', n, 1], ['inFeatures', k, 1], ['tokens', tokens, 0], ['spikes', spikes, 0], ['tailDof', tailDof, 1], ['outlierChannels', nOut, 0]] as const) {
    if (!Number.isInteger(v) || v < lo) throw new ArgumentError(`options.${key}`, `an integer >= ${lo}`, v);
  }
  if (nOut > k) throw new ArgumentError('options.outlierChannels', `at most inFeatures (${k})`, nOut);
  const rng = new SeededRandom(seed);

  // Weights: Student-t noise (std ≈ 1/√K), plus `spikes` rank-one directions.
  const w = new Float64Array(n * k);
  const sigma = 1 / Math.sqrt(k);
  for (let i = 0; i < n * k; i++) w[i] = rng.studentT(tailDof) * sigma * (tailDof > 2 ? Math.sqrt((tailDof - 2) / tailDof) : 1);
  const noiseNorm = sigma * (Math.sqrt(n) + Math.sqrt(k));
  for (let s = 0; s < spikes; s++) {
    const strength = spikeStrength * noiseNorm * Math.pow(0.7, s);
    const u = unitVector(rng, n);
    const v = unitVector(rng, k);
    for (let i = 0; i < n; i++) {
      const ui = u[i] * strength;
      for (let j = 0; j < k; j++) w[i * k + j] += ui * v[j];
    }
  }

  // Activations: normal channels with per-channel scales in [0.5, 2]; outlier channels with a fixed
  // sign and a magnitude in outlierScale that varies per token.
  const chanScale = new Float64Array(k);
  for (let j = 0; j < k; j++) chanScale[j] = 0.5 + 1.5 * rng.uniform();
  const outliers: number[] = [];
  while (outliers.length < nOut) {
    const j = Math.floor(rng.uniform() * k);
    if (!outliers.includes(j)) outliers.push(j);
  }
  outliers.sort((a, b) => a - b);
  const outMag = outliers.map(() => outlierScale[0] * Math.pow(outlierScale[1] / outlierScale[0], rng.uniform()));
  const outSign = outliers.map(() => (rng.uniform() < 0.5 ? -1 : 1));
  const x = new Float32Array(tokens * k);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < k; j++) x[t * k + j] = rng.normal() * chanScale[j];
    for (let o = 0; o < outliers.length; o++) {
      const vary = 0.2 + Math.abs(1 + 0.6 * rng.normal());
      x[t * k + outliers[o]] = outSign[o] * outMag[o] * vary;
    }
  }
  let b: Float32Array | undefined;
  if (bias) {
    b = new Float32Array(n);
    for (let i = 0; i < n; i++) b[i] = 0.1 * rng.normal();
  }
  return { outFeatures: n, inFeatures: k, tokens, weight: Float32Array.from(w), bias: b, x, outliers };
}
