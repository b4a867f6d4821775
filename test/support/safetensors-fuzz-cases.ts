/**
 * Fuzz case generation for the safetensors reader: a seeded PRNG, valid seed files, and mutators
 * (byte-level, JSON-level and header-text-level). Case `index` of run `seed` always produces the
 * same bytes (generateCase), so any reported case can be reproduced. Used by safetensors-fuzz.ts.
 */

import {
  SAFETENSORS_DTYPES,
  SAFETENSORS_MAX_HEADER_BYTES,
  dtypeByteSize,
  serializeSafetensors,
  type SafetensorsDtype,
  type SafetensorsTensorInput,
} from '../../lib/io/safetensors.js';

// ---------------------------------------------------------------------------------------------
// Seeded PRNG

/** mulberry32: small, fast, good enough for fuzzing, and fully reproducible from a 32-bit seed. */
export class Prng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform 32-bit unsigned integer. */
  next(): number {
    let z = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.next() / 2 ** 32) * n);
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
  pick<T>(items: ReadonlyArray<T>): T {
    return items[this.int(items.length)];
  }
}

/** The PRNG seed of one case, mixed from the run seed and the case index. */
export function caseSeed(runSeed: number, index: number): number {
  let h = Math.imul(runSeed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Seed files

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 17 + 5) & 0xff;
  return bytes;
}

function tensor(name: string, dtype: SafetensorsDtype, shape: number[], seed = 0): SafetensorsTensorInput {
  const count = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: pattern(count * dtypeByteSize(dtype), seed) };
}

function raw(header: string, dataLength: number): Uint8Array {
  const headerBytes = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + headerBytes.byteLength + dataLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  bytes.set(headerBytes, 8);
  bytes.set(pattern(dataLength, 9), 8 + headerBytes.byteLength);
  return bytes;
}

/** Valid files covering several dtypes, shapes, metadata and header spellings. */
export function seedFiles(): Uint8Array[] {
  return [
    serializeSafetensors([tensor('w', 'F32', [2, 3], 1), tensor('step', 'I64', [], 2)], { format: 'pt' }),
    serializeSafetensors(SAFETENSORS_DTYPES.map((dtype, i) => tensor(`t.${dtype}`, dtype, [i % 3 + 1, 2], i))),
    serializeSafetensors([tensor('empty', 'F16', [0, 8]), tensor('x', 'BF16', [4, 4], 3), tensor('end', 'BOOL', [0])], {
      a: '1',
      'ключ': 'значение',
      empty: '',
    }),
    serializeSafetensors([]),
    serializeSafetensors([tensor('__proto__', 'U8', [3]), tensor('constructor', 'I8', [2, 2]), tensor('名前 🙂', 'F64', [1])]),
    serializeSafetensors([tensor('layer.0.proj.weight', 'BF16', [16, 32], 4), tensor('layer.0.proj.bias', 'F32', [16], 5)], {
      quantization: 'svdquant-w4a4',
      rank: '32',
    }),
    // Hand-written headers: keys out of data order, escapes, whitespace, padding, zero-size tensors.
    raw(
      '{ "b" : {"dtype":"I16","shape":[3],"data_offsets":[4,10]},\n "a\\u0041" : {"shape":[1],"data_offsets":[0,4],"dtype":"I32"},' +
        ' "z":{"data_offsets":[10,10],"dtype":"F8_E4M3","shape":[0,0]}, "__metadata__":{"k\\n":"v\\"q"} }    ',
      10,
    ),
    raw('{"s":{"dtype":"F8_E5M2","shape":[],"data_offsets":[0,1]}}', 1),
  ];
}

// ---------------------------------------------------------------------------------------------
// Mutators

interface FileParts {
  header: string;
  data: Uint8Array;
}

/** Splits a file into header text and data if its prefix and UTF-8 are sound; else undefined. */
function splitFile(bytes: Uint8Array): FileParts | undefined {
  if (bytes.byteLength < 8) return undefined;
  const length = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(bytes.byteLength - 8)) return undefined;
  const end = 8 + Number(length);
  try {
    const header = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, end));
    return { header, data: bytes.slice(end) };
  } catch {
    return undefined;
  }
}

function joinFile(header: string, data: Uint8Array): Uint8Array {
  const headerBytes = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + headerBytes.byteLength + data.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  bytes.set(headerBytes, 8);
  bytes.set(data, 8 + headerBytes.byteLength);
  return bytes;
}

