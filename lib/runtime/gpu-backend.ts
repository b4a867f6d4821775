/**
 * The GPU backends (DESIGN.md §5): each is a shared library implementing the C ABI of
 * native/include/svdquant/gpu_abi.h, loaded by the addon with dlopen at run time, never linked, so
 * the package works on machines without a GPU driver.
 *
 * Where a library is looked for, in order:
 *   1. the environment variable SVDQUANT_CUDA_LIB / SVDQUANT_HIP_LIB: an explicit path. When it is
 *      set, only that path is tried: if it fails, that failure is the reported reason.
 *   2. <package root>/build-gpu/libsvdquant_cuda.so / libsvdquant_hip.so (`npm run build:cuda|hip`).
 *
 * gpuBackends() reports, for 'cuda' and 'hip': available or not and why, the library path, the
 * targets compiled in, and the devices. A missing library, driver or device is a report, never an
 * exception. Failures of backend calls become the typed GpuError subclasses of lib/errors.ts.
 */
import { resolve } from 'node:path';
import {
  ArgumentError, BackendUnavailableError, GpuDriverError, GpuNoDeviceError, GpuOutOfMemoryError,
  GpuRuntimeError, GpuUnsupportedError, NativeError, SvdquantError,
} from '../errors.js';
import { native, packageRoot, type NativeGpuBackend } from '../native.js';

export type GpuPlatform = 'cuda' | 'hip';
export const GPU_PLATFORMS: readonly GpuPlatform[] = ['cuda', 'hip'];

/**
 * The GEMM path a device runs: portable dot products, NVIDIA mma.sync int8, AMD MFMA int8; 'none'
 * when the library holds no code for the device (its target is not among `builtArchs`).
 */
export type GpuMatrixPath = 'portable' | 'mma.sync' | 'mfma' | 'none' | 'unknown';

export interface GpuDeviceInfo {
  /** The device index (the `device` option of enableNativeInference and DeviceTensor.from). */
  index: number;
  name: string;
  /** e.g. 'sm_90', 'gfx90a'. */
  arch: string;
  /** Bytes. */
  totalMemory: number;
  /** Bytes free at the time of the probe. */
  freeMemory: number;
  /** SMs (NVIDIA) or CUs (AMD). */
  multiprocessors: number;
  /** As the runtime reports it (CUDA: 12040 = 12.4). */
  driverVersion: number;
  runtimeVersion: number;
  matrixPath: GpuMatrixPath;
  /** The library holds code this device can run (else layers on it are refused, naming both targets). */
  supported: boolean;
}

export interface GpuBackendReport {
  platform: GpuPlatform;
  /** The library loaded, its ABI matches and it has at least one device it holds code for. */
  available: boolean;
  /** Why it is not available ('' when it is; a note when a device could not be queried). */
  reason: string;
  /** The library path that was tried. */
  path: string;
  /** Where the path came from: the environment variable, or the package's build-gpu/ directory. */
  source: 'env' | 'default';
  /** Targets compiled into the library, e.g. ['sm_80', 'sm_90a'] (empty when it did not load). */
  builtArchs: string[];
  devices: GpuDeviceInfo[];
}

export interface GpuBackendsReport {
  cuda: GpuBackendReport;
  hip: GpuBackendReport;
}

const ENV: Record<GpuPlatform, string> = { cuda: 'SVDQUANT_CUDA_LIB', hip: 'SVDQUANT_HIP_LIB' };
const MATRIX_PATHS: GpuMatrixPath[] = ['portable', 'mma.sync', 'mfma'];

function checkPlatform(platform: unknown, name = 'platform'): GpuPlatform {
  if (platform !== 'cuda' && platform !== 'hip') throw new ArgumentError(name, "'cuda' or 'hip'", platform);
  return platform;
}

/** Where the library of `platform` is looked for: the environment variable if set, else build-gpu/. */
export function gpuLibraryPath(platform: GpuPlatform): { path: string; source: 'env' | 'default' } {
  checkPlatform(platform);
  const explicit = process.env[ENV[platform]];
  if (explicit !== undefined && explicit !== '') return { path: resolve(explicit), source: 'env' };
  return { path: resolve(packageRoot, 'build-gpu', `libsvdquant_${platform}.so`), source: 'default' };
}

/** Loaded backends by platform and path (the library stays loaded for the process lifetime). */
const loaded = new Map<string, NativeGpuBackend>();

async function probe(platform: GpuPlatform): Promise<{ report: GpuBackendReport; backend: NativeGpuBackend | null }> {
  const { path, source } = gpuLibraryPath(platform);
  const raw = await native().gpuProbe(platform, path);
  const builtArchs = raw.builtArchs === '' ? [] : raw.builtArchs.split(',').map((a) => a.trim()).filter((a) => a !== '');
  const devices: GpuDeviceInfo[] = raw.devices.map((d) => ({
    index: d.index, name: d.name, arch: d.arch, totalMemory: d.totalMemory, freeMemory: d.freeMemory,
    multiprocessors: d.multiprocessors, driverVersion: d.driverVersion, runtimeVersion: d.runtimeVersion,
    matrixPath: d.matrixPath === -1 ? 'none' : MATRIX_PATHS[d.matrixPath] ?? 'unknown',
    supported: d.matrixPath !== -1,
  }));
  // A library without code for any of the devices cannot run anything here.
  const runnable = raw.available && devices.some((d) => d.supported);
  let reason = raw.reason;
  if (raw.available && !runnable) reason = devices.map((d) => unsupportedReason(d, path, builtArchs)).join('; ');
  const report: GpuBackendReport = {
    platform,
    available: runnable,
    reason: runnable ? reason : source === 'env' ? `${reason} (from ${ENV[platform]})` : reason,
    path,
    source,
    builtArchs,
    devices,
  };
  if (raw.backend !== null) loaded.set(`${platform}\0${path}`, raw.backend);
  return { report, backend: raw.backend };
}

