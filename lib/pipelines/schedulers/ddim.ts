/**
 * DDIMScheduler with the semantics of diffusers v0.30.3 (Song et al. 2020, eq. 12 and 16).
 * Schedule arithmetic as diffusers does it (NumPy float64 for the timesteps, torch float32 for
 * alphas_cumprod); the step is elementwise float32 in diffusers' order of operations.
 */
import { ArgumentError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import {
  BETA_KEYS, PREDICTION_TYPES, SPACING_KEYS, THRESHOLDING_KEYS, resolveSchedulerConfig,
  type ConfigSpec, type PredictionType, type SchedulerConfig,
} from './config.js';
import { alphasCumprodFromConfig } from './noise-schedule.js';
import { numpyArange, numpyLinspace, roundHalfEven } from './numerics.js';
import {
  checkNumInferenceSteps, checkTimestep, stepOptions, noiseData, numberOption, rejectSetTimestepsOptions, stepInputs, tensorOf,
  thresholdSample,
} from './step-helpers.js';
import type { Scheduler, SetTimestepsOptions, StepOptions } from './types.js';

const f32 = Math.fround;

export const DDIM_CONFIG_SPEC: ConfigSpec = {
  ...BETA_KEYS,
  ...SPACING_KEYS,
  ...THRESHOLDING_KEYS,
  clip_sample: { default: true, type: { kind: 'bool' } },
  clip_sample_range: { default: 1.0, type: { kind: 'float', min: 0, exclusive: true } },
  set_alpha_to_one: { default: true, type: { kind: 'bool' } },
  prediction_type: { default: 'epsilon', type: { kind: 'enum', values: PREDICTION_TYPES } },
};

export class DDIMScheduler implements Scheduler {
  static readonly className = 'DDIMScheduler';
  static readonly configSpec = DDIM_CONFIG_SPEC;

  readonly config: SchedulerConfig;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  /** cumprod(1 - betas) per train timestep, float32 values. */
  readonly alphasCumprod: readonly number[];
  #alphasCumprod: Float32Array;
  /** The "previous" alpha bar of the last step: 1, or alphas_cumprod[0] without set_alpha_to_one. */
  #finalAlphaCumprod: number;
  #timesteps: readonly number[];
  #numInferenceSteps: number | undefined;

  /** `config`: diffusers DDIMScheduler keys; missing keys take diffusers' defaults. */
  constructor(config: object = {}) {
    this.config = resolveSchedulerConfig(DDIMScheduler.className, DDIM_CONFIG_SPEC, config);
    const c = this.config;
    const trainSteps = c.num_train_timesteps as number;
    this.#alphasCumprod = alphasCumprodFromConfig(c, false);
    this.alphasCumprod = Object.freeze(Array.from(this.#alphasCumprod));
    this.#finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.#alphasCumprod[0];
    // Before setTimesteps, diffusers lists every train timestep (but cannot step yet).
    this.#timesteps = Object.freeze(Array.from({ length: trainSteps }, (_, i) => trainSteps - 1 - i));
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void {
    const n = checkNumInferenceSteps(numInferenceSteps);
    rejectSetTimestepsOptions(DDIMScheduler.className, options);
    const trainSteps = this.config.num_train_timesteps as number;
    if (n > trainSteps) {
      throw new ArgumentError('numInferenceSteps', `at most num_train_timesteps (${trainSteps})`, n);
    }
    const spacing = this.config.timestep_spacing as string;
    let timesteps: number[];
    if (spacing === 'linspace') {
      timesteps = numpyLinspace(0, trainSteps - 1, n).map(roundHalfEven).reverse();
    } else if (spacing === 'leading') {
      const ratio = Math.floor(trainSteps / n);
      const offset = this.config.steps_offset as number;
      timesteps = Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + offset);
    } else {
      timesteps = numpyArange(trainSteps, 0, -trainSteps / n).map((t) => roundHalfEven(t) - 1);
    }
    this.#timesteps = Object.freeze(timesteps);
    this.#numInferenceSteps = n;
  }

  scaleModelInput(sample: Tensor, _timestep: number): Tensor {
    return sample;
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, options?: StepOptions): Tensor<'f32'> {
    const opts = stepOptions(options);
    const t = checkTimestep(timestep);
    const { model, x } = stepInputs(modelOutput, sample);
    const n = this.#numInferenceSteps;
    if (n === undefined) throw new ArgumentError('timestep', 'a timestep of a rollout: call setTimesteps() before step()', t);
    const ac = this.#alphasCumprod;
    if (!Number.isInteger(t) || t < -ac.length || t >= ac.length) {
      throw new ArgumentError('timestep', `an integer train timestep in 0..${ac.length - 1}`, t);
    }
    const eta = numberOption(opts.eta, 'options.eta', 0, 0);
    const c = this.config;

    // Diffusers steps back by the leading-spacing stride whatever the spacing.
    const prev = t - Math.floor((c.num_train_timesteps as number) / n);
    // Python indexing: a negative timestep counts from the end. Trailing spacing in v0.30.3 ends
    // on -1 for some step counts (61, 103, ...: NumPy's arange overshoots), and diffusers then
    // reads alphas_cumprod[-1]; we reproduce that rather than fail where diffusers runs.
    const alphaProd = ac[t < 0 ? t + ac.length : t];
    const alphaProdPrev = prev >= 0 ? ac[prev] : this.#finalAlphaCumprod;
    const betaProd = f32(1 - alphaProd);
    const sqrtAlpha = f32(Math.sqrt(alphaProd));
    const sqrtBeta = f32(Math.sqrt(betaProd));

    const size = x.length;
    const x0 = new Float32Array(size);
    let eps = model;
    switch (c.prediction_type as PredictionType) {
      case 'epsilon':
        for (let i = 0; i < size; i++) x0[i] = f32(x[i] - f32(sqrtBeta * model[i])) / sqrtAlpha;
        break;
      case 'sample':
        x0.set(model);
        eps = new Float32Array(size);
        for (let i = 0; i < size; i++) eps[i] = f32(x[i] - f32(sqrtAlpha * x0[i])) / sqrtBeta;
        break;
      case 'v_prediction':
        eps = new Float32Array(size);
        for (let i = 0; i < size; i++) {
          x0[i] = f32(sqrtAlpha * x[i]) - f32(sqrtBeta * model[i]);
          eps[i] = f32(sqrtAlpha * model[i]) + f32(sqrtBeta * x[i]);
        }
        break;
    }

    if (c.thresholding) {
      thresholdSample(x0, sample.shape, c.dynamic_thresholding_ratio as number, c.sample_max_value as number);
    } else if (c.clip_sample) {
      const range = f32(c.clip_sample_range as number);
      for (let i = 0; i < size; i++) x0[i] = Math.min(Math.max(x0[i], -range), range);
    }

    // sigma_t(eta) of eq. 16.
    const betaProdPrev = f32(1 - alphaProdPrev);
    const variance = f32(f32(betaProdPrev / betaProd) * f32(1 - f32(alphaProd / alphaProdPrev)));
    const stdDev = f32(f32(eta) * f32(Math.sqrt(variance)));

    if (opts.useClippedModelOutput === true) {
      eps = new Float32Array(size);
      for (let i = 0; i < size; i++) eps[i] = f32(x[i] - f32(sqrtAlpha * x0[i])) / sqrtBeta;
    }

    const direction = f32(Math.sqrt(f32(betaProdPrev - f32(stdDev * stdDev))));
    const sqrtAlphaPrev = f32(Math.sqrt(alphaProdPrev));
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = f32(sqrtAlphaPrev * x0[i]) + f32(direction * eps[i]);
    if (eta > 0) {
      const noise = noiseData(opts.noise, sample.shape, 'when eta > 0');
      for (let i = 0; i < size; i++) out[i] = out[i] + f32(stdDev * noise[i]);
    }
    return tensorOf(out, sample.shape);
  }
}