function headerObject(parts: FileParts): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(parts.header);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function tensorEntries(header: Record<string, unknown>): Array<[string, Record<string, unknown>]> {
  return Object.entries(header).filter(
    (pair): pair is [string, Record<string, unknown>] =>
      pair[0] !== '__metadata__' && pair[1] !== null && typeof pair[1] === 'object' && !Array.isArray(pair[1]),
  );
}

const INTERESTING_NUMBERS = [0, 1, 2, 3, 4, 7, 8, -1, -0, 0.5, 1.5, 255, 256, 65535, 2 ** 31 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 2 ** 53, 2 ** 63, 1e308, 1e400, -1e308];
const INTERESTING_BYTES = [0x00, 0x01, 0x20, 0x22, 0x2c, 0x3a, 0x5b, 0x5c, 0x5d, 0x7b, 0x7d, 0x7f, 0x80, 0xbf, 0xc0, 0xe0, 0xef, 0xf0, 0xfe, 0xff];
const ODD_DTYPES: unknown[] = ['F128', 'f32', '', 'U16', 'F4', 4, null, [], {}];
const ODD_VALUES: unknown[] = [null, true, 0, -1, '', 'x', [], {}, [1, 2], { a: 1 }, 'F32', [[1]], 1.5];
const ODD_NAMES = ['', '__metadata__', ' ', '\u0000', '\ud800', '🙂', 'a"b', 'a\\b', '\n', 'x'.repeat(300)];

type Mutator = (bytes: Uint8Array, rng: Prng, seeds: ReadonlyArray<Uint8Array>) => Uint8Array;

/** Byte-level edits anywhere, biased towards the prefix and header where the logic is. */
function targetIndex(bytes: Uint8Array, rng: Prng): number {
  const parts = splitFile(bytes);
  const headerEnd = parts === undefined ? bytes.byteLength : Math.min(bytes.byteLength, bytes.byteLength - parts.data.byteLength);
  return rng.chance(0.8) && headerEnd > 0 ? rng.int(headerEnd) : rng.int(bytes.byteLength);
}

const byteMutators: Record<string, Mutator> = {
  bitFlip(bytes, rng) {
    if (bytes.byteLength === 0) return bytes;
    const out = bytes.slice();
    const flips = 1 + rng.int(4);
    for (let i = 0; i < flips; i++) out[targetIndex(out, rng)] ^= 1 << rng.int(8);
    return out;
  },
  overwriteByte(bytes, rng) {
    if (bytes.byteLength === 0) return bytes;
    const out = bytes.slice();
    out[targetIndex(out, rng)] = rng.chance(0.7) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
    return out;
  },
  insertBytes(bytes, rng) {
    const at = rng.int(bytes.byteLength + 1);
    const extra = Uint8Array.from({ length: 1 + rng.int(8) }, () => rng.pick(INTERESTING_BYTES));
    const out = new Uint8Array(bytes.byteLength + extra.byteLength);
    out.set(bytes.subarray(0, at), 0);
    out.set(extra, at);
    out.set(bytes.subarray(at), at + extra.byteLength);
    return out;
  },
  deleteBytes(bytes, rng) {
    if (bytes.byteLength === 0) return bytes;
    const at = rng.int(bytes.byteLength);
    const count = 1 + rng.int(Math.min(16, bytes.byteLength - at));
    const out = new Uint8Array(bytes.byteLength - count);
    out.set(bytes.subarray(0, at), 0);
    out.set(bytes.subarray(at + count), at);
    return out;
  },
  truncate(bytes, rng) {
    return bytes.slice(0, rng.chance(0.2) ? rng.int(9) : rng.int(bytes.byteLength + 1));
  },
  extend(bytes, rng) {
    const extra = rng.chance(0.5) ? 1 + rng.int(8) : 1 + rng.int(4096);
    const out = new Uint8Array(bytes.byteLength + extra);
    out.set(bytes, 0);
    const fill = rng.chance(0.5) ? 0x20 : -1;
    for (let i = bytes.byteLength; i < out.byteLength; i++) out[i] = fill >= 0 ? fill : rng.int(256);
    return out;
  },
  headerLength(bytes, rng) {
    if (bytes.byteLength < 8) return bytes;
    const out = bytes.slice();
    const view = new DataView(out.buffer);
    const current = view.getBigUint64(0, true);
    const choices: bigint[] = [
      current + BigInt(1 + rng.int(8)),
      current > 0n ? current - BigInt(1 + rng.int(Number(current < 8n ? current : 8n))) : 0n,
      0n,
      BigInt(bytes.byteLength - 8),
      BigInt(bytes.byteLength - 7),
      BigInt(SAFETENSORS_MAX_HEADER_BYTES),
      BigInt(SAFETENSORS_MAX_HEADER_BYTES) + 1n,
      2n ** 32n,
      2n ** 63n,
      2n ** 64n - 1n,
      BigInt(rng.next()),
    ];
    view.setBigUint64(0, rng.pick(choices), true);
    return out;
  },
  splice(bytes, rng, seeds) {
    const other = rng.pick(seeds);
    const a = rng.int(bytes.byteLength + 1);
    const b = rng.int(other.byteLength + 1);
    const out = new Uint8Array(a + other.byteLength - b);
    out.set(bytes.subarray(0, a), 0);
    out.set(other.subarray(b), a);
    return out;
  },
  swapData(bytes, rng, seeds) {
    // Header of this file, data buffer of another (valid framing, inconsistent layout).
    const mine = splitFile(bytes);
    const theirs = splitFile(rng.pick(seeds));
    return mine === undefined || theirs === undefined ? bytes : joinFile(mine.header, theirs.data);
  },
};

