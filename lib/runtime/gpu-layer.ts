/**
 * The GPU SVDQuant layer: the CUDA / HIP counterpart of NativeLowbitLayer. The canonical tensors are
 * repacked into the backend's kernel format and kept in device memory; forward() runs off the main
 * thread, on host tensors (copied in and out) or on DeviceTensors (no host copy). dispose() frees
 * the device memory; a finalizer is the safety net.
 */
import { ArgumentError } from '../errors.js';
import type { NativeGpuLayer } from '../native.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import type { SchemeName } from '../formats/schemes.js';
import { DeviceTensor, deviceBufferOf } from './device-tensor.js';
import { checkDevice, gpuError, requireGpuBackend, type GpuPlatform } from './gpu-backend.js';
import { LOW_RANK_MODES, lowbitDesc, type LowbitLayerData, type LowRankMode, type NativeKernelLayer } from './native-layer.js';

export interface GpuLayerOptions {
  /** The GPU backend: 'cuda' or 'hip'. */
  backend: GpuPlatform;
  /** Device index (default 0). */
  device?: number;
}

function checkMode(options: unknown): LowRankMode {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { lowRank? }', options);
  const mode = (options as { lowRank?: unknown }).lowRank ?? 'fused';
  if (!LOW_RANK_MODES.includes(mode as LowRankMode)) throw new ArgumentError('options.lowRank', `one of ${LOW_RANK_MODES.join(', ')}`, mode);
  return mode as LowRankMode;
}

export class GpuLowbitLayer implements NativeKernelLayer {
  readonly backend: GpuPlatform;
  readonly device: number;
  readonly scheme: SchemeName;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly rank: number;
  readonly #handle: NativeGpuLayer;

  private constructor(backend: GpuPlatform, device: number, scheme: SchemeName, k: number, n: number, rank: number, handle: NativeGpuLayer) {
    this.backend = backend;
    this.device = device;
    this.scheme = scheme;
    this.inFeatures = k;
    this.outFeatures = n;
    this.rank = rank;
    this.#handle = handle;
  }

  /**
   * Validates the canonical tensors and builds the layer on the device (off the main thread).
   * Throws BackendUnavailableError when the backend cannot be loaded, GpuOutOfMemoryError,
   * GpuNoDeviceError, GpuUnsupportedError (a scheme this build cannot run), ... from the backend.
   * With `data.lowRankBf16` the low-rank factors are rounded to bf16 first (as the CPU layer does).
   */
  static async create(data: LowbitLayerData, options: GpuLayerOptions): Promise<GpuLowbitLayer> {
    const { desc, scheme, n, k, rank } = lowbitDesc(data);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', "an object { backend: 'cuda' | 'hip', device? }", options);
    const backend = options.backend;
    if (backend !== 'cuda' && backend !== 'hip') throw new ArgumentError('options.backend', "'cuda' or 'hip'", backend);
    const device = checkDevice(options.device ?? 0, 'options.device');
    if (desc.lowRankBf16) {
      if (data.lDown !== undefined) desc.lDown = data.lDown.to('bf16').to('f32').data;
      if (data.lUp !== undefined) desc.lUp = data.lUp.to('bf16').to('f32').data;
    }
    const { backend: lib } = await requireGpuBackend(backend, device, true);
    let handle: NativeGpuLayer;
    try {
      handle = await lib.createLayer(desc, device);
    } catch (e) {
      throw gpuError(e, backend, 'data', device);
    }
    return new GpuLowbitLayer(backend, device, scheme, k, n, rank, handle);
  }

  /** Kernel-format bytes in device memory (0 after dispose). */
  get bytes(): number {
    return this.#handle.bytes;
  }

  get disposed(): boolean {
    return this.#handle.disposed;
  }

  /**
   * Y [..., N] = the layer applied to X [..., K]. A host Tensor gives a host Tensor; a DeviceTensor
   * (same backend and device) gives a new DeviceTensor. `threads` is accepted for symmetry with the
   * CPU layer and ignored.
   */
  forward(x: Tensor, options?: { lowRank?: LowRankMode; threads?: number }): Promise<Tensor<'f32'>>;
  forward(x: DeviceTensor, options?: { lowRank?: LowRankMode; threads?: number }): Promise<DeviceTensor>;
  async forward(x: Tensor | DeviceTensor, options: { lowRank?: LowRankMode; threads?: number } = {}): Promise<Tensor<'f32'> | DeviceTensor> {
    const isDevice = x instanceof DeviceTensor;
    if (!(isDevice || x instanceof Tensor) || x.shape.length < 1 || x.shape[x.shape.length - 1] !== this.inFeatures) {
      throw new ArgumentError('x', `a Tensor or DeviceTensor whose last dimension is ${this.inFeatures}`, x instanceof Tensor || x instanceof DeviceTensor ? x.toString() : x);
    }
    if (x instanceof Tensor) checkNotDisposed(x, 'x');
    const mode = LOW_RANK_MODES.indexOf(checkMode(options));
    if (this.disposed) throw new ArgumentError('this', 'a layer that has not been disposed');
    const outShape = [...x.shape.slice(0, -1), this.outFeatures];
    if (isDevice) {
      if (x.backend !== this.backend || x.device !== this.device) {
        throw new ArgumentError('x', `a DeviceTensor on ${this.backend}:${this.device}`, x.toString());
      }
      if (x.disposed) throw new ArgumentError('x', 'a DeviceTensor that has not been disposed');
      const m = x.numel / this.inFeatures;
      const y = await DeviceTensor.empty(outShape, { backend: this.backend, device: this.device });
      try {
        await this.#handle.forwardDevice(deviceBufferOf(x), m, deviceBufferOf(y), mode);
      } catch (e) {
        y.dispose();
        throw gpuError(e, this.backend, 'x', this.device);
      }
      return y;
    }
    const xf = x.dtype === 'f32' ? (x as Tensor<'f32'>) : x.to('f32');
    const m = xf.numel / this.inFeatures;
    const y = Tensor.zeros(outShape, 'f32');
    try {
      await this.#handle.forward(xf.data, m, y.data, mode);
    } catch (e) {
      throw gpuError(e, this.backend, 'x', this.device);
    }
    return y;
  }

  /** Frees the device memory now (a forward in flight finishes first); later forwards throw. */
  dispose(): void {
    this.#handle.dispose();
  }

  toString(): string {
    return `GpuLowbitLayer(${this.inFeatures}, ${this.outFeatures}, scheme=${this.scheme}, rank=${this.rank}, ${this.backend}:${this.device})`;
  }
}
