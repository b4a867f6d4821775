/**
 * The graph's tensor ops as functions: each validates its arguments (ArgumentError naming the
 * argument) and runs the native kernel off the JavaScript thread; the worker also allocates the
 * output (native memory, never zero-filled or freed on the JavaScript thread), so a forward does no
 * per-element work on the main thread. Inputs may be f32, f16 or bf16 (converted to f32 first);
 * outputs are always f32.
 */
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import { trackTensor } from './scope.js';

/** Options every op accepts. */
export interface OpOptions {
  /** Engine threads (0, the default: the physical cores). */
  threads?: number;
}

export type GeluApproximate = 'none' | 'tanh';
export const GELU_APPROXIMATIONS: readonly GeluApproximate[] = ['none', 'tanh'];

function describeTensor(t: unknown): unknown {
  return t instanceof Tensor ? t.toString() : t;
}

/** `x` as an f32 tensor with at least `minDims` dimensions (converting f16/bf16). */
export function floatInput(x: unknown, argument: string, minDims = 1): Tensor<'f32'> {
  if (!(x instanceof Tensor) || !(x.dtype === 'f32' || x.dtype === 'f16' || x.dtype === 'bf16') || x.ndim < minDims) {
    throw new ArgumentError(argument, `an f32, f16 or bf16 tensor with at least ${minDims} dimension${minDims === 1 ? '' : 's'}`, describeTensor(x));
  }
  checkNotDisposed(x, argument);
  return x.to('f32');
}

/** An optional f32 vector of `length` elements (the parameters of the norms). */
export function optionalVector(t: unknown, argument: string, length: number): Float32Array | null {
  if (t === undefined || t === null) return null;
  if (!(t instanceof Tensor) || t.dtype !== 'f32' || t.ndim !== 1 || t.shape[0] !== length) {
    throw new ArgumentError(argument, `an f32 tensor of shape [${length}] or null`, describeTensor(t));
  }
  return t.data as Float32Array;
}

/**
 * An op's output: the Float32Array the native worker allocated, as an f32 tensor of `shape`,
 * tracked by the current memory scope (scope.ts) so that it is freed once no longer reachable.
 */
export function output(data: Float32Array, shape: readonly number[]): Tensor<'f32'> {
  return trackTensor(Tensor.fromStorage(data, shape, 'f32'));
}

export function checkThreads(options: OpOptions | undefined, argument = 'options.threads'): number {
  const threads = options?.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) {
    throw new ArgumentError(argument, 'an integer in [0, 1024] (0: physical cores)', threads);
  }
  return threads;
}

export function checkEps(eps: unknown, argument: string): number {
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new ArgumentError(argument, 'a finite number >= 0', eps);
  return eps;
}

export interface LayerNormOptions extends OpOptions {
  /** gamma [dim]; omitted or null: 1. */
  weight?: Tensor | null;
  /** beta [dim]; omitted or null: 0. */
  bias?: Tensor | null;
  /** Added to the variance; default 1e-5. */
  eps?: number;
}

/** LayerNorm over the last dimension (biased variance, as PyTorch). */
export async function layerNorm(x: Tensor, options: LayerNormOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x');
  const dim = xf.shape[xf.ndim - 1];
  const gamma = optionalVector(options.weight, 'options.weight', dim);
  const beta = optionalVector(options.bias, 'options.bias', dim);
  const eps = checkEps(options.eps ?? 1e-5, 'options.eps');
  const threads = checkThreads(options);
  const rows = dim === 0 ? 0 : xf.numel / dim;
  return output(await native().layerNorm(xf.data, rows, dim, gamma, beta, eps, null, threads), xf.shape);
}

export interface RmsNormOptions extends OpOptions {
  /** gamma [dim]; omitted or null: 1. */
  weight?: Tensor | null;
  /** Added to the mean square; default 1e-6. */
  eps?: number;
}

/** RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · gamma. */
export async function rmsNorm(x: Tensor, options: RmsNormOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x');
  const dim = xf.shape[xf.ndim - 1];
  const gamma = optionalVector(options.weight, 'options.weight', dim);
  const eps = checkEps(options.eps ?? 1e-6, 'options.eps');
  const threads = checkThreads(options);
  const rows = dim === 0 ? 0 : xf.numel / dim;
  return output(await native().rmsNorm(xf.data, rows, dim, gamma, eps, null, threads), xf.shape);
}

export function checkApproximate(approximate: unknown, argument: string): GeluApproximate {
  if (!GELU_APPROXIMATIONS.includes(approximate as GeluApproximate)) {
    throw new ArgumentError(argument, `one of ${GELU_APPROXIMATIONS.map((a) => `'${a}'`).join(', ')}`, approximate);
  }
  return approximate as GeluApproximate;
}

/** GELU, exact (erf, `approximate: 'none'`, the default) or the tanh form. */
export async function gelu(x: Tensor, options: OpOptions & { approximate?: GeluApproximate } = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 0);
  const approximate = checkApproximate(options.approximate ?? 'none', 'options.approximate');
  const threads = checkThreads(options);
  return output(await native().gelu(xf.data, xf.numel, null, approximate === 'tanh' ? 1 : 0, threads), xf.shape);
}

