/**
 * DeviceTensor: an f32 tensor in a GPU backend's device memory (DESIGN.md §5: native-owned memory
 * is a wrapped object with an explicit dispose() and a finalizer as the safety net). Copies to and
 * from the device run off the main thread.
 */
import { ArgumentError } from '../errors.js';
import type { NativeGpuBuffer } from '../native.js';
import { Tensor, checkShape, shapeNumel } from '../tensor.js';
import { checkDevice, gpuError, requireGpuBackend, type GpuPlatform } from './gpu-backend.js';

const buffers = new WeakMap<DeviceTensor, NativeGpuBuffer>();

export interface DeviceTensorOptions {
  /** The GPU backend: 'cuda' or 'hip'. */
  backend: GpuPlatform;
  /** Device index (default 0). */
  device?: number;
}

function checkOptions(options: unknown): { backend: GpuPlatform; device: number } {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', "an object { backend: 'cuda' | 'hip', device? }", options);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'backend' && key !== 'device') throw new ArgumentError(`options.${key}`, 'no such option (known: backend, device)', o[key]);
  }
  if (o.backend !== 'cuda' && o.backend !== 'hip') throw new ArgumentError('options.backend', "'cuda' or 'hip'", o.backend);
  return { backend: o.backend, device: checkDevice(o.device ?? 0, 'options.device') };
}

export class DeviceTensor {
  readonly dtype = 'f32' as const;
  readonly shape: readonly number[];
  readonly backend: GpuPlatform;
  readonly device: number;

  private constructor(shape: readonly number[], backend: GpuPlatform, device: number, buffer: NativeGpuBuffer) {
    this.shape = shape;
    this.backend = backend;
    this.device = device;
    buffers.set(this, buffer);
  }

  /** An uninitialised (backend-defined contents) f32 tensor of `shape` on the device. */
  static async empty(shape: readonly number[], options: DeviceTensorOptions): Promise<DeviceTensor> {
    const s = checkShape(shape);
    const { backend, device } = checkOptions(options);
    const bytes = shapeNumel(s) * 4;
    const { backend: lib } = await requireGpuBackend(backend, device, true);
    let buffer: NativeGpuBuffer;
    try {
      buffer = await lib.allocBuffer(device, bytes);
    } catch (e) {
      throw gpuError(e, backend, 'shape', device);
    }
    return new DeviceTensor(s, backend, device, buffer);
  }

  /** Copies a host tensor (converted to f32 when it is f16, bf16 or an integer dtype) to the device. */
  static async from(tensor: Tensor, options: DeviceTensorOptions): Promise<DeviceTensor> {
    if (!(tensor instanceof Tensor)) throw new ArgumentError('tensor', 'a Tensor', tensor);
    const host = tensor.dtype === 'f32' ? (tensor as Tensor<'f32'>) : tensor.to('f32');
    const t = await DeviceTensor.empty(host.shape, options);
    try {
      await buffers.get(t)!.upload(host.data, 0);
    } catch (e) {
      t.dispose();
      throw gpuError(e, t.backend, 'tensor', t.device);
    }
    return t;
  }

  get numel(): number {
    return shapeNumel(this.shape);
  }

  /** Device bytes held (0 after dispose). */
  get bytes(): number {
    return buffers.get(this)!.bytes;
  }

  get disposed(): boolean {
    return buffers.get(this)!.disposed;
  }

  /** Copies the tensor back to host memory. */
  async toHost(): Promise<Tensor<'f32'>> {
    if (this.disposed) throw new ArgumentError('this', 'a DeviceTensor that has not been disposed');
    const out = Tensor.zeros(this.shape, 'f32');
    try {
      await buffers.get(this)!.download(out.data, 0);
    } catch (e) {
      throw gpuError(e, this.backend, 'this', this.device);
    }
    return out;
  }

  /** Frees the device memory now (a copy or forward in flight finishes first); later use throws. */
  dispose(): void {
    buffers.get(this)!.dispose();
  }

  toString(): string {
    return `DeviceTensor(${this.dtype}, [${this.shape.join(', ')}], ${this.backend}:${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/** The native buffer of a DeviceTensor (internal: the GPU layer's forward on device buffers). */
export function deviceBufferOf(t: DeviceTensor): NativeGpuBuffer {
  const b = buffers.get(t);
  if (b === undefined) throw new ArgumentError('x', 'a DeviceTensor', t);
  return b;
}
