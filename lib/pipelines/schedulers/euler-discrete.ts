/**
 * EulerDiscreteScheduler with the semantics of diffusers v0.30.3 (Karras et al. 2022, algorithm 2,
 * with optional churn). Sigmas are float32 values built as diffusers builds them (NumPy float64
 * interpolation of the float32 train sigmas); the step is elementwise float32.
 */
import type { Tensor } from '../../tensor.js';
import { BETA_KEYS, SPACING_KEYS, resolveSchedulerConfig, type ConfigSpec, type SchedulerConfig } from './config.js';
import {
  alphasCumprodFromConfig, karrasSigmas, logFloat32, sigmaToT, trainSigmas,
} from './noise-schedule.js';
import { numpyArange, numpyInterpOnIndexGrid, numpyLinspace, roundHalfEven, torchLinspaceFloat32 } from './numerics.js';
import {
  checkNumInferenceSteps, checkTimestep, stepOptions, f32Data, indexForTimestep, noiseData, numberOption, rejectSetTimestepsOptions,
  rolloutFinished, stepInputs, tensorOf,
} from './step-helpers.js';
import type { Scheduler, SetTimestepsOptions, StepOptions } from './types.js';

const f32 = Math.fround;

export const EULER_DISCRETE_CONFIG_SPEC: ConfigSpec = {
  ...BETA_KEYS,
  ...SPACING_KEYS,
  timestep_spacing: { default: 'linspace', type: { kind: 'enum', values: ['linspace', 'leading', 'trailing'] } },
  // 'original_sample' is diffusers' older name of 'sample'.
  prediction_type: { default: 'epsilon', type: { kind: 'enum', values: ['epsilon', 'v_prediction', 'sample', 'original_sample'] } },
  interpolation_type: { default: 'linear', type: { kind: 'enum', values: ['linear', 'log_linear'] } },
  use_karras_sigmas: { default: false, type: { kind: 'bool', nullable: true } },
  sigma_min: { default: null, type: { kind: 'float', min: 0, exclusive: true, nullable: true } },
  sigma_max: { default: null, type: { kind: 'float', min: 0, exclusive: true, nullable: true } },
  timestep_type: { default: 'discrete', type: { kind: 'enum', values: ['discrete', 'continuous'] } },
  final_sigmas_type: { default: 'zero', type: { kind: 'enum', values: ['zero', 'sigma_min'] } },
};

export class EulerDiscreteScheduler implements Scheduler {
  static readonly className = 'EulerDiscreteScheduler';
  static readonly configSpec = EULER_DISCRETE_CONFIG_SPEC;

  readonly config: SchedulerConfig;
  readonly order = 1;
  /** cumprod(1 - betas) per train timestep, float32 values. */
  readonly alphasCumprod: readonly number[];
  #alphasCumprod: Float32Array;
  /** sqrt((1 - alpha bar) / alpha bar), ascending in t, and its float32 log. */
  #trainSigmas: Float32Array;
  #logSigmas: Float32Array;
  #timesteps: readonly number[] = [];
  #sigmas: readonly number[] = [];
  #stepIndex: number | undefined;

