/**
 * Tensor: a shape, a dtype, a device and contiguous row-major host storage. The storage is a typed
 * array over an ArrayBuffer that native code reads and writes in place (no copies).
 *
 * Packed 4-bit dtypes (`int4`, `fp4_e2m1`) hold two elements per byte along the last axis, element
 * 2i in the low nibble; their shape counts elements, so the last dimension must be even.
 */
import { ArgumentError, describeValue } from './errors.js';
import { loadedNative } from './native.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from './tensor-convert.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'i8' | 'u8' | 'i32' | 'i64' | 'int4' | 'fp4_e2m1' | 'e8m0' | 'e4m3';
export type Device = 'cpu';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i8', 'u8', 'i32', 'i64', 'int4', 'fp4_e2m1', 'e8m0', 'e4m3'];

/** The typed array each dtype is stored in. f16/bf16 are raw 16-bit patterns. */
export interface StorageOf {
  f32: Float32Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  i8: Int8Array;
  u8: Uint8Array;
  i32: Int32Array;
  i64: BigInt64Array;
  int4: Uint8Array;
  fp4_e2m1: Uint8Array;
  e8m0: Uint8Array;
  e4m3: Uint8Array;
}
export type Storage = StorageOf[DType];

interface DTypeInfo {
  /** Bits per element. */
  bits: number;
  make(length: number): Storage;
  view(buffer: ArrayBufferLike, byteOffset: number, length: number): Storage;
  ctor: Function;
}

const INFO: Record<DType, DTypeInfo> = {
  f32: { bits: 32, make: (n) => new Float32Array(n), view: (b, o, n) => new Float32Array(b, o, n), ctor: Float32Array },
  f16: { bits: 16, make: (n) => new Uint16Array(n), view: (b, o, n) => new Uint16Array(b, o, n), ctor: Uint16Array },
  bf16: { bits: 16, make: (n) => new Uint16Array(n), view: (b, o, n) => new Uint16Array(b, o, n), ctor: Uint16Array },
  i8: { bits: 8, make: (n) => new Int8Array(n), view: (b, o, n) => new Int8Array(b, o, n), ctor: Int8Array },
  u8: { bits: 8, make: (n) => new Uint8Array(n), view: (b, o, n) => new Uint8Array(b, o, n), ctor: Uint8Array },
  i32: { bits: 32, make: (n) => new Int32Array(n), view: (b, o, n) => new Int32Array(b, o, n), ctor: Int32Array },
  i64: { bits: 64, make: (n) => new BigInt64Array(n), view: (b, o, n) => new BigInt64Array(b, o, n), ctor: BigInt64Array },
  int4: { bits: 4, make: (n) => new Uint8Array(n), view: (b, o, n) => new Uint8Array(b, o, n), ctor: Uint8Array },
  fp4_e2m1: { bits: 4, make: (n) => new Uint8Array(n), view: (b, o, n) => new Uint8Array(b, o, n), ctor: Uint8Array },
  e8m0: { bits: 8, make: (n) => new Uint8Array(n), view: (b, o, n) => new Uint8Array(b, o, n), ctor: Uint8Array },
  e4m3: { bits: 8, make: (n) => new Uint8Array(n), view: (b, o, n) => new Uint8Array(b, o, n), ctor: Uint8Array },
};

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(INFO, value);
}

/** Bits per element of a dtype (4 for the packed formats). */
export function dtypeBits(dtype: DType): number {
  return INFO[dtype].bits;
}

function checkDType(dtype: unknown, argument: string): DType {
  if (!isDType(dtype)) throw new ArgumentError(argument, `one of ${DTYPES.join(', ')}`, dtype);
  return dtype;
}

/** Validates a shape and returns a frozen copy. */
export function checkShape(shape: unknown, argument = 'shape'): readonly number[] {
  if (!Array.isArray(shape)) throw new ArgumentError(argument, 'an array of non-negative integers', shape);
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new ArgumentError(argument, 'an array of non-negative integers', shape);
    }
  }
  return Object.freeze([...shape] as number[]);
}

export function shapeNumel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) throw new ArgumentError('shape', 'a shape with fewer than 2^53 elements', shape);
  return n;
}

/** Number of storage units (typed-array elements) a dtype needs for `numel` elements. */
function storageLength(dtype: DType, shape: readonly number[], numel: number, argument: string): number {
  if (INFO[dtype].bits !== 4) return numel;
  const last = shape.length === 0 ? 1 : shape[shape.length - 1];
  if (last % 2 !== 0) {
    throw new ArgumentError(argument, `an even last dimension for the packed dtype '${dtype}' (two elements per byte)`, shape);
  }
  return numel / 2;
}

