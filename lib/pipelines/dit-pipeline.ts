/**
 * DiTPipeline: class-conditional sampling with a DiT (diffusers' DiTPipeline semantics), in latent
 * space with a VAE (decode latents / scaling_factor) or in pixel space without one (the built-in
 * model). Classifier-free guidance runs the model on the doubled batch [labels..., null...] with the
 * null class = num_embeds_ada_norm, guides the eps channels only, and drops a learned-sigma model's
 * variance channels before the scheduler step.
 *
 * Two deliberate differences from diffusers 0.30.3's DiTPipeline, both invisible with DDIM (the DiT
 * scheduler, whose initNoiseSigma is 1 and whose scaleModelInput is the identity): the initial noise
 * is multiplied by the scheduler's initNoiseSigma, and the scheduler steps the unscaled sample (diffusers
 * steps the scaled model input), so Euler-type schedulers also sample correctly. The guided
 * prediction is identical for both halves of the doubled batch, so only the conditional half is stepped.
 *
 * Every image's starting noise comes from its own seed (random.ts), so an image does not depend on
 * the batch it is generated in (up to the engine's arithmetic across batch sizes; see the tests).
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { LoadProgress } from '../models/loader.js';
import { Tensor } from '../tensor.js';
import { checkRows, checkSignal, denoise, scatterRows, selectRows, throwIfAborted, type StepInfo } from './denoising-loop.js';
import { doubleBatch, epsChannels, guide } from './guidance.js';
import { randnBatch } from './random.js';
import { decodeLatents, loadPipelineComponents, MODEL_INDEX_NAME, resolveSeeds, scaleTensor, toUnitRange } from './pipeline-parts.js';
import { schedulerFromConfig } from './schedulers/registry.js';
import type { Scheduler } from './schedulers/types.js';

export { MODEL_INDEX_NAME };
export const DEFAULT_NUM_INFERENCE_STEPS = 50;
export const DEFAULT_GUIDANCE_SCALE = 4.0;

export interface DiTPipelineComponents {
  /** The denoiser: forward({ hidden_states, timestep, class_labels }) -> { sample }, with a diffusers `config`. */
  readonly transformer: Module;
  /** A scheduler; each generate call runs its own copy (schedulerFromConfig(scheduler.config)). */
  readonly scheduler: Scheduler;
  /** The VAE of a latent model; absent or null for a pixel-space model. */
  readonly vae?: AutoencoderKL | null;
  /** Class names by id (model_index.json's id2label), for labels given by name. */
  readonly id2label?: Readonly<Record<string, string>> | null;
}

export interface DiTPipelineLoadOptions {
  /**
   * The scheduler: a Scheduler, a scheduler config object, or a path (a scheduler folder, a
   * scheduler_config.json, or a pipeline folder). Default: the pipeline folder's scheduler/.
   * Required when loading a checkpoint file; a pipeline folder given here (one with model_index.json,
   * e.g. builtinModelDir()) also supplies the VAE and id2label defaults.
   */
  readonly scheduler?: Scheduler | object | string;
  /** The VAE: a model, a VAE folder, or null for none. Default: the pipeline folder's vae/ if model_index.json names one. */
  readonly vae?: AutoencoderKL | string | null;
  /** Class names by id; default: model_index.json's id2label. */
  readonly id2label?: Readonly<Record<string, string>> | null;
  /** Load progress of each component's weights. */
  readonly onProgress?: (progress: LoadProgress & { component: 'transformer' | 'vae' }) => void;
}

export interface DiTGenerateOptions {
  /** One class per image: ids, or names from id2label (case-insensitive). */
  readonly classLabels: readonly number[] | readonly string[];
  /** Seeds per image, or one number s for s, s+1, ...; default 0. Integers in [0, 2^53). */
  readonly seeds?: readonly number[] | number;
  /** Default 50. */
  readonly numInferenceSteps?: number;
  /** Default 4.0; <= 1 disables classifier-free guidance (no doubled batch). */
  readonly guidanceScale?: number;
  /** Starting noise [B, C, H, W] instead of the seeded noise (scaled by initNoiseSigma, as given noise is in diffusers). */
  readonly latents?: Tensor;
  /** Checked before every step and before decoding: AbortError once aborted. */
  readonly signal?: AbortSignal;
  /** Asked before every step: the images (ascending indices) still wanted; the others stop being computed and come back unspecified (see denoise). */
  readonly liveRows?: () => readonly number[];
  /** Called after every step. */
  readonly onStep?: (info: StepInfo) => void;
}

