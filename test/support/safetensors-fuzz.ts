/**
 * Fuzz engine for the safetensors reader, shared by test/io-fuzz.test.ts (a few thousand cases in
 * the test suite) and bench/fuzz-safetensors.ts (the full run). Cases come from
 * safetensors-fuzz-cases.ts.
 *
 * Every case must end either in a successful parse whose result is self-consistent, or in a
 * FileFormatError; any other outcome (another exception type, an inconsistent success, the file
 * reader disagreeing with the in-memory parser) is a failure reported with its case number.
 */

import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileFormatError } from '../../lib/errors.js';
import {
  SAFETENSORS_DTYPES,
  dtypeByteSize,
  openSafetensors,
  parseSafetensors,
  serializeSafetensors,
  type ParsedSafetensors,
  type SafetensorsFile,
} from '../../lib/io/safetensors.js';
import { generateCase, seedFiles, type FuzzCase } from './safetensors-fuzz-cases.js';

export { Prng, caseSeed, generateCase, seedFiles, type FuzzCase } from './safetensors-fuzz-cases.js';

/** A case that broke the contract: not a FileFormatError, or an inconsistent success. */
export class FuzzFailure extends Error {
  constructor(readonly fuzzCase: FuzzCase | undefined, problem: string, options?: { cause?: unknown }) {
    super(
      fuzzCase === undefined
        ? problem
        : `case ${fuzzCase.index} (case seed ${fuzzCase.seed}, mutations ${fuzzCase.mutations.join(' > ') || 'none'}): ${problem}`,
      options,
    );
    this.name = 'FuzzFailure';
  }
}

export type CaseOutcome = { ok: true; parsed: ParsedSafetensors } | { ok: false; error: FileFormatError };

