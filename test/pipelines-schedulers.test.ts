// Schedulers against the diffusers v0.30.3 fixtures (test/data/diffusers/README.md): each case's
// config is loaded from its scheduler_config.json, the documented toy rollout is replayed with our
// scheduler, and timesteps, sigmas, alphas_cumprod, every model input and every intermediate sample
// are compared with what real diffusers produced. Then: config files (round trip, diffusers'
// formatting, unknown keys), expectations written by hand from the papers, and typed errors.
import t from 'tap';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ArgumentError, FileFormatError, IoError, Tensor, DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler,
  FlowMatchEulerDiscreteScheduler, calculateShift, loadSchedulerConfig, saveSchedulerConfig, schedulerFromConfig,
  openSafetensors, type Scheduler, type SafetensorsFile,
} from '../lib/index.js';
import { parsePythonJson } from '../lib/io/python-json.js';
import { thresholdSample } from '../lib/pipelines/schedulers/step-helpers.js';

const DATA = fileURLToPath(new URL('./data/diffusers/', import.meta.url));
const fixtures = parsePythonJson(readFileSync(join(DATA, 'schedulers.json'), 'utf8')) as {
  cases: Record<string, {
    class: string;
    config_file: string;
    set_timesteps_kwargs: { num_inference_steps?: number; sigmas?: number[]; mu?: number };
    step_kwargs: { eta?: number };
    init_noise_sigma: number;
    timesteps_dtype: string;
    sigmas: number[] | null;
  }>;
  flux_mu: { value: number };
};
const CASES = Object.keys(fixtures.cases);

let tensorsFile: SafetensorsFile;
t.before(async () => {
  tensorsFile = await openSafetensors(join(DATA, 'schedulers.safetensors'));
});
t.teardown(() => tensorsFile.close());

interface FixtureTensor { shape: number[]; values: Float32Array | number[] }

async function fixtureTensor(name: string): Promise<FixtureTensor> {
  const e = await tensorsFile.readTensor(name);
  if (e.dtype === 'I64') return { shape: e.shape, values: Array.from(new BigInt64Array(e.data.buffer, 0, e.data.byteLength / 8), Number) };
  if (e.dtype !== 'F32') throw new Error(`unexpected dtype ${e.dtype} for ${name}`);
  return { shape: e.shape, values: new Float32Array(e.data.buffer, 0, e.data.byteLength / 4) };
}

/** max|a - b| / max|b| over one tensor (the fixture README's fp32 criterion is <= 1e-5). */
function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

function bitwiseEqual(got: ArrayLike<number>, want: ArrayLike<number>): boolean {
  return got.length === want.length && Array.from(want).every((w, i) => Object.is(got[i], w));
}

/** The fixtures' toy model: eps = 0.1 * x_in + float32(0.05 * cos(t / 100)), in float32. */
function toyModel(xIn: Tensor, timestep: number): Tensor {
  const offset = Math.fround(0.05 * Math.cos(timestep / 100));
  const scale = Math.fround(0.1);
  return Tensor.fromStorage((xIn.data as Float32Array).map((v) => Math.fround(scale * v) + offset), xIn.shape, 'f32');
}

async function fixtureScheduler(name: string): Promise<Scheduler> {
  const c = fixtures.cases[name];
  // The folder, not the file: exercises the scheduler_config.json lookup.
  const scheduler = schedulerFromConfig(await loadSchedulerConfig(join(DATA, c.config_file, '..')));
  const k = c.set_timesteps_kwargs;
  scheduler.setTimesteps(k.num_inference_steps ?? k.sigmas!.length, { sigmas: k.sigmas, mu: k.mu });
  return scheduler;
}

const TOLERANCE = 1e-5;

