/**
 * The sampling loop every diffusion pipeline shares: for each of the scheduler's timesteps, scale
 * the sample for the model, ask the pipeline's `predict` (model call, guidance) for the model output,
 * and let the scheduler step. Checks the AbortSignal before every step and reports each finished step.
 * Pipelines (class-conditional DiT, text-conditioned PixArt-Σ / SD3 / Flux) differ only in `predict`
 * (and Flux in its setTimesteps options).
 */
import { AbortError, ArgumentError } from '../errors.js';
import type { Tensor } from '../tensor.js';
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
  /** The model output the scheduler steps with, for the scaled sample at `timestep`. */
  predict(modelInput: Tensor, timestep: number): Promise<Tensor>;
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
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(o.signal, o.operation);
    const t = timesteps[i];
    const start = performance.now();
    const output = await o.predict(o.scheduler.scaleModelInput(x, t), t);
    predictMs += performance.now() - start;
    x = o.scheduler.step(output, t, x);
    o.onStep?.({ step: i + 1, total: timesteps.length, timestep: t, latents: x });
  }
  return { latents: x, predictMs };
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
