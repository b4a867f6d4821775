/**
 * Loads the native addon (node-gyp-build: build/Release of `npm install`, or a prebuild) and types
 * its functions. Nothing else in lib/ touches the addon object directly.
 */
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import loadBinding from 'node-gyp-build';
import { NativeError } from './errors.js';

export type IsaName = 'portable' | 'avx2' | 'avx512';

/** Scheme codes shared with native/include/svdquant/formats.h (enum class Scheme). */
export const NativeScheme = { Int4: 0, Mxfp4: 1, Nvfp4: 2, Int8: 3 } as const;
export type NativeScheme = (typeof NativeScheme)[keyof typeof NativeScheme];

export interface NativeIsaInfo {
  active: IsaName;
  detected: IsaName;
  source: string;
  error: string;
}

type CodesArray = Uint8Array | Int8Array;
type ScalesArray = Float32Array | Uint8Array;

/** The compute threads' scheduler hint: the slice they ask for and what the kernel grants. */
export interface NativeSchedInfo {
  /** The slice asked for in ms (0: the hint is off). */
  sliceMs: number;
  /** 'default' or 'SVDQUANT_SCHED_SLICE_MS=…'. */
  source: string;
  /** Non-empty for an invalid SVDQUANT_SCHED_SLICE_MS (the addon then refuses to load). */
  error: string;
  /** The slice a compute thread gets, in ms, as the kernel reports it; 0: no custom slices (Linux before 6.12); -1: not Linux. */
  threadSliceMs: number;
}

/** Counters of the output-buffer pool since the process started. */
export interface NativeHostPoolStats {
  /** Blocks handed out, and how many of them were recycled (no fresh pages). */
  allocs: number;
  reused: number;
  /** Blocks of at least 64 KiB (the pool recycles those) taken fresh from the system. */
  freshLarge: number;
  /** Bytes of blocks taken fresh from the system. */
  freshBytes: number;
  /** Bytes handed out and not yet returned; bytes kept idle for reuse. */
  liveBytes: number;
  cachedBytes: number;
  /** Bytes of live arrays that a memory scope will free, which V8 is told not to count (lib/graph/scope.ts). */
  scopedBytes: number;
  /** V8's count of external memory, which its garbage-collection triggers use (not the pool's: the isolate's). */
  v8ExternalBytes: number;
}

/** A native SVDQuant layer in kernel format (native/addon/layer_binding.cpp). */
export interface NativeLowbitHandle {
  forward(x: Float32Array, m: number, y: Float32Array, mode: number, threads: number): Promise<void>;
  /** y null: the worker allocates the output (native memory) and resolves to it. */
  forward(x: Float32Array, m: number, y: null, mode: number, threads: number): Promise<Float32Array>;
  dispose(): void;
  readonly bytes: number;
  readonly disposed: boolean;
}

export interface NativeLowbitDesc {
  scheme: number;
  n: number;
  k: number;
  rank: number;
  codes: ArrayBufferView;
  scales: ArrayBufferView;
  globalScale: number;
  smooth: Float32Array | null;
  lDown: Float32Array | null;
  lUp: Float32Array | null;
  bias: Float32Array | null;
  actMxRule: number;
  lowRankBf16: boolean;
}

/** Device memory of a GPU backend (native/addon/gpu_binding.cpp). */
export interface NativeGpuBuffer {
  /** Copies all of `src` into the buffer at byte `offset`, off the main thread. */
  upload(src: ArrayBufferView, offset: number): Promise<void>;
  /** Copies `dst.byteLength` bytes from byte `offset` of the buffer into `dst`, off the main thread. */
  download(dst: ArrayBufferView, offset: number): Promise<void>;
  dispose(): void;
  readonly bytes: number;
  readonly device: number;
  readonly disposed: boolean;
}

/** An SVDQuant layer in a GPU backend's kernel format, on one device. */
export interface NativeGpuLayer {
  forward(x: Float32Array, m: number, y: Float32Array, mode: number): Promise<void>;
  forwardDevice(x: NativeGpuBuffer, m: number, y: NativeGpuBuffer, mode: number): Promise<void>;
  dispose(): void;
  readonly bytes: number;
  readonly device: number;
  readonly disposed: boolean;
}

