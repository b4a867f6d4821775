/**
 * What the image commands (generate, demo, calibrate) share: loading a pipeline from --model
 * (a diffusers DiTPipeline folder or an svdquant checkpoint; default the built-in model), parsing
 * class labels, quantizing from pipeline-run calibration, running quantized layers on the native
 * kernels, the model's size, and the labelled grid PNG.
 *
 * Text-conditioned pipelines (PixArt-Σ, SD3, Flux) take their conditioning from a safetensors file of
 * prompt embeddings (--embeddings: readEmbeddingsFile) and load with loadTextPipeline.
 */
import { stat } from 'node:fs/promises';
import { DiTPipeline } from '../pipelines/dit-pipeline.js';
import { builtinModelDir } from '../pipelines/builtin-model.js';
import { capturePipelineCalibration, type PipelineCalibration } from '../pipelines/calibration.js';
import type { Module } from '../graph/module.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import { enableNativeInference, NativeLinear, type NativeInferenceReport } from '../runtime/native-inference.js';
import { imageGrid } from '../image/grid.js';
import { tensorToImages } from '../image/from-tensor.js';
import type { Image } from '../image/image.js';
import { ArgumentError } from '../errors.js';
import { openSafetensors } from '../io/safetensors.js';
import { tensorFromSafetensors } from '../io/tensor-bridge.js';
import { FluxTransformer2DModel } from '../models/flux.js';
import { PixArtTransformer2DModel } from '../models/pixart.js';
import { SD3Transformer2DModel } from '../models/sd3.js';
import { FluxPipeline } from '../pipelines/flux-pipeline.js';
import { PixArtSigmaPipeline } from '../pipelines/pixart-sigma-pipeline.js';
import { StableDiffusion3Pipeline } from '../pipelines/sd3-pipeline.js';
import { loadTextPipelineComponents } from '../pipelines/text-pipeline.js';
import type { Tensor } from '../tensor.js';
import { UsageError } from './command.js';

export interface PipelineSource {
  /** --model: a pipeline folder or a checkpoint file; undefined = the built-in model. */
  model?: string;
  /** --scheduler: where a checkpoint's scheduler (and class names) come from; default the built-in model's folder. */
  scheduler?: string;
}

/** Loads the pipeline; a checkpoint takes its scheduler, VAE and class names from --scheduler (default: the built-in model). */
export async function loadPipeline(source: PipelineSource): Promise<{ pipe: DiTPipeline; label: string }> {
  const model = source.model ?? builtinModelDir();
  let isFolder: boolean;
  try {
    isFolder = (await stat(model)).isDirectory();
  } catch {
    throw new UsageError(`--model: no such file or folder '${model}'`);
  }
  if (isFolder && source.scheduler !== undefined) throw new UsageError('--scheduler applies to a checkpoint file only (a pipeline folder has its own scheduler/)');
  const pipe = await DiTPipeline.fromPretrained(model, isFolder ? {} : { scheduler: source.scheduler ?? builtinModelDir() });
  const label = source.model === undefined ? 'the built-in model (Fashion-MNIST DiT)' : `'${model}'`;
  return { pipe, label };
}

/** --labels: class ids or names, comma-separated; default one per class (at most `maxDefault`). */
export function parseLabels(command: string, value: unknown, pipe: DiTPipeline, maxDefault = 10): number[] {
  if (value === undefined) return Array.from({ length: Math.min(pipe.numClasses, maxDefault) }, (_, i) => i);
  const items = String(value).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`${command}: --labels expects a comma-separated list of class ids or names`);
  return items.map((item) => {
    try {
      return pipe.classId(/^\d+$/.test(item) ? Number(item) : item, 'label');
    } catch {
      const names = pipe.id2label === null ? '' : ` or a name (${Object.values(pipe.id2label).join(', ')})`;
      throw new UsageError(`${command}: --labels: '${item}' is not a class: expected an id in [0, ${pipe.numClasses})${names}`);
    }
  });
}

