/**
 * What every sampling pipeline shares (DiT, PixArt-Σ, SD3, Flux): reading a diffusers pipeline
 * folder (model_index.json and its component subfolders), per-image seeds, the VAE decode of
 * latents as diffusers' pipelines scale them, and the [-1, 1] -> [0, 1] post-processing.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { readConfigFile } from '../io/config-file.js';
import { AutoencoderKL } from '../models/autoencoder-kl.js';
import type { Module } from '../graph/module.js';
import { loadModel, type LoadProgress } from '../models/loader.js';
import { Tensor } from '../tensor.js';
import { isSeed } from './random.js';
import { loadSchedulerConfig } from './schedulers/config-file.js';
import { schedulerFromConfig } from './schedulers/registry.js';
import type { Scheduler } from './schedulers/types.js';

export const MODEL_INDEX_NAME = 'model_index.json';

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** model_index.json of `dir`, or null when there is none. */
export async function readModelIndex(dir: string): Promise<Record<string, unknown> | null> {
  const file = join(dir, MODEL_INDEX_NAME);
  try {
    if (!(await stat(file)).isFile()) return null;
  } catch {
    return null;
  }
  return readConfigFile(file, 'a diffusers pipeline index (model_index.json)');
}

/** Whether model_index.json names a component (diffusers writes [null, null] for an absent one). */
export function hasComponent(index: Record<string, unknown> | null, name: string): boolean {
  const entry = index?.[name];
  return Array.isArray(entry) && entry.length === 2 && entry[1] !== null;
}

export async function loadVae(dir: string, subfolder: string | undefined, onProgress: (p: LoadProgress) => void): Promise<AutoencoderKL> {
  const model = await loadModel(dir, { subfolder, onProgress });
  if (!(model instanceof AutoencoderKL)) throw new ArgumentError('options.vae', 'a folder holding an AutoencoderKL', dir);
  return model;
}

/** The seeds of `count` images: one number s for s, s+1, ..., or one per image. */
export function resolveSeeds(seedsIn: readonly number[] | number | undefined, count: number, argument = 'options.seeds'): number[] {
  const seeds = seedsIn ?? 0;
  if (typeof seeds === 'number') {
    if (!isSeed(seeds) || !isSeed(seeds + count - 1)) throw new ArgumentError(argument, 'an integer seed in [0, 2^53) or one per image', seeds);
    return Array.from({ length: count }, (_, i) => seeds + i);
  }
  if (Array.isArray(seeds) && seeds.length === count && seeds.every(isSeed)) return [...seeds];
  throw new ArgumentError(argument, `one integer seed in [0, 2^53), or ${count} of them (one per image)`, seeds);
}

/**
 * The VAE's [-1, 1]-scale images of `latents`, scaled as diffusers' pipelines scale them, in float32:
 * 'reciprocal' (DiTPipeline): decode(1/scaling_factor · latents); 'divide' (PixArt, SD3, Flux):
 * decode(latents / scaling_factor + shift_factor). A VAE with a shift factor is always divided.
 */
export async function decodeLatents(vae: AutoencoderKL, latents: Tensor, convention: 'reciprocal' | 'divide'): Promise<Tensor> {
  const shift = Math.fround(vae.shiftFactor);
  const src = latents.to('f32').data;
  const z = new Float32Array(src.length);
  if (convention === 'reciprocal' && shift === 0) {
    const inv = Math.fround(1 / vae.scalingFactor);
    for (let i = 0; i < src.length; i++) z[i] = Math.fround(inv * src[i]);
  } else {
    // torch divides a float32 tensor by a Python float in float32.
    const sf = Math.fround(vae.scalingFactor);
    for (let i = 0; i < src.length; i++) z[i] = shift === 0 ? Math.fround(src[i] / sf) : Math.fround(Math.fround(src[i] / sf) + shift);
  }
  return vae.decode(Tensor.fromStorage(z, latents.shape, 'f32'));
}

/** x/2 + 0.5 clamped to [0, 1], in float32 (diffusers' postprocess). */
export function toUnitRange(x: Tensor): Tensor<'f32'> {
  const src = x.to('f32').data;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = Math.min(1, Math.max(0, Math.fround(Math.fround(src[i] / 2) + 0.5)));
  return Tensor.fromStorage(out, x.shape, 'f32');
}

