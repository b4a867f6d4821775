/**
 * What the text-conditioned pipelines (PixArt-Σ, SD3, Flux) share: their components (transformer,
 * scheduler, optional VAE) and loading them from a diffusers pipeline folder, the options every
 * generate call takes (seeds, steps, guidance, size, images per prompt, starting latents, output
 * type, cancellation, progress), the seeded latents, the sampling loop and the VAE decode.
 *
 * The prompts come as precomputed embeddings (we ship no text encoders); each pipeline checks them
 * against its transformer's config and turns them into the model's inputs (`prepare`). Every image's
 * starting noise comes from its own seed (random.ts), so an image does not depend on the batch it
 * is generated in.
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { ModelConfig } from '../models/config.js';
import { Tensor } from '../tensor.js';
import { checkRows, checkSignal, denoise, scatterRows, selectRows, throwIfAborted, type StepInfo } from './denoising-loop.js';
import { decodeLatents, loadPipelineComponents, resolveSeeds, scaleTensor, toUnitRange, type PipelineSourceOptions } from './pipeline-parts.js';
import { randnBatch } from './random.js';
import { schedulerFromConfig } from './schedulers/registry.js';
import type { Scheduler, SetTimestepsOptions } from './schedulers/types.js';

/** 'image': decode with the VAE into [0, 1] images; 'latent': stop at the final latents (diffusers' output_type='latent'). */
export type OutputType = 'image' | 'latent';

export interface TextPipelineComponents {
  /** The denoiser (PixArtTransformer2DModel, SD3Transformer2DModel or FluxTransformer2DModel, or a quantized one). */
  readonly transformer: Module;
  /** A scheduler; each generate call runs its own copy (schedulerFromConfig(scheduler.config)). */
  readonly scheduler: Scheduler;
  /** The VAE; without one, only outputType 'latent' is possible. */
  readonly vae?: AutoencoderKL | null;
}

/** Where a text pipeline's parts come from: the same options as DiTPipeline's. */
export type TextPipelineLoadOptions = PipelineSourceOptions;

/** The options every text-conditioned generate call takes, beside its prompt embeddings. */
export interface TextGenerateCommonOptions {
  /** Seeds per image, or one number s for s, s+1, ...; default 0. Integers in [0, 2^53). */
  readonly seeds?: readonly number[] | number;
  readonly numInferenceSteps?: number;
  readonly guidanceScale?: number;
  /** Image size in pixels (default: as diffusers, from the transformer's sample_size and the VAE). */
  readonly height?: number;
  readonly width?: number;
  /** Images per prompt embedding (diffusers' num_images_per_prompt); default 1. Image order: prompt-major. */
  readonly numImagesPerPrompt?: number;
  /** Starting noise [images, C, h, w] (VAE latents, unpacked for Flux) instead of the seeded noise. */
  readonly latents?: Tensor;
  /** Default 'image'. */
  readonly outputType?: OutputType;
  /** Checked before every step and before decoding: AbortError once aborted. */
  readonly signal?: AbortSignal;
  /** Called after every step (`latents` is the sample in the model's layout: packed tokens for Flux). */
  readonly onStep?: (info: StepInfo) => void;
  /**
   * Asked before every step and before decoding: the images still wanted (ascending indices). The
   * others leave the model call and the decode (a cancelled request in a served batch); their
   * results are unspecified. None left: AbortError. Default: all.
   */
  readonly liveRows?: () => readonly number[];
}

export interface TextGenerateResult {
  /** [B, 3, H, W] in [0, 1]; null with outputType 'latent'. */
  readonly images: Tensor<'f32'> | null;
  /** The VAE's output before x/2 + 0.5 and clamping ([-1, 1] scale; tensorToImages gives diffusers' PNG bytes); null with outputType 'latent'. */
  readonly decoded: Tensor | null;
  /** The final latents [B, C, h, w], before the VAE's scaling (Flux: unpacked). */
  readonly latents: Tensor;
  readonly seeds: readonly number[];
  /** The image size in pixels. */
  readonly height: number;
  readonly width: number;
  readonly timings: { readonly totalMs: number; readonly denoiserMs: number; readonly decodeMs: number };
}