/** JSON-level edits: parse the header, change it, re-encode it with a correct length prefix. */
const jsonMutators: Record<string, (header: Record<string, unknown>, parts: FileParts, rng: Prng) => string | undefined> = {
  changeNumber(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    const [, fields] = rng.pick(entries);
    const key = rng.pick(['shape', 'data_offsets']);
    const list = fields[key];
    if (!Array.isArray(list)) return undefined;
    const value = rng.pick(INTERESTING_NUMBERS);
    if (list.length === 0 || rng.chance(0.2)) list.push(value);
    else list[rng.int(list.length)] = rng.chance(0.5) ? value : (list[rng.int(list.length)] as number) + (rng.chance(0.5) ? 1 : -1);
    return JSON.stringify(header);
  },
  changeDtype(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    rng.pick(entries)[1].dtype = rng.chance(0.6) ? rng.pick(SAFETENSORS_DTYPES) : rng.pick(ODD_DTYPES);
    return JSON.stringify(header);
  },
  swapOffsets(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length < 2) return undefined;
    const a = rng.pick(entries)[1];
    const b = rng.pick(entries)[1];
    [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
    return JSON.stringify(header);
  },
  reverseOffsets(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    const fields = rng.pick(entries)[1];
    if (Array.isArray(fields.data_offsets)) fields.data_offsets.reverse();
    return JSON.stringify(header);
  },
  oddFieldValue(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    rng.pick(entries)[1][rng.pick(['dtype', 'shape', 'data_offsets'])] = rng.pick(ODD_VALUES);
    return JSON.stringify(header);
  },
  removeOrAddField(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    const fields = rng.pick(entries)[1];
    if (rng.chance(0.5)) delete fields[rng.pick(['dtype', 'shape', 'data_offsets'])];
    else fields[rng.pick(['extra', 'offsets', 'Dtype'])] = rng.pick(ODD_VALUES);
    return JSON.stringify(header);
  },
  removeTensor(header, _parts, rng) {
    const names = Object.keys(header);
    if (names.length === 0) return undefined;
    delete header[rng.pick(names)];
    return JSON.stringify(header);
  },
  copyTensor(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    header[`copy${rng.int(100)}`] = structuredClone(rng.pick(entries)[1]);
    return JSON.stringify(header);
  },
  renameTensor(header, _parts, rng) {
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    const [name, fields] = rng.pick(entries);
    delete header[name];
    header[rng.pick(ODD_NAMES)] = fields;
    return JSON.stringify(header);
  },
  replaceEntry(header, _parts, rng) {
    const names = Object.keys(header);
    if (names.length === 0) return undefined;
    header[rng.pick(names)] = rng.pick(ODD_VALUES);
    return JSON.stringify(header);
  },
  metadata(header, _parts, rng) {
    const choice = rng.int(4);
    if (choice === 0) header.__metadata__ = rng.pick(ODD_VALUES);
    else if (choice === 1) header.__metadata__ = { key: rng.pick(ODD_VALUES) };
    else if (choice === 2) header.__metadata__ = Object.fromEntries(Array.from({ length: 1 + rng.int(50) }, (_, i) => [`k${i}`, `v${i}`]));
    else delete header.__metadata__;
    return JSON.stringify(header);
  },
  reshapeConsistently(header, parts, rng) {
    // Changes a shape and re-tiles all offsets so the file stays valid: exercises the accept path.
    const entries = tensorEntries(header);
    if (entries.length === 0) return undefined;
    const target = rng.pick(entries)[1];
    target.shape = Array.from({ length: rng.int(4) }, () => rng.int(5));
    let offset = 0;
    for (const [, fields] of entries) {
      const dtype = fields.dtype;
      const shape = fields.shape;
      if (typeof dtype !== 'string' || !(SAFETENSORS_DTYPES as readonly string[]).includes(dtype) || !Array.isArray(shape)) return undefined;
      const size = dtypeByteSize(dtype as SafetensorsDtype) * (shape as number[]).reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(size) || size < 0 || offset + size > 1 << 20) return undefined;
      fields.data_offsets = [offset, offset + size];
      offset += size;
    }
    parts.data = pattern(offset, rng.int(256));
    return JSON.stringify(header);
  },
  makeArray(header) {
    return JSON.stringify(Object.values(header));
  },
};

