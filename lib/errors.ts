/**
 * Typed errors. Every error the library throws on purpose is a SvdquantError with a stable `code`,
 * and its message follows one format: what was wrong, which argument/tensor/file, what was expected.
 */

export type SvdquantErrorCode =
  | 'ERR_SVDQ_ARGUMENT'
  | 'ERR_SVDQ_FILE_FORMAT'
  | 'ERR_SVDQ_NONFINITE'
  | 'ERR_SVDQ_NATIVE'
  | 'ERR_SVDQ_IO';

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

/** The native addon reported a failure (it never aborts the process; it throws this instead). */
export class NativeError extends SvdquantError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SVDQ_NATIVE', message, options);
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