/** What a pipeline's `prepare` returns for one generate call. */
export interface PreparedRun {
  /**
   * The model output the scheduler steps with, for the sample (in the model's layout) at `timestep`;
   * `modelInput` holds the images `rows` (conditionRows picks their conditioning).
   */
  predict(modelInput: Tensor, timestep: number, rows: readonly number[]): Promise<Tensor>;
  /** setTimesteps options (Flux: sigmas and mu). */
  readonly timestepOptions?: SetTimestepsOptions;
}

/** The checked common options and the latent size. */
export interface RunShape {
  readonly images: number;
  readonly numInferenceSteps: number;
  readonly guidanceScale: number;
  readonly latentHeight: number;
  readonly latentWidth: number;
}

export function checkComponents(components: TextPipelineComponents, pipeline: string): { transformer: Module; config: ModelConfig; scheduler: Scheduler; vae: AutoencoderKL | null } {
  if (components === null || typeof components !== 'object') {
    throw new ArgumentError('components', 'an object { transformer, scheduler, vae? }', components);
  }
  const transformer = components.transformer as Module | undefined;
  const config = (transformer as { config?: unknown } | undefined)?.config;
  if (typeof transformer?.call !== 'function' || config === null || typeof config !== 'object') {
    throw new ArgumentError('components.transformer', `the ${pipeline} denoiser (a Module with a diffusers config)`, transformer);
  }
  const scheduler = components.scheduler as Scheduler | undefined;
  if (scheduler === null || typeof scheduler !== 'object' || typeof scheduler.step !== 'function' || typeof scheduler.config !== 'object') {
    throw new ArgumentError('components.scheduler', 'a Scheduler (schedulerFromConfig)', scheduler);
  }
  const vae = components.vae ?? null;
  if (vae !== null && !(vae instanceof AutoencoderKL)) throw new ArgumentError('components.vae', 'an AutoencoderKL or null', vae);
  return { transformer, config: config as ModelConfig, scheduler, vae };
}

/** A positive integer config value of the transformer. */
export function configInt(config: Readonly<Record<string, unknown>>, key: string, fallback: number | null): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ArgumentError(`transformer.config.${key}`, 'a positive integer', v);
  return v;
}

/**
 * Loads the components of a pipeline: a diffusers pipeline folder (model_index.json, transformer/,
 * scheduler/, vae/), or an svdquant checkpoint of the transformer with `options.scheduler` (and
 * `options.vae`, or a pipeline folder as `options.scheduler` that supplies the VAE).
 */
export async function loadTextPipelineComponents(source: string, options: TextPipelineLoadOptions, pipeline: string): Promise<Required<TextPipelineComponents>> {
  const { transformer, scheduler, vae } = await loadPipelineComponents(source, options, pipeline, '{ scheduler, vae, onProgress }');
  return { transformer, scheduler, vae };
}

/**
 * The base of PixArtSigmaPipeline, StableDiffusion3Pipeline and FluxPipeline: `generate` checks the
 * common options, asks the subclass for the batch size of its embeddings, makes the seeded latents,
 * lets the subclass `prepare` the model inputs, runs the sampling loop and decodes.
 */
export abstract class TextToImagePipeline<Options extends TextGenerateCommonOptions> {
  readonly transformer: Module;
  readonly scheduler: Scheduler;
  readonly vae: AutoencoderKL | null;
  /** Channels of the VAE latents the pipeline samples. */
  abstract readonly latentChannels: number;
  /** The class name, in errors. */
  abstract readonly name: string;
  abstract readonly defaultNumInferenceSteps: number;
  abstract readonly defaultGuidanceScale: number;

  protected constructor(parts: { transformer: Module; scheduler: Scheduler; vae: AutoencoderKL | null }) {
    this.transformer = parts.transformer;
    this.scheduler = parts.scheduler;
    this.vae = parts.vae;
  }

  /** The transformer's diffusers config. */
  get config(): ModelConfig {
    return (this.transformer as unknown as { config: ModelConfig }).config;
  }

  /** Pixels per latent along each side: the VAE's (diffusers' vae_scale_factor), 8 without a VAE. */
  get vaeScaleFactor(): number {
    return this.vae?.spatialFactor ?? 8;
  }

  /** The default image size in pixels (diffusers' default height and width). */
  abstract get defaultImageSize(): number;

