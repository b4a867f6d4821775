/**
 * loadModel: one entry point for the models users have (DESIGN.md §10).
 *
 * - a diffusers model folder (config.json + diffusion_pytorch_model.safetensors, or the sharded
 *   diffusion_pytorch_model.safetensors.index.json; `variant` picks diffusion_pytorch_model.<variant>
 *   .safetensors; `subfolder` reaches a component of a pipeline folder, e.g. 'transformer');
 * - `{ config, weights }`: a config object (or config.json path) and weight files;
 * - an svdquant checkpoint file (saveCheckpoint), which records the config it came from.
 *
 * `_class_name` picks the architecture (registry.ts). Loading is strict: every missing, unexpected or
 * mis-shaped tensor is an error that names it, found from the files' headers before any weight is
 * read. Weights then stream from the files one tensor at a time (F32, F16 or BF16, widened to f32
 * exactly), so a model larger than memory's comfortable share is never read into one buffer.
 */
import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import { ArgumentError, FileFormatError, IoError } from '../errors.js';
import type { Module } from '../graph/module.js';
import { openSafetensors, type SafetensorsFile } from '../io/safetensors.js';
import { readConfigFile } from '../io/config-file.js';
import { tensorFromSafetensors } from '../io/tensor-bridge.js';
import { CHECKPOINT_FORMAT, loadCheckpoint } from '../runtime/checkpoint.js';
import type { DiffusersConfig } from './config.js';
import { buildModel } from './registry.js';
import './architectures.js';

export const CONFIG_NAME = 'config.json';
export const WEIGHTS_NAME = 'diffusion_pytorch_model.safetensors';
export const WEIGHTS_INDEX_NAME = 'diffusion_pytorch_model.safetensors.index.json';

export interface LoadProgress {
  tensors: number;
  totalTensors: number;
  bytes: number;
  totalBytes: number;
}

export interface LoadModelOptions {
  /** A component folder of a pipeline folder ('transformer', 'vae'). */
  subfolder?: string;
  /** Weights diffusion_pytorch_model.<variant>.safetensors (e.g. 'bf16', 'fp16'). */
  variant?: string;
  /** Called after each tensor is loaded. */
  onProgress?: (progress: LoadProgress) => void;
}

export type ModelSource = string | { config: DiffusersConfig | string; weights: string | readonly string[] };

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (cause) {
    throw new IoError(path, 'read', cause);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The weight files of a model folder: the single file or the shards its index lists. */
async function weightFiles(dir: string, variant: string | undefined): Promise<string[]> {
  const base = variant === undefined ? WEIGHTS_NAME : WEIGHTS_NAME.replace('.safetensors', `.${variant}.safetensors`);
  const single = join(dir, base);
  if (await exists(single)) return [single];
  const indexFile = join(dir, `${base}.index.json`);
  if (await exists(indexFile)) return shardsOf(indexFile, dir);
  throw new IoError(single, 'read', new Error(`no ${base} nor ${base}.index.json in '${dir}'${variant === undefined ? '' : ` (variant '${variant}')`}`));
}

async function shardsOf(indexFile: string, dir: string): Promise<string[]> {
  const index = await readConfigFile(indexFile, 'a safetensors index ({ weight_map })');
  const map = index.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map) || !Object.values(map).every((v) => typeof v === 'string' && v.length > 0 && !v.includes('/') && !v.includes('\\'))) {
    throw new FileFormatError(indexFile, "'weight_map' must map tensor names to shard file names in the same folder");
  }
  return [...new Set(Object.values(map as Record<string, string>))].map((f) => join(dir, f));
}

/**
 * Puts the weights of `files` into `model`, strictly (see the file comment). The model is only
 * changed once every header has been checked; a read error midway leaves a partly loaded model,
 * which the caller discards (loadModel builds a fresh one).
 */
export async function loadWeights(model: Module, files: readonly string[], onProgress?: (p: LoadProgress) => void): Promise<void> {
  const opened: SafetensorsFile[] = [];
  try {
    for (const f of files) opened.push(await openSafetensors(f));
    const where = new Map<string, SafetensorsFile>();
    const problems: string[] = [];
    for (const st of opened) {
      for (const info of st.tensors) {
        if (where.has(info.name)) problems.push(`tensor '${info.name}' is in both '${where.get(info.name)!.path}' and '${st.path}'`);
        where.set(info.name, st);
      }
    }
    const params = model.stateDict();
    const missing = [...params.keys()].filter((n) => !where.has(n));
    const unexpected = [...where.keys()].filter((n) => !params.has(n));
    if (missing.length > 0) problems.push(`missing ${missing.length}: ${list(missing)}`);
    if (unexpected.length > 0) problems.push(`unexpected ${unexpected.length}: ${list(unexpected)}`);
    let totalBytes = 0;
    for (const [name, t] of params) {
      const st = where.get(name);
      if (st === undefined) continue;
      const info = st.info(name);
      totalBytes += info.byteLength;
      if (!(info.dtype === 'F32' || info.dtype === 'F16' || info.dtype === 'BF16')) problems.push(`tensor '${name}' is ${info.dtype}: expected F32, F16 or BF16`);
      else if (info.shape.join() !== t.shape.join() || info.shape.length !== t.ndim) problems.push(`tensor '${name}' has shape [${info.shape.join(', ')}]: expected [${t.shape.join(', ')}]`);
    }
    if (problems.length > 0) {
      throw new FileFormatError(files.length === 1 ? files[0] : undefined, `the weights do not fit the ${modelName(model)}: ${problems.join('; ')}`);
    }
    let done = 0;
    let bytes = 0;
    for (const name of params.keys()) {
      const st = where.get(name)!;
      const entry = await st.readTensor(name);
      model.setParameterByPath(name, tensorFromSafetensors(entry).to('f32'));
      bytes += entry.data.byteLength;
      onProgress?.({ tensors: ++done, totalTensors: params.size, bytes, totalBytes });
    }
  } finally {
    for (const st of opened) await st.close().catch(() => undefined);
  }
}

