/**
 * The smoothing factor of DESIGN.md §2.1: λ_j = clamp(a_j^α / w_j^β, 1e-5, 1e5), where a_j is the
 * per-input-channel abs-max of the activations and w_j = max_i |W_ij|. A ratio that is zero, NaN or
 * ±Inf (a dead channel, a zero weight column, non-finite statistics) gives λ_j = 1 instead of a clamp.
 */
import { ArgumentError } from '../errors.js';

export const SMOOTH_MIN = 1e-5;
export const SMOOTH_MAX = 1e5;

/** One λ_j in double precision (then rounded to fp32 by smoothingFactors). */
export function smoothingValue(a: number, w: number, alpha: number, beta: number): number {
  const ratio = Math.pow(a, alpha) / Math.pow(w, beta);
  if (ratio === 0 || !Number.isFinite(ratio)) return 1;
  return Math.min(SMOOTH_MAX, Math.max(SMOOTH_MIN, ratio));
}

/** λ [K] from activation abs-max a [K] and weight column abs-max w [K]; β defaults to 1 − α. */
export function smoothingFactors(actAbsMax: ArrayLike<number>, weightAbsMax: ArrayLike<number>, alpha: number, beta: number = 1 - alpha): Float32Array {
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new ArgumentError('alpha', 'a finite number', alpha);
  if (typeof beta !== 'number' || !Number.isFinite(beta)) throw new ArgumentError('beta', 'a finite number', beta);
  if (actAbsMax.length !== weightAbsMax.length) {
    throw new ArgumentError('weightAbsMax', `${actAbsMax.length} values (one per input channel, as actAbsMax)`, weightAbsMax.length);
  }
  const out = new Float32Array(actAbsMax.length);
  for (let j = 0; j < out.length; j++) out[j] = smoothingValue(actAbsMax[j], weightAbsMax[j], alpha, beta);
  return out;
}

/** w_j = max_i |W_ij| of a row-major weight [N, K]. */
export function weightColumnAbsMax(w: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(k);
  for (let i = 0; i < n; i++) {
    const row = i * k;
    for (let j = 0; j < k; j++) {
      const v = Math.abs(w[row + j]);
      if (v > out[j]) out[j] = v;
    }
  }
  return out;
}

/** Ŵ = W · diag(λ) (fp32 products), a new array. */
export function scaleColumns(w: Float32Array, n: number, k: number, lambda: Float32Array): Float32Array {
  const out = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = i * k;
    for (let j = 0; j < k; j++) out[row + j] = w[row + j] * lambda[j];
  }
  return out;
}
