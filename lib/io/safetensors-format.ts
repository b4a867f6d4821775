/**
 * The safetensors layout and its validation, shared by the in-memory parser and the file reader.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (the header), then the data
 * buffer. The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets
 * relative to the data buffer) and may hold "__metadata__": {string: string}.
 *
 * Validation is strict: a file is accepted only if every tensor is well-formed and the tensors tile
 * the data buffer exactly (contiguous, no overlaps, no gaps, no trailing bytes).
 */

import { ArgumentError, FileFormatError, describeValue } from '../errors.js';
import { findDuplicateJsonKey, jsonNestingDepth } from './json-keys.js';

export const SAFETENSORS_DTYPES = [
  'F64',
  'F32',
  'F16',
  'BF16',
  'I64',
  'I32',
  'I16',
  'I8',
  'U8',
  'BOOL',
  'F8_E4M3',
  'F8_E5M2',
] as const;

export type SafetensorsDtype = (typeof SAFETENSORS_DTYPES)[number];

const DTYPE_BYTE_SIZES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** Length of the header-length prefix. */
export const SAFETENSORS_PREFIX_BYTES = 8;

/** Largest header accepted (100 MiB), so a corrupt length field cannot make us allocate gigabytes. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Deepest nesting of arrays and objects accepted in a header. A valid header nests 3 deep (header
 * object, tensor object, shape array); the margin keeps error messages informative for slightly
 * wrong files while a header nested thousands deep is refused before anything recurses over it.
 */
export const SAFETENSORS_MAX_HEADER_DEPTH = 64;

/** The key of the optional string-to-string metadata object in the header. */
export const SAFETENSORS_METADATA_KEY = '__metadata__';

const TENSOR_FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTE_SIZES, value);
}

/** Bytes per element of `dtype`. */
export function dtypeByteSize(dtype: SafetensorsDtype): number {
  if (!isSafetensorsDtype(dtype)) {
    throw new ArgumentError('dtype', `one of ${SAFETENSORS_DTYPES.join(', ')}`, dtype);
  }
  return DTYPE_BYTE_SIZES[dtype];
}

/** One tensor as described by a validated header. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Absolute position of the tensor's first byte in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** A validated header. */
export interface SafetensorsHeader {
  readonly metadata: Record<string, string>;
  /** Tensors in the order of their data offsets. */
  readonly tensors: ReadonlyArray<SafetensorsTensorInfo>;
  /** N, the length of the JSON header (including padding). */
  readonly headerByteLength: number;
  readonly fileByteLength: number;
}

/** True for an array of non-negative safe integers (a valid shape, possibly empty for scalars). */
export function isValidShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((dim) => Number.isSafeInteger(dim) && (dim as number) >= 0);
}

/** Number of elements of `shape`, exact (BigInt) so huge shapes cannot overflow silently. */
export function shapeElementCount(shape: readonly number[]): bigint {
  let count = 1n;
  for (const dim of shape) count *= BigInt(dim);
  return count;
}

/**
 * Reads and checks the header-length prefix. `prefix` holds the file's first bytes (at least 8 when
 * the file has them); `fileByteLength` is the whole file's length. Returns N.
 */
