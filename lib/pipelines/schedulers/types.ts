/**
 * The scheduler interface the sampling pipelines drive. A scheduler is stateful per rollout (its
 * step index, and DPM-Solver's history of model outputs): `setTimesteps` starts a rollout and
 * resets that state, and one instance serves one rollout at a time. For concurrent rollouts,
 * create one scheduler each (`schedulerFromConfig(scheduler.config)`).
 */
import type { Tensor } from '../../tensor.js';
import type { SchedulerConfig } from './config.js';

export interface SetTimestepsOptions {
  /** FlowMatch with `use_dynamic_shifting`: the shift exponent (Flux: `calculateShift(imageSeqLen, config)`). */
  readonly mu?: number;
  /** FlowMatch: explicit sigmas in (0, 1], one per step, before shifting (Flux: linspace(1, 1/N, N)). */
  readonly sigmas?: readonly number[];
}

/** Noise of the sample's shape: a tensor, or a function that returns one (called only when noise is needed). */
export type NoiseSource = Tensor | ((shape: readonly number[]) => Tensor);

/** Options of `step`; a scheduler ignores the ones it has no use for (as diffusers pipelines filter them). */
export interface StepOptions {
  /** DDIM: weight of the added noise (0 = deterministic DDIM, 1 = DDPM-like); default 0. */
  readonly eta?: number;
  /** DDIM with eta > 0 and Euler with sChurn > 0: the noise to add (seeded by the caller). */
  readonly noise?: NoiseSource;
  /** DDIM: re-derive the noise prediction from the clipped x0 (Glide); default false. */
  readonly useClippedModelOutput?: boolean;
  /** Euler: stochasticity ("churn"), default 0; applies where sTmin <= sigma <= sTmax. */
  readonly sChurn?: number;
  readonly sTmin?: number;
  readonly sTmax?: number;
  /** Euler: scale of the churn noise, default 1. */
  readonly sNoise?: number;
}

export interface Scheduler {
  /** diffusers keys verbatim (`_class_name` included), defaults filled in; frozen. */
  readonly config: SchedulerConfig;
  /** Scale of the initial noise: the latents start as noise * initNoiseSigma. */
  readonly initNoiseSigma: number;
  /** The timesteps to pass to the model and to `step`, in order (after `setTimesteps`). */
  readonly timesteps: readonly number[];
  /** The noise levels, one more than the timesteps (the last is the final level), where the scheduler has them. */
  readonly sigmas?: readonly number[];
  /** Model evaluations per step (1 for all of these). */
  readonly order: number;
  /** Starts a rollout of `numInferenceSteps` steps; resets the step index and any history. */
  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void;
  /** The model input for `timestep`; returns `sample` itself where diffusers does not scale it. */
  scaleModelInput(sample: Tensor, timestep: number): Tensor;
  /** One denoising step: the sample at the next timestep, as a new f32 tensor of the sample's shape. */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, options?: StepOptions): Tensor<'f32'>;
}
