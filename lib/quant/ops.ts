/**
 * Thin typed wrappers over the quantizer's native numerics (native/addon/quant_binding.cpp): every
 * call runs off the JavaScript thread. Inputs are row-major Float32Arrays; shapes are trusted here
 * (the public entry points validate them).
 */
import { native, NativeScheme } from '../native.js';
import { Tensor } from '../tensor.js';
import { FORMATS, MX_SCALE_RULES, groupsPerRow, paddedK } from '../formats/schemes.js';
import type { ElementFormat, MxScaleRule } from '../formats/schemes.js';
import type { CodeDType, QuantizedTensor, ScaleDType } from '../formats/quantize.js';
import type { SvdMethod } from './config.js';

const NATIVE_SCHEME: Record<ElementFormat, NativeScheme> = {
  int4: NativeScheme.Int4,
  mxfp4: NativeScheme.Mxfp4,
  nvfp4: NativeScheme.Nvfp4,
  int8: NativeScheme.Int8,
};

const SVD_METHOD: Record<SvdMethod, number> = { auto: 0, exact: 1, randomized: 2 };

export interface LowRankFactors {
  rank: number;
  /** L_up = U_r, [N, r]. */
  up: Float32Array;
  /** L_down = Σ_r V_rᵀ, [r, K]. */
  down: Float32Array;
  sigma: Float32Array;
}

export interface SvdOptions {
  method?: SvdMethod;
  oversample?: number;
  powerIters?: number;
  seed?: number;
  threads?: number;
}

/** The top-r singular triplets of w [n, k] as the low-rank branch (L_up = U_r, L_down = Σ_r V_rᵀ). */
export async function svdTopR(w: Float32Array, n: number, k: number, r: number, opts: SvdOptions = {}): Promise<LowRankFactors> {
  const up = new Float32Array(n * r);
  const down = new Float32Array(r * k);
  const sigma = new Float32Array(r);
  if (r > 0) {
    await native().svdTopR(w, n, k, r, SVD_METHOD[opts.method ?? 'auto'], opts.oversample ?? 16, opts.powerIters ?? 3,
      opts.seed ?? 0x5d0e5eed, opts.threads ?? 0, up, down, sigma);
  }
  return { rank: r, up, down, sigma };
}

function allocQuantized(format: ElementFormat, n: number, k: number): { codes: Tensor<CodeDType>; scales: Tensor<ScaleDType> } {
  const spec = FORMATS[format];
  return {
    codes: Tensor.zeros([n, paddedK(format, k)], spec.codeDType),
    scales: Tensor.zeros([n, groupsPerRow(format, k)], spec.scaleDType),
  };
}

function quantizedTensor(format: ElementFormat, n: number, k: number, codes: Tensor<CodeDType>, scales: Tensor<ScaleDType>, globalScale: number, rule: MxScaleRule): QuantizedTensor {
  return {
    format, shape: [n, k], group: FORMATS[format].group === 0 ? k : FORMATS[format].group,
    codes, scales, globalScale: format === 'nvfp4' ? globalScale : 1,
    ...(format === 'mxfp4' ? { scaleRule: rule } : {}),
  };
}

type Codes = Uint8Array | Int8Array;
type Scales = Float32Array | Uint8Array;

/**
 * R = w − up·down (rank 0: R = w), round-to-nearest into `format`. With keepResidual the fp32 R is
 * returned too.
 */
export async function residualRtn(w: Float32Array, n: number, k: number, lr: LowRankFactors | undefined, format: ElementFormat,
  rule: MxScaleRule, threads = 0, keepResidual = false): Promise<{ q: QuantizedTensor; residual?: Float32Array }> {
  const { codes, scales } = allocQuantized(format, n, k);
  const out = new Float64Array(1);
  const residual = keepResidual ? new Float32Array(n * k) : null;
  const r = lr?.rank ?? 0;
  await native().quantizeResidual(w, n, k, r > 0 ? lr!.up : null, r > 0 ? lr!.down : null, r, NATIVE_SCHEME[format],
    MX_SCALE_RULES.indexOf(rule), threads, codes.data as Codes, scales.data as Scales, out, residual);
  const q = quantizedTensor(format, n, k, codes, scales, out[0], rule);
  return residual === null ? { q } : { q, residual };
}

