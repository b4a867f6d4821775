/**
 * Writer side of safetensors: checks the caller's tensors and metadata (ArgumentError on anything
 * wrong) and lays out the file: prefix + space-padded JSON header + tensor data in the given order.
 * Shared by the in-memory serializer and the streaming file writer.
 */

import { ArgumentError } from '../errors.js';
import {
  SAFETENSORS_DTYPES,
  SAFETENSORS_MAX_HEADER_BYTES,
  SAFETENSORS_METADATA_KEY,
  SAFETENSORS_PREFIX_BYTES,
  dtypeByteSize,
  isSafetensorsDtype,
  isValidShape,
  shapeElementCount,
  type SafetensorsDtype,
} from './safetensors-format.js';

/** A tensor to write. `data` holds the raw little-endian bytes (any typed array or DataView). */
export interface SafetensorsTensorInput {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Uint8Array | ArrayBufferView;
}

/**
 * Tensors as a list (written in list order) or a record keyed by name (written in the record's
 * property order, which JavaScript puts integer-like keys first in).
 */
export type SafetensorsTensorsInput =
  | ReadonlyArray<SafetensorsTensorInput>
  | Readonly<Record<string, Omit<SafetensorsTensorInput, 'name'>>>;

/** The data buffer starts at a multiple of this, so typed views over a mapped file are aligned. */
export const SAFETENSORS_DATA_ALIGNMENT = 8;

export interface SafetensorsLayout {
  /** The 8-byte prefix followed by the padded header. */
  readonly head: Uint8Array;
  /** Each tensor's bytes, in file order; the first starts right after `head`. */
  readonly chunks: ReadonlyArray<SafetensorsChunk>;
  readonly totalByteLength: number;
}

export interface SafetensorsChunk {
  /** How the caller's argument is named in errors, e.g. `tensors[2]`. */
  readonly argument: string;
  readonly name: string;
  /** A view of the caller's data (not a copy). */
  readonly bytes: Uint8Array;
  /** The length checked at layout time; a detached or shrunk buffer no longer matches it. */
  readonly byteLength: number;
}

const encoder = new TextEncoder();

/** Validates the input and computes the file layout; does not copy tensor data. */
export function layoutSafetensors(tensors: SafetensorsTensorsInput, metadata?: Record<string, string>): SafetensorsLayout {
  const entries = normalizeTensors(tensors);
  const headerParts: string[] = [];

  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new ArgumentError('metadata', 'an object of string values', metadata);
    }
    const items = Object.entries(metadata);
    for (const [key, value] of items) {
      if (typeof value !== 'string') throw new ArgumentError(`metadata[${JSON.stringify(key)}]`, 'a string', value);
    }
    if (items.length > 0) {
      const body = items.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',');
      headerParts.push(`${JSON.stringify(SAFETENSORS_METADATA_KEY)}:{${body}}`);
    }
  }

  const seen = new Set<string>();
  const chunks: SafetensorsChunk[] = [];
  let offset = 0;
  for (const { argument, name, tensor } of entries) {
    if (tensor === null || typeof tensor !== 'object') {
      throw new ArgumentError(argument, 'an object with name, dtype, shape and data', tensor);
    }
    if (typeof name !== 'string' || name.length === 0) {
      throw new ArgumentError(`${argument}.name`, 'a non-empty string', name);
    }
    if (name === SAFETENSORS_METADATA_KEY) {
      throw new ArgumentError(`${argument}.name`, `a name other than ${SAFETENSORS_METADATA_KEY} (reserved for metadata)`, name);
    }
    if (seen.has(name)) throw new ArgumentError(`${argument}.name`, 'a name not used by another tensor', name);
    seen.add(name);
    const { dtype, shape, data } = tensor;
    if (!isSafetensorsDtype(dtype)) {
      throw new ArgumentError(`${argument}.dtype`, `one of ${SAFETENSORS_DTYPES.join(', ')}`, dtype);
    }
    if (!isValidShape(shape)) {
      throw new ArgumentError(`${argument}.shape`, 'an array of non-negative safe integers', shape);
    }
    if (!ArrayBuffer.isView(data)) {
      throw new ArgumentError(`${argument}.data`, 'a Uint8Array or other ArrayBufferView', data);
    }
    const expected = BigInt(dtypeByteSize(dtype)) * shapeElementCount(shape);
    if (BigInt(data.byteLength) !== expected) {
      throw new ArgumentError(
        `${argument}.data`,
        `${expected} bytes (${dtype} x ${shapeElementCount(shape)} elements of shape [${shape.join(', ')}])`,
        data,
      );
    }
    const begin = offset;
    offset += data.byteLength;
    const dims = shape.map((dim) => dim + 0).join(',');
    headerParts.push(`${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${dims}],"data_offsets":[${begin},${offset}]}`);
    chunks.push({ argument, name, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), byteLength: data.byteLength });
  }

  const json = encoder.encode(`{${headerParts.join(',')}}`);
  const padding = (SAFETENSORS_DATA_ALIGNMENT - ((SAFETENSORS_PREFIX_BYTES + json.byteLength) % SAFETENSORS_DATA_ALIGNMENT)) % SAFETENSORS_DATA_ALIGNMENT;
  const headerByteLength = json.byteLength + padding;
  if (headerByteLength > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new ArgumentError(
      'tensors',
      `a header of at most ${SAFETENSORS_MAX_HEADER_BYTES} bytes (readers reject larger ones), but names, shapes and metadata need ${headerByteLength} bytes`,
    );
  }
  const head = new Uint8Array(SAFETENSORS_PREFIX_BYTES + headerByteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(headerByteLength), true);
  head.set(json, SAFETENSORS_PREFIX_BYTES);
  head.fill(0x20, SAFETENSORS_PREFIX_BYTES + json.byteLength);

  return { head, chunks, totalByteLength: head.byteLength + offset };
}

/**
 * The chunk's bytes, checked again just before they are copied or written: the caller may have
 * detached or shrunk the underlying buffer since the layout was made (writes are asynchronous).
 */
export function chunkBytes(chunk: SafetensorsChunk): Uint8Array {
  if (chunk.bytes.byteLength !== chunk.byteLength) {
    throw new ArgumentError(
      `${chunk.argument}.data`,
      `its ${chunk.byteLength} bytes to stay available until the write finishes (the buffer was detached or resized)`,
      chunk.bytes,
    );
  }
  return chunk.bytes;
}

interface NormalizedEntry {
  readonly argument: string;
  readonly name: unknown;
  readonly tensor: Partial<Omit<SafetensorsTensorInput, 'name'>> | null;
}

function normalizeTensors(tensors: SafetensorsTensorsInput): NormalizedEntry[] {
  if (Array.isArray(tensors)) {
    return (tensors as ReadonlyArray<SafetensorsTensorInput | null>).map((tensor, index) => ({
      argument: `tensors[${index}]`,
      name: tensor !== null && typeof tensor === 'object' ? tensor.name : undefined,
      tensor,
    }));
  }
  if (tensors === null || typeof tensors !== 'object') {
    throw new ArgumentError('tensors', 'an array of {name, dtype, shape, data} or a record of {dtype, shape, data} by name', tensors);
  }
  return Object.entries(tensors as Record<string, Omit<SafetensorsTensorInput, 'name'> | null>).map(([name, tensor]) => ({
    argument: `tensors[${JSON.stringify(name)}]`,
    name,
    tensor,
  }));
}
