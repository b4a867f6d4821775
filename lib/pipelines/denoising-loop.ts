/**
 * The sampling loop every diffusion pipeline shares: for each of the scheduler's timesteps, scale
 * the sample for the model, ask the pipeline's `predict` (model call, guidance) for the model output,
 * and let the scheduler step. Checks the AbortSignal before every step and reports each finished step.
 * Pipelines (class-conditional DiT, text-conditioned PixArt-Σ / SD3 / Flux) differ only in `predict`
 * (and Flux in its setTimesteps options).
 * With `liveRows`, rows that are no longer wanted (a cancelled request in a served batch) leave the
 * model call at the next step; the scheduler still steps the whole batch (its state, e.g. DPM-Solver's
 * history, is per batch, and a step is elementwise and cheap), with zeros as the dropped rows' output.
 */
import { AbortError, ArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';
import type { Scheduler, SetTimestepsOptions } from './schedulers/types.js';

/** What `onStep` is told after each finished step. */
export interface StepInfo {
  /** Steps finished so far: 1 after the first, `total` after the last. */
  readonly step: number;
  readonly total: number;
  /** The timestep this step denoised at. */
  readonly timestep: number;
  /** The sample after this step ([B, C, H, W] latents or pixels in the model's space; do not modify). */
  readonly latents: Tensor;
}

export interface DenoiseOptions {
  /** A scheduler for this rollout alone (it is stateful); `setTimesteps` is called here. */
  readonly scheduler: Scheduler;
  /** The starting sample, already multiplied by the scheduler's initNoiseSigma. */
  readonly latents: Tensor;
  readonly numInferenceSteps: number;
  /** Passed to `setTimesteps` (Flux: its sigmas and the shift mu). */
  readonly timestepOptions?: SetTimestepsOptions;
  /**
   * The model output the scheduler steps with, for the scaled sample at `timestep`. `rows` are the
   * batch rows `modelInput` holds, in order (all of them unless `liveRows` dropped some): the
   * conditioning (labels, embeddings) must be taken for these rows.
   */
  predict(modelInput: Tensor, timestep: number, rows: readonly number[]): Promise<Tensor>;
  /**
   * Asked before every step: the rows still wanted (ascending indices into the batch). The others
   * are no longer computed; their final values are unspecified. None left: AbortError. Default: all.
   */
  readonly liveRows?: () => readonly number[];
  readonly signal?: AbortSignal;
  readonly onStep?: (info: StepInfo) => void;
  /** Names the operation in an AbortError. */
  readonly operation: string;
}

/** Runs the loop; returns the final sample and the milliseconds spent in `predict`. */
export async function denoise(o: DenoiseOptions): Promise<{ latents: Tensor; predictMs: number }> {
  o.scheduler.setTimesteps(o.numInferenceSteps, o.timestepOptions);
  const timesteps = o.scheduler.timesteps;
  let x = o.latents;
  let predictMs = 0;
  const batch = x.shape[0];
  const all = Array.from({ length: batch }, (_, r) => r);
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(o.signal, o.operation);
    const rows = o.liveRows === undefined ? all : checkRows(o.liveRows(), batch);
    if (rows.length === 0) throw new AbortError(o.operation, 'no rows of the batch are wanted any more');
    const t = timesteps[i];
    const start = performance.now();
    const input = o.scheduler.scaleModelInput(x, t);
    const output = rows.length === batch
      ? await o.predict(input, t, all)
      : scatterRows(await o.predict(selectRows(input, rows), t, rows), rows, batch);
    predictMs += performance.now() - start;
    x = o.scheduler.step(output, t, x);
    o.onStep?.({ step: i + 1, total: timesteps.length, timestep: t, latents: x });
  }
  return { latents: x, predictMs };
}

/** Rows `rows` of [B, ...] (ascending, in range), as a new f32 tensor. */
export function selectRows(x: Tensor, rows: readonly number[]): Tensor<'f32'> {
  const size = x.shape.slice(1).reduce((a, d) => a * d, 1);
  const src = x.to('f32').data;
  const out = new Float32Array(rows.length * size);
  rows.forEach((r, j) => out.set(src.subarray(r * size, (r + 1) * size), j * size));
  return Tensor.fromStorage(out, [rows.length, ...x.shape.slice(1)], 'f32');
}

/** `rows` when they are ascending row indices of a batch of `batch`. */
export function checkRows(rows: readonly number[], batch: number): readonly number[] {
  if (!Array.isArray(rows) || !rows.every((r, j) => Number.isInteger(r) && r >= 0 && r < batch && (j === 0 || r > rows[j - 1]))) {
    throw new ArgumentError('liveRows()', `ascending row indices in [0, ${batch})`, rows);
  }
  return rows;
}

/** [batch, ...] with `x`'s rows at `rows` and zeros elsewhere. */
export function scatterRows(x: Tensor, rows: readonly number[], batch: number): Tensor<'f32'> {
  const size = x.shape.slice(1).reduce((a, d) => a * d, 1);
  if (x.shape[0] !== rows.length) throw new ArgumentError('predict', `a model output with ${rows.length} rows (one per live row)`, x.toString());
  const src = x.to('f32').data;
  const out = new Float32Array(batch * size);
  rows.forEach((r, j) => out.set(src.subarray(j * size, (j + 1) * size), r * size));
  return Tensor.fromStorage(out, [batch, ...x.shape.slice(1)], 'f32');
}

/** Throws AbortError when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, operation: string): void {
  if (signal?.aborted) throw new AbortError(operation, signal.reason);
}

/** Checks an optional AbortSignal argument. */
export function checkSignal(signal: unknown, argument: string): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new ArgumentError(argument, 'an AbortSignal', signal);
  return signal;
}
