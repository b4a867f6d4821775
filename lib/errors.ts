/**
 * Typed errors. Every error the library throws on purpose is a SvdquantError with a stable `code`,
 * and its message follows one format: what was wrong, which argument/tensor/file, what was expected.
 */

export type SvdquantErrorCode =
  | 'ERR_SVDQ_ARGUMENT'
  | 'ERR_SVDQ_FILE_FORMAT'
  | 'ERR_SVDQ_NONFINITE'
  | 'ERR_SVDQ_NATIVE'
  | 'ERR_SVDQ_IO'
  | 'ERR_SVDQ_ABORTED'
  | 'ERR_SVDQ_GPU_OOM'
  | 'ERR_SVDQ_GPU_NO_DEVICE'
  | 'ERR_SVDQ_GPU_DRIVER'
  | 'ERR_SVDQ_GPU_RUNTIME'
  | 'ERR_SVDQ_GPU_UNSUPPORTED';

export class SvdquantError extends Error {
  readonly code: SvdquantErrorCode;
  constructor(code: SvdquantErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A function argument (or a field of one) does not have the expected type, range or shape. */
export class ArgumentError extends SvdquantError {
  /** The argument's name as the caller wrote it, e.g. `shape` or `options.scaleRule`. */
  readonly argument: string;
  constructor(argument: string, expected: string, got?: unknown) {
    const gotText = arguments.length >= 3 ? `, got ${describeValue(got)}` : '';
    super('ERR_SVDQ_ARGUMENT', `invalid argument '${argument}': expected ${expected}${gotText}`);
    this.argument = argument;
  }
}

/** A file (safetensors, checkpoint, LoRA) is malformed. `file` names it when known. */
export class FileFormatError extends SvdquantError {
  readonly file: string | undefined;
  constructor(file: string | undefined, problem: string) {
    super('ERR_SVDQ_FILE_FORMAT', file === undefined ? `malformed file: ${problem}` : `malformed file '${file}': ${problem}`);
    this.file = file;
  }
}

/** A weight tensor holds NaN or Inf where quantization needs finite values. */
export class NonFiniteError extends SvdquantError {
  readonly tensor: string;
  /** Flat element index of the first non-finite value. */
  readonly index: number;
  constructor(tensor: string, index: number, value: number) {
    super('ERR_SVDQ_NONFINITE', `tensor '${tensor}' holds a non-finite value (${value}) at flat index ${index}: expected only finite values when quantizing weights`);
    this.tensor = tensor;
    this.index = index;
  }
}

/** A file-system operation failed (wraps the system error as `cause`). */
export class IoError extends SvdquantError {
  readonly file: string;
  constructor(file: string, action: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('ERR_SVDQ_IO', `could not ${action} '${file}': ${reason}`, { cause });
    this.file = file;
  }
}

/**
 * A long operation (a sampling run) was cancelled through its AbortSignal. `reason` is the
 * signal's reason; `name` is 'AbortError', as for the DOM's aborts, so generic abort handling works.
 */
export class AbortError extends SvdquantError {
  readonly reason: unknown;
  constructor(operation: string, reason?: unknown) {
    const why = reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : '';
    super('ERR_SVDQ_ABORTED', `${operation} was aborted${why}`, { cause: reason });
    this.reason = reason;
  }
}

/** The native addon reported a failure (it never aborts the process; it throws this instead). */
export class NativeError extends SvdquantError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SVDQ_NATIVE', message, options);
  }
}

/** A requested native backend is not available (not built, library missing or broken, no device). */
export class BackendUnavailableError extends NativeError {
  readonly backend: 'cpu' | 'cuda' | 'hip' | 'auto';
  /** Why it is not available (the probe's reason). */
  readonly reason: string;
  constructor(backend: 'cpu' | 'cuda' | 'hip' | 'auto', reason: string) {
    super(`native backend '${backend}' is not available: ${reason}`);
    this.backend = backend;
    this.reason = reason;
  }
}

/** The codes of GpuError, one per svdq_gpu_code of native/include/svdquant/gpu_abi.h. */
export type GpuErrorCode =
  | 'ERR_SVDQ_GPU_OOM'
  | 'ERR_SVDQ_GPU_NO_DEVICE'
  | 'ERR_SVDQ_GPU_DRIVER'
  | 'ERR_SVDQ_GPU_RUNTIME'
  | 'ERR_SVDQ_GPU_UNSUPPORTED';

/**
 * A GPU backend (CUDA or HIP) reported a failure. The backend never aborts the process; its status
 * becomes one of the subclasses below. `platform` names the backend, `device` the device index when
 * known, `status` the backend's numeric status code.
 */
export class GpuError extends SvdquantError {
  readonly platform: 'cuda' | 'hip';
  readonly device: number | undefined;
  readonly status: number;
  constructor(code: GpuErrorCode, platform: 'cuda' | 'hip', message: string, options?: { device?: number; status?: number; cause?: unknown }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.platform = platform;
    this.device = options?.device;
    this.status = options?.status ?? 0;
  }
}

/** Device (or pinned host) memory could not be allocated. */
export class GpuOutOfMemoryError extends GpuError {
  constructor(platform: 'cuda' | 'hip', message: string, options?: { device?: number; status?: number; cause?: unknown }) {
    super('ERR_SVDQ_GPU_OOM', platform, message, options);
  }
}

/** No device, or the device index does not exist. */
export class GpuNoDeviceError extends GpuError {
  constructor(platform: 'cuda' | 'hip', message: string, options?: { device?: number; status?: number; cause?: unknown }) {
    super('ERR_SVDQ_GPU_NO_DEVICE', platform, message, options);
  }
}

/** The driver is too old for the runtime, or the library holds no kernel image for the device. */
export class GpuDriverError extends GpuError {
  constructor(platform: 'cuda' | 'hip', message: string, options?: { device?: number; status?: number; cause?: unknown }) {
    super('ERR_SVDQ_GPU_DRIVER', platform, message, options);
  }
}

/** Any other CUDA/HIP failure (launch failure, illegal address, ...). */
export class GpuRuntimeError extends GpuError {
  constructor(platform: 'cuda' | 'hip', message: string, options?: { device?: number; status?: number; cause?: unknown }) {
    super('ERR_SVDQ_GPU_RUNTIME', platform, message, options);
  }
}

/** A scheme or feature this backend build or device does not support. */
export class GpuUnsupportedError extends GpuError {
  constructor(platform: 'cuda' | 'hip', message: string, options?: { device?: number; status?: number; cause?: unknown }) {
    super('ERR_SVDQ_GPU_UNSUPPORTED', platform, message, options);
  }
}

/** Short, bounded text for a value in an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) {
    const inner = value.slice(0, 8).map(describeValue).join(', ');
    return `[${inner}${value.length > 8 ? ', ...' : ''}]`;
  }
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as ArrayBufferView).byteLength} bytes)`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}