for (const name of CASES) {
  t.test(`${name}: schedule and every step of the rollout match diffusers`, async (t) => {
    const c = fixtures.cases[name];
    const scheduler = await fixtureScheduler(name);
    t.equal(scheduler.config._class_name, c.class);

    const timesteps = await fixtureTensor(`${name}/timesteps`);
    if (c.timesteps_dtype === 'torch.int64') {
      t.same(scheduler.timesteps, timesteps.values, 'integer timesteps: exact');
    } else {
      const worst = Math.max(...scheduler.timesteps.map((v, i) => Math.abs(v - timesteps.values[i])));
      t.equal(scheduler.timesteps.length, timesteps.values.length);
      t.ok(worst <= 1e-4, `float timesteps within 1e-4 (max diff ${worst})`);
    }
    if (c.sigmas !== null) {
      const sigmas = await fixtureTensor(`${name}/sigmas`);
      t.ok(relativeError(scheduler.sigmas!, sigmas.values) <= TOLERANCE, 'sigmas');
    }
    if (tensorsFile.has(`${name}/alphas_cumprod`)) {
      const ac = await fixtureTensor(`${name}/alphas_cumprod`);
      t.ok(relativeError((scheduler as DDIMScheduler).alphasCumprod, ac.values) <= TOLERANCE, 'alphas_cumprod');
    }
    t.ok(Math.abs(scheduler.initNoiseSigma - c.init_noise_sigma) <= TOLERANCE * c.init_noise_sigma, 'init_noise_sigma');

    const noise = await fixtureTensor(`${name}/noise`);
    const samples = (await fixtureTensor(`${name}/samples`)).values as Float32Array;
    const modelInputs = (await fixtureTensor(`${name}/model_inputs`)).values as Float32Array;
    const modelOutputs = (await fixtureTensor(`${name}/model_outputs`)).values as Float32Array;
    const per = noise.values.length;
    const slice = (all: Float32Array, i: number) => all.subarray(i * per, (i + 1) * per);

    let x: Tensor = Tensor.fromStorage(Float32Array.from(noise.values, (v) => v * scheduler.initNoiseSigma), noise.shape, 'f32');
    const errors = [relativeError(x.data as Float32Array, slice(samples, 0))];
    const failures: string[] = [];
    scheduler.timesteps.forEach((timestep, i) => {
      const xIn = scheduler.scaleModelInput(x, timestep);
      const eps = toyModel(xIn, timestep);
      const errIn = relativeError(xIn.data as Float32Array, slice(modelInputs, i));
      const errOut = relativeError(eps.data as Float32Array, slice(modelOutputs, i));
      x = scheduler.step(eps, timestep, x, c.step_kwargs);
      const errSample = relativeError(x.data as Float32Array, slice(samples, i + 1));
      errors.push(errIn, errOut, errSample);
      if (errIn > TOLERANCE) failures.push(`step ${i} model input: ${errIn}`);
      if (errOut > TOLERANCE) failures.push(`step ${i} model output: ${errOut}`);
      if (errSample > TOLERANCE) failures.push(`step ${i} sample: ${errSample}`);
    });
    t.equal(x.shape.join(','), noise.shape.join(','));
    t.same(failures, [], `${scheduler.timesteps.length} steps: every tensor within max|a-b| <= 1e-5 max|b|`);
    t.comment(`${name}: worst max|a-b|/max|b| over the rollout ${Math.max(...errors).toExponential(2)}`);
  });
}

t.test('schedules are built with diffusers\' own arithmetic: bit-identical timesteps, sigmas and alphas_cumprod', async (t) => {
  for (const name of CASES) {
    const scheduler = await fixtureScheduler(name);
    t.ok(bitwiseEqual(scheduler.timesteps, (await fixtureTensor(`${name}/timesteps`)).values), `${name}: timesteps`);
    if (fixtures.cases[name].sigmas !== null) t.ok(bitwiseEqual(scheduler.sigmas!, (await fixtureTensor(`${name}/sigmas`)).values), `${name}: sigmas`);
    if (tensorsFile.has(`${name}/alphas_cumprod`)) {
      t.ok(bitwiseEqual((scheduler as DDIMScheduler).alphasCumprod, (await fixtureTensor(`${name}/alphas_cumprod`)).values), `${name}: alphas_cumprod`);
    }
  }
});

t.test('calculateShift reproduces the fixture\'s Flux mu for a 512x512 image (1024 tokens)', async (t) => {
  const config = await loadSchedulerConfig(join(DATA, 'schedulers', 'flow_flux_dynamic'));
  t.equal(calculateShift(1024, config), fixtures.flux_mu.value);
  t.equal(calculateShift(256, {}), 0.5, 'base_image_seq_len gives base_shift');
  t.ok(Math.abs(calculateShift(4096, {}) - 1.15) < 1e-12, 'max_image_seq_len gives max_shift');
  t.throws(() => calculateShift(0, config), ArgumentError);
});