/** x · factor in float32. */
export function scaleTensor(x: Tensor, factor: number): Tensor<'f32'> {
  const src = x.to('f32').data;
  const out = new Float32Array(src.length);
  const f = Math.fround(factor);
  for (let i = 0; i < src.length; i++) out[i] = Math.fround(src[i] * f);
  return Tensor.fromStorage(out, x.shape, 'f32');
}

/** Where a pipeline's parts come from (DiTPipeline's and the text pipelines' load options share these). */
export interface PipelineSourceOptions {
  /** The scheduler: a Scheduler, a config object, or a path (scheduler folder or pipeline folder). Default: the pipeline folder's scheduler/; required for a checkpoint file. */
  readonly scheduler?: Scheduler | object | string;
  /** The VAE: a model, a VAE folder, or null for none. Default: the pipeline folder's vae/ (or that of a pipeline folder given as `scheduler`). */
  readonly vae?: AutoencoderKL | string | null;
  readonly onProgress?: (progress: LoadProgress & { component: 'transformer' | 'vae' }) => void;
}

/**
 * Loads a pipeline's transformer, scheduler and VAE: from a diffusers pipeline folder
 * (model_index.json, transformer/, scheduler/, vae/), or from an svdquant checkpoint of the
 * transformer with `options.scheduler` (and `options.vae`, or a pipeline folder given as
 * `options.scheduler` that supplies the VAE). Also returns the model_index.json it read (null when
 * there is no pipeline folder), for pipeline-specific defaults such as DiT's id2label.
 */
export async function loadPipelineComponents(source: string, options: PipelineSourceOptions, pipeline: string, optionKeys: string): Promise<{
  transformer: Module; scheduler: Scheduler; vae: AutoencoderKL | null; index: Record<string, unknown> | null;
}> {
  if (typeof source !== 'string' || source.length === 0) throw new ArgumentError('source', 'a diffusers pipeline folder or a checkpoint file', source);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', `an object ${optionKeys}`, options);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new ArgumentError('options.onProgress', 'a function', options.onProgress);
  const progress = (component: 'transformer' | 'vae') => (p: LoadProgress) => options.onProgress?.({ ...p, component });

  const sourceIsFolder = await isDirectory(source);
  const schedulerIsFolder = typeof options.scheduler === 'string' && await isDirectory(options.scheduler);
  const home = sourceIsFolder ? source : schedulerIsFolder ? options.scheduler as string : undefined;
  const index = home === undefined ? null : await readModelIndex(home);
  if (sourceIsFolder && index === null) {
    throw new ArgumentError('source', `a diffusers pipeline folder with ${MODEL_INDEX_NAME} (for a model folder, build the pipeline with new ${pipeline}({ transformer: await loadModel(dir), scheduler, vae }))`, source);
  }
  if (!sourceIsFolder && options.scheduler === undefined) {
    throw new ArgumentError('options.scheduler', 'a scheduler (folder, config or Scheduler) when loading a checkpoint file, e.g. the pipeline folder it came from', undefined);
  }
  const transformer = sourceIsFolder
    ? await loadModel(source, { subfolder: 'transformer', onProgress: progress('transformer') })
    : await loadModel(source, { onProgress: progress('transformer') });

  let scheduler: Scheduler;
  if (options.scheduler === undefined) {
    scheduler = schedulerFromConfig(await loadSchedulerConfig(source));
  } else if (typeof options.scheduler === 'string') {
    scheduler = schedulerFromConfig(await loadSchedulerConfig(options.scheduler));
  } else if (typeof (options.scheduler as Scheduler).step === 'function') {
    scheduler = options.scheduler as Scheduler;
  } else {
    scheduler = schedulerFromConfig(options.scheduler);
  }

  let vae: AutoencoderKL | null = null;
  if (options.vae === undefined) {
    if (home !== undefined && hasComponent(index, 'vae')) vae = await loadVae(home, 'vae', progress('vae'));
  } else if (typeof options.vae === 'string') {
    vae = await loadVae(options.vae, undefined, progress('vae'));
  } else {
    vae = options.vae;
  }
  return { transformer, scheduler, vae, index };
}

