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

export interface NativeAddon {
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
