/**
 * Shape ops: views that share storage (reshape, flatten, unsqueeze, squeeze: synchronous, no copy)
 * and ops that move elements (permute, transpose, slice, chunk, split, concat, expand, nearest
 * upsampling: native strided copies off the JavaScript thread into a new contiguous f32 tensor).
 * Axes may be negative (counted from the end), as in PyTorch.
 */
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import { checkThreads, floatInput, output, type OpOptions } from './functional.js';
import { broadcastShapes } from './elementwise.js';

/** The axis `dim` of a tensor with `ndim` axes (negative counts from the end); ArgumentError if out of range. */
export function normalizeAxis(dim: unknown, ndim: number, argument = 'dim'): number {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < -ndim || dim >= ndim) {
    throw new ArgumentError(argument, `an integer axis in [${-ndim}, ${ndim - 1}]`, dim);
  }
  return dim < 0 ? dim + ndim : dim;
}

function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

async function copyView(x: Tensor<'f32'>, offset: number, shape: number[], strides: number[], outShape: readonly number[], options: OpOptions): Promise<Tensor<'f32'>> {
  const threads = checkThreads(options);
  return output(await native().stridedCopy(x.data, offset, shape, strides, null, threads), outShape);
}

function anyTensor(x: unknown, argument: string): Tensor {
  if (!(x instanceof Tensor)) throw new ArgumentError(argument, 'a Tensor', x);
  checkNotDisposed(x, argument);
  return x;
}

/** The same storage flattened over axes start..end (inclusive), as torch.flatten. */
export function flatten(x: Tensor, start = 0, end = -1): Tensor {
  const t = anyTensor(x, 'x');
  if (t.ndim === 0) return t.reshape([1]);
  const s = normalizeAxis(start, t.ndim, 'start');
  const e = normalizeAxis(end, t.ndim, 'end');
  if (e < s) throw new ArgumentError('end', `an axis >= start (${s})`, end);
  const merged = t.shape.slice(s, e + 1).reduce((a, b) => a * b, 1);
  return t.reshape([...t.shape.slice(0, s), merged, ...t.shape.slice(e + 1)]);
}

/** The same storage with a size-1 axis inserted at `dim` (dim in [-ndim-1, ndim]). */
export function unsqueeze(x: Tensor, dim: number): Tensor {
  const t = anyTensor(x, 'x');
  const d = normalizeAxis(dim, t.ndim + 1);
  return t.reshape([...t.shape.slice(0, d), 1, ...t.shape.slice(d)]);
}

/** The same storage without the size-1 axis `dim`. */
export function squeeze(x: Tensor, dim: number): Tensor {
  const t = anyTensor(x, 'x');
  const d = normalizeAxis(dim, t.ndim);
  if (t.shape[d] !== 1) throw new ArgumentError('dim', `an axis of size 1 (axis ${d} of [${t.shape.join(', ')}] is ${t.shape[d]})`, dim);
  return t.reshape([...t.shape.slice(0, d), ...t.shape.slice(d + 1)]);
}

/** The axes reordered: output axis i is input axis dims[i] (torch.permute), copied contiguously. */
export async function permute(x: Tensor, dims: readonly number[], options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 0);
  if (!Array.isArray(dims) || dims.length !== xf.ndim) throw new ArgumentError('dims', `a permutation of the ${xf.ndim} axes`, dims);
  const axes = dims.map((d, i) => normalizeAxis(d, xf.ndim, `dims[${i}]`));
  if (new Set(axes).size !== axes.length) throw new ArgumentError('dims', `a permutation of the ${xf.ndim} axes (each once)`, dims);
  const strides = contiguousStrides(xf.shape);
  const shape = axes.map((a) => xf.shape[a]);
  return copyView(xf, 0, shape, axes.map((a) => strides[a]), shape, options);
}

/** Axes d0 and d1 swapped, copied contiguously. */
export function transpose(x: Tensor, d0: number, d1: number, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 0);
  const a = normalizeAxis(d0, xf.ndim, 'd0');
  const b = normalizeAxis(d1, xf.ndim, 'd1');
  const dims = xf.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(xf, dims, options);
}

/** Elements start..end−1 along `dim` (negative start/end count from the end, clamped as Python slices). */
export async function slice(x: Tensor, dim: number, start: number, end: number = Number.MAX_SAFE_INTEGER, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 1);
  const d = normalizeAxis(dim, xf.ndim);
  const n = xf.shape[d];
  for (const [v, name] of [[start, 'start'], [end, 'end']] as const) {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new ArgumentError(name, 'an integer', v);
  }
  const clamp = (v: number): number => Math.min(n, Math.max(0, v < 0 ? v + n : v));
  const s = clamp(start);
  const e = Math.max(s, clamp(end));
  const strides = contiguousStrides(xf.shape);
  const shape = [...xf.shape];
  shape[d] = e - s;
  return copyView(xf, s * strides[d], shape, strides, shape, options);
}

/** Splits `dim` into pieces of the given sizes (one number: equal pieces of that size, the last smaller), as torch.split. */
export async function split(x: Tensor, sizes: number | readonly number[], dim = 0, options: OpOptions = {}): Promise<Tensor<'f32'>[]> {
  const xf = floatInput(x, 'x', 1);
  const d = normalizeAxis(dim, xf.ndim);
  const n = xf.shape[d];
  let list: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes < 1) throw new ArgumentError('sizes', 'a positive integer or an array of sizes', sizes);
    list = [];
    for (let i = 0; i < n; i += sizes) list.push(Math.min(sizes, n - i));
  } else {
    if (!Array.isArray(sizes) || !sizes.every((v) => Number.isInteger(v) && v >= 0) || sizes.reduce((a, b) => a + b, 0) !== n) {
      throw new ArgumentError('sizes', `non-negative integers that add up to ${n} (axis ${d} of [${xf.shape.join(', ')}])`, sizes);
    }
    list = [...sizes];
  }
  const out: Promise<Tensor<'f32'>>[] = [];
  let at = 0;
  for (const size of list) {
    out.push(slice(xf, d, at, at + size, options));
    at += size;
  }
  return Promise.all(out);
}