/** Text-level edits of the header (duplicate keys, padding, raw digits) that JSON.stringify cannot make. */
const textMutators: Record<string, (parts: FileParts, rng: Prng) => string | undefined> = {
  duplicateTensorKey(parts, rng) {
    const header = headerObject(parts);
    if (header === undefined) return undefined;
    const entries = Object.entries(header);
    if (entries.length === 0) return undefined;
    const [name, value] = rng.pick(entries);
    const copy = `${JSON.stringify(rng.chance(0.3) ? name.replace(/[a-z]/, (c) => `\\u00${c.charCodeAt(0).toString(16)}`) : name)}:${JSON.stringify(value)}`;
    const body = parts.header.trimEnd();
    if (!body.endsWith('}')) return undefined;
    return `${body.slice(0, -1)}${entries.length > 0 ? ',' : ''}${copy}}`;
  },
  duplicateField(parts, rng) {
    const field = rng.pick(['"dtype"', '"shape"', '"data_offsets"']);
    const at = parts.header.indexOf(field);
    if (at < 0) return undefined;
    const insert = `${field}:${rng.pick(['"F32"', '[1]', '[0,4]', 'null'])},`;
    return parts.header.slice(0, at) + insert + parts.header.slice(at);
  },
  editDigits(parts, rng) {
    const digits = [...parts.header.matchAll(/\d+/g)];
    if (digits.length === 0) return undefined;
    const match = rng.pick(digits);
    const replacement = rng.pick(['0', '1', '-1', '1e3', '1.0', '00', '9007199254740993', '4294967296', String(rng.next())]);
    return parts.header.slice(0, match.index) + replacement + parts.header.slice((match.index ?? 0) + match[0].length);
  },
  pad(parts, rng) {
    return rng.chance(0.5)
      ? parts.header + rng.pick([' ', '    ', '\t', '\n', '\0', '\u00a0', ' x'])
      : rng.pick([' ', '\n', '\ufeff', '\0']) + parts.header;
  },
  cutText(parts, rng) {
    return parts.header.slice(0, rng.int(parts.header.length));
  },
};

export interface FuzzCase {
  readonly index: number;
  readonly seed: number;
  readonly bytes: Uint8Array;
  /** Names of the mutations applied, in order (for reproduction reports). */
  readonly mutations: ReadonlyArray<string>;
}

/** Builds case `index` of the run `runSeed`, deterministically. */
export function generateCase(runSeed: number, index: number, seeds: ReadonlyArray<Uint8Array>): FuzzCase {
  const seed = caseSeed(runSeed, index);
  const rng = new Prng(seed);
  let bytes = rng.pick(seeds);
  const mutations: string[] = [];
  // About 3% of cases are unmutated seeds (the accept path must keep working).
  const count = rng.chance(0.03) ? 0 : rng.pick([1, 1, 1, 2, 2, 3, 4]);
  for (let m = 0; m < count; m++) {
    const kind = rng.int(3);
    if (kind === 0) {
      const name = rng.pick(Object.keys(byteMutators));
      bytes = byteMutators[name](bytes, rng, seeds);
      mutations.push(name);
      continue;
    }
    const parts = splitFile(bytes);
    if (parts === undefined) {
      bytes = byteMutators.bitFlip(bytes, rng, seeds);
      mutations.push('bitFlip');
      continue;
    }
    let text: string | undefined;
    let name: string;
    if (kind === 1) {
      name = rng.pick(Object.keys(jsonMutators));
      const header = headerObject(parts);
      text = header === undefined ? undefined : jsonMutators[name](header, parts, rng);
    } else {
      name = rng.pick(Object.keys(textMutators));
      text = textMutators[name](parts, rng);
    }
    if (text !== undefined) {
      bytes = joinFile(text, parts.data);
      mutations.push(name);
    }
  }
  return { index, seed, bytes, mutations };
}
