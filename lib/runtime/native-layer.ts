/**
 * The native CPU SVDQuant layer (DESIGN.md §2, §5): canonical tensors in, kernel format inside
 * native memory, forward() off the main thread, explicit dispose() (a finalizer is the safety net).
 */
import { ArgumentError } from '../errors.js';
import { native, type NativeLowbitDesc, type NativeLowbitHandle } from '../native.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import { checkOutTensor } from '../tensor-out.js';
import { FORMATS, MX_SCALE_RULES, groupsPerRow, paddedK, SCHEMES } from '../formats/schemes.js';
import type { MxScaleRule, SchemeName } from '../formats/schemes.js';
import type { QuantizedTensor } from '../formats/quantize.js';

export type LowRankMode = 'fused' | 'side' | 'unfused';
export const LOW_RANK_MODES: readonly LowRankMode[] = ['fused', 'side', 'unfused'];

const SCHEME_CODE: Record<SchemeName, number> = { w4a4: 0, mxfp4: 1, nvfp4: 2, w8a8: 3, w4a16: 4 };

/** Canonical data of one SVDQuant layer (what a checkpoint holds). */
export interface LowbitLayerData {
  scheme: SchemeName;
  /** Q_w(R): the quantized residual, [N, K] in the scheme's weight format. */
  weight: QuantizedTensor;
  /** λ [K]; omitted: no smoothing. */
  smooth?: Tensor<'f32'>;
  /** L_down [r, K] and L_up [N, r]; omitted: rank 0. */
  lDown?: Tensor<'f32'>;
  lUp?: Tensor<'f32'>;
  bias?: Tensor<'f32'>;
  /** Scale rule of the MXFP4 activation quantizer (default 'even'). */
  actScaleRule?: MxScaleRule;
  /** Keep L_down and L_up as bf16 in the kernel format (halves the branch's memory). */
  lowRankBf16?: boolean;
}

function checkVector(t: Tensor | undefined, name: string, shape: readonly number[]): Float32Array | null {
  if (t === undefined) return null;
  if (!(t instanceof Tensor) || t.dtype !== 'f32' || t.shape.join() !== shape.join()) {
    throw new ArgumentError(name, `an f32 tensor of shape [${shape.join(', ')}]`, t instanceof Tensor ? t.toString() : t);
  }
  return t.data as Float32Array;
}

/**
 * Validates a layer's canonical tensors and builds the description the native layers take (the
 * CPU layer's prepareLowbitLayer and the GPU backends' createLayer). Internal.
 */
export function lowbitDesc(data: LowbitLayerData): { desc: NativeLowbitDesc; scheme: SchemeName; n: number; k: number; rank: number } {
  if (data === null || typeof data !== 'object') throw new ArgumentError('data', 'an object', data);
  const spec = SCHEMES[data.scheme];
  if (spec === undefined) throw new ArgumentError('data.scheme', `one of ${Object.keys(SCHEMES).join(', ')}`, data.scheme);
  const w = data.weight;
  if (w === null || typeof w !== 'object' || w.format !== spec.weights || w.shape.length !== 2) {
    throw new ArgumentError('data.weight', `a 2-D ${spec.weights} QuantizedTensor for scheme '${data.scheme}'`, w?.format);
  }
  const [n, k] = w.shape;
  const f = FORMATS[w.format];
  if (w.codes.dtype !== f.codeDType || w.codes.shape.join() !== [n, paddedK(w.format, k)].join()) {
    throw new ArgumentError('data.weight.codes', `${f.codeDType} codes of shape [${n}, ${paddedK(w.format, k)}]`, w.codes.toString());
  }
  if (w.scales.dtype !== f.scaleDType || w.scales.shape.join() !== [n, groupsPerRow(w.format, k)].join()) {
    throw new ArgumentError('data.weight.scales', `${f.scaleDType} scales of shape [${n}, ${groupsPerRow(w.format, k)}]`, w.scales.toString());
  }
  const rank = data.lDown?.shape[0] ?? 0;
  if ((data.lDown === undefined) !== (data.lUp === undefined)) throw new ArgumentError('data.lDown/data.lUp', 'both low-rank factors or neither');
  const rule = data.actScaleRule ?? 'even';
  if (!MX_SCALE_RULES.includes(rule)) throw new ArgumentError('data.actScaleRule', `one of ${MX_SCALE_RULES.join(', ')}`, rule);
  const desc = {
    scheme: SCHEME_CODE[data.scheme], n, k, rank,
    codes: w.codes.data, scales: w.scales.data, globalScale: w.globalScale,
    smooth: checkVector(data.smooth, 'data.smooth', [k]),
    lDown: checkVector(data.lDown, 'data.lDown', [rank, k]),
    lUp: checkVector(data.lUp, 'data.lUp', [n, rank]),
    bias: checkVector(data.bias, 'data.bias', [n]),
    actMxRule: MX_SCALE_RULES.indexOf(rule),
    lowRankBf16: data.lowRankBf16 === true,
  };
  return { desc, scheme: data.scheme, n, k, rank };
}

