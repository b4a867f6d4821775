/**
 * Quantize a tensor along its last axis into one of the element formats of DESIGN.md §3, and
 * dequantize it back. The work runs in the native kernels (the best SIMD level of this CPU).
 */
import { ArgumentError, NonFiniteError } from '../errors.js';
import { native, NativeScheme } from '../native.js';
import { Tensor } from '../tensor.js';
import { ELEMENT_FORMATS, FORMATS, MX_SCALE_RULES, groupsPerRow, paddedK } from './schemes.js';
import type { ElementFormat, MxScaleRule } from './schemes.js';

export interface QuantizeOptions {
  /** MXFP4 scale rule (DESIGN.md §3): 'even' (default), 'floor' (OCP) or 'ceil'. */
  scaleRule?: MxScaleRule;
  /** NVFP4 tensor scale G; default 448·6 / amax over the tensor's finite values (1 if there are none). */
  globalScale?: number;
  /**
   * 'weight' (default): NaN/Inf is an error naming the tensor. 'activation': a group holding NaN or
   * Inf gets a NaN scale, so its outputs are NaN.
   */
  role?: 'weight' | 'activation';
  /** Name used in error messages (for example the layer's dotted name). */
  name?: string;
}

/** The dtypes codes and scales are stored in. */
export type CodeDType = 'int4' | 'fp4_e2m1' | 'i8';
export type ScaleDType = 'f32' | 'e8m0' | 'e4m3';

/** A tensor quantized along its last axis: codes [..., kp] (packed), scales [..., groups]. */
export interface QuantizedTensor {
  readonly format: ElementFormat;
  /** Shape of the original tensor. */
  readonly shape: readonly number[];
  /** Elements per group along the last axis (the whole row for int8). */
  readonly group: number;
  /** Codes: [...batch, kp] in 'int4' / 'fp4_e2m1' (two per byte) or [...batch, k] in 'i8'. */
  readonly codes: Tensor<CodeDType>;
  /** Group scales: [...batch, groups] in f32 / e8m0 / e4m3. */
  readonly scales: Tensor<ScaleDType>;
  /** NVFP4 tensor scale G (dequant = q·scale/G); 1 for the other formats. */
  readonly globalScale: number;
  /** The MXFP4 scale rule used (only for mxfp4). */
  readonly scaleRule?: MxScaleRule;
}

const NATIVE_SCHEME: Record<ElementFormat, NativeScheme> = {
  int4: NativeScheme.Int4,
  mxfp4: NativeScheme.Mxfp4,
  nvfp4: NativeScheme.Nvfp4,
  int8: NativeScheme.Int8,
};

interface Plan {
  format: ElementFormat;
  rows: number;
  k: number;
  x: Float32Array;
  codes: Tensor<CodeDType>;
  scales: Tensor<ScaleDType>;
  globalScale: number;
  rule: MxScaleRule;
}

interface Scan {
  amaxFinite: number;
  firstNonFinite: number;
}

/** Checks the arguments and converts the input to f32; the scan over its values comes next. */
function prepare(tensor: Tensor, format: ElementFormat, options: QuantizeOptions): { x: Float32Array; scan: Float64Array } {
  if (!(tensor instanceof Tensor)) throw new ArgumentError('tensor', 'a Tensor', tensor);
  if (!ELEMENT_FORMATS.includes(format)) throw new ArgumentError('format', `one of ${ELEMENT_FORMATS.join(', ')}`, format);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  const { scaleRule = 'even', role = 'weight', name = 'tensor' } = options;
  if (!MX_SCALE_RULES.includes(scaleRule)) throw new ArgumentError('options.scaleRule', `one of ${MX_SCALE_RULES.join(', ')}`, scaleRule);
  if (role !== 'weight' && role !== 'activation') throw new ArgumentError('options.role', "'weight' or 'activation'", role);
  if (typeof name !== 'string') throw new ArgumentError('options.name', 'a string', name);
  if (tensor.ndim < 1) throw new ArgumentError('tensor', 'a tensor with at least one dimension (groups run along the last axis)', tensor.toString());
  const k = tensor.shape[tensor.ndim - 1];
  if (k < 1) throw new ArgumentError('tensor', 'a last dimension of at least 1', tensor.toString());
  const g = options.globalScale;
  if (g !== undefined && format !== 'nvfp4') {
    throw new ArgumentError('options.globalScale', `no value for format '${format}' (only nvfp4 has a tensor scale)`, g);
  }
  if (g !== undefined && (typeof g !== 'number' || !(g > 0) || !Number.isFinite(Math.fround(g)) || Math.fround(g) === 0)) {
    throw new ArgumentError('options.globalScale', 'a positive finite fp32 number', g);
  }
  const x = tensor.dtype === 'f32' ? (tensor.data as Float32Array) : (tensor.to('f32').data as Float32Array);
  return { x, scan: new Float64Array(2) };
}

function plan(tensor: Tensor, format: ElementFormat, options: QuantizeOptions, x: Float32Array, scanOut: Float64Array): Plan {
  const { scaleRule = 'even', role = 'weight', name = 'tensor' } = options;
  const k = tensor.shape[tensor.ndim - 1];
  const rows = tensor.numel / k;
  const scan: Scan = { amaxFinite: scanOut[0], firstNonFinite: scanOut[1] };
  if (role === 'weight' && scan.firstNonFinite >= 0) {
    throw new NonFiniteError(name, scan.firstNonFinite, x[scan.firstNonFinite]);
  }
  const globalScale = format !== 'nvfp4' ? 1 : options.globalScale !== undefined ? Math.fround(options.globalScale) : nvfp4GlobalScale(scan.amaxFinite);
  const spec = FORMATS[format];
  const batch = tensor.shape.slice(0, -1);
  const codes = Tensor.zeros([...batch, paddedK(format, k)], spec.codeDType);
  const scales = Tensor.zeros([...batch, groupsPerRow(format, k)], spec.scaleDType);
  return { format, rows, k, x, codes, scales, globalScale, rule: scaleRule };
}