/** SiLU: x · sigmoid(x). */
export async function silu(x: Tensor, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 0);
  const threads = checkThreads(options);
  return output(await native().silu(xf.data, xf.numel, null, threads), xf.shape);
}

/** Softmax over the last dimension. A row that is all -Inf or holds NaN gives NaN. */
export async function softmax(x: Tensor, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x');
  const cols = xf.shape[xf.ndim - 1];
  const threads = checkThreads(options);
  return output(await native().softmaxRows(xf.data, cols === 0 ? 0 : xf.numel / cols, cols, null, threads), xf.shape);
}

export interface GroupNormOptions extends OpOptions {
  /** gamma [channels]; omitted or null: 1. */
  weight?: Tensor | null;
  /** beta [channels]; omitted or null: 0. */
  bias?: Tensor | null;
  /** Added to the variance; default 1e-5. */
  eps?: number;
}

/** GroupNorm over x [N, C, ...] (torch.nn.GroupNorm): C split into `groups` groups, statistics per sample and group. */
export async function groupNorm(x: Tensor, groups: number, options: GroupNormOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 2);
  const [n, c] = xf.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) throw new ArgumentError('groups', `a positive divisor of the channels (${c})`, groups);
  const gamma = optionalVector(options.weight, 'options.weight', c);
  const beta = optionalVector(options.bias, 'options.bias', c);
  const eps = checkEps(options.eps ?? 1e-5, 'options.eps');
  const threads = checkThreads(options);
  const spatial = n * c === 0 ? 0 : xf.numel / (n * c);
  return output(await native().groupNorm(xf.data, n, c, spatial, groups, eps, gamma, beta, null, threads), xf.shape);
}

export interface ScaledDotProductAttentionOptions extends OpOptions {
  /** Score scale; default 1/√headDim. */
  scale?: number;
  /**
   * Added to every score row before the softmax, per batch and key: [B, Tk] (a key padding mask as
   * diffusers builds it, (1 − mask)·−10000), or null.
   */
  keyBias?: Tensor | null;
}

/**
 * Multi-head scaled dot-product attention: q is [Tq, D] or [B, Tq, D], k and v [Tk, D] or
 * [B, Tk, D] with D = heads · headDim (head h in columns [h·headDim, (h+1)·headDim)); per batch and
 * head, out = softmax(q·kᵀ · scale + keyBias) · v with the softmax over the keys. Self-attention
 * passes the same token count for both; cross-attention (text keys) does not.
 */
export async function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, heads: number,
  options: ScaledDotProductAttentionOptions = {}): Promise<Tensor<'f32'>> {
  const qf = floatInput(q, 'q', 2);
  if (qf.ndim > 3) throw new ArgumentError('q', 'a tensor of shape [T, D] or [B, T, D]', qf.toString());
  const kf = floatInput(k, 'k', 2);
  const vf = floatInput(v, 'v', 2);
  const d = qf.shape[qf.ndim - 1];
  const batch = qf.ndim === 3 ? qf.shape[0] : 1;
  const kvShape = kf.shape;
  if (kf.ndim !== qf.ndim || kvShape[kf.ndim - 1] !== d || (qf.ndim === 3 && kvShape[0] !== batch) || kvShape[kf.ndim - 2] < 1) {
    throw new ArgumentError('k', `a tensor of shape [${qf.ndim === 3 ? `${batch}, ` : ''}Tk, ${d}] with Tk >= 1`, kf.toString());
  }
  if (vf.shape.join() !== kf.shape.join() || vf.ndim !== kf.ndim) throw new ArgumentError('v', `a tensor of the shape of k, [${kf.shape.join(', ')}]`, vf.toString());
  if (!Number.isInteger(heads) || heads < 1 || d % heads !== 0) {
    throw new ArgumentError('heads', `a positive integer dividing the model dimension ${d}`, heads);
  }
  const headDim = d / heads;
  const scale = options.scale ?? (headDim > 0 ? 1 / Math.sqrt(headDim) : 1);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new ArgumentError('options.scale', 'a finite number', scale);
  const threads = checkThreads(options);
  const qTokens = qf.shape[qf.ndim - 2];
  const kvTokens = kf.shape[kf.ndim - 2];
  let keyBias: Float32Array | null = null;
  if (options.keyBias !== undefined && options.keyBias !== null) {
    const kb = floatInput(options.keyBias, 'options.keyBias', 1);
    if (kb.numel !== batch * kvTokens) throw new ArgumentError('options.keyBias', `a tensor of ${batch}·${kvTokens} values ([B, Tk])`, kb.toString());
    keyBias = kb.data;
  }
  return output(await native().attention(qf.data, kf.data, vf.data, batch, qTokens, kvTokens, heads, headDim, scale, keyBias, null, threads), qf.shape);
}