t.test('config files: saving writes diffusers\' bytes, and a saved scheduler loads back the same', async (t) => {
  const dir = t.testdir();
  for (const name of CASES) {
    const c = fixtures.cases[name];
    const original = readFileSync(join(DATA, c.config_file), 'utf8');
    const scheduler = schedulerFromConfig(await loadSchedulerConfig(join(DATA, c.config_file)));
    const file = await saveSchedulerConfig(scheduler, join(dir, name));
    t.equal(readFileSync(file, 'utf8'), original, `${name}: save_config's formatting, byte for byte`);
    const reloaded = schedulerFromConfig(await loadSchedulerConfig(join(dir, name)));
    t.same(reloaded.config, scheduler.config, `${name}: same config`);
    const k = c.set_timesteps_kwargs;
    for (const s of [scheduler, reloaded]) s.setTimesteps(k.num_inference_steps ?? k.sigmas!.length, { sigmas: k.sigmas, mu: k.mu });
    t.same(reloaded.timesteps, scheduler.timesteps, `${name}: same timesteps`);
    t.same(reloaded.sigmas, scheduler.sigmas, `${name}: same sigmas`);
  }
});

t.test('config: defaults filled in, unknown keys kept and written back, _use_default_values honoured', async (t) => {
  const ddim = new DDIMScheduler({ steps_offset: 1, skip_prk_steps: true, _some_private: [1, 2] });
  t.equal(ddim.config.clip_sample, true, 'diffusers default');
  t.equal(ddim.config.timestep_spacing, 'leading');
  t.equal(ddim.config.skip_prk_steps, true, 'unknown key kept');
  t.ok(Object.isFrozen(ddim.config));
  const dir = t.testdir();
  await saveSchedulerConfig(ddim, dir);
  const saved = await loadSchedulerConfig(dir);
  t.equal(saved.skip_prk_steps, true);
  t.same(saved._some_private, [1, 2]);
  t.equal(saved._diffusers_version, '0.30.3');

  const defaulted = new EulerDiscreteScheduler({ timestep_spacing: 'leading', steps_offset: 1, _use_default_values: ['timestep_spacing'] });
  t.equal(defaulted.config.timestep_spacing, 'linspace', 'a key listed in _use_default_values takes the default');
  t.equal(defaulted.config._use_default_values, undefined, 'the list itself is not kept');

  // A config of another class configures this one (diffusers' X.from_config(other.config)).
  const euler = new EulerDiscreteScheduler(ddim.config);
  t.equal(euler.config._class_name, 'EulerDiscreteScheduler');
  t.equal(euler.config.steps_offset, 1);
  t.equal(euler.config.clip_sample, true, "the other class's keys are kept, unused");

  // Renames diffusers applies at construction.
  t.equal(new DPMSolverMultistepScheduler({ algorithm_type: 'deis', solver_type: 'bh2' }).config.algorithm_type, 'dpmsolver++');
  t.equal(new DPMSolverMultistepScheduler({ solver_type: 'logrho' }).config.solver_type, 'midpoint');
  // The pipeline-folder layout: <dir>/scheduler/scheduler_config.json.
  const pipelineDir = t.testdir();
  mkdirSync(join(pipelineDir, 'scheduler'));
  writeFileSync(join(pipelineDir, 'scheduler', 'scheduler_config.json'), '{"_class_name": "DDIMScheduler", "lambda": -Infinity}');
  const nested = await loadSchedulerConfig(pipelineDir);
  t.equal(nested._class_name, 'DDIMScheduler');
  t.equal(nested.lambda, -Infinity, "Python's -Infinity token");
});

