/**
 * Embedding ops with diffusers' exact conventions: table lookup by integer ids, the sinusoidal
 * timestep embedding (diffusers `get_timestep_embedding`, computed in float32 as torch does) and the
 * 2-D sin-cos position embedding of patch grids (`get_2d_sincos_pos_embed`: a float32 grid, float64
 * sines, stored as float32). These touch a few rows per sample, so they run in JavaScript.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import { floatInput, output } from './functional.js';

const f = Math.fround;

/** Integer ids from an i32/i64/u8 tensor (or an f32 one holding integers), a number or an array of numbers. */
export function integerValues(x: unknown, argument: string): { values: number[]; shape: number[] } {
  if (typeof x === 'number') {
    if (!Number.isSafeInteger(x)) throw new ArgumentError(argument, 'an integer', x);
    return { values: [x], shape: [] };
  }
  if (Array.isArray(x)) {
    if (!x.every((v) => Number.isSafeInteger(v))) throw new ArgumentError(argument, 'an array of integers', x);
    return { values: [...x], shape: [x.length] };
  }
  if (!(x instanceof Tensor)) throw new ArgumentError(argument, 'an integer tensor, an integer or an array of integers', x);
  checkNotDisposed(x, argument);
  if (x.dtype === 'i64') return { values: Array.from(x.data as BigInt64Array, (v) => Number(v)), shape: [...x.shape] };
  if (x.dtype === 'i32' || x.dtype === 'u8' || x.dtype === 'i8') return { values: Array.from(x.data as ArrayLike<number>), shape: [...x.shape] };
  if (x.dtype === 'f32' || x.dtype === 'f16' || x.dtype === 'bf16') {
    const values = x.toArray();
    if (!values.every((v) => Number.isInteger(v))) throw new ArgumentError(argument, 'integer values', x.toString());
    return { values, shape: [...x.shape] };
  }
  throw new ArgumentError(argument, 'an integer tensor (i64, i32, u8, i8)', x.toString());
}

/** Numbers (timesteps, which may be fractional) from a tensor of any numeric dtype, a number or an array. */
export function numericValues(x: unknown, argument: string): { values: number[]; shape: number[] } {
  if (typeof x === 'number') {
    if (!Number.isFinite(x)) throw new ArgumentError(argument, 'a finite number', x);
    return { values: [x], shape: [] };
  }
  if (Array.isArray(x)) {
    if (!x.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new ArgumentError(argument, 'an array of finite numbers', x);
    return { values: [...x], shape: [x.length] };
  }
  if (x instanceof Tensor && (x.dtype === 'i64' || x.dtype === 'i32')) return integerValues(x, argument);
  const t = floatInput(x, argument, 0);
  return { values: Array.from(t.data), shape: [...t.shape] };
}

/** Rows of `table` [V, D] for integer `ids` of any shape: [...ids.shape, D] (torch.nn.Embedding). */
export function embedding(table: Tensor, ids: unknown): Tensor<'f32'> {
  const tf = floatInput(table, 'table', 2);
  if (tf.ndim !== 2) throw new ArgumentError('table', 'a tensor of shape [V, D]', tf.toString());
  const [v, d] = tf.shape;
  const { values, shape } = integerValues(ids, 'ids');
  const out = new Float32Array(values.length * d);
  values.forEach((id, i) => {
    if (id < 0 || id >= v) throw new ArgumentError('ids', `ids in [0, ${v - 1}] (the table has ${v} rows)`, id);
    out.set(tf.data.subarray(id * d, (id + 1) * d), i * d);
  });
  return output(out, [...shape, d]);
}

export interface TimestepEmbeddingOptions {
  /** cos first, then sin (diffusers' flip_sin_to_cos); default false. */
  flipSinToCos?: boolean;
  /** Frequencies exp(−ln(maxPeriod)·i / (half − shift)); default 1. */
  downscaleFreqShift?: number;
  /** Multiplies t·freq; default 1. */
  scale?: number;
  /** Default 10000. */
  maxPeriod?: number;
}

/**
 * Sinusoidal embedding [N, dim] of N timesteps (diffusers `get_timestep_embedding`): half = dim/2,
 * freq_i = exp(−ln(maxPeriod)·i / (half − downscaleFreqShift)), emb = [sin(t·freq), cos(t·freq)]
 * (or cos first), zero-padded for odd dim. Every step rounds to float32 as torch does.
 */
export function timestepEmbedding(timesteps: unknown, dim: number, options: TimestepEmbeddingOptions = {}): Tensor<'f32'> {
  const { values, shape } = numericValues(timesteps, 'timesteps');
  if (shape.length > 1) throw new ArgumentError('timesteps', 'a 1-D tensor, an array or a number', `shape [${shape.join(', ')}]`);
  if (!Number.isInteger(dim) || dim < 1) throw new ArgumentError('dim', 'a positive integer', dim);
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000 } = options;
  const half = Math.floor(dim / 2);
  const freqs = new Float32Array(half);
  const lnMax = f(-Math.log(maxPeriod));
  const denom = f(half - downscaleFreqShift);
  for (let i = 0; i < half; i++) freqs[i] = f(Math.exp(f(f(lnMax * i) / denom)));
  const out = new Float32Array(values.length * dim);
  values.forEach((t, n) => {
    const row = out.subarray(n * dim, (n + 1) * dim);
    const tf = f(t);
    for (let i = 0; i < half; i++) {
      const arg = f(f(tf * freqs[i]) * scale);
      const s = f(Math.sin(arg));
      const c = f(Math.cos(arg));
      row[flipSinToCos ? half + i : i] = s;
      row[flipSinToCos ? i : half + i] = c;
    }
  });
  return output(out, [values.length, dim]);
}