/** A loaded GPU backend library. */
export interface NativeGpuBackend {
  createLayer(desc: NativeLowbitDesc, device: number): Promise<NativeGpuLayer>;
  allocBuffer(device: number, bytes: number): Promise<NativeGpuBuffer>;
  readonly platform: string;
  readonly path: string;
}

export interface NativeGpuDeviceInfo {
  index: number;
  name: string;
  arch: string;
  totalMemory: number;
  freeMemory: number;
  multiprocessors: number;
  driverVersion: number;
  runtimeVersion: number;
  /** 0 portable dot products, 1 NVIDIA mma.sync int8, 2 AMD MFMA int8. */
  matrixPath: number;
}

export interface NativeGpuProbe {
  available: boolean;
  reason: string;
  platform: string;
  path: string;
  /** The library's ABI version (0 when it could not be read). */
  abiVersion: number;
  /** Comma-separated targets compiled into the library. */
  builtArchs: string;
  devices: NativeGpuDeviceInfo[];
  /** The loaded backend when available, else null. */
  backend: NativeGpuBackend | null;
}

/** fp32 weights packed for the GEMM micro-kernel (an opaque native external). */
export type NativePackedF32 = { readonly __brand: 'NativePackedF32' };

export interface NativeAddon {
  /** Repacks a layer's canonical tensors into the kernel format, off the main thread. */
  prepareLowbitLayer(desc: NativeLowbitDesc): Promise<NativeLowbitHandle>;
  napiVersion: number;
  isaInfo(): NativeIsaInfo;
  /**
   * Loads the GPU backend library at `path` (dlopen, never linked) and lists its devices. Never
   * rejects for a missing or broken library or driver: `reason` says why it is not available.
   */
  gpuProbe(platform: 'cuda' | 'hip', path: string): Promise<NativeGpuProbe>;
  /** The GPU backend ABI version this addon was built against (native/include/svdquant/gpu_abi.h). */
  gpuAbiVersion: number;
  quantize(scheme: NativeScheme, x: Float32Array, rows: number, k: number, codes: CodesArray, scales: ScalesArray,
    rule: number, globalScale: number, sync: true): undefined;
  quantize(scheme: NativeScheme, x: Float32Array, rows: number, k: number, codes: CodesArray, scales: ScalesArray,
    rule: number, globalScale: number, sync: false): Promise<void>;
  dequantize(scheme: NativeScheme, codes: CodesArray, scales: ScalesArray, rows: number, k: number,
    globalScale: number, out: Float32Array, sync: true): undefined;
  dequantize(scheme: NativeScheme, codes: CodesArray, scales: ScalesArray, rows: number, k: number,
    globalScale: number, out: Float32Array, sync: false): Promise<void>;
  /**
   * out = [fp32 FMA GFLOP/s, int8 GOP/s (VNNI on AVX-512), DRAM read GB/s, int8 GOP/s on AMX (0 when
   * not used)] measured with `threads` threads on ISA level `isa` (0 portable, 1 avx2, 2 avx512).
   */
  measurePeaks(threads: number, isa: number, out: Float64Array): Promise<void>;
  /**
   * Times `runs` calls of the layer kernels (no API path) on layers[(first + i) % layers.length]
   * (the handles of NativeLowbitLayer objects), writing y; out[i] = ms of run i.
   */
  benchLayerForward(layers: NativeLowbitHandle[], first: number, x: Float32Array, m: number, y: Float32Array, mode: number,
    threads: number, runs: number, out: Float64Array): Promise<void>;
  /** Reads `bytes` of a kept buffer, so that a following run's data comes from DRAM (bench only). */
  benchFlushCaches(bytes: number): Promise<void>;
  /** Times `runs` calls of the fp32 GEMM on packed weights (the Linear kernel, no API path); out[i] = ms of run i. */
  benchLinearForward(packed: NativePackedF32, x: Float32Array, m: number, bias: Float32Array | null, y: Float32Array,
    threads: number, runs: number, out: Float64Array): Promise<void>;
  /** Times Y = X·Wᵀ + b with W packed once; out = [ms per run..., packed bytes]. */
  benchGemmF32(m: number, k: number, n: number, threads: number, warmup: number, reps: number, out: Float64Array): Promise<void>;
  /** Physical cores of this machine: the default thread count of the engine's pool. */
  physicalCores(): number;
  /** Counters of the pool that native jobs allocate their outputs from (native/addon/host_buffers.h). */
  hostPoolStats(): NativeHostPoolStats;
  /** The compute threads' scheduler hint (native/include/svdquant/compute_slice.h). */
  schedInfo(): NativeSchedInfo;
  /** How long a waiting pool thread spins before it sleeps (SVDQUANT_SPIN_US, default 200 µs); error: an invalid value. */
  spinInfo(): { us: number; error: string };
  /** The AMX tile unit of the low-bit GEMM (native/include/svdquant/amx.h); error: an invalid SVDQUANT_AMX. */
  amxInfo(): { supported: boolean; enabled: boolean; status: string; error: string };
  /** out = [amax over the finite values, flat index of the first NaN/Inf or -1]. */
  scanFloats(x: Float32Array, out: Float64Array, sync: true): undefined;
  scanFloats(x: Float32Array, out: Float64Array, sync: false): Promise<void>;
  // ---- quantizer numerics (native/addon/quant_binding.cpp); all run off the JS thread ----
  /**
   * Top-r SVD of w [n, k] (method 0 auto, 1 exact Jacobi, 2 randomized): up [n·r] = U_r,
   * down [r·k] = Σ_r V_rᵀ, sigma [r].
   */
  svdTopR(w: Float32Array, n: number, k: number, r: number, method: number, oversample: number, powerIters: number,
    seed: number, threads: number, up: Float32Array, down: Float32Array, sigma: Float32Array): Promise<void>;
  /** R = w − up·down (r = 0: R = w), RTN-quantized into canonical codes/scales; out[0] = nvfp4 tensor scale G; residual (optional) receives R. */
  quantizeResidual(w: Float32Array, n: number, k: number, up: Float32Array | null, down: Float32Array | null, r: number,
    scheme: NativeScheme, mxRule: number, threads: number, codes: CodesArray, scales: ScalesArray, out: Float64Array,
    residual: Float32Array | null): Promise<void>;
  /** GPTQ of r [n, k] on h [k, k]; out = [objective, outputSqError, dampAdded, deadColumns, globalScale, minPivotRatio]. */
  gptqQuantize(r: Float32Array, n: number, k: number, h: Float32Array, scheme: NativeScheme, mxRule: number, damp: number,
    blockSize: number, actOrder: boolean, threads: number, codes: CodesArray, scales: ScalesArray, out: Float64Array,
    dequant: Float32Array | null): Promise<void>;
  /** h [k, k] += alpha·xᵀx for x [m, k]. */
  hessianAccumulate(h: Float32Array, x: Float32Array, m: number, k: number, alpha: number, threads: number): Promise<void>;
  /** L ← best rank-r of (w − Q(w − L)) while the weight error falls; errors[t] per step; out = [best, errors written]. */
  refineLowrank(w: Float32Array, n: number, k: number, r: number, scheme: NativeScheme, mxRule: number, iters: number,
    oversample: number, powerIters: number, seed: number, threads: number, up: Float32Array, down: Float32Array,
    errors: Float64Array, out: Float64Array): Promise<void>;
  /** C[m, n] = alpha·op(A)·op(B) + beta·C, row-major (gemm_f32.h). */
  gemmF32(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number, a: Float32Array, lda: number,
    b: Float32Array, ldb: number, beta: number, c: Float32Array, ldc: number, threads: number): Promise<void>;
  // ---- tensor-graph ops (native/addon/graph_ops_binding.cpp); all run off the JS thread ----
  // The output argument is a caller's Float32Array (resolves to undefined) or null: the worker then
  // allocates the output in native memory and resolves to a new Float32Array (no zero-filling or
  // freeing of large buffers on the JavaScript thread).
  /**
   * Frees now the storage of a Float32Array that a native op allocated (one covering its whole
   * buffer): the buffer is detached, every view of it becomes empty. Any other array is left as it
   * is (false). Used by lib/graph/release.ts.
   */
  releaseF32(a: Float32Array): boolean;
  /**
   * Whether a memory scope will free the storage of `a` (an array a native op allocated, covering
   * its whole buffer): while scoped, V8 does not count it towards its garbage-collection triggers.
   * False (nothing done) for any other array. Used by lib/graph/scope.ts.
   */
  setF32Scoped(a: Float32Array, scoped: boolean): boolean;
  /** y[r, :] = LayerNorm of x[r, :] over `dim` (biased variance), times gamma plus beta (null: 1 and 0). */
  layerNorm(x: Float32Array, rows: number, dim: number, gamma: Float32Array | null, beta: Float32Array | null,
    eps: number, y: Float32Array, threads: number): Promise<void>;
  layerNorm(x: Float32Array, rows: number, dim: number, gamma: Float32Array | null, beta: Float32Array | null,
    eps: number, y: null, threads: number): Promise<Float32Array>;
  /** y[r, :] = x[r, :] / sqrt(mean(x²) + eps) · gamma (null: 1). */
  rmsNorm(x: Float32Array, rows: number, dim: number, gamma: Float32Array | null, eps: number, y: Float32Array,
    threads: number): Promise<void>;
  rmsNorm(x: Float32Array, rows: number, dim: number, gamma: Float32Array | null, eps: number, y: null,
    threads: number): Promise<Float32Array>;
  /** GELU of the first n elements; approximate 0: exact (erf), 1: tanh form. */
  gelu(x: Float32Array, n: number, y: Float32Array, approximate: 0 | 1, threads: number): Promise<void>;
  gelu(x: Float32Array, n: number, y: null, approximate: 0 | 1, threads: number): Promise<Float32Array>;
  /** SiLU (x · sigmoid(x)) of the first n elements. */
  silu(x: Float32Array, n: number, y: Float32Array, threads: number): Promise<void>;
  silu(x: Float32Array, n: number, y: null, threads: number): Promise<Float32Array>;
  /** Softmax over each row of `cols` values. */
  softmaxRows(x: Float32Array, rows: number, cols: number, y: Float32Array, threads: number): Promise<void>;
  softmaxRows(x: Float32Array, rows: number, cols: number, y: null, threads: number): Promise<Float32Array>;
  /** y = a + b over n elements. */
  add(a: Float32Array, b: Float32Array, n: number, y: Float32Array, threads: number): Promise<void>;
  add(a: Float32Array, b: Float32Array, n: number, y: null, threads: number): Promise<Float32Array>;
  /**
   * Scaled dot-product attention; q and out are [batch, qTokens, heads·headDim], k and v
   * [batch, kvTokens, heads·headDim]; keyBias (nullable, [batch, kvTokens]) is added to the scores.
   */
  attention(q: Float32Array, k: Float32Array, v: Float32Array, batch: number, qTokens: number, kvTokens: number,
    heads: number, headDim: number, scale: number, keyBias: Float32Array | null, out: null, threads: number): Promise<Float32Array>;
  // ---- model tensor ops (native/addon/tensor_ops_binding.cpp, native/include/svdquant/tensor_ops.h) ----
  /** out (contiguous, `shape`) = the view of src at `offset` with `strides` (elements, >= 0; 0 broadcasts). */
  stridedCopy(src: Float32Array, offset: number, shape: number[], strides: number[], out: null, threads: number): Promise<Float32Array>;
  /** Input i is [outer, widths[i]]; out [outer, Σ widths] holds them side by side. */
  concat(inputs: Float32Array[], widths: number[], outer: number, out: null, threads: number): Promise<Float32Array>;
  /** op 0 add, 1 sub, 2 mul, 3 div (2 inputs), 4 a·(1+b)+c, 5 a+b·c (3 inputs), each read through its offset and strides over `shape`. */
  elementwise(op: number, inputs: Float32Array[], offsets: number[], strides: number[][], shape: number[], out: null,
    threads: number): Promise<Float32Array>;
  /** y = LayerNorm(x)·(1 + scale[b]) + shift[b] per row, b = row / rowsPerSample. */
  layerNormModulate(x: Float32Array, rows: number, dim: number, gamma: Float32Array | null, beta: Float32Array | null,
    eps: number, scale: Float32Array, shift: Float32Array, rowsPerSample: number, y: null, threads: number): Promise<Float32Array>;
  /** torch.nn.GroupNorm over x [n, channels, spatial]. */
  groupNorm(x: Float32Array, n: number, channels: number, spatial: number, groups: number, eps: number,
    gamma: Float32Array | null, beta: Float32Array | null, y: null, threads: number): Promise<Float32Array>;
  /**
   * Rotary embedding on interleaved pairs of x [batch, tokens, heads·dim] with cos/sin
   * [cosBatches (1 or batch), tokens, dim/2]: y[2j] = c·x[2j] − s·x[2j+1], y[2j+1] = s·x[2j] + c·x[2j+1].
   */
  rotaryEmbedding(x: Float32Array, batch: number, tokens: number, heads: number, dim: number, cos: Float32Array,
    sin: Float32Array, cosBatches: number, y: null, threads: number): Promise<Float32Array>;
  /** torch.nn.Conv2d (dilation 1, groups 1) with the weight packed as [cout, cin·kh·kw]; out [n, cout, ho, wo]. */
  conv2d(packed: NativePackedF32, x: Float32Array, n: number, cin: number, h: number, w: number, kh: number, kw: number,
    strideH: number, strideW: number, padH: number, padW: number, bias: Float32Array | null, out: null,
    threads: number): Promise<Float32Array>;
  /** Packs W [n, k] for the fp32 GEMM (an opaque native handle, freed by the garbage collector). */
  packF32Weights(w: Float32Array, n: number, k: number, threads: number): Promise<NativePackedF32>;
  /** y[m, n] = x[m, k] · Wᵀ (+ bias[n]) with W packed by packF32Weights. */
  linearF32(packed: NativePackedF32, x: Float32Array, m: number, bias: Float32Array | null, y: Float32Array,
    threads: number): Promise<void>;
  linearF32(packed: NativePackedF32, x: Float32Array, m: number, bias: Float32Array | null, y: null,
    threads: number): Promise<Float32Array>;
}

