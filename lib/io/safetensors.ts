/**
 * Reading and writing safetensors files.
 *
 * The file reader keeps a FileHandle open and reads each tensor with positional reads into its own
 * buffer, so files far larger than one Buffer (or 4 GiB) work and memory use follows what is read.
 * The in-memory parser applies exactly the same validation (see safetensors-format.ts). Writes are
 * atomic (see atomic-write.ts) and stream tensor by tensor.
 */

import { constants as bufferConstants } from 'node:buffer';
import { open, type FileHandle } from 'node:fs/promises';
import { ArgumentError, FileFormatError, IoError, describeValue } from '../errors.js';
import { writeFileAtomic } from './atomic-write.js';
import {
  SAFETENSORS_PREFIX_BYTES,
  decodeHeaderLength,
  validateHeader,
  type SafetensorsDtype,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
} from './safetensors-format.js';
import { chunkBytes, layoutSafetensors, type SafetensorsTensorsInput } from './safetensors-encode.js';

export {
  SAFETENSORS_DTYPES,
  SAFETENSORS_MAX_HEADER_BYTES,
  SAFETENSORS_METADATA_KEY,
  SAFETENSORS_PREFIX_BYTES,
  dtypeByteSize,
  isSafetensorsDtype,
  type SafetensorsDtype,
  type SafetensorsTensorInfo,
} from './safetensors-format.js';
export {
  SAFETENSORS_DATA_ALIGNMENT,
  type SafetensorsTensorInput,
  type SafetensorsTensorsInput,
} from './safetensors-encode.js';

/** A tensor's bytes as read from a file. `data` owns its ArrayBuffer (byteOffset 0). */
export interface SafetensorsTensorData {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: number[];
  readonly data: Uint8Array;
}

/** An open safetensors file; call close() when done. */
export interface SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** Tensors in the order of their data offsets. */
  readonly tensors: ReadonlyArray<SafetensorsTensorInfo>;
  readonly headerByteLength: number;
  readonly fileByteLength: number;
  has(name: string): boolean;
  /** The tensor's description; ArgumentError if the file has no tensor of that name. */
  info(name: string): SafetensorsTensorInfo;
  /** Reads one tensor's bytes; ArgumentError if the file has no tensor of that name. */
  readTensor(name: string): Promise<SafetensorsTensorData>;
  /** Reads every tensor, in file order. */
  readAll(): Promise<SafetensorsTensorData[]>;
  /** Closes the file handle; safe to call more than once. */
  close(): Promise<void>;
}

/** A tensor of an in-memory file; `data` is a view into the parsed bytes, not a copy. */
export interface ParsedSafetensorsTensor extends SafetensorsTensorInfo {
  readonly data: Uint8Array;
}

/** Result of parseSafetensors. */
export interface ParsedSafetensors {
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyArray<ParsedSafetensorsTensor>;
  readonly headerByteLength: number;
  readonly fileByteLength: number;
}

/** Largest single read or write request; the OS may transfer less per call anyway. */
const IO_CHUNK_BYTES = 1 << 30;

/**
 * Opens and validates a safetensors file, reading only the prefix and the header. The whole layout
 * is checked before this resolves (FileFormatError); open/read failures are IoError.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a non-empty file path string', path);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    throw new IoError(path, 'open', cause);
  }
  try {
    let fileByteLength: number;
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new Error('not a regular file');
      fileByteLength = stats.size;
    } catch (cause) {
      throw new IoError(path, 'read', cause);
    }
    const prefix = new Uint8Array(SAFETENSORS_PREFIX_BYTES);
    const prefixRead = await readFully(handle, prefix, 0, path, 'read the header of');
    const headerByteLength = decodeHeaderLength(prefix.subarray(0, prefixRead), fileByteLength, path);
    const headerBytes = new Uint8Array(headerByteLength);
    const headerRead = await readFully(handle, headerBytes, SAFETENSORS_PREFIX_BYTES, path, 'read the header of');
    if (headerRead !== headerByteLength) {
      throw new FileFormatError(path, `file ended inside the header (${headerRead} of ${headerByteLength} bytes): expected a complete header`);
    }
    const header = validateHeader(headerBytes, fileByteLength, path);
    return new OpenSafetensorsFile(path, handle, header);
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
}

class OpenSafetensorsFile implements SafetensorsFile {
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyArray<SafetensorsTensorInfo>;
  readonly headerByteLength: number;
  readonly fileByteLength: number;
  readonly #byName: Map<string, SafetensorsTensorInfo>;
  #handle: FileHandle | undefined;

  constructor(
    readonly path: string,
    handle: FileHandle,
    header: SafetensorsHeader,
  ) {
    this.#handle = handle;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.headerByteLength = header.headerByteLength;
    this.fileByteLength = header.fileByteLength;
    this.#byName = new Map(header.tensors.map((tensor) => [tensor.name, tensor]));
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const tensor = this.#byName.get(name);
    if (tensor === undefined) {
      throw new ArgumentError('name', `the name of a tensor in '${this.path}' (it has ${this.tensors.length})`, name);
    }
    return tensor;
  }

  async readTensor(name: string): Promise<SafetensorsTensorData> {
    const tensor = this.info(name);
    const action = `read tensor ${describeValue(name)} from`;
    const handle = this.#handle;
    if (handle === undefined) throw new IoError(this.path, action, new Error('the file was closed'));
    if (tensor.byteLength > bufferConstants.MAX_LENGTH) {
      throw new IoError(
        this.path,
        action,
        new RangeError(
          `the tensor is ${tensor.byteLength} bytes: expected at most ${bufferConstants.MAX_LENGTH} bytes, the largest buffer this Node.js can allocate`,
        ),
      );
    }
    const data = new Uint8Array(tensor.byteLength);
    const read = await readFully(handle, data, tensor.byteOffset, this.path, action);
    if (read !== tensor.byteLength) {
      throw new FileFormatError(
        this.path,
        `file ended inside tensor ${describeValue(name)} (got ${read} of ${tensor.byteLength} bytes): expected the file not to shrink after opening`,
      );
    }
    return { name: tensor.name, dtype: tensor.dtype, shape: [...tensor.shape], data };
  }

  async readAll(): Promise<SafetensorsTensorData[]> {
    const result: SafetensorsTensorData[] = [];
    for (const tensor of this.tensors) result.push(await this.readTensor(tensor.name));
    return result;
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    if (handle === undefined) return;
    try {
      await handle.close();
    } catch (cause) {
      throw new IoError(this.path, 'close', cause);
    }
  }
}

/**
 * Fills `target` from `position` with positional reads (chunked, so sizes beyond 2 GiB work).
 * Returns the bytes read: fewer than target.byteLength only at end of file.
 */