export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly device: Device = 'cpu';
  /** Row-major contiguous storage; for packed dtypes, one byte per two elements. */
  readonly data: StorageOf[D];
  #disposed = false;

  private constructor(dtype: D, shape: readonly number[], data: StorageOf[D]) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }

  /** A zero-filled tensor. */
  static zeros<D extends DType>(shape: readonly number[], dtype: D): Tensor<D> {
    const dt = checkDType(dtype, 'dtype') as D;
    const s = checkShape(shape);
    const n = storageLength(dt, s, shapeNumel(s), 'shape');
    return new Tensor(dt, s, INFO[dt].make(n) as StorageOf[D]);
  }

  /**
   * Wraps existing storage without copying. The typed array must be the dtype's storage type and
   * hold exactly the number of storage units the shape needs.
   */
  static fromStorage<D extends DType>(data: StorageOf[D], shape: readonly number[], dtype: D): Tensor<D> {
    const dt = checkDType(dtype, 'dtype') as D;
    const s = checkShape(shape);
    const n = storageLength(dt, s, shapeNumel(s), 'shape');
    const info = INFO[dt];
    if (!(data instanceof info.ctor)) {
      throw new ArgumentError('data', `a ${info.ctor.name} for dtype '${dt}'`, data);
    }
    if ((data as ArrayLike<number>).length !== n) {
      throw new ArgumentError('data', `${n} elements of storage for shape [${s.join(', ')}] and dtype '${dt}'`, `${(data as ArrayLike<number>).length} elements`);
    }
    return new Tensor(dt, s, data);
  }

  /** An f32 tensor from numbers (copied). `shape` defaults to [values.length]. */
  static fromArray(values: ArrayLike<number>, shape?: readonly number[]): Tensor<'f32'> {
    if (values === null || typeof values !== 'object' || typeof (values as ArrayLike<number>).length !== 'number') {
      throw new ArgumentError('values', 'an array or typed array of numbers', values);
    }
    const s = checkShape(shape ?? [values.length]);
    if (shapeNumel(s) !== values.length) {
      throw new ArgumentError('shape', `a shape with ${values.length} elements`, s);
    }
    return new Tensor('f32', s, Float32Array.from(values));
  }

  /**
   * An integer tensor (i64 by default, as PyTorch's labels and timesteps; or i32) from integers
   * (copied). `shape` defaults to [values.length].
   */
  static fromIntegers(values: ArrayLike<number | bigint>, shape?: readonly number[], dtype: 'i32' | 'i64' = 'i64'): Tensor<'i32' | 'i64'> {
    if (values === null || typeof values !== 'object' || typeof (values as ArrayLike<number>).length !== 'number') {
      throw new ArgumentError('values', 'an array or typed array of integers', values);
    }
    if (dtype !== 'i32' && dtype !== 'i64') throw new ArgumentError('dtype', "'i32' or 'i64'", dtype);
    const s = checkShape(shape ?? [values.length]);
    if (shapeNumel(s) !== values.length) throw new ArgumentError('shape', `a shape with ${values.length} elements`, s);
    const limit = dtype === 'i32' ? 2 ** 31 : 2 ** 63;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      const ok = typeof v === 'bigint' ? v >= -BigInt(limit) && v < BigInt(limit) : Number.isSafeInteger(v) && v >= -limit && v < limit;
      if (!ok) throw new ArgumentError(`values[${i}]`, `an integer that fits in ${dtype}`, v);
    }
    if (dtype === 'i64') return new Tensor('i64', s, BigInt64Array.from(values as ArrayLike<number | bigint>, (v) => BigInt(v)));
    return new Tensor('i32', s, Int32Array.from(values as ArrayLike<number | bigint>, (v) => Number(v)));
  }

  /** Wraps raw little-endian bytes (for example a safetensors tensor) as a tensor of `dtype`, copying once if unaligned. */
  static fromBytes<D extends DType>(bytes: Uint8Array, shape: readonly number[], dtype: D): Tensor<D> {
    const dt = checkDType(dtype, 'dtype') as D;
    const s = checkShape(shape);
    const n = storageLength(dt, s, shapeNumel(s), 'shape');
    const info = INFO[dt];
    const unit = Math.max(1, info.bits / 8);
    if (bytes.byteLength !== n * unit) {
      throw new ArgumentError('bytes', `${n * unit} bytes for shape [${s.join(', ')}] and dtype '${dt}'`, `${bytes.byteLength} bytes`);
    }
    const aligned = bytes.byteOffset % unit === 0 ? bytes : bytes.slice();
    return new Tensor(dt, s, info.view(aligned.buffer, aligned.byteOffset, n) as StorageOf[D]);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return shapeNumel(this.shape);
  }

  get byteLength(): number {
    return this.data.byteLength;
  }

  /** The storage as bytes (a view, no copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  /** Same storage, another shape with the same number of elements. */
  reshape(shape: readonly number[]): Tensor<D> {
    const s = checkShape(shape);
    if (shapeNumel(s) !== this.numel) {
      throw new ArgumentError('shape', `a shape with ${this.numel} elements (the tensor's [${this.shape.join(', ')}])`, s);
    }
    storageLength(this.dtype, s, this.numel, 'shape');
    return new Tensor(this.dtype, s, this.data);
  }

  /** A deep copy. */
  clone(): Tensor<D> {
    return new Tensor(this.dtype, this.shape, this.data.slice() as StorageOf[D]);
  }

  /**
   * Converts between f32, f16 and bf16 (round-to-nearest-even; NaN stays NaN, overflow gives Inf
   * in f16), and from i8/u8/i32 to f32. Returns this tensor when the dtype already matches.
   */
  to<T extends 'f32' | 'f16' | 'bf16'>(dtype: T): Tensor<T> {
    if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') {
      throw new ArgumentError('dtype', "'f32', 'f16' or 'bf16'", dtype);
    }
    if ((this.dtype as DType) === dtype) return this as unknown as Tensor<T>;
    const f32 = this.toFloat32Storage();
    if (dtype === 'f32') return new Tensor('f32', this.shape, f32) as unknown as Tensor<T>;
    const out = new Uint16Array(f32.length);
    if (dtype === 'f16') f32ToF16Bits(f32, out);
    else f32ToBf16Bits(f32, out);
    return new Tensor(dtype, this.shape, out as StorageOf[T]);
  }

  /** The values as numbers (decoding f16/bf16; i64 as Number; packed and scale dtypes are not decodable here). */
  toArray(): number[] {
    return Array.from(this.toFloat32Storage());
  }

  private toFloat32Storage(): Float32Array {
    switch (this.dtype) {
      case 'f32':
        return (this.data as Float32Array).slice();
      case 'f16': {
        const out = new Float32Array(this.data.length);
        f16BitsToF32(this.data as Uint16Array, out);
        return out;
      }
      case 'bf16': {
        const out = new Float32Array(this.data.length);
        bf16BitsToF32(this.data as Uint16Array, out);
        return out;
      }
      case 'i8':
      case 'u8':
      case 'i32':
        return Float32Array.from(this.data as ArrayLike<number>);
      case 'i64':
        return Float32Array.from(this.data as BigInt64Array, (v) => Number(v));
      default:
        throw new ArgumentError('tensor', `a tensor of dtype f32, f16, bf16, i8, u8, i32 or i64 to convert (dequantize '${this.dtype}' data with the formats API)`, this.dtype);
    }
  }

  /**
   * Frees the storage now rather than at a later garbage collection. Storage the native engine
   * allocated (the output of every op and CPU layer) goes back to the engine's pool at once, and
   * V8 stops counting it towards its next major collection: a server that disposes each forward's
   * output avoids the 5-10 ms collections that dropped outputs cause every ~20 forwards (README,
   * "The event loop during forwards"). JavaScript-owned storage is left to the collector.
   *
   * Afterwards this tensor, and every tensor sharing its storage (`reshape` views), is disposed:
   * ops and layers reject it with an ArgumentError. Idempotent. `using y = await model.call(x)`
   * disposes at the end of the block.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const data = this.data;
    if (data instanceof Float32Array) loadedNative()?.releaseF32(data);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Whether the storage was freed: by dispose() on this tensor or on a tensor sharing its storage. */
  get disposed(): boolean {
    return this.#disposed || (this.data.byteLength === 0 && this.numel > 0);
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/** Throws an ArgumentError naming `argument` if `t` was disposed (its storage is gone). */
export function checkNotDisposed(t: Tensor, argument: string): void {
  if (t.disposed) throw new ArgumentError(argument, 'a tensor that has not been disposed', t.toString());
}

export function isTensor(value: unknown): value is Tensor {
  return value instanceof Tensor;
}

export { describeValue };