/** NVFP4 tensor scale G = 448·6 / amax (fp32), or 1 when amax is 0 or G would overflow. */
export function nvfp4GlobalScale(amaxFinite: number): number {
  if (!(amaxFinite > 0) || !Number.isFinite(amaxFinite)) return 1;
  const g = Math.fround(2688 / Math.fround(amaxFinite));
  return Number.isFinite(g) ? g : 1;
}

const RULE_CODE: Record<MxScaleRule, number> = { floor: 0, even: 1, ceil: 2 };

function result(p: Plan, tensor: Tensor): QuantizedTensor {
  return {
    format: p.format,
    shape: tensor.shape,
    group: FORMATS[p.format].group === 0 ? p.k : FORMATS[p.format].group,
    codes: p.codes,
    scales: p.scales,
    globalScale: p.globalScale,
    ...(p.format === 'mxfp4' ? { scaleRule: p.rule } : {}),
  };
}

type NativeCodes = Uint8Array | Int8Array;
type NativeScales = Float32Array | Uint8Array;

/** Quantizes along the last axis off the main thread. */
export async function quantize(tensor: Tensor, format: ElementFormat, options: QuantizeOptions = {}): Promise<QuantizedTensor> {
  const { x, scan } = prepare(tensor, format, options);
  await native().scanFloats(x, scan, false);
  const p = plan(tensor, format, options, x, scan);
  if (p.rows > 0) {
    await native().quantize(NATIVE_SCHEME[format], p.x, p.rows, p.k, p.codes.data as NativeCodes, p.scales.data as NativeScales, RULE_CODE[p.rule], p.globalScale, false);
  }
  return result(p, tensor);
}

/** Synchronous variant, for small tensors (it blocks the event loop for the whole job). */
export function quantizeSync(tensor: Tensor, format: ElementFormat, options: QuantizeOptions = {}): QuantizedTensor {
  const { x, scan } = prepare(tensor, format, options);
  native().scanFloats(x, scan, true);
  const p = plan(tensor, format, options, x, scan);
  if (p.rows > 0) {
    native().quantize(NATIVE_SCHEME[format], p.x, p.rows, p.k, p.codes.data as NativeCodes, p.scales.data as NativeScales, RULE_CODE[p.rule], p.globalScale, true);
  }
  return result(p, tensor);
}

function checkQuantized(q: QuantizedTensor): { rows: number; k: number; out: Tensor<'f32'> } {
  if (q === null || typeof q !== 'object') throw new ArgumentError('quantized', 'a QuantizedTensor', q);
  if (!ELEMENT_FORMATS.includes(q.format)) throw new ArgumentError('quantized.format', `one of ${ELEMENT_FORMATS.join(', ')}`, q.format);
  const spec = FORMATS[q.format];
  if (!Array.isArray(q.shape) || q.shape.length < 1) throw new ArgumentError('quantized.shape', 'a shape with at least one dimension', q.shape);
  const out = Tensor.zeros(q.shape, 'f32');
  const k = q.shape[q.shape.length - 1];
  const rows = k === 0 ? 0 : out.numel / k;
  const batch = q.shape.slice(0, -1);
  const wantCodes = [...batch, paddedK(q.format, k)];
  const wantScales = [...batch, groupsPerRow(q.format, k)];
  if (!(q.codes instanceof Tensor) || q.codes.dtype !== spec.codeDType || q.codes.shape.join() !== wantCodes.join()) {
    throw new ArgumentError('quantized.codes', `a ${spec.codeDType} tensor of shape [${wantCodes.join(', ')}]`, q.codes instanceof Tensor ? q.codes.toString() : q.codes);
  }
  if (!(q.scales instanceof Tensor) || q.scales.dtype !== spec.scaleDType || q.scales.shape.join() !== wantScales.join()) {
    throw new ArgumentError('quantized.scales', `a ${spec.scaleDType} tensor of shape [${wantScales.join(', ')}]`, q.scales instanceof Tensor ? q.scales.toString() : q.scales);
  }
  if (q.format === 'nvfp4' && (typeof q.globalScale !== 'number' || !(q.globalScale > 0) || !Number.isFinite(q.globalScale))) {
    throw new ArgumentError('quantized.globalScale', 'a positive finite number', q.globalScale);
  }
  return { rows, k, out };
}

/** Dequantizes back to an f32 tensor of the original shape, off the main thread. */
export async function dequantize(q: QuantizedTensor): Promise<Tensor<'f32'>> {
  const { rows, k, out } = checkQuantized(q);
  if (rows > 0) {
    await native().dequantize(NATIVE_SCHEME[q.format], q.codes.data as NativeCodes, q.scales.data as NativeScales, rows, k, q.globalScale, out.data, false);
  }
  return out;
}

/** Synchronous variant of dequantize, for small tensors. */
export function dequantizeSync(q: QuantizedTensor): Tensor<'f32'> {
  const { rows, k, out } = checkQuantized(q);
  if (rows > 0) native().dequantize(NATIVE_SCHEME[q.format], q.codes.data as NativeCodes, q.scales.data as NativeScales, rows, k, q.globalScale, out.data, true);
  return out;
}