function list(names: string[]): string {
  return names.slice(0, 10).map((n) => `'${n}'`).join(', ') + (names.length > 10 ? `, ... (${names.length - 10} more)` : '');
}

function modelName(model: Module): string {
  const c = (model as { config?: { _class_name?: unknown } }).config;
  return typeof c?._class_name === 'string' ? c._class_name : model.constructor.name;
}

function checkOptions(options: unknown): LoadModelOptions {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { subfolder, variant, onProgress }', options);
  const o = options as LoadModelOptions;
  for (const key of ['subfolder', 'variant'] as const) {
    const v = o[key];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0)) throw new ArgumentError(`options.${key}`, 'a non-empty string', v);
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new ArgumentError('options.onProgress', 'a function', o.onProgress);
  return o;
}

/** Builds and loads a model from a diffusers folder, `{ config, weights }`, or an svdquant checkpoint (see the file comment). */
export async function loadModel(source: ModelSource, options: LoadModelOptions = {}): Promise<Module> {
  const o = checkOptions(options);
  if (typeof source === 'string') {
    if (source.length === 0) throw new ArgumentError('source', 'a model folder, a checkpoint file or { config, weights }', source);
    const path = o.subfolder === undefined ? source : join(source, o.subfolder);
    if (!(await isDirectory(path))) return loadCheckpointModel(path);
    const configFile = join(path, CONFIG_NAME);
    if (!(await exists(configFile))) {
      const hint = (await exists(join(path, 'model_index.json'))) ? ` (a pipeline folder: pass { subfolder: 'transformer' } or 'vae')` : '';
      throw new IoError(configFile, 'read', new Error(`no ${CONFIG_NAME} in '${path}'${hint}`));
    }
    const config = await readConfigFile(configFile, 'a diffusers model config');
    const model = buildModel(config);
    await loadWeights(model, await weightFiles(path, o.variant), o.onProgress);
    return model;
  }
  if (source === null || typeof source !== 'object' || !('config' in source) || !('weights' in source)) {
    throw new ArgumentError('source', 'a model folder, a checkpoint file or { config, weights }', source);
  }
  const config = typeof source.config === 'string' ? await readConfigFile(source.config, 'a diffusers model config') : source.config;
  const weights = typeof source.weights === 'string' ? [source.weights] : source.weights;
  if (!Array.isArray(weights) || weights.length === 0 || !weights.every((w) => typeof w === 'string' && w.length > 0)) {
    throw new ArgumentError('source.weights', 'a weight file path or a non-empty array of them', source.weights);
  }
  const files = weights.length === 1 && weights[0].endsWith('.index.json') ? await shardsOf(weights[0], join(weights[0], '..')) : weights;
  const model = buildModel(config);
  await loadWeights(model, files, o.onProgress);
  return model;
}

/** A model rebuilt from an svdquant checkpoint's recorded config, then loaded from it. */
async function loadCheckpointModel(file: string): Promise<Module> {
  const st = await openSafetensors(file);
  const md = st.metadata;
  await st.close();
  if (md.format !== CHECKPOINT_FORMAT) {
    throw new FileFormatError(file, `not an svdquant checkpoint (metadata 'format' is ${JSON.stringify(md.format)}): pass a diffusers model folder, { config, weights }, or a checkpoint written by saveCheckpoint`);
  }
  if (md.model_config === undefined) throw new FileFormatError(file, "the checkpoint records no 'model_config': load it into a model you build with loadCheckpoint(file, model)");
  let config: unknown;
  try {
    config = JSON.parse(md.model_config);
  } catch {
    throw new FileFormatError(file, "metadata 'model_config' is not JSON: expected the model's config object");
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new FileFormatError(file, "metadata 'model_config' is not a JSON object");
  const model = buildModel(config as DiffusersConfig);
  await loadCheckpoint(file, model);
  return model;
}
