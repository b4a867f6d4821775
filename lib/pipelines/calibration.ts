/**
 * Calibration from pipeline runs (Quark's get_calib_dataloader(pipe, pipe.transformer, prompts,
 * n_steps) and deepcompressor's collection): run the pipeline over the given class labels (DiT) or
 * prompt embeddings (PixArt-Σ, SD3, Flux) for N steps and
 * record the denoiser's named inputs at every model call, so the calibration set covers the whole
 * timestep range the model will see when sampling, classifier-free guidance batches included.
 *
 * The captured batches feed `quantize(model, config, calibration)` directly. With `file`, each batch
 * is streamed to disk as it is captured (memory stays at one batch) and the result reads the file
 * back one batch at a time; the file (safetensors, `<call>/<input name>` tensors, metadata naming
 * the run) can be reused later with loadPipelineCalibration.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ArgumentError, FileFormatError, IoError } from '../errors.js';
import type { Module } from '../graph/module.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { openSafetensors } from '../io/safetensors.js';
import { tensorFromSafetensors, tensorToSafetensors } from '../io/tensor-bridge.js';
import { Tensor } from '../tensor.js';
import type { StepInfo } from './denoising-loop.js';

export const CALIBRATION_FORMAT = 'svdquant-pipeline-calibration';
/** Quark's default number of sampling steps for calibration. */
export const DEFAULT_CALIBRATION_STEPS = 20;

/** One captured model call: the denoiser's named inputs (`{ hidden_states, timestep, class_labels }` for a DiT, the text inputs for PixArt / SD3 / Flux). */
export type CapturedInputs = Record<string, Tensor>;

/** The generate options capturePipelineCalibration passes (one run's labels or prompt embeddings, and the sampling options). */
export interface CalibrationRunOptions {
  readonly classLabels?: readonly (number | string)[];
  readonly promptEmbeds?: Tensor;
  readonly seeds?: readonly number[] | number;
  readonly numInferenceSteps?: number;
  readonly guidanceScale?: number;
  readonly height?: number;
  readonly width?: number;
  readonly outputType?: 'image' | 'latent';
  readonly signal?: AbortSignal;
  readonly onStep?: (info: StepInfo) => void;
}

/** What capturePipelineCalibration drives: a pipeline with a denoiser and a generate call (DiTPipeline, PixArtSigmaPipeline, StableDiffusion3Pipeline, FluxPipeline). */
export interface CalibratablePipeline {
  readonly transformer: Module;
  generate(options: CalibrationRunOptions): Promise<unknown>;
}

/** One text-pipeline run's prompt embeddings: the embedding options of its generate call (promptEmbeds, promptAttentionMask, pooledPromptEmbeds, negative…, numImagesPerPrompt). */
export interface CalibrationPrompt {
  readonly promptEmbeds: Tensor;
  readonly numImagesPerPrompt?: number;
  readonly [option: string]: unknown;
}

export interface PipelineCalibrationOptions {
  /** Class-conditional pipelines (DiT): one image per label, run in pipeline batches of `batchSize`. */
  readonly classLabels?: readonly (number | string)[];
  /**
   * Text-conditioned pipelines (PixArt-Σ, SD3, Flux), instead of classLabels: one pipeline run per
   * entry, each entry the embedding options of a generate call (its promptEmbeds batch of B prompts
   * makes B images, times numImagesPerPrompt).
   */
  readonly prompts?: readonly CalibrationPrompt[];
  /** Text pipelines: the image size in pixels (default: the pipeline's). */
  readonly height?: number;
  readonly width?: number;
  /** Seeds per image, or s for s, s+1, ...; default 0. */
  readonly seeds?: readonly number[] | number;
  /** Sampling steps per run; default 20. Every step's model call is captured. */
  readonly numInferenceSteps?: number;
  /** Default: the pipeline's (4.0 for DiT); > 1 captures the doubled CFG batches the model really sees. */
  readonly guidanceScale?: number;
  /** With classLabels: images per pipeline run (default: all in one run). */
  readonly batchSize?: number;
  /** Stream the captured inputs to this safetensors file (written atomically) instead of keeping them in memory. */
  readonly file?: string;
  readonly signal?: AbortSignal;
  /** After every sampling step; `run` counts pipeline runs from 1. */
  readonly onStep?: (info: StepInfo & { run: number; runs: number }) => void;
}