/** The display name of a class id. */
export function className(pipe: DiTPipeline, id: number): string {
  return pipe.id2label?.[String(id)] ?? String(id);
}

/** Whether the denoiser holds quantized layers (from quantize() or a quantized checkpoint). */
export function isQuantized(model: Module): boolean {
  return [...model.namedModules()].some(([, m]) => m instanceof ErrorCorrectedLinear || m instanceof NativeLinear);
}

/** Bytes of the denoiser's parameters as stored: quantized layers in their packed formats, the rest as held (f32). */
export function modelBytes(model: Module): number {
  let total = 0;
  for (const t of model.stateDict().values()) total += t.byteLength;
  return total;
}

export interface CalibrationRun {
  labels: number[];
  seed: number;
  steps: number;
  guidanceScale: number;
  file?: string;
}

/** Runs the pipeline over `run.labels` and captures the denoiser's inputs at every step. */
export function captureCalibration(pipe: DiTPipeline, run: CalibrationRun, onStep?: (done: number, total: number) => void): Promise<PipelineCalibration> {
  const total = run.steps * Math.ceil(run.labels.length / CALIBRATION_BATCH);
  let done = 0;
  return capturePipelineCalibration(pipe, {
    classLabels: run.labels, seeds: run.seed, numInferenceSteps: run.steps, guidanceScale: run.guidanceScale,
    batchSize: CALIBRATION_BATCH, file: run.file, onStep: () => onStep?.(++done, total),
  });
}

/** Images per calibration run: the doubled CFG batch stays small enough for quick statistics. */
export const CALIBRATION_BATCH = 10;

/** Quantized layers onto the native CPU kernels (what a deployment runs); a no-op for an fp32 model. */
export async function runNatively(pipe: { readonly transformer: Module }, threads: number): Promise<NativeInferenceReport | undefined> {
  if (![...pipe.transformer.namedModules()].some(([, m]) => m instanceof ErrorCorrectedLinear)) return undefined;
  return enableNativeInference(pipe.transformer, { backend: 'cpu', threads });
}

/** PNG-ready images of a pipeline result ([-1, 1]-scale decoded output, diffusers' exact bytes). */
export function resultImages(decoded: Tensor): Image[] {
  return tensorToImages(decoded);
}

/** One labelled grid: rows of images (row-major), 28-pixel cells enlarged to stay legible. */
export function labelledGrid(cells: Image[], rows: number, cols: number, rowLabels: string[] | undefined, colLabels: string[] | undefined, title?: string): Image {
  const side = Math.max(...cells.map((c) => Math.max(c.width, c.height)));
  const scale = Math.max(1, Math.min(4, Math.floor(112 / side)));
  return imageGrid(cells, { rows, cols, rowLabels, colLabels, title, scale, labelScale: 1, padding: 4 });
}

export type TextPipeline = PixArtSigmaPipeline | StableDiffusion3Pipeline | FluxPipeline;

/**
 * Loads a text-conditioned pipeline from --model (a diffusers pipeline folder, or a transformer
 * checkpoint with --scheduler naming the pipeline folder for its scheduler and VAE); the pipeline
 * class follows the transformer's class.
 */
export async function loadTextPipeline(source: PipelineSource): Promise<{ pipe: TextPipeline; label: string }> {
  if (source.model === undefined) throw new UsageError('--embeddings needs --model: a diffusers PixArt-Σ, SD3 or Flux pipeline folder, or a checkpoint of one with --scheduler (there is no built-in text-conditioned model)');
  let isFolder: boolean;
  try {
    isFolder = (await stat(source.model)).isDirectory();
  } catch {
    throw new UsageError(`--model: no such file or folder '${source.model}'`);
  }
  if (isFolder && source.scheduler !== undefined) throw new UsageError('--scheduler applies to a checkpoint file only (a pipeline folder has its own scheduler/)');
  if (!isFolder && source.scheduler === undefined) throw new UsageError('--model is a checkpoint file: --scheduler must name the pipeline folder it came from (for its scheduler and VAE)');
  const components = await loadTextPipelineComponents(source.model, isFolder ? {} : { scheduler: source.scheduler }, 'text pipeline');
  const t = components.transformer;
  const pipe = t instanceof PixArtTransformer2DModel ? new PixArtSigmaPipeline(components)
    : t instanceof SD3Transformer2DModel ? new StableDiffusion3Pipeline(components)
    : t instanceof FluxTransformer2DModel ? new FluxPipeline(components)
    : undefined;
  if (pipe === undefined) throw new UsageError(`--embeddings: '${source.model}' holds a ${t.constructor.name}, not a PixArt-Σ, SD3 or Flux transformer (use --labels for a class-conditional DiT)`);
  return { pipe, label: `'${source.model}' (${pipe.name})` };
}