export interface DiTGenerateResult {
  /** [B, C, H, W] in [0, 1]. */
  readonly images: Tensor<'f32'>;
  /**
   * The decoded output before x/2 + 0.5 and clamping ([-1, 1] scale): the VAE's output, or the
   * final sample of a pixel model. tensorToImages(decoded) gives diffusers' exact PNG bytes.
   */
  readonly decoded: Tensor;
  /** The final sample before decoding and clamping (latents, or pixels in [-1, 1] scale for a pixel model). */
  readonly latents: Tensor;
  /** The resolved class ids and seeds, in batch order. */
  readonly classLabels: readonly number[];
  readonly seeds: readonly number[];
  readonly timings: { readonly totalMs: number; readonly denoiserMs: number; readonly decodeMs: number };
}

interface DenoiserShape {
  inChannels: number;
  outChannels: number;
  sampleSize: number;
  numClasses: number;
}

function configInt(config: Record<string, unknown>, key: string, fallback: number | null): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ArgumentError(`transformer.config.${key}`, 'a positive integer', v);
  return v;
}

function denoiserShape(transformer: unknown): DenoiserShape {
  const config = (transformer as { config?: unknown } | null)?.config;
  if (typeof (transformer as Module | null)?.call !== 'function' || config === null || typeof config !== 'object') {
    throw new ArgumentError('components.transformer', 'a DiT model (a Module with a diffusers config)', transformer);
  }
  const c = config as Record<string, unknown>;
  const inChannels = configInt(c, 'in_channels', 4);
  const outChannels = configInt(c, 'out_channels', inChannels);
  if (outChannels !== inChannels && outChannels !== 2 * inChannels) {
    throw new ArgumentError('transformer.config.out_channels', `in_channels (${inChannels}) or twice it (learned sigma)`, outChannels);
  }
  return { inChannels, outChannels, sampleSize: configInt(c, 'sample_size', 32), numClasses: configInt(c, 'num_embeds_ada_norm', 1000) };
}

function checkId2label(value: unknown, argument: string): Readonly<Record<string, string>> | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new ArgumentError(argument, 'an object mapping class ids to names', value);
  }
  return Object.freeze({ ...(value as Record<string, string>) });
}

export class DiTPipeline {
  readonly transformer: Module;
  readonly scheduler: Scheduler;
  readonly vae: AutoencoderKL | null;
  readonly id2label: Readonly<Record<string, string>> | null;
  readonly inChannels: number;
  readonly sampleSize: number;
  /** The model's class count; the null (unconditional) class id is this number. */
  readonly numClasses: number;
  readonly learnedSigma: boolean;

  constructor(components: DiTPipelineComponents) {
    if (components === null || typeof components !== 'object') {
      throw new ArgumentError('components', 'an object { transformer, scheduler, vae?, id2label? }', components);
    }
    const shape = denoiserShape(components.transformer);
    const scheduler = components.scheduler as Scheduler | undefined;
    if (scheduler === null || typeof scheduler !== 'object' || typeof scheduler.step !== 'function' || typeof scheduler.config !== 'object') {
      throw new ArgumentError('components.scheduler', 'a Scheduler (schedulerFromConfig)', scheduler);
    }
    const vae = components.vae ?? null;
    if (vae !== null && !(vae instanceof AutoencoderKL)) throw new ArgumentError('components.vae', 'an AutoencoderKL or null', vae);
    this.transformer = components.transformer;
    this.scheduler = scheduler;
    this.vae = vae;
    this.id2label = checkId2label(components.id2label, 'components.id2label');
    this.inChannels = shape.inChannels;
    this.sampleSize = shape.sampleSize;
    this.numClasses = shape.numClasses;
    this.learnedSigma = shape.outChannels === 2 * shape.inChannels;
  }

  /**
   * Loads a pipeline: a diffusers pipeline folder (model_index.json, transformer/, scheduler/,
   * optional vae/), or a whole-model svdquant checkpoint of the transformer (quantized or not) with
   * `options.scheduler` naming where the scheduler (and VAE, class names) come from.
   */
  static async fromPretrained(source: string, options: DiTPipelineLoadOptions = {}): Promise<DiTPipeline> {
    const { transformer, scheduler, vae, index } = await loadPipelineComponents(source, options, 'DiTPipeline', '{ scheduler, vae, id2label, onProgress }');
    const id2label = options.id2label !== undefined ? options.id2label : (index?.id2label as Record<string, string> | undefined) ?? null;
    return new DiTPipeline({ transformer, scheduler, vae, id2label });
  }

  /** The class id of `label` (an id, or a name from id2label, case-insensitive). */
  classId(label: number | string, argument = 'label'): number {
    if (typeof label === 'number') {
      if (!Number.isInteger(label) || label < 0 || label >= this.numClasses) throw new ArgumentError(argument, `a class id in [0, ${this.numClasses})`, label);
      return label;
    }
    if (typeof label !== 'string' || this.id2label === null) {
      throw new ArgumentError(argument, this.id2label === null ? `a class id in [0, ${this.numClasses}) (this model has no class names)` : 'a class id or name', label);
    }
    const wanted = label.trim().toLowerCase();
    for (const [id, name] of Object.entries(this.id2label)) if (name.toLowerCase() === wanted) return this.classId(Number(id), argument);
    throw new ArgumentError(argument, `a class id or one of ${Object.values(this.id2label).map((n) => `'${n}'`).join(', ')}`, label);
  }

