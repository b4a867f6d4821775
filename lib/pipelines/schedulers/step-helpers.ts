/**
 * What the schedulers' `step` and `setTimesteps` share: argument checks, the noise source, the
 * step index diffusers derives from a timestep, and dynamic thresholding of x0.
 */
import { ArgumentError } from '../../errors.js';
import { Tensor, checkNotDisposed, isTensor } from '../../tensor.js';
import type { NoiseSource, StepOptions } from './types.js';

const f32 = Math.fround;

/** Checks that `value` is a live f32 tensor and returns its data. */
export function f32Data(value: unknown, argument: string): Float32Array {
  if (!isTensor(value) || value.dtype !== 'f32') throw new ArgumentError(argument, 'an f32 Tensor', value);
  checkNotDisposed(value, argument);
  return value.data as Float32Array;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Checks `modelOutput` and `sample` for a step (same shape, f32) and returns their data. */
export function stepInputs(modelOutput: Tensor, sample: Tensor): { model: Float32Array; x: Float32Array } {
  const model = f32Data(modelOutput, 'modelOutput');
  const x = f32Data(sample, 'sample');
  if (!sameShape(modelOutput.shape, sample.shape)) {
    throw new ArgumentError('modelOutput', `a tensor of the sample's shape [${sample.shape.join(', ')}]`, `shape [${modelOutput.shape.join(', ')}]`);
  }
  return { model, x };
}

export function checkNumInferenceSteps(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ArgumentError('numInferenceSteps', 'a positive integer', value);
  }
  return value;
}

export function checkTimestep(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ArgumentError('timestep', 'a finite number (one of scheduler.timesteps)', value);
  return value;
}

/** The options argument of step(): an object, or undefined for none. */
export function stepOptions(value: unknown): StepOptions {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object') throw new ArgumentError('options', 'an object of step options or undefined', value);
  return value as StepOptions;
}

/** A finite number option (>= min), or its default when absent. */
export function numberOption(value: unknown, name: string, fallback: number, min = -Infinity, allowInfinity = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || (!allowInfinity && !Number.isFinite(value)) || value < min) {
    throw new ArgumentError(name, `a ${allowInfinity ? '' : 'finite '}number${min > -Infinity ? ` >= ${min}` : ''}`, value);
  }
  return value;
}

/** The noise to add, from a tensor or a function, checked against the sample's shape. */
export function noiseData(noise: NoiseSource | undefined, shape: readonly number[], why: string): Float32Array {
  if (noise === undefined) {
    throw new ArgumentError('options.noise', `a noise tensor (or a function returning one) of shape [${shape.join(', ')}] ${why}`);
  }
  const tensor = typeof noise === 'function' ? noise(shape) : noise;
  const data = f32Data(tensor, 'options.noise');
  if (!sameShape((tensor as Tensor).shape, shape)) {
    throw new ArgumentError('options.noise', `a tensor of the sample's shape [${shape.join(', ')}]`, `shape [${(tensor as Tensor).shape.join(', ')}]`);
  }
  return data;
}

/** Rejects the options a scheduler's setTimesteps does not take. */
export function rejectSetTimestepsOptions(className: string, options: { mu?: unknown; sigmas?: unknown } | undefined): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object or undefined', options);
  if (options.mu !== undefined) throw new ArgumentError('options.mu', `no mu: ${className} has no dynamic shifting`, options.mu);
  if (options.sigmas !== undefined) throw new ArgumentError('options.sigmas', `no explicit sigmas: ${className} derives them from its config`, options.sigmas);
}

/**
 * The step index of `timestep` in `timesteps`, as diffusers' `index_for_timestep`: when the value
 * occurs more than once the second occurrence is taken (so a rollout started mid-schedule does not
 * skip a sigma). `float32` compares as torch does a float32 schedule with a Python float. With no
 * match, `missing` decides: DPM-Solver takes the last index, the others reject the timestep.
 */
export function indexForTimestep(timesteps: readonly number[], timestep: number, float32: boolean, missing: 'last' | 'error'): number {
  const value = float32 ? f32(timestep) : timestep;
  const matches: number[] = [];
  for (let i = 0; i < timesteps.length && matches.length < 2; i++) if (timesteps[i] === value) matches.push(i);
  if (matches.length === 0) {
    if (missing === 'last') return timesteps.length - 1;
    throw new ArgumentError('timestep', 'one of scheduler.timesteps', timestep);
  }
  return matches.length > 1 ? matches[1] : matches[0];
}

/** The error for stepping past the end of the schedule. */
export function rolloutFinished(steps: number): ArgumentError {
  return new ArgumentError('timestep', `a step of the current ${steps}-step rollout, which has finished: call setTimesteps() to start another`);
}

/**
 * Dynamic thresholding (Imagen) in place, per batch item (axis 0), in float32 as diffusers does it
 * with torch: s = quantile(|x0|, ratio) clamped to [1, maxValue]; x0 = clamp(x0, -s, s) / s.
 * The quantile interpolates linearly between order statistics (torch.quantile's default).
 */
export function thresholdSample(x0: Float32Array, shape: readonly number[], ratio: number, maxValue: number): void {
  const batch = shape.length === 0 ? 1 : shape[0];
  const per = batch === 0 ? 0 : x0.length / batch;
  if (per === 0) return;
  const q = f32(ratio);
  const max = f32(maxValue);
  for (let b = 0; b < batch; b++) {
    const item = x0.subarray(b * per, (b + 1) * per);
    const sorted = item.map(Math.abs).sort();
    const rank = f32(q * (per - 1));
    const below = Math.trunc(rank);
    const above = Math.ceil(rank);
    const s = Math.min(Math.max(lerpFloat32(sorted[below], sorted[above], f32(rank - below)), 1), max);
    for (let i = 0; i < per; i++) item[i] = f32(Math.min(Math.max(item[i], -s), s) / s);
  }
}

/** torch.lerp for float32: the form that is exact at both ends. */
function lerpFloat32(start: number, end: number, weight: number): number {
  const diff = f32(end - start);
  return weight < 0.5 ? f32(start + f32(weight * diff)) : f32(end - f32(diff * f32(1 - weight)));
}

/** A new f32 tensor of `shape` over `data`. */
export function tensorOf(data: Float32Array, shape: readonly number[]): Tensor<'f32'> {
  return Tensor.fromStorage(data, shape, 'f32');
}
