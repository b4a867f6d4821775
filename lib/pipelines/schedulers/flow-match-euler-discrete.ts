/**
 * FlowMatchEulerDiscreteScheduler with the semantics of diffusers v0.30.3 (rectified flow, SD3 and
 * Flux): sigmas from 1 toward 0 with a resolution shift, either fixed (`shift`) or dynamic
 * (`use_dynamic_shifting`: exp(mu) / (exp(mu) + (1/sigma - 1)), mu from the image size as Flux
 * computes it). The step is x + (sigma_next - sigma) * v, in float32.
 */
import { ArgumentError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import { resolveSchedulerConfig, type ConfigSpec, type SchedulerConfig } from './config.js';
import { numpyLinspace } from './numerics.js';
import {
  checkNumInferenceSteps, checkTimestep, indexForTimestep, rolloutFinished, stepInputs, tensorOf,
} from './step-helpers.js';
import type { Scheduler, SetTimestepsOptions } from './types.js';

const f32 = Math.fround;

export const FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC: ConfigSpec = {
  num_train_timesteps: { default: 1000, type: { kind: 'int', min: 1 } },
  shift: { default: 1.0, type: { kind: 'float', min: 0, exclusive: true } },
  use_dynamic_shifting: { default: false, type: { kind: 'bool' } },
  base_shift: { default: 0.5, type: { kind: 'float', nullable: true } },
  max_shift: { default: 1.15, type: { kind: 'float', nullable: true } },
  base_image_seq_len: { default: 256, type: { kind: 'int', min: 1, nullable: true } },
  max_image_seq_len: { default: 4096, type: { kind: 'int', min: 1, nullable: true } },
};

/**
 * FluxPipeline's `calculate_shift`: mu grows linearly with the image's token count, from
 * `base_shift` at `base_image_seq_len` to `max_shift` at `max_image_seq_len` (keys read from a
 * FlowMatch config, e.g. `scheduler.config`; missing keys take the scheduler's defaults).
 */
export function calculateShift(imageSeqLen: number, config: Readonly<Record<string, unknown>> = {}): number {
  if (typeof imageSeqLen !== 'number' || !Number.isSafeInteger(imageSeqLen) || imageSeqLen < 1) {
    throw new ArgumentError('imageSeqLen', 'a positive integer (the number of image tokens)', imageSeqLen);
  }
  if (config === null || typeof config !== 'object') throw new ArgumentError('config', 'a FlowMatch scheduler config object', config);
  const read = (key: string): number => {
    const value = config[key] ?? FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC[key].default;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new ArgumentError(`config.${key}`, 'a finite number', value);
    return value;
  };
  const baseSeqLen = read('base_image_seq_len');
  const maxSeqLen = read('max_image_seq_len');
  if (maxSeqLen === baseSeqLen) throw new ArgumentError('config.max_image_seq_len', `a value other than base_image_seq_len (${baseSeqLen})`, maxSeqLen);
  const baseShift = read('base_shift');
  const maxShift = read('max_shift');
  const m = (maxShift - baseShift) / (maxSeqLen - baseSeqLen);
  const b = baseShift - m * baseSeqLen;
  return imageSeqLen * m + b;
}

export class FlowMatchEulerDiscreteScheduler implements Scheduler {
  static readonly className = 'FlowMatchEulerDiscreteScheduler';
  static readonly configSpec = FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC;

  readonly config: SchedulerConfig;
  readonly order = 1;
  /** Flow matching starts from unit-variance noise (diffusers' class has no init_noise_sigma; pipelines use 1). */
  readonly initNoiseSigma = 1;
  /** The ends of the train schedule (float32 values), between which set_timesteps spaces its steps. */
  readonly sigmaMin: number;
  readonly sigmaMax: number;
  #timesteps: readonly number[];
  #sigmas: readonly number[];
  #stepIndex: number | undefined;

  /** `config`: diffusers FlowMatchEulerDiscreteScheduler keys; missing keys take diffusers' defaults. */
  constructor(config: object = {}) {
    this.config = resolveSchedulerConfig(FlowMatchEulerDiscreteScheduler.className, FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC, config);
    const trainSteps = this.config.num_train_timesteps as number;
    // The train schedule in float32 torch arithmetic: t/N for t = N..1, shifted unless shifting is dynamic.
    let sigmas = numpyLinspace(1, trainSteps, trainSteps).reverse().map((t) => f32(f32(t) / trainSteps));
    if (!this.config.use_dynamic_shifting) {
      const shift = this.config.shift as number;
      const scale = f32(shift);
      const scaleMinusOne = f32(shift - 1);
      sigmas = sigmas.map((s) => f32(f32(scale * s) / f32(1 + f32(scaleMinusOne * s))));
    }
    this.sigmaMin = sigmas[sigmas.length - 1];
    this.sigmaMax = sigmas[0];
    this.#timesteps = Object.freeze(sigmas.map((s) => f32(s * trainSteps)));
    this.#sigmas = Object.freeze(sigmas);
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  get sigmas(): readonly number[] {
    return this.#sigmas;
  }

  /** The index of the next step in the schedule; undefined until the first step of a rollout. */
  get stepIndex(): number | undefined {
    return this.#stepIndex;
  }

  /**
   * Without `options.sigmas`, spaces `numInferenceSteps` sigmas evenly between the train
   * schedule's ends and shifts them. As in v0.30.3, those ends are already shifted, so a fixed
   * shift applies twice (SD3 with shift 3 ends at shift(shift(0.001)) = 0.0089286, not 0.0029940);
   * we reproduce it because pipelines built on v0.30.3, and the fixtures, sample with it.
   * With `options.sigmas` (Flux: linspace(1, 1/N, N)), those are shifted instead.
   */
  setTimesteps(numInferenceSteps: number, options: SetTimestepsOptions = {}): void {
    const n = checkNumInferenceSteps(numInferenceSteps);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object or undefined', options);
    const c = this.config;
    const trainSteps = c.num_train_timesteps as number;
    const mu = options.mu;
    if (c.use_dynamic_shifting && mu === undefined) {
      throw new ArgumentError('options.mu', 'a number: use_dynamic_shifting is on (Flux: calculateShift(imageSeqLen, scheduler.config))');
    }
    if (mu !== undefined && (typeof mu !== 'number' || !Number.isFinite(mu))) throw new ArgumentError('options.mu', 'a finite number', mu);

    let sigmas: number[];
    if (options.sigmas === undefined) {
      sigmas = numpyLinspace(this.sigmaMax * trainSteps, this.sigmaMin * trainSteps, n).map((t) => t / trainSteps);
    } else {
      const given = options.sigmas;
      if (!Array.isArray(given) || given.length !== n || !given.every((s) => typeof s === 'number' && s > 0 && s <= 1)) {
        throw new ArgumentError('options.sigmas', `${n} numbers in (0, 1] (one per step)`, given);
      }
      sigmas = [...given];
    }
    if (c.use_dynamic_shifting) {
      const e = Math.exp(mu!);
      sigmas = sigmas.map((s) => e / (e + (1 / s - 1)));
    } else {
      const shift = c.shift as number;
      sigmas = sigmas.map((s) => (shift * s) / (1 + (shift - 1) * s));
    }
    const sigmas32 = sigmas.map(f32);
    this.#timesteps = Object.freeze(sigmas32.map((s) => f32(s * trainSteps)));
    this.#sigmas = Object.freeze([...sigmas32, 0]);
    this.#stepIndex = undefined;
  }

  scaleModelInput(sample: Tensor, _timestep: number): Tensor {
    return sample;
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor): Tensor<'f32'> {
    const t = checkTimestep(timestep);
    const { model, x } = stepInputs(modelOutput, sample);
    const index = this.#stepIndex ?? indexForTimestep(this.#timesteps, t, true, 'error');
    const sigmas = this.#sigmas;
    if (index + 1 >= sigmas.length) throw rolloutFinished(this.#timesteps.length);
    const dt = f32(sigmas[index + 1] - sigmas[index]);
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] + f32(dt * model[i]);
    this.#stepIndex = index + 1;
    return tensorOf(out, sample.shape);
  }
}