/** Probes one backend now (loads its library if needed and lists its devices). Never throws for a missing library or driver. */
export async function probeGpuBackend(platform: GpuPlatform): Promise<GpuBackendReport> {
  return (await probe(checkPlatform(platform))).report;
}

/** The report for both GPU backends, probed now. */
export async function gpuBackends(): Promise<GpuBackendsReport> {
  const [cuda, hip] = await Promise.all([probeGpuBackend('cuda'), probeGpuBackend('hip')]);
  return { cuda, hip };
}

/**
 * The loaded backend of `platform` with `device` present: probes (fresh, unless `cached` and the
 * library at the current path was loaded before) and throws BackendUnavailableError with the
 * reason otherwise, or GpuDriverError naming both targets when the library holds no code for the
 * device. Internal: used by the GPU layer, DeviceTensor and the toggles.
 */
export async function requireGpuBackend(platform: GpuPlatform, device: number, cached = false): Promise<{ backend: NativeGpuBackend; report: GpuBackendReport | null }> {
  checkPlatform(platform, 'backend');
  if (cached) {
    const hit = loaded.get(`${platform}\0${gpuLibraryPath(platform).path}`);
    if (hit !== undefined) return { backend: hit, report: null };
  }
  const { report, backend } = await probe(platform);
  const dev = report.devices.find((d) => d.index === device);
  if (backend !== null && dev !== undefined && !dev.supported) throw new GpuDriverError(platform, deviceProblem(report, device), { device });
  if (!report.available || backend === null) throw new BackendUnavailableError(platform, report.reason);
  const why = deviceProblem(report, device);
  if (why !== '') throw new BackendUnavailableError(platform, why);
  return { backend, report };
}

/** Why the library at `path` cannot run on `d`, naming both targets. */
function unsupportedReason(d: GpuDeviceInfo, path: string, builtArchs: string[]): string {
  return `device ${d.index} is ${d.arch}, but ${path} holds code for ${builtArchs.join(', ') || 'no target'} only (rebuild it with --arch=${d.arch})`;
}

/** Why `device` cannot be used on an available backend ('' when it can). */
export function deviceProblem(report: GpuBackendReport, device: number): string {
  const d = report.devices.find((x) => x.index === device);
  if (d !== undefined && !d.supported) return unsupportedReason(d, report.path, report.builtArchs);
  if (d !== undefined) return '';
  const n = report.devices.length;
  return `device ${device} does not exist (${n} ${n === 1 ? 'device' : 'devices'}: ${report.devices.map((d) => d.index).join(', ')})`;
}

/** Checks a device index argument. */
export function checkDevice(device: unknown, name: string): number {
  if (typeof device !== 'number' || !Number.isInteger(device) || device < 0 || device > 1 << 20) {
    throw new ArgumentError(name, 'a device index (an integer >= 0)', device);
  }
  return device;
}

/**
 * Turns an error from a GPU backend call (a native error with a `code`) into the typed error:
 * ERR_SVDQ_GPU_* into the GpuError subclasses, ERR_SVDQ_ARGUMENT into ArgumentError naming
 * `argument`; SvdquantErrors pass through; anything else becomes a NativeError.
 */
export function gpuError(e: unknown, platform: GpuPlatform, argument: string, device?: number): Error {
  if (e instanceof SvdquantError) return e;
  const err = e as { code?: unknown; message?: unknown; gpuStatus?: unknown } | null;
  const message = typeof err?.message === 'string' ? err.message : String(e);
  const status = typeof err?.gpuStatus === 'number' ? err.gpuStatus : 0;
  const opts = { device, status, cause: e };
  switch (err?.code) {
    case 'ERR_SVDQ_GPU_OOM': return new GpuOutOfMemoryError(platform, message, opts);
    case 'ERR_SVDQ_GPU_NO_DEVICE': return new GpuNoDeviceError(platform, message, opts);
    case 'ERR_SVDQ_GPU_DRIVER': return new GpuDriverError(platform, message, opts);
    case 'ERR_SVDQ_GPU_RUNTIME': return new GpuRuntimeError(platform, message, opts);
    case 'ERR_SVDQ_GPU_UNSUPPORTED': return new GpuUnsupportedError(platform, message, opts);
    case 'ERR_SVDQ_ARGUMENT': {
      // The addon's own checks already say "invalid argument 'x': expected ..."; keep their text.
      const m = /^invalid argument '([^']*)': expected (.*)$/s.exec(message);
      return m !== null ? new ArgumentError(m[1], m[2]) : new ArgumentError(argument, `a value the ${platform} backend accepts (${message})`);
    }
    default: return new NativeError(message, { cause: e });
  }
}

