/**
 * What the image commands (generate, demo, calibrate) share: loading a pipeline from --model
 * (a diffusers DiTPipeline folder or an svdquant checkpoint; default the built-in model), parsing
 * class labels, quantizing from pipeline-run calibration, running quantized layers on the native
 * kernels, the model's size, and the labelled grid PNG.
 *
 * Class-conditional pipelines are the only kind today; text-conditioned ones (issue 15) add their
 * conditioning (--embeddings) next to `parseLabels`, and their loader next to `loadPipeline`.
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
export async function runNatively(pipe: DiTPipeline, threads: number): Promise<NativeInferenceReport | undefined> {
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