  /** What the image height and width must be a multiple of. */
  protected abstract get sizeMultiple(): number;

  /** The number of prompts of the embeddings in `options` (their batch), after checking them. */
  protected abstract promptCount(options: Options): number;

  /** The model inputs for this run and the prediction the scheduler steps with. */
  protected abstract prepare(options: Options, shape: RunShape): Promise<PreparedRun>;

  /** The starting latents in the model's layout (Flux packs them). */
  protected async toModelLayout(latents: Tensor): Promise<Tensor> {
    return latents;
  }

  /** The final sample back to VAE latents [B, C, h, w]. */
  protected async fromModelLayout(sample: Tensor, _shape: RunShape): Promise<Tensor> {
    return sample;
  }

  /** The latent size of an image side of `pixels`. */
  protected latentSize(pixels: number): number {
    return pixels / this.vaeScaleFactor;
  }

  /**
   * Checks `options` as generate does (ArgumentError naming the option), without sampling: for
   * callers that validate a request before queueing it.
   */
  async checkOptions(options: Options): Promise<void> {
    await this.#setup(options);
  }

  /** Samples one image per prompt embedding (× numImagesPerPrompt); see the class options. */
  async generate(options: Options): Promise<TextGenerateResult> {
    const start = performance.now();
    const { operation, seeds, steps, height, width, outputType, signal, shape, run, images } = await this.#setup(options);
    const scheduler = schedulerFromConfig(this.scheduler.config);
    let latents: Tensor = options.latents?.to('f32') ?? randnBatch([this.latentChannels, shape.latentHeight, shape.latentWidth], seeds);
    if (scheduler.initNoiseSigma !== 1) latents = scaleTensor(latents, scheduler.initNoiseSigma);
    const done = await denoise({
      scheduler, latents: await this.toModelLayout(latents), numInferenceSteps: steps, timestepOptions: run.timestepOptions,
      predict: run.predict, signal, onStep: options.onStep, liveRows: options.liveRows, operation,
    });
    throwIfAborted(signal, operation);
    const finalLatents = await this.fromModelLayout(done.latents, shape);

    const decodeStart = performance.now();
    // Only the images still wanted are decoded (the others stay zero).
    const rows = options.liveRows === undefined ? null : checkRows(options.liveRows(), images);
    const decoded = outputType === 'latent' ? null
      : rows === null || rows.length === images ? await decodeLatents(this.vae!, finalLatents, 'divide')
        : scatterRows(await decodeLatents(this.vae!, selectRows(finalLatents, rows), 'divide'), rows, images);
    const decodeMs = performance.now() - decodeStart;
    return {
      images: decoded === null ? null : toUnitRange(decoded),
      decoded,
      latents: finalLatents,
      seeds,
      height,
      width,
      timings: { totalMs: performance.now() - start, denoiserMs: done.predictMs, decodeMs },
    };
  }