  /** `config`: diffusers EulerDiscreteScheduler keys; missing keys take diffusers' defaults. */
  constructor(config: object = {}) {
    this.config = resolveSchedulerConfig(EulerDiscreteScheduler.className, EULER_DISCRETE_CONFIG_SPEC, config);
    const c = this.config;
    const trainSteps = c.num_train_timesteps as number;
    const ac = alphasCumprodFromConfig(c, true);
    this.#alphasCumprod = ac;
    this.alphasCumprod = Object.freeze(Array.from(ac));
    this.#trainSigmas = trainSigmas(ac);
    this.#logSigmas = logFloat32(this.#trainSigmas);
    // Before setTimesteps, diffusers holds the full train schedule.
    const descending = Array.from(this.#trainSigmas).reverse();
    const timesteps = this.#continuousTimesteps()
      ? descending.map((s) => f32(0.25 * f32(Math.log(s))))
      : numpyLinspace(0, trainSteps - 1, trainSteps).reverse().map(f32);
    this.#setSchedule(timesteps, [...descending, 0]);
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  get sigmas(): readonly number[] {
    return this.#sigmas;
  }

  /** The largest sigma for linspace/trailing spacing, sqrt(sigma_max^2 + 1) for leading (float32). */
  get initNoiseSigma(): number {
    const max = this.#sigmas.reduce((m, s) => Math.max(m, s), -Infinity);
    const spacing = this.config.timestep_spacing;
    if (spacing === 'linspace' || spacing === 'trailing') return max;
    return f32(Math.sqrt(f32(f32(max * max) + 1)));
  }

  /** The index of the next step in the schedule; undefined until the first step of a rollout. */
  get stepIndex(): number | undefined {
    return this.#stepIndex;
  }

  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void {
    const n = checkNumInferenceSteps(numInferenceSteps);
    rejectSetTimestepsOptions(EulerDiscreteScheduler.className, options);
    const c = this.config;
    const trainSteps = c.num_train_timesteps as number;
    let timesteps: number[];
    if (c.timestep_spacing === 'linspace') {
      timesteps = numpyLinspace(0, trainSteps - 1, n).map(f32).reverse();
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(trainSteps / n);
      const offset = c.steps_offset as number;
      timesteps = Array.from({ length: n }, (_, i) => f32((n - 1 - i) * ratio + offset));
    } else {
      timesteps = numpyArange(trainSteps, 0, -trainSteps / n).map((t) => roundHalfEven(t) - 1);
    }

    const train = this.#trainSigmas;
    let sigmas: ArrayLike<number>;
    if (c.interpolation_type === 'linear') {
      sigmas = timesteps.map((t) => numpyInterpOnIndexGrid(t, train));
    } else {
      // log_linear: n + 1 sigmas from the largest train sigma down to the smallest (as diffusers
      // builds them: a float32 torch.linspace of the float32 logs, then exp).
      sigmas = torchLinspaceFloat32(this.#logSigmas[train.length - 1], this.#logSigmas[0], n + 1).map(Math.exp);
    }
    if (c.use_karras_sigmas === true) {
      const sigmaMin = (c.sigma_min as number | null) ?? sigmas[sigmas.length - 1];
      const sigmaMax = (c.sigma_max as number | null) ?? sigmas[0];
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      timesteps = Array.from(sigmas, (s) => sigmaToT(s, this.#logSigmas));
    }
    const last = c.final_sigmas_type === 'sigma_min' ? f32(Math.sqrt(f32(f32(1 - this.#alphasCumprod[0]) / this.#alphasCumprod[0]))) : 0;
    const allSigmas = [...Array.from(sigmas, f32), last];
    if (this.#continuousTimesteps()) timesteps = allSigmas.slice(0, -1).map((s) => f32(0.25 * f32(Math.log(s))));
    this.#setSchedule(timesteps.map(f32), allSigmas);
  }

  scaleModelInput(sample: Tensor, timestep: number): Tensor {
    const t = checkTimestep(timestep);
    const x = f32Data(sample, 'sample');
    // The step index is found from the timestep on the first call of a rollout, then counted by step().
    this.#stepIndex ??= indexForTimestep(this.#timesteps, t, true, 'error');
    const sigma = this.#sigmas[this.#stepIndex];
    const scale = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
    return tensorOf(x.map((v) => v / scale), sample.shape);
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor, options?: StepOptions): Tensor<'f32'> {
    const opts = stepOptions(options);
    const t = checkTimestep(timestep);
    const { model, x: input } = stepInputs(modelOutput, sample);
    const sChurn = numberOption(opts.sChurn, 'options.sChurn', 0, 0);
    const sTmin = numberOption(opts.sTmin, 'options.sTmin', 0, -Infinity, true);
    const sTmax = numberOption(opts.sTmax, 'options.sTmax', Infinity, -Infinity, true);
    const sNoise = numberOption(opts.sNoise, 'options.sNoise', 1);
    const index = this.#stepIndex ?? indexForTimestep(this.#timesteps, t, true, 'error');
    const sigmas = this.#sigmas;
    if (index + 1 >= sigmas.length) throw rolloutFinished(this.#timesteps.length);

    const sigma = sigmas[index];
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const sigmaHat = f32(sigma * f32(gamma + 1));
    const size = input.length;
    let x = input;
    if (gamma > 0) {
      const noise = noiseData(opts.noise, sample.shape, 'when sChurn > 0');
      const churn = f32(Math.sqrt(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma))));
      const noiseScale = f32(sNoise);
      x = new Float32Array(size);
      for (let i = 0; i < size; i++) x[i] = input[i] + f32(f32(noise[i] * noiseScale) * churn);
    }

    const x0 = new Float32Array(size);
    const prediction = this.config.prediction_type;
    if (prediction === 'epsilon') {
      for (let i = 0; i < size; i++) x0[i] = x[i] - f32(sigmaHat * model[i]);
    } else if (prediction === 'v_prediction') {
      // denoised = model_output * c_out + input * c_skip
      const variance = f32(f32(sigma * sigma) + 1);
      const cOut = f32(-sigma / f32(Math.sqrt(variance)));
      for (let i = 0; i < size; i++) x0[i] = f32(model[i] * cOut) + f32(x[i] / variance);
    } else {
      x0.set(model);
    }

    // The ODE derivative dx/dsigma, then one Euler step to the next sigma.
    const dt = f32(sigmas[index + 1] - sigmaHat);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = x[i] + f32(f32(f32(x[i] - x0[i]) / sigmaHat) * dt);
    this.#stepIndex = index + 1;
    return tensorOf(out, sample.shape);
  }

  #continuousTimesteps(): boolean {
    return this.config.timestep_type === 'continuous' && this.config.prediction_type === 'v_prediction';
  }

  #setSchedule(timesteps: number[], sigmas: number[]): void {
    this.#timesteps = Object.freeze(timesteps);
    this.#sigmas = Object.freeze(sigmas);
    this.#stepIndex = undefined;
  }

}