/** The backends a native layer runs on. */
export type NativeLayerBackend = 'cpu' | 'cuda' | 'hip';

/**
 * What NativeLinear needs of a native layer, whichever backend runs it: NativeLowbitLayer (CPU)
 * and GpuLowbitLayer (CUDA / HIP) implement it.
 */
export interface NativeKernelLayer {
  readonly backend: NativeLayerBackend;
  readonly scheme: SchemeName;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly rank: number;
  /** Kernel-format bytes held in native (host or device) memory; 0 after dispose. */
  readonly bytes: number;
  readonly disposed: boolean;
  /** Y [..., N] = the layer applied to X [..., K] (host tensors), off the main thread. */
  forward(x: Tensor, options?: { lowRank?: LowRankMode; threads?: number }): Promise<Tensor<'f32'>>;
  dispose(): void;
}

/** Options of NativeLowbitLayer.forward. */
export interface NativeForwardOptions {
  /** How the low-rank branch runs (default 'fused'). */
  lowRank?: LowRankMode;
  /** Native threads (0, the default: physical cores). */
  threads?: number;
  /**
   * Write Y here (an f32 tensor of the output's shape, sharing no storage with x) and resolve to
   * it: for callers that reuse their buffers. Omitted: a new tensor from the engine's pool.
   */
  out?: Tensor<'f32'>;
}

// The native handle of each layer, for the bench harness (lib/bench), which times the kernels on the
// very objects the public API runs.
const HANDLES = new WeakMap<NativeLowbitLayer, NativeLowbitHandle>();

/** The native handle of a layer. Internal: for the bench harness only. */
export function nativeLowbitHandle(layer: NativeLowbitLayer): NativeLowbitHandle {
  const handle = HANDLES.get(layer);
  if (handle === undefined) throw new ArgumentError('layer', 'a NativeLowbitLayer', layer);
  return handle;
}

export class NativeLowbitLayer implements NativeKernelLayer {
  readonly backend = 'cpu' as const;
  readonly scheme: SchemeName;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly rank: number;
  private readonly handle: NativeLowbitHandle;

  private constructor(scheme: SchemeName, k: number, n: number, rank: number, handle: NativeLowbitHandle) {
    this.scheme = scheme;
    this.inFeatures = k;
    this.outFeatures = n;
    this.rank = rank;
    this.handle = handle;
    HANDLES.set(this, handle);
  }

  /** Validates the canonical tensors and repacks them into the CPU kernel format (off the main thread). */
  static async create(data: LowbitLayerData): Promise<NativeLowbitLayer> {
    const { desc, scheme, n, k, rank } = lowbitDesc(data);
    const handle = await native().prepareLowbitLayer(desc);
    return new NativeLowbitLayer(scheme, k, n, rank, handle);
  }

  /** Kernel-format bytes held in native memory (0 after dispose). */
  get bytes(): number {
    return this.handle.bytes;
  }

  get disposed(): boolean {
    return this.handle.disposed;
  }

  /**
   * Y [..., N] = the layer applied to X [..., K], off the main thread: into `options.out` when
   * given, else into a new tensor from the engine's output pool (dispose() it to recycle the
   * buffer at once; a dropped output is recycled when V8 collects it).
   */
  async forward(x: Tensor, options: NativeForwardOptions = {}): Promise<Tensor<'f32'>> {
    if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new ArgumentError('x', `a tensor whose last dimension is ${this.inFeatures}`, x instanceof Tensor ? x.toString() : x);
    }
    checkNotDisposed(x, 'x');
    const mode = options.lowRank ?? 'fused';
    if (!LOW_RANK_MODES.includes(mode)) throw new ArgumentError('options.lowRank', `one of ${LOW_RANK_MODES.join(', ')}`, mode);
    const threads = options.threads ?? 0;
    if (!Number.isInteger(threads) || threads < 0 || threads > 1024) throw new ArgumentError('options.threads', 'an integer in [0, 1024] (0: physical cores)', threads);
    if (this.disposed) throw new ArgumentError('this', 'a layer that has not been disposed');
    const shape = [...x.shape.slice(0, -1), this.outFeatures];
    const out = options.out === undefined ? undefined : checkOutTensor(options.out, shape, [x]);
    const xf = x.dtype === 'f32' ? (x as Tensor<'f32'>) : x.to('f32');
    const m = xf.numel / this.inFeatures;
    const modeCode = LOW_RANK_MODES.indexOf(mode);
    if (out !== undefined) {
      await this.handle.forward(xf.data, m, out.data, modeCode, threads);
      return out;
    }
    // The worker allocates the output: no zero-filling of a large buffer on this thread.
    const y = await this.handle.forward(xf.data, m, null, modeCode, threads);
    return Tensor.fromStorage(y, shape, 'f32');
  }

  /** Frees the native memory now; later calls to forward() throw. */
  dispose(): void {
    this.handle.dispose();
  }
}
