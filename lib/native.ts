/**
 * Loads the native addon (node-gyp-build: build/Release of `npm install`, or a prebuild) and types
 * its functions. Nothing else in lib/ touches the addon object directly.
 */
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
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

/** A native SVDQuant layer in kernel format (native/addon/layer_binding.cpp). */
export interface NativeLowbitHandle {
  forward(x: Float32Array, m: number, y: Float32Array, mode: number, threads: number): Promise<void>;
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

export interface NativeAddon {
  /** Repacks a layer's canonical tensors into the kernel format, off the main thread. */
  prepareLowbitLayer(desc: NativeLowbitDesc): Promise<NativeLowbitHandle>;
  napiVersion: number;
  isaInfo(): NativeIsaInfo;
  quantize(scheme: NativeScheme, x: Float32Array, rows: number, k: number, codes: CodesArray, scales: ScalesArray,
    rule: number, globalScale: number, sync: true): undefined;
  quantize(scheme: NativeScheme, x: Float32Array, rows: number, k: number, codes: CodesArray, scales: ScalesArray,
    rule: number, globalScale: number, sync: false): Promise<void>;
  dequantize(scheme: NativeScheme, codes: CodesArray, scales: ScalesArray, rows: number, k: number,
    globalScale: number, out: Float32Array, sync: true): undefined;
  dequantize(scheme: NativeScheme, codes: CodesArray, scales: ScalesArray, rows: number, k: number,
    globalScale: number, out: Float32Array, sync: false): Promise<void>;
  /** out = [fp32 FMA GFLOP/s, int8 GOP/s, DRAM read GB/s] measured with `threads` threads on ISA level `isa` (0 portable, 1 avx2, 2 avx512). */
  measurePeaks(threads: number, isa: number, out: Float64Array): Promise<void>;
  /** Times the SVDQuant layer on a synthetic layer; out = [ms per run..., kernel-format bytes, bf16 bytes]. */
  benchLowbit(scheme: number, m: number, k: number, n: number, rank: number, mode: number, threads: number,
    warmup: number, reps: number, out: Float64Array, streamBytes?: number): Promise<void>;
  /** Times Y = X·Wᵀ + b with W packed once; out = [ms per run..., packed bytes]. */
  benchGemmF32(m: number, k: number, n: number, threads: number, warmup: number, reps: number, out: Float64Array): Promise<void>;
  /** Physical cores of this machine: the default thread count of the engine's pool. */
  physicalCores(): number;
  /** out = [amax over the finite values, flat index of the first NaN/Inf or -1]. */
  scanFloats(x: Float32Array, out: Float64Array, sync: true): undefined;
  scanFloats(x: Float32Array, out: Float64Array, sync: false): Promise<void>;
}

/** The package root: this file is lib/native.ts in the sources and dist/native.js when built. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

let cached: NativeAddon | undefined;

/**
 * The addon, loaded on first use: the file named by SVDQUANT_ADDON if set (for example the CMake
 * build, build-cmake/Release/svdquant.node), else node-gyp-build's search from the package root.
 * Throws NativeError if it cannot be loaded or SVDQUANT_ISA is invalid.
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
  cached = addon;
  return addon;
}

/** Which instruction-set level the CPU kernels use, what the CPU supports, and why. */
export function cpuIsa(): NativeIsaInfo {
  return { ...native().isaInfo() };
}