/** `chunks` pieces along `dim` of size ceil(n / chunks) (the last smaller), as torch.chunk. */
export function chunk(x: Tensor, chunks: number, dim = 0, options: OpOptions = {}): Promise<Tensor<'f32'>[]> {
  const xf = floatInput(x, 'x', 1);
  if (!Number.isInteger(chunks) || chunks < 1) throw new ArgumentError('chunks', 'a positive integer', chunks);
  const d = normalizeAxis(dim, xf.ndim);
  return split(xf, Math.max(1, Math.ceil(xf.shape[d] / chunks)), d, options);
}

/** The tensors joined along `dim` (all other axes equal), as torch.cat. */
export async function concat(tensors: readonly Tensor[], dim = 0, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new ArgumentError('tensors', 'a non-empty array of tensors', tensors);
  const ts = tensors.map((t, i) => floatInput(t, `tensors[${i}]`, 1));
  const ndim = ts[0].ndim;
  const d = normalizeAxis(dim, ndim);
  ts.forEach((t, i) => {
    if (t.ndim !== ndim || t.shape.some((v, j) => j !== d && v !== ts[0].shape[j])) {
      throw new ArgumentError(`tensors[${i}]`, `a tensor of shape [${ts[0].shape.map((v, j) => (j === d ? '*' : v)).join(', ')}]`, t.toString());
    }
  });
  const outer = ts[0].shape.slice(0, d).reduce((a, b) => a * b, 1);
  const inner = ts[0].shape.slice(d + 1).reduce((a, b) => a * b, 1);
  const shape = [...ts[0].shape];
  shape[d] = ts.reduce((a, t) => a + t.shape[d], 0);
  const threads = checkThreads(options);
  return output(await native().concat(ts.map((t) => t.data), ts.map((t) => t.shape[d] * inner), outer, null, threads), shape);
}

/** x repeated along its size-1 axes (and new leading axes) to `shape`, copied (torch.expand + contiguous). */
export async function expand(x: Tensor, shape: readonly number[], options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 0);
  if (!Array.isArray(shape) || shape.length < xf.ndim || !shape.every((v) => Number.isSafeInteger(v) && v >= 0)) {
    throw new ArgumentError('shape', `a shape of at least ${xf.ndim} non-negative sizes`, shape);
  }
  const to = broadcastShapes([xf.shape, shape], ['x', 'shape']);
  if (to.join() !== shape.join()) throw new ArgumentError('shape', `a shape that x [${xf.shape.join(', ')}] broadcasts to`, shape);
  const strides = new Array<number>(shape.length).fill(0);
  const own = contiguousStrides(xf.shape);
  for (let d = 0; d < xf.ndim; d++) {
    const od = shape.length - xf.ndim + d;
    strides[od] = xf.shape[d] === 1 ? 0 : own[d];
  }
  return copyView(xf, 0, [...shape], strides, shape, options);
}

/** Nearest-neighbour upsampling of x [N, C, H, W] by an integer factor (F.interpolate(mode='nearest')). */
export async function upsampleNearest2d(x: Tensor, factor = 2, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 4);
  if (xf.ndim !== 4) throw new ArgumentError('x', 'a tensor of shape [N, C, H, W]', xf.toString());
  if (!Number.isInteger(factor) || factor < 1 || factor > 64) throw new ArgumentError('factor', 'an integer in [1, 64]', factor);
  const [n, c, h, w] = xf.shape;
  // The view [N, C, H, f, W, f] with stride 0 on the two f axes is the upsampled image.
  const view = [n, c, h, factor, w, factor];
  const strides = [c * h * w, h * w, w, 0, 1, 0];
  return copyView(xf, 0, view, strides, [n, c, h * factor, w * factor], options);
}

/** x [N, C, H, W] padded with zeros: [left, right, top, bottom] columns and rows (F.pad with mode 'constant'). */
export async function pad2d(x: Tensor, padding: readonly [number, number, number, number], options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 4);
  if (xf.ndim !== 4) throw new ArgumentError('x', 'a tensor of shape [N, C, H, W]', xf.toString());
  if (!Array.isArray(padding) || padding.length !== 4 || !padding.every((p) => Number.isInteger(p) && p >= 0 && p <= 4096)) {
    throw new ArgumentError('padding', 'four integers [left, right, top, bottom] in [0, 4096]', padding);
  }
  const [left, right, top, bottom] = padding;
  const [n, c, h, w] = xf.shape;
  let y: Tensor<'f32'> = xf;
  if (left > 0 || right > 0) {
    const parts = [Tensor.zeros([n, c, h, left], 'f32'), y, Tensor.zeros([n, c, h, right], 'f32')].filter((t) => t.shape[3] > 0);
    y = await concat(parts, 3, options);
  }
  if (top > 0 || bottom > 0) {
    const wp = w + left + right;
    const parts = [Tensor.zeros([n, c, top, wp], 'f32'), y, Tensor.zeros([n, c, bottom, wp], 'f32')].filter((t) => t.shape[2] > 0);
    y = await concat(parts, 2, options);
  }
  return y === xf ? copyView(xf, 0, [...xf.shape], contiguousStrides(xf.shape), xf.shape, options) : y;
}