  /** The checked options, the run's shape and the subclass's prepared model inputs. */
  async #setup(options: Options) {
    const operation = `${this.name}.generate`;
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object with the prompt embeddings (promptEmbeds, ...)', options);
    const perPrompt = options.numImagesPerPrompt ?? 1;
    if (!Number.isInteger(perPrompt) || perPrompt < 1) throw new ArgumentError('options.numImagesPerPrompt', 'a positive integer', perPrompt);
    const images = this.promptCount(options) * perPrompt;
    const seeds = resolveSeeds(options.seeds, images);
    const steps = options.numInferenceSteps ?? this.defaultNumInferenceSteps;
    if (!Number.isInteger(steps) || steps < 1) throw new ArgumentError('options.numInferenceSteps', 'a positive integer', steps);
    const guidanceScale = options.guidanceScale ?? this.defaultGuidanceScale;
    if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale)) throw new ArgumentError('options.guidanceScale', 'a finite number', guidanceScale);
    const height = this.#checkSize(options.height, 'options.height');
    const width = this.#checkSize(options.width, 'options.width');
    const outputType = options.outputType ?? 'image';
    if (outputType !== 'image' && outputType !== 'latent') throw new ArgumentError('options.outputType', "'image' or 'latent'", outputType);
    if (outputType === 'image' && this.vae === null) throw new ArgumentError('options.outputType', `'latent' (this ${this.name} has no VAE to decode with)`, outputType);
    if (options.onStep !== undefined && typeof options.onStep !== 'function') throw new ArgumentError('options.onStep', 'a function', options.onStep);
    if (options.liveRows !== undefined && typeof options.liveRows !== 'function') throw new ArgumentError('options.liveRows', 'a function returning image indices', options.liveRows);
    const signal = checkSignal(options.signal, 'options.signal');
    const shape: RunShape = { images, numInferenceSteps: steps, guidanceScale, latentHeight: this.latentSize(height), latentWidth: this.latentSize(width) };
    if (options.latents !== undefined) {
      const want = [images, this.latentChannels, shape.latentHeight, shape.latentWidth];
      const l = options.latents;
      if (!(l instanceof Tensor) || l.shape.join() !== want.join()) throw new ArgumentError('options.latents', `a tensor of shape [${want.join(', ')}]`, l instanceof Tensor ? l.toString() : l);
    }
    const run = await this.prepare(options, shape);
    throwIfAborted(signal, operation);
    return { operation, seeds, steps, height, width, outputType, signal, shape, run, images };
  }

  #checkSize(value: number | undefined, argument: string): number {
    const size = value ?? this.defaultImageSize;
    const multiple = this.sizeMultiple;
    if (!Number.isInteger(size) || size < multiple || size % multiple !== 0) {
      throw new ArgumentError(argument, `a positive multiple of ${multiple} pixels (the VAE's scale factor times the transformer's patch size)`, size);
    }
    return size;
  }
}

// --- prompt-embedding helpers -------------------------------------------------------------------

/** Checks an embedding tensor's shape against `dims` (-1: any size) and returns it in f32. */
export function checkEmbedding(value: unknown, argument: string, dims: readonly number[], what: string): Tensor<'f32'> {
  const ok = value instanceof Tensor && value.ndim === dims.length && dims.every((d, i) => d === -1 || value.shape[i] === d)
    && value.shape.every((d) => d > 0);
  if (!ok) {
    const want = dims.map((d, i) => (d === -1 ? ['B', 'T', 'C'][i] ?? '?' : String(d))).join(', ');
    throw new ArgumentError(argument, `${what}: a tensor of shape [${want}]`, value instanceof Tensor ? value.toString() : value);
  }
  return (value as Tensor).to('f32');
}

/** [B, ...] -> [B·n, ...], each item repeated n times in a row (diffusers' num_images_per_prompt order). */
export function repeatEach(x: Tensor<'f32'>, n: number): Tensor<'f32'> {
  if (n === 1) return x;
  const [b, ...rest] = x.shape;
  const item = x.numel / b;
  const out = new Float32Array(x.numel * n);
  const src = x.data;
  for (let i = 0; i < b; i++) for (let r = 0; r < n; r++) out.set(src.subarray(i * item, (i + 1) * item), (i * n + r) * item);
  return Tensor.fromStorage(out, [b * n, ...rest], 'f32');
}

/** [A, ...] and [B, ...] -> [A + B, ...] (the classifier-free guidance batch [unconditional, conditional]). */
export function concatBatch(a: Tensor<'f32'>, b: Tensor<'f32'>): Tensor<'f32'> {
  const out = new Float32Array(a.numel + b.numel);
  out.set(a.data, 0);
  out.set(b.data, a.numel);
  return Tensor.fromStorage(out, [a.shape[0] + b.shape[0], ...a.shape.slice(1)], 'f32');
}

/**
 * The conditioning of the images `rows` out of `images`: rows of a per-image tensor [images, ...], or
 * of both halves of a guidance batch [2·images, ...] = [unconditional; conditional].
 */
export function conditionRows(x: Tensor<'f32'>, rows: readonly number[], images: number, guidanceBatch: boolean): Tensor<'f32'> {
  if (rows.length === images) return x;
  return selectRows(x, guidanceBatch ? [...rows, ...rows.map((r) => images + r)] : rows);
}

/** A negative (unconditional) embedding of batch 1 or `batch`, as `batch` items. */
export function matchBatch(x: Tensor<'f32'>, batch: number): Tensor<'f32'> {
  return x.shape[0] === batch ? x : repeatEach(x, batch);
}