/** Runs the in-memory parser on `bytes`; throws FuzzFailure on any contract violation. */
export function checkBytes(bytes: Uint8Array, fuzzCase?: FuzzCase, source?: string): CaseOutcome {
  let parsed: ParsedSafetensors;
  try {
    parsed = parseSafetensors(bytes, source);
  } catch (error) {
    if (error instanceof FileFormatError) return { ok: false, error };
    throw new FuzzFailure(fuzzCase, `threw ${describeError(error)} instead of FileFormatError`, { cause: error });
  }
  const problem = findInconsistency(bytes, parsed);
  if (problem !== undefined) throw new FuzzFailure(fuzzCase, `accepted an inconsistent file: ${problem}`);
  return { ok: true, parsed };
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Checks a successful parse against the format's invariants; returns a problem or undefined. */
function findInconsistency(bytes: Uint8Array, parsed: ParsedSafetensors): string | undefined {
  const dataStart = 8 + parsed.headerByteLength;
  if (parsed.fileByteLength !== bytes.byteLength) return `fileByteLength ${parsed.fileByteLength} != ${bytes.byteLength}`;
  if (dataStart > bytes.byteLength) return 'header extends past the end';
  let position = dataStart;
  const names = new Set<string>();
  for (const tensor of parsed.tensors) {
    if (tensor.name.length === 0 || names.has(tensor.name)) return `bad or repeated name ${JSON.stringify(tensor.name)}`;
    names.add(tensor.name);
    if (!(SAFETENSORS_DTYPES as readonly string[]).includes(tensor.dtype)) return `unknown dtype ${tensor.dtype}`;
    if (!tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return `bad shape ${JSON.stringify(tensor.shape)}`;
    const expected = BigInt(dtypeByteSize(tensor.dtype)) * tensor.shape.reduce((a, d) => a * BigInt(d), 1n);
    if (BigInt(tensor.byteLength) !== expected) return `${tensor.name}: byteLength ${tensor.byteLength} != ${expected}`;
    if (tensor.data.byteLength !== tensor.byteLength) return `${tensor.name}: data is ${tensor.data.byteLength} bytes`;
    if (tensor.data.buffer !== bytes.buffer || tensor.data.byteOffset !== bytes.byteOffset + tensor.byteOffset) {
      return `${tensor.name}: data is not the view at byteOffset ${tensor.byteOffset}`;
    }
    if (tensor.byteOffset !== position) return `${tensor.name}: starts at ${tensor.byteOffset}, expected ${position}`;
    position += tensor.byteLength;
  }
  if (position !== bytes.byteLength) return `tensors end at ${position}, file at ${bytes.byteLength}`;
  for (const [key, value] of Object.entries(parsed.metadata)) {
    if (typeof value !== 'string') return `metadata ${key} is not a string`;
  }
  // What was accepted must survive a write and re-read unchanged.
  const again = parseSafetensors(serializeSafetensors(parsed.tensors, parsed.metadata));
  if (JSON.stringify(again.metadata) !== JSON.stringify(parsed.metadata)) return 'metadata changed in a rewrite';
  if (again.tensors.length !== parsed.tensors.length) return 'tensor count changed in a rewrite';
  for (let i = 0; i < again.tensors.length; i++) {
    const a = again.tensors[i];
    const b = parsed.tensors[i];
    if (a.name !== b.name || a.dtype !== b.dtype || a.shape.join() !== b.shape.join() || !sameBytes(a.data, b.data)) {
      return `tensor ${JSON.stringify(b.name)} changed in a rewrite`;
    }
  }
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Reads `bytes` (already written to `path`) with the file reader and checks it agrees with the
 * in-memory parser: same tensors and data, or the same FileFormatError message.
 */
export async function checkFileAgrees(bytes: Uint8Array, path: string, fuzzCase?: FuzzCase): Promise<void> {
  const memory = checkBytes(bytes, fuzzCase, path);
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(path);
  } catch (error) {
    if (!(error instanceof FileFormatError)) {
      throw new FuzzFailure(fuzzCase, `file reader threw ${describeError(error)} instead of FileFormatError`, { cause: error });
    }
    if (memory.ok) throw new FuzzFailure(fuzzCase, `file reader rejected what the parser accepted: ${error.message}`);
    if (error.message !== memory.error.message) {
      throw new FuzzFailure(fuzzCase, `readers disagree: file "${error.message}" vs memory "${memory.error.message}"`);
    }
    return;
  }
  try {
    if (!memory.ok) throw new FuzzFailure(fuzzCase, `file reader accepted what the parser rejected: ${memory.error.message}`);
    const read = await file.readAll();
    if (read.length !== memory.parsed.tensors.length) throw new FuzzFailure(fuzzCase, 'readers disagree on the tensor count');
    read.forEach((tensor, i) => {
      const expected = memory.parsed.tensors[i];
      if (tensor.name !== expected.name || tensor.dtype !== expected.dtype || tensor.shape.join() !== expected.shape.join() || !sameBytes(tensor.data, expected.data)) {
        throw new FuzzFailure(fuzzCase, `readers disagree on tensor ${JSON.stringify(expected.name)}`);
      }
    });
    if (JSON.stringify(file.metadata) !== JSON.stringify(memory.parsed.metadata)) {
      throw new FuzzFailure(fuzzCase, 'readers disagree on the metadata');
    }
  } finally {
    await file.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Summaries

const MESSAGE_CLASSES: Array<[string, RegExp]> = [
  ['file too short', /file is \d+ bytes long/],
  ['header length over the cap', /header length field says \d+ bytes: expected at most/],
  ['header length beyond the file', /header length field says \d+ bytes but only/],
  ['header not UTF-8', /header is not valid UTF-8/],
  ['header not JSON', /header is not valid JSON/],
  ['header not an object', /header is .*: expected a JSON object/],
  ['duplicate key', /twice: expected unique/],
  ['metadata not an object', /__metadata__ is /],
  ['metadata value not a string', /__metadata__ key /],
  ['empty tensor name', /tensor name is the empty string/],
  ['entry not an object', /: entry is /],
  ['missing field', /: missing field /],
  ['unexpected field', /: unexpected field /],
  ['unknown dtype', /: unknown dtype /],
  ['bad shape', /: shape is /],
  ['bad data_offsets', /: data_offsets is /],
  ['data_offsets beyond the data', /is beyond the data buffer/],
  ['length does not match dtype x shape', /span \d+ bytes: expected/],
  ['overlapping tensors', / overlaps tensor /],
  ['gap between tensors', /^gap of |: gap of /],
  ['uncovered trailing bytes', /trailing bytes of the data buffer/],
];

/** A short class name for an error message, for the run summary. */
export function classifyMessage(message: string): string {
  const problem = message.replace(/^malformed file( '[^']*')?: /, '');
  for (const [name, pattern] of MESSAGE_CLASSES) if (pattern.test(problem)) return name;
  return `other: ${problem.slice(0, 60)}`;
}

export interface FuzzSummary {
  cases: number;
  okReads: number;
  errorClasses: Map<string, number>;
  fileChecks: number;
  failures: FuzzFailure[];
  elapsedMs: number;
  /** The slowest single case, to spot pathological inputs. */
  slowestCase: { index: number; ms: number };
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Every case whose index is a multiple of this is also checked through openSafetensors (0: none). */
  fileCheckEvery: number;
  /** Directory for the file-reader checks. */
  directory?: string;
  /** Stop after this many failures (default 20). */
  maxFailures?: number;
  /** Called every `progressEvery` cases. */
  onProgress?: (done: number, summary: FuzzSummary) => void;
  progressEvery?: number;
}

/** Runs a whole fuzz campaign; failures are collected, not thrown. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const seeds = seedFiles();
  for (const seedFile of seeds) parseSafetensors(seedFile); // the seeds themselves must be valid
  const summary: FuzzSummary = {
    cases: 0,
    okReads: 0,
    errorClasses: new Map(),
    fileChecks: 0,
    failures: [],
    elapsedMs: 0,
    slowestCase: { index: -1, ms: 0 },
  };
  const maxFailures = options.maxFailures ?? 20;
  const started = performance.now();

  for (let index = 0; index < options.cases && summary.failures.length < maxFailures; index++) {
    const caseStart = performance.now();
    let fuzzCase: FuzzCase | undefined;
    try {
      fuzzCase = generateCase(options.seed, index, seeds);
      const outcome = checkBytes(fuzzCase.bytes, fuzzCase);
      if (outcome.ok) summary.okReads++;
      else {
        const name = classifyMessage(outcome.error.message);
        summary.errorClasses.set(name, (summary.errorClasses.get(name) ?? 0) + 1);
      }
      if (options.fileCheckEvery > 0 && index % options.fileCheckEvery === 0 && options.directory !== undefined) {
        const path = join(options.directory, `fuzz-${options.seed}-${index}.safetensors`);
        await writeFile(path, fuzzCase.bytes);
        try {
          await checkFileAgrees(fuzzCase.bytes, path, fuzzCase);
        } finally {
          await unlink(path);
        }
        summary.fileChecks++;
      }
    } catch (error) {
      summary.failures.push(
        error instanceof FuzzFailure
          ? error
          : new FuzzFailure(fuzzCase, `case ${index}: ${fuzzCase === undefined ? 'generator' : 'check'} crashed: ${describeError(error)}`, { cause: error }),
      );
    }
    const ms = performance.now() - caseStart;
    if (ms > summary.slowestCase.ms) summary.slowestCase = { index, ms };
    summary.cases++;
    if (options.onProgress !== undefined && (index + 1) % (options.progressEvery ?? 10000) === 0) options.onProgress(index + 1, summary);
  }
  summary.elapsedMs = performance.now() - started;
  return summary;
}