/** The package root: this file is lib/native.ts in the sources and dist/native.js when built. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

let cached: NativeAddon | undefined;

/**
 * The addon, loaded on first use: the file named by SVDQUANT_ADDON if set (for example the CMake
 * build, build-cmake/Release/svdquant.node), else node-gyp-build's search from the package root.
 * Throws NativeError if it cannot be loaded or SVDQUANT_ISA, SVDQUANT_SCHED_SLICE_MS, SVDQUANT_SPIN_US,
 * SVDQUANT_AMX or SVDQUANT_V8_MEMORY_REDUCER is invalid.
 */
export function native(): NativeAddon {
  if (cached !== undefined) return cached;
  let addon: NativeAddon;
  const explicit = process.env.SVDQUANT_ADDON;
  const from = explicit ? resolve(explicit) : packageRoot;
  try {
    addon = (explicit ? createRequire(import.meta.url)(from) : loadBinding(packageRoot)) as NativeAddon;
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new NativeError(`could not load the svdquant native addon from '${from}': ${reason}; expected a build made by 'npm install' (or 'npm run build')`, { cause });
  }
  const isa = addon.isaInfo();
  if (isa.error !== '') throw new NativeError(isa.error);
  const sched = addon.schedInfo();
  if (sched.error !== '') throw new NativeError(sched.error);
  const spin = addon.spinInfo();
  if (spin.error !== '') throw new NativeError(spin.error);
  const amx = addon.amxInfo();
  if (amx.error !== '') throw new NativeError(amx.error);
  configureMemoryReducer();
  cached = addon;
  return addon;
}

