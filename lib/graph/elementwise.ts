/**
 * Elementwise arithmetic with NumPy/PyTorch broadcasting (shapes aligned from the right, size-1
 * axes repeat), natively off the JavaScript thread, plus the two fused forms that adaLN models use
 * on every element: `modulate` (x·(1 + scale) + shift) and `gatedAdd` (x + gate·y), and LayerNorm
 * fused with its modulation. Operands may be f32, f16 or bf16 tensors or plain numbers; outputs
 * are f32.
 */
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { checkEps, checkThreads, floatInput, optionalVector, output, type OpOptions } from './functional.js';

type Operand = Tensor | number;

const OPS = { add: 0, sub: 1, mul: 2, div: 3, modulate: 4, gatedAdd: 5 } as const;

function operand(x: Operand, argument: string): Tensor<'f32'> {
  if (typeof x === 'number') return Tensor.fromArray([x], []);
  return floatInput(x, argument, 0);
}

/** The broadcast shape of several shapes; ArgumentError naming the operand that does not fit. */
export function broadcastShapes(shapes: readonly (readonly number[])[], names: readonly string[]): number[] {
  const ndim = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(ndim).fill(1);
  for (let d = 0; d < ndim; d++) {
    for (const s of shapes) {
      const v = s[s.length - ndim + d] ?? 1;
      if (v !== 1) {
        if (out[d] !== 1 && out[d] !== v) {
          const i = shapes.indexOf(s);
          throw new ArgumentError(names[i], `a shape that broadcasts with [${shapes.map((x) => `[${x.join(', ')}]`).join(', ')}] (axis ${d - ndim} is ${out[d]} or 1)`, `[${s.join(', ')}]`);
        }
        out[d] = v;
      }
    }
  }
  return out;
}

/** The strides (elements) of a contiguous tensor of `shape` read over the broadcast shape `to`. */
export function broadcastStrides(shape: readonly number[], to: readonly number[]): number[] {
  const strides = new Array<number>(to.length).fill(0);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const od = to.length - shape.length + d;
    strides[od] = shape[d] === 1 ? 0 : s;
    s *= shape[d];
  }
  return strides;
}

async function elementwise(op: number, xs: Operand[], names: string[], options: OpOptions): Promise<Tensor<'f32'>> {
  const ts = xs.map((x, i) => operand(x, names[i]));
  const threads = checkThreads(options);
  const shape = broadcastShapes(ts.map((t) => t.shape), names);
  if (op === OPS.add && ts[0].shape.join() === ts[1].shape.join() && ts[0].ndim === ts[1].ndim) {
    return output(await native().add(ts[0].data, ts[1].data, ts[0].numel, null, threads), ts[0].shape);
  }
  const strides = ts.map((t) => broadcastStrides(t.shape, shape));
  return output(await native().elementwise(op, ts.map((t) => t.data), ts.map(() => 0), strides, shape, null, threads), shape);
}

/** a + b with broadcasting. */
export function add(a: Operand, b: Operand, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  return elementwise(OPS.add, [a, b], ['a', 'b'], options);
}

/** a − b with broadcasting. */
export function sub(a: Operand, b: Operand, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  return elementwise(OPS.sub, [a, b], ['a', 'b'], options);
}

/** a · b with broadcasting. */
export function mul(a: Operand, b: Operand, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  return elementwise(OPS.mul, [a, b], ['a', 'b'], options);
}

/** a / b with broadcasting (IEEE division: x/0 is ±Inf or NaN). */
export function div(a: Operand, b: Operand, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  return elementwise(OPS.div, [a, b], ['a', 'b'], options);
}

/** x · (1 + scale) + shift with broadcasting, in one pass (adaLN's modulation). */
export function modulate(x: Operand, scale: Operand, shift: Operand, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  return elementwise(OPS.modulate, [x, scale, shift], ['x', 'scale', 'shift'], options);
}

/** x + gate · y with broadcasting, in one pass (adaLN-Zero's gated residual). */
export function gatedAdd(x: Operand, gate: Operand, y: Operand, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  return elementwise(OPS.gatedAdd, [x, gate, y], ['x', 'gate', 'y'], options);
}

export interface LayerNormModulateOptions extends OpOptions {
  /** The norm's own gamma [dim] (applied before the modulation); omitted or null: 1. */
  weight?: Tensor | null;
  /** The norm's own beta [dim]; omitted or null: 0. */
  bias?: Tensor | null;
  /** Default 1e-6 (diffusers' adaLN norms). */
  eps?: number;
}

/**
 * LayerNorm(x) · (1 + scale) + shift in one pass over x: x is [B, T, D] (or [B, D]); scale and
 * shift hold one row per sample, [B, D] or [B, 1, D] (what diffusers writes as `scale[:, None]`).
 */
export async function layerNormModulate(x: Tensor, scale: Tensor, shift: Tensor, options: LayerNormModulateOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 2);
  const dim = xf.shape[xf.ndim - 1];
  const batch = xf.shape[0];
  const sc = floatInput(scale, 'scale', 1);
  const sh = floatInput(shift, 'shift', 1);
  for (const [t, name] of [[sc, 'scale'], [sh, 'shift']] as const) {
    if (t.numel !== batch * dim || t.shape[0] !== (t.ndim === 1 ? batch * dim : batch) || t.shape[t.ndim - 1] !== dim) {
      throw new ArgumentError(name, `a tensor of shape [${batch}, ${dim}] or [${batch}, 1, ${dim}] (one row per sample of x ${xf.toString()})`, t.toString());
    }
  }
  const gamma = optionalVector(options.weight, 'options.weight', dim);
  const beta = optionalVector(options.bias, 'options.bias', dim);
  const eps = checkEps(options.eps ?? 1e-6, 'options.eps');
  const threads = checkThreads(options);
  const rows = dim === 0 ? 0 : xf.numel / dim;
  return output(await native().layerNormModulate(xf.data, rows, dim, gamma, beta, eps, sc.data, sh.data, Math.max(1, rows / Math.max(1, batch)), null, threads), xf.shape);
}