/** The 1-D sin-cos embedding [M, dim] of float positions (diffusers `get_1d_sincos_pos_embed_from_grid`, float64). */
function sincos1d(dim: number, positions: Float64Array): Float64Array {
  const half = dim / 2;
  const out = new Float64Array(positions.length * dim);
  for (let d = 0; d < half; d++) {
    const omega = 1 / 10000 ** (d / half);
    for (let m = 0; m < positions.length; m++) {
      const v = positions[m] * omega;
      out[m * dim + d] = Math.sin(v);
      out[m * dim + half + d] = Math.cos(v);
    }
  }
  return out;
}

export interface SincosPosEmbedOptions {
  /** diffusers' base_size (the grid size the model was trained at); default the grid height. */
  baseSize?: number;
  /** Default 1. */
  interpolationScale?: number;
}

/**
 * The 2-D sin-cos position embedding [gridH·gridW, dim] of a patch grid (diffusers
 * `get_2d_sincos_pos_embed`), row-major over (row, col): the first dim/2 channels encode the column
 * coordinate, the rest the row (diffusers' meshgrid puts w first). Coordinates are
 * i / (gridSize / baseSize) / interpolationScale in float32; the sines in float64, stored as f32.
 */
export function sincosPosEmbed2d(dim: number, gridH: number, gridW: number = gridH, options: SincosPosEmbedOptions = {}): Tensor<'f32'> {
  if (!Number.isInteger(dim) || dim < 4 || dim % 4 !== 0) throw new ArgumentError('dim', 'a positive multiple of 4', dim);
  for (const [v, name] of [[gridH, 'gridH'], [gridW, 'gridW']] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(name, 'a positive integer', v);
  }
  const baseSize = options.baseSize ?? gridH;
  const interp = options.interpolationScale ?? 1;
  if (!(baseSize > 0) || !(interp > 0)) throw new ArgumentError('options', 'a positive baseSize and interpolationScale', options);
  // numpy: float32 arange / python float / python float, each step in float32.
  const coord = (i: number, size: number): number => f(f(i / f(size / baseSize)) / f(interp));
  const m = gridH * gridW;
  const rows = new Float64Array(m);
  const cols = new Float64Array(m);
  for (let r = 0; r < gridH; r++) {
    for (let c = 0; c < gridW; c++) {
      rows[r * gridW + c] = coord(r, gridH);
      cols[r * gridW + c] = coord(c, gridW);
    }
  }
  const half = dim / 2;
  const embW = sincos1d(half, cols);
  const embH = sincos1d(half, rows);
  const out = new Float32Array(m * dim);
  for (let i = 0; i < m; i++) {
    for (let d = 0; d < half; d++) {
      out[i * dim + d] = embW[i * half + d];
      out[i * dim + half + d] = embH[i * half + d];
    }
  }
  return Tensor.fromStorage(out, [m, dim], 'f32');
}