/**
 * Turns off V8's memory reducer unless SVDQUANT_V8_MEMORY_REDUCER=1. Why: during a forward the
 * JavaScript thread is mostly idle (the kernels run on the engine's threads), and the reducer takes
 * that for an idle process, collecting a ~11 MiB heap again and again: on DiT-XL/2 with w4a4 layers
 * 155 major GCs in 5 forwards (~1170 ms each) with it, 31 (~900 ms each) without. It only shrinks
 * the JavaScript heap of idle processes; the native memory is the engine's own.
 */
function configureMemoryReducer(): void {
  const value = process.env.SVDQUANT_V8_MEMORY_REDUCER;
  if (value === '1') return;
  if (value !== undefined && value !== '' && value !== '0') {
    throw new NativeError(`invalid SVDQUANT_V8_MEMORY_REDUCER="${value}": expected 0 (off, the default) or 1 (V8's own default, on)`);
  }
  v8.setFlagsFromString('--no-memory-reducer');
}

/** The addon if it is loaded already, without loading it (storage the addon allocated implies it is). */
export function loadedNative(): NativeAddon | undefined {
  return cached;
}

/** Which instruction-set level the CPU kernels use, what the CPU supports, and why. */
export function cpuIsa(): NativeIsaInfo {
  return { ...native().isaInfo() };
}