  /** Samples one image per class label (see DiTGenerateOptions and the file comment). */
  async generate(options: DiTGenerateOptions): Promise<DiTGenerateResult> {
    const start = performance.now();
    const o = this.#checkGenerateOptions(options);
    const batch = o.classLabels.length;
    const itemShape = [this.inChannels, this.sampleSize, this.sampleSize];
    const scheduler = schedulerFromConfig(this.scheduler.config);
    let latents = o.latents ?? randnBatch(itemShape, o.seeds);
    if (scheduler.initNoiseSigma !== 1) latents = scaleTensor(latents, scheduler.initNoiseSigma);

    const cfg = o.guidanceScale > 1;
    const predict = async (modelInput: Tensor, timestep: number, rows: readonly number[]): Promise<Tensor> => {
      const ids = rows.map((r) => o.classLabels[r]);
      const labels = Tensor.fromIntegers(cfg ? [...ids, ...new Array(ids.length).fill(this.numClasses)] : ids);
      const hidden = cfg ? doubleBatch(modelInput) : modelInput;
      const { sample } = await (this.transformer as Module<[object], { sample: Tensor }>).call({ hidden_states: hidden, timestep, class_labels: labels });
      if (!(sample instanceof Tensor)) throw new ArgumentError('transformer', 'a model whose forward returns { sample: Tensor }', sample);
      return cfg ? guide(sample, o.guidanceScale, this.inChannels) : epsChannels(sample, this.inChannels);
    };
    const done = await denoise({
      scheduler, latents, numInferenceSteps: o.numInferenceSteps, predict, signal: o.signal, onStep: o.onStep, liveRows: o.liveRows, operation: 'DiTPipeline.generate',
    });
    throwIfAborted(o.signal, 'DiTPipeline.generate');

    const decodeStart = performance.now();
    // Only the images still wanted are decoded (the others' rows stay zero).
    const rows = o.liveRows === undefined ? null : checkRows(o.liveRows(), batch);
    const decoded = rows === null || rows.length === batch || this.vae === null
      ? await this.#decode(done.latents)
      : scatterRows(await this.#decode(selectRows(done.latents, rows)), rows, batch);
    const images = toUnitRange(decoded);
    const decodeMs = performance.now() - decodeStart;
    return {
      images,
      decoded,
      latents: done.latents,
      classLabels: o.classLabels,
      seeds: o.seeds,
      timings: { totalMs: performance.now() - start, denoiserMs: done.predictMs, decodeMs },
    };
  }

  /** The [-1, 1]-scale images: VAE decode of latents / scaling_factor (+ shift) when there is a VAE, else the latents. */
  async #decode(latents: Tensor): Promise<Tensor> {
    return this.vae === null ? latents : decodeLatents(this.vae, latents, 'reciprocal');
  }

  #checkGenerateOptions(options: DiTGenerateOptions) {
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { classLabels, seeds, numInferenceSteps, guidanceScale, signal, onStep }', options);
    const labels = options.classLabels as unknown;
    if (!Array.isArray(labels) || labels.length === 0) throw new ArgumentError('options.classLabels', 'a non-empty array of class ids or names (one per image)', labels);
    const classLabels = labels.map((l, i) => this.classId(l as number | string, `options.classLabels[${i}]`));
    const batch = classLabels.length;
    const seeds = resolveSeeds(options.seeds, batch);
    const steps = options.numInferenceSteps ?? DEFAULT_NUM_INFERENCE_STEPS;
    if (!Number.isInteger(steps) || steps < 1) throw new ArgumentError('options.numInferenceSteps', 'a positive integer', steps);
    const guidanceScale = options.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
    if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale)) throw new ArgumentError('options.guidanceScale', 'a finite number', guidanceScale);
    const latents = options.latents;
    if (latents !== undefined) {
      const want = [batch, this.inChannels, this.sampleSize, this.sampleSize];
      if (!(latents instanceof Tensor) || latents.shape.join() !== want.join()) throw new ArgumentError('options.latents', `a tensor of shape [${want.join(', ')}]`, latents instanceof Tensor ? latents.toString() : latents);
    }
    if (options.onStep !== undefined && typeof options.onStep !== 'function') throw new ArgumentError('options.onStep', 'a function', options.onStep);
    if (options.liveRows !== undefined && typeof options.liveRows !== 'function') throw new ArgumentError('options.liveRows', 'a function returning row indices', options.liveRows);
    const signal = checkSignal(options.signal, 'options.signal');
    throwIfAborted(signal, 'DiTPipeline.generate');
    return { classLabels, seeds, numInferenceSteps: steps, guidanceScale, latents: latents?.to('f32'), signal, onStep: options.onStep, liveRows: options.liveRows };
  }
}