async function readFully(handle: FileHandle, target: Uint8Array, position: number, path: string, action: string): Promise<number> {
  let done = 0;
  while (done < target.byteLength) {
    const length = Math.min(IO_CHUNK_BYTES, target.byteLength - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(target, done, length, position + done));
    } catch (cause) {
      throw new IoError(path, action, cause);
    }
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * Validates a whole safetensors file held in memory (the same checks as openSafetensors) and returns
 * its tensors with views into `bytes`. `source` names the data in error messages.
 */
export function parseSafetensors(bytes: Uint8Array, source?: string): ParsedSafetensors {
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError('bytes', 'a Uint8Array', bytes);
  const headerByteLength = decodeHeaderLength(bytes.subarray(0, SAFETENSORS_PREFIX_BYTES), bytes.byteLength, source);
  const header = validateHeader(
    bytes.subarray(SAFETENSORS_PREFIX_BYTES, SAFETENSORS_PREFIX_BYTES + headerByteLength),
    bytes.byteLength,
    source,
  );
  const tensors = header.tensors.map(
    (tensor): ParsedSafetensorsTensor =>
      Object.freeze({ ...tensor, data: bytes.subarray(tensor.byteOffset, tensor.byteOffset + tensor.byteLength) }),
  );
  return {
    metadata: header.metadata,
    tensors: Object.freeze(tensors),
    headerByteLength: header.headerByteLength,
    fileByteLength: header.fileByteLength,
  };
}

/** Encodes tensors (and optional metadata) as one in-memory safetensors file; for small data. */
export function serializeSafetensors(tensors: SafetensorsTensorsInput, metadata?: Record<string, string>): Uint8Array {
  const layout = layoutSafetensors(tensors, metadata);
  if (layout.totalByteLength > bufferConstants.MAX_LENGTH) {
    throw new ArgumentError(
      'tensors',
      `at most ${bufferConstants.MAX_LENGTH} bytes in all for an in-memory file (use writeSafetensors for larger ones), but they need ${layout.totalByteLength} bytes`,
    );
  }
  const bytes = new Uint8Array(layout.totalByteLength);
  bytes.set(layout.head, 0);
  let position = layout.head.byteLength;
  for (const chunk of layout.chunks) {
    bytes.set(chunkBytes(chunk), position);
    position += chunk.byteLength;
  }
  return bytes;
}

/**
 * Writes tensors (and optional metadata) to `path` atomically: the file is either fully replaced or
 * left as it was. Arguments are validated (ArgumentError) before anything touches the disk.
 */
export async function writeSafetensors(
  path: string,
  tensors: SafetensorsTensorsInput,
  metadata?: Record<string, string>,
): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a non-empty file path string', path);
  const layout = layoutSafetensors(tensors, metadata);
  await writeFileAtomic(path, async (handle) => {
    await writeFully(handle, layout.head, 0);
    let position = layout.head.byteLength;
    for (const chunk of layout.chunks) {
      await writeFully(handle, chunkBytes(chunk), position);
      position += chunk.byteLength;
    }
  });
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const length = Math.min(IO_CHUNK_BYTES, bytes.byteLength - done);
    const { bytesWritten } = await handle.write(bytes, done, length, position + done);
    if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${position + done}`);
    done += bytesWritten;
  }
}