export interface GptqOptions {
  blockSize: number;
  damp: number;
  actOrder: boolean;
  threads?: number;
}

export interface GptqOutcome {
  q: QuantizedTensor;
  objective: number;
  outputSqError: number;
  dampAdded: number;
  deadColumns: number;
}

/** GPTQ of the residual r [n, k] on the Hessian h [k, k] of the inputs the kernel sees. */
export async function gptqQuantize(r: Float32Array, n: number, k: number, h: Float32Array, format: ElementFormat, rule: MxScaleRule,
  opts: GptqOptions): Promise<GptqOutcome> {
  const { codes, scales } = allocQuantized(format, n, k);
  const out = new Float64Array(5);
  await native().gptqQuantize(r, n, k, h, NATIVE_SCHEME[format], MX_SCALE_RULES.indexOf(rule), opts.damp, opts.blockSize,
    opts.actOrder, opts.threads ?? 0, codes.data as Codes, scales.data as Scales, out, null);
  return {
    q: quantizedTensor(format, n, k, codes, scales, out[4], rule),
    objective: out[0], outputSqError: out[1], dampAdded: out[2], deadColumns: out[3],
  };
}

/** h [k, k] += alpha·xᵀx for x [m, k]. */
export async function hessianAccumulate(h: Float32Array, x: Float32Array, m: number, k: number, alpha = 1, threads = 0): Promise<void> {
  if (m > 0) await native().hessianAccumulate(h, x, m, k, alpha, threads);
}

export interface RefineOutcome {
  lowRank: LowRankFactors;
  errors: number[];
  best: number;
}

/** deepcompressor's refinement of the low-rank branch (weight-space objective). */
export async function refineLowRank(w: Float32Array, n: number, k: number, r: number, format: ElementFormat, rule: MxScaleRule,
  iters: number, opts: SvdOptions = {}): Promise<RefineOutcome> {
  const up = new Float32Array(n * r);
  const down = new Float32Array(r * k);
  const errors = new Float64Array(iters + 1);
  const out = new Float64Array(2);
  await native().refineLowrank(w, n, k, r, NATIVE_SCHEME[format], MX_SCALE_RULES.indexOf(rule), iters, opts.oversample ?? 16,
    opts.powerIters ?? 3, opts.seed ?? 0x5d0e5eed, opts.threads ?? 0, up, down, errors, out);
  return { lowRank: { rank: r, up, down, sigma: new Float32Array(0) }, errors: Array.from(errors.subarray(0, out[1])), best: out[0] };
}

/** Y [m, n] = X [m, k] · Wᵀ (W [n, k]) (+ bias [n]), fp32 GEMM. */
export async function matmulNT(x: Float32Array, m: number, k: number, w: Float32Array, n: number, bias?: Float32Array, threads = 0): Promise<Float32Array> {
  const y = new Float32Array(m * n);
  if (bias !== undefined) for (let i = 0; i < m; i++) y.set(bias, i * n);
  if (m > 0 && n > 0 && k > 0) await native().gemmF32(false, true, m, n, k, 1, x, k, w, k, bias !== undefined ? 1 : 0, y, n, threads);
  return y;
}

/** C [m, n] += X [m, k] · Wᵀ (W [n, k]). */
export async function matmulNTAccumulate(c: Float32Array, x: Float32Array, m: number, k: number, w: Float32Array, n: number, threads = 0): Promise<void> {
  if (m > 0 && n > 0 && k > 0) await native().gemmF32(false, true, m, n, k, 1, x, k, w, k, 1, c, n, threads);
}

/** ‖a − b‖ / ‖b‖ in double (NaN when ‖b‖ = 0 and a ≠ b; 0 when both are zero). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (den === 0) return num === 0 ? 0 : Number.NaN;
  return Math.sqrt(num / den);
}