/** The tensors of an --embeddings file (diffusers' names) and the generate options they become. */
export const EMBEDDING_TENSORS = Object.freeze({
  prompt_embeds: 'promptEmbeds',
  pooled_prompt_embeds: 'pooledPromptEmbeds',
  prompt_attention_mask: 'promptAttentionMask',
  negative_prompt_embeds: 'negativePromptEmbeds',
  negative_pooled_prompt_embeds: 'negativePooledPromptEmbeds',
  negative_prompt_attention_mask: 'negativePromptAttentionMask',
} as const);

type EmbeddingName = keyof typeof EMBEDDING_TENSORS;

/** Which tensors each pipeline takes. */
const ACCEPTED: Readonly<Record<string, readonly EmbeddingName[]>> = {
  PixArtSigmaPipeline: ['prompt_embeds', 'prompt_attention_mask', 'negative_prompt_embeds', 'negative_prompt_attention_mask'],
  StableDiffusion3Pipeline: ['prompt_embeds', 'pooled_prompt_embeds', 'negative_prompt_embeds', 'negative_pooled_prompt_embeds'],
  FluxPipeline: ['prompt_embeds', 'pooled_prompt_embeds'],
};

/**
 * Reads an --embeddings safetensors file for `pipe`: prompt_embeds [B, T, C] and, as the pipeline
 * takes them, pooled_prompt_embeds, prompt_attention_mask and their negative_* counterparts. Returns
 * the generate options (promptEmbeds, ...). Names the pipeline does not take are a UsageError; shapes
 * are checked by the pipeline (see embeddingsError).
 */
export async function readEmbeddingsFile(file: string, pipe: TextPipeline): Promise<Record<string, Tensor>> {
  const st = await openSafetensors(file);
  const accepted = ACCEPTED[pipe.name];
  const out: Record<string, Tensor> = {};
  try {
    for (const info of st.tensors) {
      if (!accepted.includes(info.name as EmbeddingName)) {
        throw new UsageError(`--embeddings ${file}: tensor '${info.name}' is not one ${pipe.name} takes (it takes ${accepted.join(', ')})`);
      }
      out[EMBEDDING_TENSORS[info.name as EmbeddingName]] = tensorFromSafetensors(await st.readTensor(info.name));
    }
  } finally {
    await st.close();
  }
  if (out.promptEmbeds === undefined) throw new UsageError(`--embeddings ${file}: no tensor 'prompt_embeds' (the prompts' embeddings [B, T, C]; ${pipe.name} takes ${accepted.join(', ')})`);
  return out;
}

/** A pipeline's ArgumentError about an embedding option, as a UsageError naming the file's tensor (or the CLI option); other errors as they are. */
export function embeddingsError(error: unknown, file: string): unknown {
  if (!(error instanceof ArgumentError)) return error;
  const option = error.argument.replace(/^options\./, '');
  const tensor = Object.entries(EMBEDDING_TENSORS).find(([, camel]) => camel === option)?.[0];
  const detail = error.message.replace(/^invalid argument '[^']*': /, '').replaceAll('guidanceScale', '--guidance');
  if (tensor !== undefined) return new UsageError(`--embeddings ${file}: tensor '${tensor}': ${detail}`);
  if (option === 'height' || option === 'width') return new UsageError(`--${option}: ${detail}`);
  return error;
}
