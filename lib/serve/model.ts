/**
 * The model a server or worker serves, loaded once: a DiTPipeline (a diffusers pipeline folder, or an
 * svdquant checkpoint of the denoiser with the scheduler and class names from a pipeline folder,
 * the built-in model's by default), or a text-conditioned pipeline folder (PixArt-Σ, SD3, Flux:
 * model_index.json names the class), and what the HTTP layer needs to know about it.
 */

import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import { readConfigFile } from '../io/config-file.js';
import { DiTPipeline, MODEL_INDEX_NAME } from '../pipelines/dit-pipeline.js';
import { builtinModelDir } from '../pipelines/builtin-model.js';
import { enableNativeInference, type NativeBackend } from '../runtime/native-inference.js';
import type { Module } from '../graph/module.js';
import type { BatchPipeline } from './batcher.js';
import type { ServeModelInfo } from './request.js';
import { isTextPipelineName, TEXT_PIPELINES, TextBatchPipeline, textModelInfo } from './text-model.js';

export interface ServeModelSource {
  /** A diffusers DiTPipeline folder or a checkpoint file; default: the built-in model. */
  model?: string;
  /** For a checkpoint: the pipeline folder giving scheduler and class names (default: the built-in model). */
  scheduler?: string;
  /** Where a quantized checkpoint's layers run: a native backend ('auto', the default: cuda, hip, else cpu), or 'reference' (the plain TypeScript layers). */
  backend?: NativeBackend | 'reference';
}

export async function loadServeModel(source: ServeModelSource): Promise<{ pipeline: DiTPipeline | TextBatchPipeline; info: ServeModelInfo }> {
  const model = source.model ?? builtinModelDir();
  const folder = await isDirectory(model);
  const className = folder ? (await readConfigFile(join(model, MODEL_INDEX_NAME), 'a diffusers pipeline index (model_index.json)'))._class_name : undefined;
  if (isTextPipelineName(className)) {
    const text = new TextBatchPipeline(await TEXT_PIPELINES[className].load(model));
    return { pipeline: text, info: textModelInfo(model, className, text.pipeline, await nativeBackend(text.pipeline.transformer, source)) };
  }
  const pipeline = await DiTPipeline.fromPretrained(model, folder ? {} : { scheduler: source.scheduler ?? builtinModelDir() });
  const backend = await nativeBackend(pipeline.transformer, source);
  return { pipeline, info: { name: model, labels: classNames(pipeline.id2label, pipeline.numClasses), sampleSize: pipeline.sampleSize, backend } };
}

/** Runs the quantized layers on the native kernels unless the reference path is asked for; describes where they run. */
async function nativeBackend(transformer: Module, source: ServeModelSource): Promise<string> {
  if (source.backend === 'reference') return 'reference';
  const report = await enableNativeInference(transformer, { backend: source.backend ?? 'auto' });
  return `${report.backend} (${report.converted.length} quantized layers native${report.skipped.length > 0 ? `, ${report.skipped.length} on the reference path` : ''})`;
}

/**
 * What a queue-mode front end needs without loading weights: a pipeline folder's class names and
 * image size (model_index.json and transformer/config.json). A checkpoint is loaded in full.
 */
export async function readServeModelInfo(source: ServeModelSource): Promise<ServeModelInfo> {
  const model = source.model ?? builtinModelDir();
  if (!(await isDirectory(model))) return (await loadServeModel(source)).info;
  const index = await readConfigFile(join(model, MODEL_INDEX_NAME), 'a diffusers pipeline index (model_index.json)');
  if (isTextPipelineName(index._class_name)) return (await loadServeModel(source)).info;
  const config = await readConfigFile(join(model, 'transformer', 'config.json'), 'a DiT transformer config');
  const numClasses = Number(config.num_embeds_ada_norm ?? 1000);
  const sampleSize = Number(config.sample_size ?? 32);
  return { name: model, labels: classNames((index.id2label ?? null) as Record<string, string> | null, numClasses), sampleSize };
}

/**
 * What a queue front end loads: the description of a class-conditional model (without its weights,
 * readServeModelInfo), or a text model in full (its pipeline checks embedding shapes before queueing).
 */
export async function readServeModel(source: ServeModelSource): Promise<{ pipeline?: BatchPipeline; info: ServeModelInfo }> {
  const model = source.model ?? builtinModelDir();
  if (await isDirectory(model)) {
    const index = await readConfigFile(join(model, MODEL_INDEX_NAME), 'a diffusers pipeline index (model_index.json)');
    if (isTextPipelineName(index._class_name)) return loadServeModel(source);
  }
  return { info: await readServeModelInfo(source) };
}

/** Names by id 0..numClasses-1; a class without a name is called by its id. */
function classNames(id2label: Readonly<Record<string, string>> | null, numClasses: number): string[] {
  return Array.from({ length: numClasses }, (_, id) => id2label?.[String(id)] ?? String(id));
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
