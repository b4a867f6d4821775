/**
 * The training noise schedule the discrete schedulers share (betas, alphas_cumprod, the train
 * sigmas) and the sigma-space helpers of diffusers v0.30.3 (Karras and Lu schedules, sigma -> t).
 * Float32 where diffusers computes with torch float32 tensors, float64 where it uses NumPy.
 */
import { ArgumentError } from '../../errors.js';
import type { SchedulerConfig } from './config.js';
import { cumprodFloat32, numpyLinspace, torchLinspaceFloat32 } from './numerics.js';

const f32 = Math.fround;

type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';

/**
 * alphas_cumprod = cumprod(1 - betas), float32 as torch stores it, from a resolved config's beta
 * keys (num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
 * rescale_betas_zero_snr). The sigma-based schedulers (Euler, DPM-Solver) replace a rescaled
 * schedule's final 0 by 2^-24 (fp16's smallest subnormal), as diffusers does, so the largest sigma
 * stays finite; they also need two train timesteps at least.
 */
export function alphasCumprodFromConfig(config: SchedulerConfig, sigmaBased: boolean): Float32Array {
  const trainSteps = config.num_train_timesteps as number;
  const trainedBetas = config.trained_betas as number[] | null;
  if (trainedBetas !== null && trainedBetas.length !== trainSteps) {
    throw new ArgumentError('config.trained_betas', `num_train_timesteps (${trainSteps}) betas`, `${trainedBetas.length} betas`);
  }
  if (sigmaBased && trainSteps < 2) {
    throw new ArgumentError('config.num_train_timesteps', `at least 2 for ${String(config._class_name)}`, trainSteps);
  }
  let betas = trainedBetas !== null ? Float32Array.from(trainedBetas) : scheduledBetas(config);
  if (config.rescale_betas_zero_snr === true) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumprodFloat32(betas.map((b) => 1 - b));
  if (sigmaBased && config.rescale_betas_zero_snr === true) alphasCumprod[trainSteps - 1] = 2 ** -24;
  return alphasCumprod;
}

/** The named beta schedule, float32. */
function scheduledBetas(config: SchedulerConfig): Float32Array {
  const n = config.num_train_timesteps as number;
  const start = config.beta_start as number;
  const end = config.beta_end as number;
  switch (config.beta_schedule as BetaSchedule) {
    case 'linear':
      return torchLinspaceFloat32(start, end, n);
    case 'scaled_linear':
      // Latent diffusion's schedule: linear in sqrt(beta), squared in float32.
      return torchLinspaceFloat32(Math.sqrt(start), Math.sqrt(end), n).map((b) => b * b);
    case 'squaredcos_cap_v2':
      return cosineBetas(n);
  }
}

/** Glide's cosine schedule (betas_for_alpha_bar with max_beta 0.999), in float64 then stored as float32. */
function cosineBetas(n: number): Float32Array {
  const alphaBar = (t: number): number => {
    const c = Math.cos(((t + 0.008) / 1.008) * Math.PI / 2);
    return c * c;
  };
  const betas = new Float32Array(n);
  for (let i = 0; i < n; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
  return betas;
}

/**
 * Rescales betas to zero terminal SNR (Lin et al. 2023, algorithm 1), in float32: shift sqrt(alpha
 * bar) so its last value is 0, scale so its first is unchanged, and turn it back into betas.
 */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtBar = cumprodFloat32(betas.map((b) => 1 - b)).map((a) => Math.sqrt(a));
  const first = sqrtBar[0];
  const last = sqrtBar[n - 1];
  const scale = f32(first / f32(first - last));
  const bar = sqrtBar.map((s) => {
    const shifted = f32(f32(s - last) * scale);
    return shifted * shifted;
  });
  const out = new Float32Array(n);
  out[0] = 1 - bar[0];
  for (let i = 1; i < n; i++) out[i] = 1 - f32(bar[i] / bar[i - 1]);
  return out;
}

/** sqrt((1 - alpha bar) / alpha bar) per train timestep (ascending in t), in float32. */
export function trainSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}

/** np.log of a float32 array (the result is float32). */
export function logFloat32(values: Float32Array): Float32Array {
  return values.map((v) => Math.log(v));
}

/**
 * The continuous train timestep of a sigma (diffusers' `_sigma_to_t`): log-linear interpolation
 * between the two train sigmas around it. `logSigmas` is float32 and ascending. NumPy 1.x's
 * value-based casting makes `log_sigma - log_sigmas` a float32 array, which decides `low`; the
 * interpolation weight is float64 over a float32 difference.
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const logSigma32 = f32(logSigma);
  // argmax of the running count of `log_sigma >= log_sigmas[i]`: the first index reaching the final count.
  let count = 0;
  let best = 0;
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) {
    if (f32(logSigma32 - logSigmas[i]) >= 0) count++;
    if (count > best) {
      best = count;
      low = i;
    }
  }
  low = Math.min(low, logSigmas.length - 2);
  const high = low + 1;
  const lowValue = logSigmas[low];
  const w = Math.min(1, Math.max(0, (lowValue - logSigma) / f32(lowValue - logSigmas[high])));
  return (1 - w) * low + w * high;
}

/** Karras et al. (2022) sigmas, rho 7, from sigmaMax down to sigmaMin, float64. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, count: number): number[] {
  const rho = 7;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return numpyLinspace(0, 1, count).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/** Lu et al. (2022) schedule: log-sigma (lambda) linear from lambdaMax down to lambdaMin; returns sigmas, float64. */
export function luSigmas(lambdaMin: number, lambdaMax: number, count: number): number[] {
  return numpyLinspace(0, 1, count).map((r) => Math.exp(lambdaMax + r * (lambdaMin - lambdaMax)));
}
