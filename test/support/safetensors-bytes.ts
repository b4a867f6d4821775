/**
 * Hand-built safetensors bytes for tests: the prefix, header text and data are assembled directly,
 * without the library's writer, so malformed files can be expressed exactly.
 */

const encoder = new TextEncoder();

export interface RawFileOptions {
  /** Value for the u64 length prefix; default: the header's real byte length. */
  readonly headerLength?: bigint;
}

/** 8-byte little-endian length prefix + header text (as UTF-8, or raw bytes) + data. */
export function rawSafetensors(header: string | Uint8Array, data: Uint8Array | number = 0, options: RawFileOptions = {}): Uint8Array {
  const headerBytes = typeof header === 'string' ? encoder.encode(header) : header;
  const dataBytes = typeof data === 'number' ? patternBytes(data) : data;
  const bytes = new Uint8Array(8 + headerBytes.byteLength + dataBytes.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, options.headerLength ?? BigInt(headerBytes.byteLength), true);
  bytes.set(headerBytes, 8);
  bytes.set(dataBytes, 8 + headerBytes.byteLength);
  return bytes;
}

/** `length` bytes of a recognisable pattern (i * 7 + 3 mod 256). */
export function patternBytes(length: number, seed = 3): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 7 + seed) & 0xff;
  return bytes;
}

/** One tensor entry's JSON text. */
export function entry(dtype: string, shape: number[], begin: number, end: number): string {
  return JSON.stringify({ dtype, shape, data_offsets: [begin, end] });
}