/** Captured calibration: an async iterable of model-call batches, as quantize() takes them. */
export interface PipelineCalibration extends AsyncIterable<CapturedInputs> {
  /** Number of captured model calls (one per step per run). */
  readonly count: number;
  /** The timestep of each captured call, in order. */
  readonly timesteps: readonly number[];
  /** The file holding the batches, when streamed to disk. */
  readonly file: string | undefined;
}

/** One pipeline run: its conditioning options and seeds. */
interface Run {
  readonly conditioning: Record<string, unknown>;
  readonly seeds: number[] | number;
}

function checkOptions(o: PipelineCalibrationOptions): { runs: Run[] } {
  if (o === null || typeof o !== 'object') throw new ArgumentError('options', 'an object { classLabels or prompts, seeds, numInferenceSteps, guidanceScale, batchSize, file }', o);
  if (o.file !== undefined && (typeof o.file !== 'string' || o.file.length === 0)) throw new ArgumentError('options.file', 'a file path', o.file);
  if (o.onStep !== undefined && typeof o.onStep !== 'function') throw new ArgumentError('options.onStep', 'a function', o.onStep);
  if ((o.classLabels === undefined) === (o.prompts === undefined)) {
    throw new ArgumentError('options', 'either classLabels (class-conditional pipelines) or prompts (text-conditioned pipelines), not both', o.classLabels === undefined ? 'neither' : 'both');
  }
  const seeds = o.seeds ?? 0;
  const seedsFor = (start: number, end: number, total: number): number[] | number => {
    if (Array.isArray(seeds) && seeds.length !== total) throw new ArgumentError('options.seeds', `one seed or ${total} (one per image)`, seeds);
    return Array.isArray(seeds) ? seeds.slice(start, end) : (seeds as number) + start;
  };
  const runs: Run[] = [];
  if (o.prompts !== undefined) {
    if (!Array.isArray(o.prompts) || o.prompts.length === 0) throw new ArgumentError('options.prompts', 'a non-empty array of prompt-embedding options ({ promptEmbeds, ... }), one per pipeline run', o.prompts);
    if (o.batchSize !== undefined) throw new ArgumentError('options.batchSize', 'nothing with prompts (each prompts entry is one pipeline run)', o.batchSize);
    const counts = o.prompts.map((p, i) => {
      const embeds = (p as CalibrationPrompt | null)?.promptEmbeds;
      if (!(embeds instanceof Tensor) || embeds.ndim < 1) throw new ArgumentError(`options.prompts[${i}].promptEmbeds`, 'a tensor [B, T, C] of prompt embeddings', embeds);
      const perPrompt = p.numImagesPerPrompt ?? 1;
      return embeds.shape[0] * (Number.isInteger(perPrompt) && perPrompt > 0 ? perPrompt : 1);
    });
    const total = counts.reduce((a, b) => a + b, 0);
    let start = 0;
    o.prompts.forEach((p, i) => {
      runs.push({ conditioning: { ...p, height: o.height, width: o.width, outputType: 'latent' }, seeds: seedsFor(start, start + counts[i], total) });
      start += counts[i];
    });
    return { runs };
  }
  if (!Array.isArray(o.classLabels) || o.classLabels.length === 0) throw new ArgumentError('options.classLabels', 'a non-empty array of class ids or names', o.classLabels);
  if (o.height !== undefined || o.width !== undefined) throw new ArgumentError(o.height !== undefined ? 'options.height' : 'options.width', 'nothing with classLabels (a class-conditional model samples at its own size)', o.height ?? o.width);
  const total = o.classLabels.length;
  const batchSize = o.batchSize ?? total;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ArgumentError('options.batchSize', 'a positive integer', o.batchSize);
  for (let start = 0; start < total; start += batchSize) {
    const end = Math.min(total, start + batchSize);
    runs.push({ conditioning: { classLabels: o.classLabels.slice(start, end) }, seeds: seedsFor(start, end, total) });
  }
  return { runs };
}