// Table 2 of Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (1000 train
// steps, 10 sampling steps), written 0-based: linspace 0, 111, ..., 999; leading 0, 100, ..., 900
// (plus steps_offset); trailing 99, 199, ..., 999.
t.test('timestep spacings: the paper\'s Table 2', async (t) => {
  const spaced = (spacing: string, offset = 0): readonly number[] => {
    const s = new DDIMScheduler({ timestep_spacing: spacing, steps_offset: offset });
    s.setTimesteps(10);
    return s.timesteps;
  };
  t.same(spaced('linspace'), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
  t.same(spaced('leading'), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
  t.same(spaced('leading', 1), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  t.same(spaced('trailing'), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  const euler = new EulerDiscreteScheduler({ timestep_spacing: 'trailing' });
  euler.setTimesteps(10);
  t.same(euler.timesteps, [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  t.equal(euler.sigmas!.length, 11);
  t.equal(euler.sigmas![10], 0, 'final sigma 0');
  const flow = new FlowMatchEulerDiscreteScheduler();
  flow.setTimesteps(4);
  // No shift: sigmas evenly spaced from 1 to 1/1000.
  t.same(flow.sigmas!.map((s) => Math.round(s * 1e6) / 1e6), [1, 0.667, 0.334, 0.001, 0]);
});

t.test('DDIM with eta > 0: the noise enters as sigma_t(eta) * noise (eq. 16), with the direction term shrunk to match', async (t) => {
  const scheduler = new DDIMScheduler({ clip_sample: false });
  scheduler.setTimesteps(10);
  const sample = Tensor.fromArray([0.5, -1, 2, 0.25]);
  const eps = Tensor.fromArray([0.1, 0.2, -0.3, 0.4]);
  const noise = Tensor.fromArray([1, -2, 0.5, 3]);
  const zero = Tensor.fromArray([0, 0, 0, 0]);
  const withNoise = scheduler.step(eps, 900, sample, { eta: 1, noise }).data;
  let shapeSeen: readonly number[] = [];
  const withZero = scheduler.step(eps, 900, sample, { eta: 1, noise: (shape) => ((shapeSeen = shape), zero) }).data;
  t.same(shapeSeen, [4], 'the noise function is asked for the sample\'s shape');
  // sigma_t(eta=1) = sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev), t = 900, prev = 800.
  const a = scheduler.alphasCumprod;
  const std = Math.sqrt((1 - a[800]) / (1 - a[900])) * Math.sqrt(1 - a[900] / a[800]);
  for (let i = 0; i < 4; i++) {
    t.ok(Math.abs(withNoise[i] - withZero[i] - std * noise.data[i]) < 1e-5, `element ${i}`);
  }
  t.throws(() => scheduler.step(eps, 900, sample, { eta: 0.5 }), ArgumentError, 'eta > 0 needs noise');
});

t.test('dynamic thresholding: quantile, clamp to [1, sample_max_value], clamp and divide', async (t) => {
  // |x| sorted: 0.5, 1, 2, 3; the 0.5-quantile at rank 1.5 is 1.5: clamp(x, -1.5, 1.5) / 1.5.
  const x0 = Float32Array.from([0.5, -3, 2, 1, 4, 4, 4, 4]);
  thresholdSample(x0, [2, 4], 0.5, 2);
  const want = [1 / 3, -1, 1, 2 / 3, 1, 1, 1, 1]; // second item: quantile 4 clamped to max 2
  t.ok(want.every((w, i) => Math.abs(x0[i] - w) < 1e-6), `got ${Array.from(x0)}`);
  const small = Float32Array.from([0.1, -0.2]);
  thresholdSample(small, [1, 2], 0.995, 10);
  t.same(Array.from(small), [Math.fround(0.1), Math.fround(-0.2)], 's is at least 1: small samples pass unchanged');
});

t.test('state: setTimesteps starts a rollout; stepping past its end or before it is an error', async (t) => {
  const ddim = new DDIMScheduler();
  const x = Tensor.fromArray([1, 2, 3, 4], [1, 4]);
  t.throws(() => ddim.step(x, 999, x), ArgumentError, 'DDIM cannot step before setTimesteps');
  const dpm = new DPMSolverMultistepScheduler();
  t.throws(() => dpm.step(x, 999, x), ArgumentError, 'DPM cannot step before setTimesteps');
  dpm.setTimesteps(2);
  for (const step of dpm.timesteps) dpm.step(x, step, x);
  t.throws(() => dpm.step(x, 0, x), { name: 'ArgumentError', message: /has finished/ });
  dpm.setTimesteps(2);
  t.equal(dpm.stepIndex, undefined, 'setTimesteps resets the step index');
  t.doesNotThrow(() => dpm.step(x, dpm.timesteps[0], x));
  const flow = new FlowMatchEulerDiscreteScheduler();
  flow.setTimesteps(2);
  t.throws(() => flow.step(x, 123.456, x), ArgumentError, 'FlowMatch: a timestep not in the schedule');
  const euler = new EulerDiscreteScheduler();
  euler.setTimesteps(3);
  t.throws(() => euler.step(x, euler.timesteps[0], x, { sChurn: 1 }), { name: 'ArgumentError', message: /options\.noise/ });
});

t.test('bad configs and arguments are ArgumentErrors naming the key', async (t) => {
  const rejects = (make: () => unknown, argument: string) =>
    t.throws(make, { name: 'ArgumentError', argument }, argument);
  rejects(() => new DDIMScheduler({ beta_schedule: 'cosine' }), 'config.beta_schedule');
  rejects(() => new DDIMScheduler({ num_train_timesteps: '1000' }), 'config.num_train_timesteps');
  rejects(() => new DDIMScheduler({ num_train_timesteps: -5 }), 'config.num_train_timesteps');
  rejects(() => new DDIMScheduler({ clip_sample_range: 0 }), 'config.clip_sample_range');
  rejects(() => new DDIMScheduler({ clip_sample: 'yes' }), 'config.clip_sample');
  rejects(() => new DDIMScheduler({ prediction_type: 'flow' }), 'config.prediction_type');
  rejects(() => new DDIMScheduler({ timestep_spacing: 'karras' }), 'config.timestep_spacing');
  rejects(() => new DDIMScheduler({ trained_betas: [0.1, 0.2] }), 'config.trained_betas');
  rejects(() => new DDIMScheduler({ beta_end: Number.NaN }), 'config.beta_end');
  rejects(() => new DDIMScheduler({ extra: () => 1 }), 'config.extra');
  rejects(() => new EulerDiscreteScheduler({ final_sigmas_type: 'one' }), 'config.final_sigmas_type');
  rejects(() => new DPMSolverMultistepScheduler({ solver_order: 4 }), 'config.solver_order');
  rejects(() => new DPMSolverMultistepScheduler({ algorithm_type: 'sde-dpmsolver++' }), 'config.algorithm_type');
  rejects(() => new DPMSolverMultistepScheduler({ lambda_min_clipped: Infinity }), 'config.lambda_min_clipped');
  rejects(() => new FlowMatchEulerDiscreteScheduler({ shift: -1 }), 'config.shift');
  rejects(() => schedulerFromConfig({ _class_name: 'PNDMScheduler' }), 'config._class_name');
  rejects(() => schedulerFromConfig({}), 'config._class_name');

  const ddim = new DDIMScheduler();
  rejects(() => ddim.setTimesteps(-1), 'numInferenceSteps');
  rejects(() => ddim.setTimesteps(2.5), 'numInferenceSteps');
  rejects(() => ddim.setTimesteps(1001), 'numInferenceSteps');
  rejects(() => ddim.setTimesteps(10, { mu: 0.5 }), 'options.mu');
  ddim.setTimesteps(10);
  const x = Tensor.fromArray([1, 2, 3, 4]);
  rejects(() => ddim.step(Tensor.fromArray([1, 2]), 900, x), 'modelOutput');
  rejects(() => ddim.step(x, 900.5, x), 'timestep');
  rejects(() => ddim.step(x, 900, x, { eta: -1 }), 'options.eta');
  rejects(() => ddim.step(x, 900, x.to('f16')), 'sample');
  const flux = new FlowMatchEulerDiscreteScheduler({ use_dynamic_shifting: true });
  rejects(() => flux.setTimesteps(4), 'options.mu');
  rejects(() => flux.setTimesteps(4, { mu: 0.6, sigmas: [1, 0.5] }), 'options.sigmas');
  rejects(() => flux.setTimesteps(2, { mu: 0.6, sigmas: [1, 0] }), 'options.sigmas');
  const dit = new DPMSolverMultistepScheduler();
  dit.setTimesteps(5);
  rejects(() => dit.step(Tensor.zeros([1, 8, 2, 2], 'f32'), dit.timesteps[0], Tensor.zeros([1, 4, 2, 2], 'f32')), 'modelOutput');
});

t.test('loadSchedulerConfig: typed errors for missing and malformed files', async (t) => {
  const dir = t.testdir({
    'bad.json': '{"_class_name": "DDIMScheduler",',
    'list.json': '[1, 2]',
    empty: {},
  });
  await t.rejects(loadSchedulerConfig(join(dir, 'missing.json')), IoError);
  await t.rejects(loadSchedulerConfig(join(dir, 'empty')), IoError, 'a folder without scheduler_config.json');
  await t.rejects(loadSchedulerConfig(join(dir, 'bad.json')), FileFormatError);
  await t.rejects(loadSchedulerConfig(join(dir, 'list.json')), FileFormatError);
  await t.rejects(loadSchedulerConfig(''), ArgumentError);
  await t.rejects(saveSchedulerConfig({} as Scheduler, dir), ArgumentError);
  await t.rejects(saveSchedulerConfig(new DDIMScheduler(), join(dir, 'bad.json')), IoError, 'the target folder is a file');
});
