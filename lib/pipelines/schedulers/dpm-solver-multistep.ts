/**
 * DPMSolverMultistepScheduler with the semantics of diffusers v0.30.3, for the data-prediction
 * solver DPM-Solver++ (Lu et al. 2022): orders 1-3 (2 is "DPM++ 2M"), midpoint or Heun second-order
 * updates, lower-order final steps, Karras or Lu sigmas. The noise-prediction and SDE variants
 * (`dpmsolver`, `sde-dpmsolver`, `sde-dpmsolver++`) are not implemented and are rejected.
 * Schedules as diffusers builds them; the step is elementwise float32 in diffusers' order.
 */
import { ArgumentError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import {
  BETA_KEYS, PREDICTION_TYPES, SPACING_KEYS, THRESHOLDING_KEYS, resolveSchedulerConfig,
  type ConfigSpec, type PredictionType, type SchedulerConfig,
} from './config.js';
import {
  alphasCumprodFromConfig, karrasSigmas, logFloat32, luSigmas, sigmaToT, trainSigmas,
} from './noise-schedule.js';
import { numpyArange, numpyInterpOnIndexGrid, numpyLinspace, roundHalfEven } from './numerics.js';
import {
  checkNumInferenceSteps, checkTimestep, f32Data, indexForTimestep, rejectSetTimestepsOptions, rolloutFinished,
  sameShape, tensorOf, thresholdSample,
} from './step-helpers.js';
import type { Scheduler, SetTimestepsOptions } from './types.js';

const f32 = Math.fround;

export const DPM_SOLVER_MULTISTEP_CONFIG_SPEC: ConfigSpec = {
  ...BETA_KEYS,
  ...SPACING_KEYS,
  ...THRESHOLDING_KEYS,
  timestep_spacing: { default: 'linspace', type: { kind: 'enum', values: ['linspace', 'leading', 'trailing'] } },
  solver_order: { default: 2, type: { kind: 'int', min: 1, max: 3 } },
  prediction_type: { default: 'epsilon', type: { kind: 'enum', values: PREDICTION_TYPES } },
  // 'deis' is accepted and becomes 'dpmsolver++', as in diffusers.
  algorithm_type: { default: 'dpmsolver++', type: { kind: 'enum', values: ['dpmsolver++', 'deis'] } },
  // 'logrho', 'bh1' and 'bh2' (other solvers' names) become 'midpoint', as in diffusers.
  solver_type: { default: 'midpoint', type: { kind: 'enum', values: ['midpoint', 'heun', 'logrho', 'bh1', 'bh2'] } },
  lower_order_final: { default: true, type: { kind: 'bool' } },
  euler_at_final: { default: false, type: { kind: 'bool' } },
  use_karras_sigmas: { default: false, type: { kind: 'bool', nullable: true } },
  use_lu_lambdas: { default: false, type: { kind: 'bool', nullable: true } },
  final_sigmas_type: { default: 'zero', type: { kind: 'enum', values: ['zero', 'sigma_min'] } },
  lambda_min_clipped: { default: -Infinity, type: { kind: 'float', allowNegativeInfinity: true } },
  variance_type: { default: null, type: { kind: 'string', nullable: true } },
};

/** alpha_t and sigma_t of a VP model at noise level sigma (float32). */
function alphaSigma(sigma: number): [number, number] {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [alpha, f32(sigma * alpha)];
}

/** lambda = log(alpha) - log(sigma), the half log-SNR (float32; +Infinity at sigma 0). */
function lambdaOf(alpha: number, sigma: number): number {
  return f32(f32(Math.log(alpha)) - f32(Math.log(sigma)));
}

export class DPMSolverMultistepScheduler implements Scheduler {
  static readonly className = 'DPMSolverMultistepScheduler';
  static readonly configSpec = DPM_SOLVER_MULTISTEP_CONFIG_SPEC;

  readonly config: SchedulerConfig;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  /** cumprod(1 - betas) per train timestep, float32 values. */
  readonly alphasCumprod: readonly number[];
  #trainSigmas: Float32Array;
  #logSigmas: Float32Array;
  /** lambda (half log-SNR) per train timestep, falling as t grows; for lambda_min_clipped. */
  #trainLambdas: Float32Array;
  #timesteps: readonly number[];
  #sigmas: readonly number[];
  #numInferenceSteps: number | undefined;
  #stepIndex: number | undefined;
  /** The last `solver_order` converted model outputs (x0 predictions), oldest first. */
  #modelOutputs: (Float32Array | undefined)[] = [];
  #lowerOrderNums = 0;

  /** `config`: diffusers DPMSolverMultistepScheduler keys; missing keys take diffusers' defaults. */
  constructor(config: object = {}) {
    this.config = resolveSchedulerConfig(DPMSolverMultistepScheduler.className, DPM_SOLVER_MULTISTEP_CONFIG_SPEC, withDiffusersRenames(config));
    const c = this.config;
    const trainSteps = c.num_train_timesteps as number;
    const ac = alphasCumprodFromConfig(c, true);
    this.alphasCumprod = Object.freeze(Array.from(ac));
    this.#trainLambdas = ac.map((a) => lambdaOf(f32(Math.sqrt(a)), f32(Math.sqrt(f32(1 - a)))));
    this.#trainSigmas = trainSigmas(ac);
    this.#logSigmas = logFloat32(this.#trainSigmas);
    // Before setTimesteps, diffusers lists the train timesteps (as floats) and the train sigmas; it cannot step yet.
    this.#timesteps = Object.freeze(numpyLinspace(0, trainSteps - 1, trainSteps).map(f32).reverse());
    this.#sigmas = Object.freeze(Array.from(this.#trainSigmas));
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

  setTimesteps(numInferenceSteps: number, options?: SetTimestepsOptions): void {
    const n = checkNumInferenceSteps(numInferenceSteps);
    rejectSetTimestepsOptions(DPMSolverMultistepScheduler.className, options);
    const c = this.config;
    const trainSteps = c.num_train_timesteps as number;
    // Clip the smallest lambdas (the cosine schedule's end) for numerical stability.
    const clip = f32(c.lambda_min_clipped as number);
    let clipped = 0;
    while (clipped < trainSteps && this.#trainLambdas[trainSteps - 1 - clipped] < clip) clipped++;
    const lastTimestep = trainSteps - clipped;

    let timesteps: number[];
    if (c.timestep_spacing === 'linspace') {
      timesteps = numpyLinspace(0, lastTimestep - 1, n + 1).map(roundHalfEven).reverse().slice(0, -1);
    } else if (c.timestep_spacing === 'leading') {
      const ratio = Math.floor(lastTimestep / (n + 1));
      const offset = c.steps_offset as number;
      timesteps = Array.from({ length: n }, (_, i) => (n - i) * ratio + offset);
    } else {
      timesteps = numpyArange(lastTimestep, 0, -trainSteps / n).map((t) => roundHalfEven(t) - 1);
    }

    let sigmas: number[];
    if (c.use_karras_sigmas === true) {
      const descending = Array.from(this.#trainSigmas).reverse();
      // Diffusers reads sigma_min / sigma_max from the config when it has such keys (only as kept unknown keys here).
      const sigmaMin = typeof c.sigma_min === 'number' ? c.sigma_min : descending[descending.length - 1];
      const sigmaMax = typeof c.sigma_max === 'number' ? c.sigma_max : descending[0];
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, this.#logSigmas)));
    } else if (c.use_lu_lambdas === true) {
      sigmas = luSigmas(this.#logSigmas[0], this.#logSigmas[trainSteps - 1], n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, this.#logSigmas)));
    } else {
      sigmas = timesteps.map((t) => numpyInterpOnIndexGrid(t, this.#trainSigmas));
    }
    const last = c.final_sigmas_type === 'sigma_min' ? this.#trainSigmas[0] : 0;
    this.#sigmas = Object.freeze([...sigmas.map(f32), last]);
    this.#timesteps = Object.freeze(timesteps);
    this.#numInferenceSteps = timesteps.length;
    this.#modelOutputs = new Array<Float32Array | undefined>(c.solver_order as number).fill(undefined);
    this.#lowerOrderNums = 0;
    this.#stepIndex = undefined;
  }

  scaleModelInput(sample: Tensor, _timestep: number): Tensor {
    return sample;
  }

  step(modelOutput: Tensor, timestep: number, sample: Tensor): Tensor<'f32'> {
    const t = checkTimestep(timestep);
    const model = f32Data(modelOutput, 'modelOutput');
    const x = f32Data(sample, 'sample');
    const steps = this.#numInferenceSteps;
    if (steps === undefined) throw new ArgumentError('timestep', 'a timestep of a rollout: call setTimesteps() before step()', t);
    const index = this.#stepIndex ?? indexForTimestep(this.#timesteps, t, false, 'last');
    if (index >= steps) throw rolloutFinished(steps);
    const c = this.config;
    const order = c.solver_order as number;

    // Lower-order steps at the end are more stable with few steps; a final sigma of 0 needs first order.
    const lowerOrderFinal = index === steps - 1
      && (c.euler_at_final === true || (c.lower_order_final === true && steps < 15) || c.final_sigmas_type === 'zero');
    const lowerOrderSecond = index === steps - 2 && c.lower_order_final === true && steps < 15;

    const x0 = this.#convertModelOutput(modelOutput, model, sample, x, index);
    this.#modelOutputs.shift();
    this.#modelOutputs.push(x0);

    let prev: Float32Array;
    if (order === 1 || this.#lowerOrderNums < 1 || lowerOrderFinal) prev = this.#firstOrderUpdate(x0, x, index);
    else if (order === 2 || this.#lowerOrderNums < 2 || lowerOrderSecond) prev = this.#secondOrderUpdate(x, index);
    else prev = this.#thirdOrderUpdate(x, index);
    if (this.#lowerOrderNums < order) this.#lowerOrderNums++;
    this.#stepIndex = index + 1;
    return tensorOf(prev, sample.shape);
  }

  /** The model output as the x0 prediction DPM-Solver++ integrates. */
  #convertModelOutput(modelOutput: Tensor, model: Float32Array, sample: Tensor, x: Float32Array, index: number): Float32Array {
    const c = this.config;
    const prediction = c.prediction_type as PredictionType;
    let m = model;
    let mShape = modelOutput.shape;
    if (prediction === 'epsilon' && (c.variance_type === 'learned' || c.variance_type === 'learned_range')) {
      // Diffusers keeps the first 3 channels (the mean of a pixel-space model with learned variance).
      ({ data: m, shape: mShape } = firstChannels(model, modelOutput.shape, 3));
    }
    if (!sameShape(mShape, sample.shape)) {
      throw new ArgumentError('modelOutput', `a tensor of the sample's shape [${sample.shape.join(', ')}]`, `shape [${modelOutput.shape.join(', ')}]`);
    }
    const size = x.length;
    const x0 = new Float32Array(size);
    const [alpha, sigma] = alphaSigma(this.#sigmas[index]);
    if (prediction === 'epsilon') {
      for (let i = 0; i < size; i++) x0[i] = f32(x[i] - f32(sigma * m[i])) / alpha;
    } else if (prediction === 'sample') {
      x0.set(m);
    } else {
      for (let i = 0; i < size; i++) x0[i] = f32(alpha * x[i]) - f32(sigma * m[i]);
    }
    if (c.thresholding) thresholdSample(x0, sample.shape, c.dynamic_thresholding_ratio as number, c.sample_max_value as number);
    return x0;
  }

  /** DPM-Solver++ first order (DDIM in sigma space). */
  #firstOrderUpdate(x0: Float32Array, x: Float32Array, index: number): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(this.#sigmas[index + 1]);
    const [alphaS, sigmaS] = alphaSigma(this.#sigmas[index]);
    const h = f32(lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS, sigmaS));
    const a = f32(sigmaT / sigmaS);
    const b = f32(alphaT * f32(f32(Math.exp(-h)) - 1));
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = f32(a * x[i]) - f32(b * x0[i]);
    return out;
  }

  /** DPM-Solver++(2M): a multistep update from the last two x0 predictions. */
  #secondOrderUpdate(x: Float32Array, index: number): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(this.#sigmas[index + 1]);
    const [alphaS0, sigmaS0] = alphaSigma(this.#sigmas[index]);
    const [alphaS1, sigmaS1] = alphaSigma(this.#sigmas[index - 1]);
    const lambdaT = lambdaOf(alphaT, sigmaT);
    const lambdaS0 = lambdaOf(alphaS0, sigmaS0);
    const lambdaS1 = lambdaOf(alphaS1, sigmaS1);
    const m0 = this.#modelOutputs[this.#modelOutputs.length - 1]!;
    const m1 = this.#modelOutputs[this.#modelOutputs.length - 2]!;
    const h = f32(lambdaT - lambdaS0);
    const h0 = f32(lambdaS0 - lambdaS1);
    const r0 = f32(h0 / h);
    const invR0 = f32(1 / r0);
    const expm1 = f32(f32(Math.exp(-h)) - 1);
    const a = f32(sigmaT / sigmaS0);
    const b = f32(alphaT * expm1);
    // midpoint: - 0.5 * b * D1;  heun: + alpha_t * ((exp(-h) - 1) / h + 1) * D1
    const heun = this.config.solver_type === 'heun';
    const d1Coefficient = heun ? f32(alphaT * f32(f32(expm1 / h) + 1)) : f32(0.5 * b);
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const d1 = f32(invR0 * f32(m0[i] - m1[i]));
      const partial = f32(f32(a * x[i]) - f32(b * m0[i]));
      out[i] = heun ? partial + f32(d1Coefficient * d1) : partial - f32(d1Coefficient * d1);
    }
    return out;
  }

  /** DPM-Solver++(3M): a multistep update from the last three x0 predictions. */
  #thirdOrderUpdate(x: Float32Array, index: number): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(this.#sigmas[index + 1]);
    const [alphaS0, sigmaS0] = alphaSigma(this.#sigmas[index]);
    const [alphaS1, sigmaS1] = alphaSigma(this.#sigmas[index - 1]);
    const [alphaS2, sigmaS2] = alphaSigma(this.#sigmas[index - 2]);
    const lambdaT = lambdaOf(alphaT, sigmaT);
    const lambdaS0 = lambdaOf(alphaS0, sigmaS0);
    const lambdaS1 = lambdaOf(alphaS1, sigmaS1);
    const lambdaS2 = lambdaOf(alphaS2, sigmaS2);
    const outputs = this.#modelOutputs;
    const m0 = outputs[outputs.length - 1]!;
    const m1 = outputs[outputs.length - 2]!;
    const m2 = outputs[outputs.length - 3]!;
    const h = f32(lambdaT - lambdaS0);
    const r0 = f32(f32(lambdaS0 - lambdaS1) / h);
    const r1 = f32(f32(lambdaS1 - lambdaS2) / h);
    const invR0 = f32(1 / r0);
    const invR1 = f32(1 / r1);
    const r01 = f32(r0 + r1);
    const d1Weight = f32(r0 / r01);
    const d2Weight = f32(1 / r01);
    const expNeg = f32(Math.exp(-h));
    const expm1 = f32(expNeg - 1);
    const a = f32(sigmaT / sigmaS0);
    const b = f32(alphaT * expm1);
    const cD1 = f32(alphaT * f32(f32(expm1 / h) + 1));
    const cD2 = f32(alphaT * f32(f32(f32(expm1 + h) / f32(h * h)) - 0.5));
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const d10 = f32(invR0 * f32(m0[i] - m1[i]));
      const d11 = f32(invR1 * f32(m1[i] - m2[i]));
      const diff = f32(d10 - d11);
      const d1 = f32(d10 + f32(d1Weight * diff));
      const d2 = f32(d2Weight * diff);
      out[i] = f32(f32(f32(a * x[i]) - f32(b * m0[i])) + f32(cD1 * d1)) - f32(cD2 * d2);
    }
    return out;
  }
}

/**
 * The config with the values diffusers rewrites at construction ('deis' -> 'dpmsolver++'; the solver
 * types of other schedulers -> 'midpoint'); rejects the algorithm types svdquant does not implement.
 */
function withDiffusersRenames(config: unknown): unknown {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return config;
  const given = config as Record<string, unknown>;
  if (typeof given.algorithm_type === 'string' && ['dpmsolver', 'sde-dpmsolver', 'sde-dpmsolver++'].includes(given.algorithm_type)) {
    throw new ArgumentError('config.algorithm_type', "'dpmsolver++' (svdquant implements DPM-Solver++ only)", given.algorithm_type);
  }
  const renamed: Record<string, unknown> = { ...given };
  if (given.algorithm_type === 'deis') renamed.algorithm_type = 'dpmsolver++';
  if (['logrho', 'bh1', 'bh2'].includes(given.solver_type as string)) renamed.solver_type = 'midpoint';
  return renamed;
}

/** model_output[:, :count] of a tensor with at least 2 dimensions. */
function firstChannels(data: Float32Array, shape: readonly number[], count: number): { data: Float32Array; shape: number[] } {
  if (shape.length < 2 || shape[1] < count) {
    throw new ArgumentError('modelOutput', `a tensor [batch, channels >= ${count}, ...] (variance_type learned)`, `shape [${shape.join(', ')}]`);
  }
  const batch = shape[0];
  const inner = shape.slice(2).reduce((p, d) => p * d, 1);
  const out = new Float32Array(batch * count * inner);
  for (let b = 0; b < batch; b++) out.set(data.subarray(b * shape[1] * inner, (b * shape[1] + count) * inner), b * count * inner);
  return { data: out, shape: [batch, count, ...shape.slice(2)] };
}