/** The tensors among a model call's named inputs (numbers become one-element tensors: I64 when integral, F32 otherwise). */
function capturedInputs(inputs: unknown): CapturedInputs {
  if (inputs === null || typeof inputs !== 'object' || Array.isArray(inputs)) {
    throw new ArgumentError('pipe.transformer', 'a denoiser called with one object of named inputs', inputs);
  }
  const out: CapturedInputs = {};
  for (const [name, value] of Object.entries(inputs as Record<string, unknown>)) {
    if (value instanceof Tensor) out[name] = value.clone();
    else if (typeof value === 'number') out[name] = Number.isInteger(value) ? Tensor.fromIntegers([value]) : Tensor.fromArray([value]);
  }
  return out;
}

function timestepOf(inputs: CapturedInputs): number {
  const t = inputs.timestep;
  return t === undefined || t.numel === 0 ? NaN : t.toArray()[0];
}

/**
 * Runs `pipe` over `options.classLabels` or `options.prompts` and captures the denoiser's inputs at
 * every step (see the file comment); text pipelines stop at the latents (no VAE decode). The recorded
 * timesteps are the model's timestep input (Flux: t / 1000). Not for a pipeline that is generating
 * concurrently: its calls would be captured too.
 */
export async function capturePipelineCalibration(pipe: CalibratablePipeline, options: PipelineCalibrationOptions): Promise<PipelineCalibration> {
  if (pipe === null || typeof pipe !== 'object' || typeof pipe.generate !== 'function' || typeof pipe.transformer?.registerForwardHook !== 'function') {
    throw new ArgumentError('pipe', 'a pipeline with a transformer and generate() (DiTPipeline, PixArtSigmaPipeline, StableDiffusion3Pipeline, FluxPipeline)', pipe);
  }
  const { runs } = checkOptions(options);
  const timesteps: number[] = [];
  const memory: CapturedInputs[] = [];
  const sink = options.file === undefined ? undefined : await CalibrationFileSink.create(options.file);
  const handle = pipe.transformer.registerForwardHook(async (_m, args) => {
    const inputs = capturedInputs(args[0]);
    timesteps.push(timestepOf(inputs));
    if (sink === undefined) memory.push(inputs);
    else await sink.append(inputs);
  }, { retainsTensors: false });
  try {
    for (let r = 0; r < runs.length; r++) {
      await pipe.generate({
        ...runs[r].conditioning, seeds: runs[r].seeds, numInferenceSteps: options.numInferenceSteps ?? DEFAULT_CALIBRATION_STEPS,
        ...(options.guidanceScale === undefined ? {} : { guidanceScale: options.guidanceScale }),
        signal: options.signal,
        onStep: options.onStep === undefined ? undefined : (info) => options.onStep!({ ...info, run: r + 1, runs: runs.length }),
      });
    }
  } catch (error) {
    await sink?.discard();
    throw error;
  } finally {
    handle.remove();
  }
  if (sink === undefined) return inMemory(memory, timesteps);
  await sink.finish({ steps: String(options.numInferenceSteps ?? DEFAULT_CALIBRATION_STEPS), ...(options.classLabels === undefined ? { prompts: String(options.prompts!.length) } : { labels: JSON.stringify(options.classLabels) }), timesteps: JSON.stringify(timesteps) });
  return loadPipelineCalibration(options.file!);
}

function inMemory(batches: CapturedInputs[], timesteps: number[]): PipelineCalibration {
  return {
    count: batches.length,
    timesteps: Object.freeze([...timesteps]),
    file: undefined,
    async *[Symbol.asyncIterator]() {
      yield* batches;
    },
  };
}

/** Zero-padded call index, so that file order is call order. */
function callName(index: number): string {
  return `call${String(index).padStart(6, '0')}`;
}

/**
 * Appends captured batches to a side file while sampling, then writes the safetensors file (header,
 * then the side file's bytes) atomically and removes the side file.
 */
class CalibrationFileSink {
  readonly #entries: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  #offset = 0;
  #calls = 0;