export function decodeHeaderLength(prefix: Uint8Array, fileByteLength: number, source: string | undefined): number {
  if (fileByteLength < SAFETENSORS_PREFIX_BYTES || prefix.byteLength < SAFETENSORS_PREFIX_BYTES) {
    throw new FileFormatError(
      source,
      `file is ${fileByteLength} bytes long: expected at least ${SAFETENSORS_PREFIX_BYTES} bytes (the header-length prefix)`,
    );
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, SAFETENSORS_PREFIX_BYTES).getBigUint64(0, true);
  if (length > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new FileFormatError(
      source,
      `header length field says ${length} bytes: expected at most ${SAFETENSORS_MAX_HEADER_BYTES} bytes (the header size limit)`,
    );
  }
  const available = fileByteLength - SAFETENSORS_PREFIX_BYTES;
  if (length > BigInt(available)) {
    throw new FileFormatError(
      source,
      `header length field says ${length} bytes but only ${available} bytes follow the ${SAFETENSORS_PREFIX_BYTES}-byte prefix: expected the header to fit in the file`,
    );
  }
  return Number(length);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Validates the header bytes (exactly N bytes after the prefix) of a file of `fileByteLength` bytes
 * and returns the tensors sorted by data offset. Every problem is a FileFormatError naming `source`.
 */
export function validateHeader(
  headerBytes: Uint8Array,
  fileByteLength: number,
  source: string | undefined,
): SafetensorsHeader {
  const fail = (problem: string): never => {
    throw new FileFormatError(source, problem);
  };

  const headerByteLength = headerBytes.byteLength;
  const dataStart = SAFETENSORS_PREFIX_BYTES + headerByteLength;
  const dataByteLength = fileByteLength - dataStart;
  if (dataByteLength < 0) fail(`header of ${headerByteLength} bytes does not fit in a file of ${fileByteLength} bytes`);

  let text: string;
  try {
    text = utf8Decoder.decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8: expected UTF-8 encoded JSON');
  }

  const depth = jsonNestingDepth(text, SAFETENSORS_MAX_HEADER_DEPTH);
  if (depth > SAFETENSORS_MAX_HEADER_DEPTH) {
    fail(`header nests arrays or objects more than ${SAFETENSORS_MAX_HEADER_DEPTH} levels deep: expected at most ${SAFETENSORS_MAX_HEADER_DEPTH} (a valid header nests 3)`);
  }

  let root: unknown;
  try {
    // Objects without a prototype: a tensor or metadata key such as "__proto__", "constructor" or
    // "toString" is an ordinary key and can never reach or shadow Object.prototype.
    root = JSON.parse(text, withoutPrototypes);
  } catch (error) {
    const reason = error instanceof Error ? oneLine(error.message) : 'parse error';
    return fail(`header is not valid JSON (${reason}): expected a JSON object`);
  }
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    return fail(`header is ${describeJson(root)}: expected a JSON object`);
  }

  const duplicate = findDuplicateJsonKey(text);
  if (duplicate !== undefined) fail(describeDuplicate(duplicate.key, duplicate.path));

  let metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const tensors: Array<SafetensorsTensorInfo & { begin: number; end: number }> = [];

  for (const [name, entry] of Object.entries(root as Record<string, unknown>)) {
    if (name === SAFETENSORS_METADATA_KEY) {
      metadata = validateMetadata(entry, fail);
      continue;
    }
    const label = `tensor ${describeValue(name)}`;
    if (name.length === 0) fail('a tensor name is the empty string: expected non-empty tensor names');
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      fail(`${label}: entry is ${describeJson(entry)}: expected an object with fields ${TENSOR_FIELDS.join(', ')}`);
    }
    const fields = entry as Record<string, unknown>;
    for (const field of TENSOR_FIELDS) {
      if (!Object.prototype.hasOwnProperty.call(fields, field)) {
        fail(`${label}: missing field "${field}": expected fields ${TENSOR_FIELDS.join(', ')}`);
      }
    }
    for (const field of Object.keys(fields)) {
      if (!(TENSOR_FIELDS as readonly string[]).includes(field)) {
        fail(`${label}: unexpected field ${describeValue(field)}: expected only fields ${TENSOR_FIELDS.join(', ')}`);
      }
    }

    const { dtype, shape, data_offsets: offsets } = fields;
    if (!isSafetensorsDtype(dtype)) {
      return fail(`${label}: unknown dtype ${describeJson(dtype)}: expected one of ${SAFETENSORS_DTYPES.join(', ')}`);
    }
    if (!isValidShape(shape)) {
      return fail(`${label}: shape is ${describeJson(shape)}: expected an array of non-negative safe integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !Number.isSafeInteger(offsets[0]) ||
      !Number.isSafeInteger(offsets[1]) ||
      offsets[0] < 0 ||
      offsets[0] > offsets[1]
    ) {
      return fail(
        `${label}: data_offsets is ${describeJson(offsets)}: expected [begin, end] with non-negative safe integers and begin <= end`,
      );
    }
    const begin = offsets[0] as number;
    const end = offsets[1] as number;
    if (end > dataByteLength) {
      fail(`${label}: data_offsets end ${end} is beyond the data buffer: expected at most ${dataByteLength} (the data buffer's length)`);
    }
    const byteLength = end - begin;
    const expected = BigInt(DTYPE_BYTE_SIZES[dtype]) * shapeElementCount(shape);
    if (BigInt(byteLength) !== expected) {
      fail(
        `${label}: data_offsets [${begin}, ${end}] span ${byteLength} bytes: expected ${expected} bytes (${dtype} x ${shapeElementCount(shape)} elements of shape [${shape.join(', ')}])`,
      );
    }
    // `+ 0` turns a JSON -0 into 0.
    const cleanShape = shape.map((dim) => dim + 0);
    tensors.push({ name, dtype, shape: cleanShape, byteOffset: dataStart + begin, byteLength, begin, end });
  }

  // Contiguity: sorted by (begin, end) the tensors must tile [0, dataByteLength) exactly.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let previous: (typeof tensors)[number] | undefined;
  let position = 0;
  for (const tensor of tensors) {
    const label = `tensor ${describeValue(tensor.name)} (data_offsets [${tensor.begin}, ${tensor.end}])`;
    if (tensor.begin < position && previous !== undefined) {
      fail(
        `${label} overlaps tensor ${describeValue(previous.name)} (data_offsets [${previous.begin}, ${previous.end}]): expected non-overlapping tensor data`,
      );
    }
    if (tensor.begin > position) {
      fail(
        `gap of ${tensor.begin - position} bytes before ${label}: expected contiguous tensor data starting at offset 0`,
      );
    }
    position = tensor.end;
    previous = tensor;
  }
  if (position !== dataByteLength) {
    fail(
      `${dataByteLength - position} trailing bytes of the data buffer are not covered by any tensor: expected tensor data to fill the data buffer exactly (${dataByteLength} bytes)`,
    );
  }

  const infos = tensors.map(
    ({ name, dtype, shape, byteOffset, byteLength }): SafetensorsTensorInfo =>
      Object.freeze({ name, dtype, shape: Object.freeze(shape), byteOffset, byteLength }),
  );
  return { metadata, tensors: Object.freeze(infos), headerByteLength, fileByteLength };
}

function validateMetadata(value: unknown, fail: (problem: string) => never): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail(`${SAFETENSORS_METADATA_KEY} is ${describeJson(value)}: expected an object of string values`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  for (const [key, item] of entries) {
    if (typeof item !== 'string') {
      fail(`${SAFETENSORS_METADATA_KEY} key ${describeValue(key)} has value ${describeJson(item)}: expected a string`);
    }
  }
  // A null-prototype object: a "__proto__" key stays an ordinary key, and a missing key such as
  // "constructor" reads as undefined rather than as Object.prototype's.
  return Object.assign(Object.create(null) as Record<string, string>, Object.fromEntries(entries));
}

/** JSON.parse reviver: every object becomes a null-prototype object with the same own keys. */
function withoutPrototypes(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const copy = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(value)) Object.defineProperty(copy, k, { value: v, enumerable: true, writable: true, configurable: true });
  return copy;
}

function describeDuplicate(key: string, path: ReadonlyArray<string | number>): string {
  const quoted = describeValue(key);
  if (path.length === 0) {
    return key === SAFETENSORS_METADATA_KEY
      ? `header has the key ${quoted} twice: expected unique keys`
      : `header names tensor ${quoted} twice: expected unique tensor names`;
  }
  if (path.length === 1 && typeof path[0] === 'string') {
    if (path[0] === SAFETENSORS_METADATA_KEY) {
      return `${SAFETENSORS_METADATA_KEY} has the key ${quoted} twice: expected unique metadata keys`;
    }
    return `tensor ${describeValue(path[0])} has the field ${quoted} twice: expected unique fields`;
  }
  const where = path.map((step) => (typeof step === 'number' ? `[${step}]` : `[${describeValue(step)}]`)).join('');
  return `header object at ${where} has the key ${quoted} twice: expected unique keys`;
}

/** describeValue, but names JSON objects plainly ("an object") since they all come from JSON.parse. */
function describeJson(value: unknown): string {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return 'an object';
  return describeValue(value);
}

/** Error text on one line (JSON.parse messages quote header text, which may hold newlines). */
function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ');
}