  private constructor(readonly file: string, readonly sidePath: string, readonly side: FileHandle) {}

  static async create(file: string): Promise<CalibrationFileSink> {
    const sidePath = join(dirname(file), `.${basename(file)}.${process.pid}.data.svdq-tmp`);
    try {
      return new CalibrationFileSink(file, sidePath, await open(sidePath, 'w+'));
    } catch (cause) {
      throw new IoError(sidePath, 'create the calibration data file', cause);
    }
  }

  async append(inputs: CapturedInputs): Promise<void> {
    const call = callName(this.#calls++);
    for (const [name, tensor] of Object.entries(inputs)) {
      const st = tensorToSafetensors(`${call}/${name}`, tensor);
      const bytes = st.data instanceof Uint8Array ? st.data : new Uint8Array(st.data.buffer, st.data.byteOffset, st.data.byteLength);
      try {
        await this.side.write(bytes, 0, bytes.length, this.#offset);
      } catch (cause) {
        throw new IoError(this.sidePath, 'write calibration data to', cause);
      }
      this.#entries.push({ name: st.name, dtype: st.dtype, shape: [...st.shape], begin: this.#offset, end: this.#offset + bytes.length });
      this.#offset += bytes.length;
    }
  }

  async finish(metadata: Record<string, string>): Promise<void> {
    const header: Record<string, unknown> = {
      __metadata__: { format: CALIBRATION_FORMAT, calls: String(this.#calls), ...metadata },
    };
    for (const e of this.#entries) header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.end] };
    let text = JSON.stringify(header);
    text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
    const head = Buffer.alloc(8 + Buffer.byteLength(text));
    head.writeBigUInt64LE(BigInt(Buffer.byteLength(text)), 0);
    head.write(text, 8, 'utf8');
    try {
      await writeFileAtomic(this.file, async (out) => {
        await out.write(head, 0, head.length, 0);
        const chunk = Buffer.alloc(1 << 20);
        for (let pos = 0; pos < this.#offset;) {
          const { bytesRead } = await this.side.read(chunk, 0, Math.min(chunk.length, this.#offset - pos), pos);
          if (bytesRead <= 0) throw new Error(`the calibration data file ended at byte ${pos} of ${this.#offset}`);
          await out.write(chunk, 0, bytesRead, head.length + pos);
          pos += bytesRead;
        }
      });
    } finally {
      await this.discard();
    }
  }

  async discard(): Promise<void> {
    await this.side.close().catch(() => undefined);
    await rm(this.sidePath, { force: true });
  }
}

/** Calibration captured earlier to `file` (capturePipelineCalibration with `file`): read back one batch at a time. */
export async function loadPipelineCalibration(file: string): Promise<PipelineCalibration> {
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a calibration file path', file);
  const st = await openSafetensors(file);
  let calls: string[];
  let timesteps: number[];
  try {
    if (st.metadata.format !== CALIBRATION_FORMAT) throw new FileFormatError(file, `metadata 'format' is ${JSON.stringify(st.metadata.format)}: expected '${CALIBRATION_FORMAT}' (a file written by capturePipelineCalibration)`);
    calls = [...new Set(st.tensors.map((t) => t.name.split('/')[0]))].sort();
    const parsed = JSON.parse(st.metadata.timesteps ?? 'null') as unknown;
    if (!Array.isArray(parsed) || parsed.length !== calls.length) throw new FileFormatError(file, `metadata 'timesteps' must list one timestep per call (${calls.length})`);
    timesteps = parsed as number[];
  } finally {
    await st.close();
  }
  return {
    count: calls.length,
    timesteps: Object.freeze(timesteps),
    file,
    async *[Symbol.asyncIterator]() {
      const reader = await openSafetensors(file);
      try {
        for (const call of calls) {
          const batch: CapturedInputs = {};
          for (const info of reader.tensors) {
            if (!info.name.startsWith(`${call}/`)) continue;
            batch[info.name.slice(call.length + 1)] = tensorFromSafetensors(await reader.readTensor(info.name));
          }
          yield batch;
        }
      } finally {
        await reader.close();
      }
    },
  };
}
