// The text-conditioned pipelines (PixArtSigmaPipeline, StableDiffusion3Pipeline, FluxPipeline) on the
// tiny diffusers fixture models (test/data/diffusers/{pixart,sd3,flux,vae}, each forward verified
// against real diffusers v0.30.3 in test/models-*.test.ts, the schedulers in
// test/pipelines-schedulers.test.ts). There is no end-to-end pipeline fixture, so each pipeline is
// checked against an explicit composition written here from the diffusers v0.30.3 pipeline source
// (file:line cited at each convention) of those verified parts: the model called with the inputs
// diffusers builds, classifier-free guidance in diffusers' batch order, the scheduler step, the VAE
// decode of the scaled latents. Then batch invariance, seeds, numImagesPerPrompt, output types,
// cancellation, progress, errors, pipeline folders and calibration from pipeline runs.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import {
  AbortError, AutoencoderKL, FluxPipeline, PixArtSigmaPipeline, StableDiffusion3Pipeline, Tensor, calculateShift, capturePipelineCalibration,
  imageIds, loadModel, loadSchedulerConfig, packLatents, quantize, randn, randnBatch, schedulerFromConfig, textIds, unpackLatents,
  type Module, type Scheduler,
} from '../lib/index.js';
import { FIXTURES } from './support/diffusers-fixture.js';
import { textPipelineFolder } from './support/text-pipeline-folder.js';

const f32 = Math.fround;
type Denoiser = Module<[object], { sample: Tensor }>;

async function fixtureScheduler(name: string): Promise<Scheduler> {
  return schedulerFromConfig(await loadSchedulerConfig(join(FIXTURES, 'schedulers', name)));
}

async function fixtureVae(): Promise<AutoencoderKL> {
  return await loadModel(join(FIXTURES, 'vae')) as AutoencoderKL;
}

async function pixart(): Promise<PixArtSigmaPipeline> {
  return new PixArtSigmaPipeline({ transformer: await loadModel(join(FIXTURES, 'pixart')), scheduler: await fixtureScheduler('dpmpp2m_sd'), vae: await fixtureVae() });
}

async function sd3(): Promise<StableDiffusion3Pipeline> {
  return new StableDiffusion3Pipeline({ transformer: await loadModel(join(FIXTURES, 'sd3')), scheduler: await fixtureScheduler('flow_sd3_shift3'), vae: await fixtureVae() });
}

async function flux(): Promise<FluxPipeline> {
  return new FluxPipeline({ transformer: await loadModel(join(FIXTURES, 'flux')), scheduler: await fixtureScheduler('flow_flux_dynamic'), vae: await fixtureVae() });
}

// Prompt embeddings: any numbers of the right shape (the pipelines do not interpret them).
const pixartPrompt = {
  promptEmbeds: randn([2, 6, 32], 101),
  promptAttentionMask: Tensor.fromIntegers([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).reshape([2, 6]),
  negativePromptEmbeds: randn([2, 6, 32], 102),
  negativePromptAttentionMask: Tensor.fromIntegers([1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]).reshape([2, 6]),
};
const sd3Prompt = {
  promptEmbeds: randn([2, 5, 32], 201),
  pooledPromptEmbeds: randn([2, 16], 202),
  negativePromptEmbeds: randn([2, 5, 32], 203),
  negativePooledPromptEmbeds: randn([2, 16], 204),
};
const fluxPrompt = { promptEmbeds: randn([2, 4, 32], 301), pooledPromptEmbeds: randn([2, 16], 302) };

/** [a; b] along the batch axis. */
function cat(a: Tensor, b: Tensor): Tensor {
  return Tensor.fromArray([...a.toArray(), ...b.toArray()], [a.shape[0] + b.shape[0], ...a.shape.slice(1)]);
}

/** uncond + g·(text − uncond) in float32 over the first `channels` channels, the output's halves being [uncond, text]. */
function guideUncondFirst(out: Tensor, g: number, channels: number): Tensor {
  const [b2, c, h, w] = out.shape;
  const b = b2 / 2, plane = h * w, v = out.toArray();
  const res: number[] = [];
  for (let i = 0; i < b; i++) {
    for (let ch = 0; ch < channels; ch++) {
      for (let p = 0; p < plane; p++) {
        const u = v[(i * c + ch) * plane + p], x = v[((i + b) * c + ch) * plane + p];
        res.push(f32(u + f32(f32(g) * f32(x - u))));
      }
    }
  }
  return Tensor.fromArray(res, [b, channels, h, w]);
}

/** The VAE's [-1, 1] output of latents / scaling_factor (+ shift_factor), in float32. */
async function decode(vae: AutoencoderKL, latents: Tensor): Promise<Tensor> {
  const sf = f32(vae.scalingFactor), shift = f32(vae.shiftFactor);
  return vae.decode(Tensor.fromArray(latents.toArray().map((x) => f32(f32(x / sf) + shift)), latents.shape));
}

function same(t: Test, actual: Tensor | null, expected: Tensor, what: string): void {
  t.ok(actual !== null, `${what} present`);
  t.same(actual!.shape, expected.shape, `${what}: shape`);
  const a = actual!.toArray(), b = expected.toArray();
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  t.equal(max, 0, `${what}: bit-equal to the composition (max |diff| ${max})`);
}

t.test('PixArt-Σ: 2 steps equal the diffusers composition (CFG [uncond, cond], masks, learned-sigma split, latents / scaling_factor)', async (t) => {
  const pipe = await pixart();
  const steps = 2, g = 4.5, seeds = [7, 8];
  const result = await pipe.generate({ ...pixartPrompt, seeds, numInferenceSteps: steps, guidanceScale: g });
  t.equal(result.height, 16, 'default size: sample_size 8 · the VAE factor 2');

  const model = pipe.transformer as Denoiser;
  const scheduler = await fixtureScheduler('dpmpp2m_sd');
  scheduler.setTimesteps(steps);
  // pipeline_pixart_sigma.py:606 latents · init_noise_sigma (1 for DPM-Solver); the noise is our seeded randn per image.
  let x: Tensor = randnBatch([4, 8, 8], seeds);
  t.equal(scheduler.initNoiseSigma, 1);
  // :783-784 embeddings and masks as [negative, prompt].
  const context = cat(pixartPrompt.negativePromptEmbeds, pixartPrompt.promptEmbeds);
  const mask = cat(pixartPrompt.negativePromptAttentionMask, pixartPrompt.promptAttentionMask);
  for (const ts of scheduler.timesteps) {
    // :815 latents doubled; :831 the (integer) timestep expanded to the batch.
    const { sample } = await model.call({
      hidden_states: cat(x, x), encoder_hidden_states: context, encoder_attention_mask: mask, timestep: Tensor.fromIntegers([ts, ts, ts, ts]),
    });
    t.same(sample.shape, [4, 8, 8, 8], 'learned sigma: 8 output channels');
    // :845-846 uncond + g·(text − uncond); :850 the first half of the channels (eps).
    x = scheduler.step(guideUncondFirst(sample, g, 4), ts, x);
  }
  same(t, result.latents, x, 'final latents');
  // :865 vae.decode(latents / scaling_factor).
  const decoded = await decode(pipe.vae!, x);
  same(t, result.decoded, decoded, 'decoded');
  t.same(result.images!.toArray(), decoded.toArray().map((v) => Math.min(1, Math.max(0, f32(f32(v / 2) + 0.5)))), 'images = clamp(decoded / 2 + 0.5)');
});

t.test('SD3: 2 steps equal the diffusers composition (timestep t as is, pooled embeddings, latents / sf + shift)', async (t) => {
  const pipe = await sd3();
  const steps = 2, g = 7, seeds = [3, 4];
  const result = await pipe.generate({ ...sd3Prompt, seeds, numInferenceSteps: steps, guidanceScale: g });
  const model = pipe.transformer as Denoiser;
  const scheduler = await fixtureScheduler('flow_sd3_shift3');
  scheduler.setTimesteps(steps);
  let x: Tensor = randnBatch([4, 8, 8], seeds);
  // pipeline_stable_diffusion_3.py:845-846 [negative, prompt] for both embeddings.
  const context = cat(sd3Prompt.negativePromptEmbeds, sd3Prompt.promptEmbeds);
  const pooled = cat(sd3Prompt.negativePooledPromptEmbeds, sd3Prompt.pooledPromptEmbeds);
  for (const ts of scheduler.timesteps) {
    // :873 doubled latents; :875 t (0..1000) expanded, not divided.
    const { sample } = await model.call({
      hidden_states: cat(x, x), timestep: Tensor.fromArray([ts, ts, ts, ts]), encoder_hidden_states: context, pooled_projections: pooled,
    });
    // :888-889 uncond + g·(text − uncond).
    x = scheduler.step(guideUncondFirst(sample, g, 4), ts, x);
  }
  same(t, result.latents, x, 'final latents');
  // :924 latents / scaling_factor + shift_factor (the fixture VAE has none: 0).
  same(t, result.decoded, await decode(pipe.vae!, x), 'decoded');
});

t.test('Flux: 2 steps equal the diffusers composition (packed tokens, ids, sigmas + mu, t / 1000, guidance input)', async (t) => {
  const pipe = await flux();
  const steps = 2, g = 3.5, seeds = [5, 6];
  t.equal(pipe.vaeScaleFactor, 4, 'vae_scale_factor = 2^len(block_out_channels)');
  const result = await pipe.generate({ ...fluxPrompt, seeds, numInferenceSteps: steps, guidanceScale: g, height: 16, width: 16 });
  const model = pipe.transformer as Denoiser;
  const scheduler = await fixtureScheduler('flow_flux_dynamic');
  // pipeline_flux.py:468 latent size 2·(16 // 4) = 8; :484 packed into 2×2-patch tokens (4×4 = 16 tokens).
  let x = await packLatents(randnBatch([4, 8, 8], seeds));
  // :660-662 sigmas linspace(1, 1/N, N), mu from the image token count.
  scheduler.setTimesteps(steps, { sigmas: [1, 0.5], mu: calculateShift(16, scheduler.config) });
  for (const ts of scheduler.timesteps) {
    // :691 guidance = [g] per sample (guidance_embeds); :699 timestep / 1000; :367 zero text ids.
    const { sample } = await model.call({
      hidden_states: x, timestep: Tensor.fromArray([f32(ts / 1000), f32(ts / 1000)]), guidance: Tensor.fromArray([g, g]),
      pooled_projections: fluxPrompt.pooledPromptEmbeds, encoder_hidden_states: fluxPrompt.promptEmbeds, txt_ids: textIds(4), img_ids: imageIds(8, 8),
    });
    x = scheduler.step(sample, ts, x);
  }
  // :738-739 unpacked, then / scaling_factor + shift_factor.
  const latents = await unpackLatents(x, 8, 8);
  same(t, result.latents, latents, 'final (unpacked) latents');
  same(t, result.decoded, await decode(pipe.vae!, latents), 'decoded');
  t.same(result.images!.shape, [2, 3, 16, 16]);
});

t.test('batch invariance, seeds and numImagesPerPrompt', async (t) => {
  const pipe = await sd3();
  const batch = await pipe.generate({ ...sd3Prompt, seeds: [10, 11], numInferenceSteps: 2 });
  const second = await pipe.generate({
    promptEmbeds: slice(sd3Prompt.promptEmbeds, 1), pooledPromptEmbeds: slice(sd3Prompt.pooledPromptEmbeds, 1),
    negativePromptEmbeds: slice(sd3Prompt.negativePromptEmbeds, 1), negativePooledPromptEmbeds: slice(sd3Prompt.negativePooledPromptEmbeds, 1),
    seeds: 11, numInferenceSteps: 2,
  });
  same(t, second.images, slice(batch.images!, 1), 'image 1 of a batch = that prompt and seed alone');
  const again = await pipe.generate({ ...sd3Prompt, seeds: 10, numInferenceSteps: 2 });
  t.same(again.seeds, [10, 11], 'a number seeds s, s+1, ...');
  same(t, again.images, batch.images!, 'same seeds: same images');
  const other = await pipe.generate({ ...sd3Prompt, seeds: [12, 11], numInferenceSteps: 2 });
  t.not(other.images!.toArray()[0], batch.images!.toArray()[0], 'another seed: another image');

  // One prompt, two images per prompt, shared negative of batch 1 = the prompt given twice.
  const fl = await flux();
  const one = { promptEmbeds: slice(fluxPrompt.promptEmbeds, 0), pooledPromptEmbeds: slice(fluxPrompt.pooledPromptEmbeds, 0) };
  const perPrompt = await fl.generate({ ...one, numImagesPerPrompt: 2, seeds: [1, 2], numInferenceSteps: 2, height: 8, width: 8, outputType: 'latent' });
  const twice = await fl.generate({
    promptEmbeds: cat(one.promptEmbeds, one.promptEmbeds), pooledPromptEmbeds: cat(one.pooledPromptEmbeds, one.pooledPromptEmbeds),
    seeds: [1, 2], numInferenceSteps: 2, height: 8, width: 8, outputType: 'latent',
  });
  same(t, perPrompt.latents, twice.latents, 'numImagesPerPrompt 2 = the prompt twice');
  const px = await pixart();
  const sharedNegative = await px.generate({
    ...pixartPrompt, negativePromptEmbeds: slice(pixartPrompt.negativePromptEmbeds, 0), negativePromptAttentionMask: slice(pixartPrompt.negativePromptAttentionMask, 0),
    numInferenceSteps: 1, outputType: 'latent',
  });
  const repeated = await px.generate({
    ...pixartPrompt, negativePromptEmbeds: cat(slice(pixartPrompt.negativePromptEmbeds, 0), slice(pixartPrompt.negativePromptEmbeds, 0)),
    negativePromptAttentionMask: cat(slice(pixartPrompt.negativePromptAttentionMask, 0), slice(pixartPrompt.negativePromptAttentionMask, 0)),
    numInferenceSteps: 1, outputType: 'latent',
  });
  same(t, sharedNegative.latents, repeated.latents, 'a negative of batch 1 serves every prompt');
  // Two prompts × 2 images: [p0, p0, p1, p1], each mask with its own embeddings (diffusers 0.30.3 tiles
  // the masks instead, pipeline_pixart_sigma.py:318-319, which pairs p0 with m1 when B > 1).
  const pick = (x: Tensor, order: number[]) => order.map((i) => slice(x, i)).reduce((a, b) => cat(a, b));
  const perPromptPx = await px.generate({ ...pixartPrompt, numImagesPerPrompt: 2, seeds: [1, 2, 3, 4], numInferenceSteps: 1, outputType: 'latent' });
  const spelled = await px.generate({
    promptEmbeds: pick(pixartPrompt.promptEmbeds, [0, 0, 1, 1]), promptAttentionMask: pick(pixartPrompt.promptAttentionMask, [0, 0, 1, 1]),
    negativePromptEmbeds: pick(pixartPrompt.negativePromptEmbeds, [0, 0, 1, 1]), negativePromptAttentionMask: pick(pixartPrompt.negativePromptAttentionMask, [0, 0, 1, 1]),
    seeds: [1, 2, 3, 4], numInferenceSteps: 1, outputType: 'latent',
  });
  same(t, perPromptPx.latents, spelled.latents, 'PixArt numImagesPerPrompt: embeddings and masks repeated per prompt');
});

function slice(x: Tensor, i: number): Tensor {
  const item = x.numel / x.shape[0];
  return Tensor.fromArray(x.toArray().slice(i * item, (i + 1) * item), [1, ...x.shape.slice(1)]);
}

t.test('outputType latent, guidance off, onStep and AbortSignal', async (t) => {
  const pipe = await pixart();
  const latent = await pipe.generate({ ...pixartPrompt, numInferenceSteps: 2, outputType: 'latent' });
  const image = await pipe.generate({ ...pixartPrompt, numInferenceSteps: 2 });
  t.equal(latent.images, null);
  t.equal(latent.decoded, null);
  same(t, latent.latents, image.latents, 'the same latents either way');

  const calls: number[] = [];
  const hook = pipe.transformer.registerForwardHook((_m, args) => { calls.push((args[0] as { hidden_states: Tensor }).hidden_states.shape[0]); });
  await pipe.generate({ promptEmbeds: pixartPrompt.promptEmbeds, promptAttentionMask: pixartPrompt.promptAttentionMask, guidanceScale: 1, numInferenceSteps: 2 });
  hook.remove();
  t.same(calls, [2, 2], 'guidanceScale <= 1: no doubled batch, no negative embeddings needed');

  const steps: string[] = [];
  await pipe.generate({ ...pixartPrompt, numInferenceSteps: 3, onStep: (s) => steps.push(`${s.step}/${s.total}`) });
  t.same(steps, ['1/3', '2/3', '3/3']);

  const controller = new AbortController();
  let seen = 0;
  await t.rejects(pipe.generate({ ...pixartPrompt, numInferenceSteps: 4, signal: controller.signal, onStep: () => { seen++; controller.abort(); } }), AbortError);
  t.equal(seen, 1, 'stopped after the step that aborted');
  await t.rejects(pipe.generate({ ...pixartPrompt, signal: AbortSignal.abort() }), AbortError, 'an aborted signal stops before sampling');
});

/** Prompt `i` of every embedding tensor in `prompt`. */
function promptRow<P extends Record<string, Tensor>>(prompt: P, i: number): P {
  return Object.fromEntries(Object.entries(prompt).map(([k, v]) => [k, slice(v, i)])) as P;
}

t.test('liveRows: a dropped image leaves the model call and the decode; the other equals its image alone', async (t) => {
  const STEPS = 3;
  const cases = [
    ['PixArt-Σ (guidance batch)', await pixart(), pixartPrompt, {}],
    ['SD3 (guidance batch)', await sd3(), sd3Prompt, {}],
    ['Flux', await flux(), fluxPrompt, { height: 16, width: 16 }],
  ] as const;
  for (const [name, pipe, prompt, size] of cases) {
    const generate = (o: object) => (pipe as unknown as { generate(o: object): ReturnType<FluxPipeline['generate']> }).generate({ numInferenceSteps: STEPS, ...size, ...o });
    const calls: number[] = [];
    const hook = pipe.transformer.registerForwardHook((_m, args) => { calls.push((args[0] as { hidden_states: Tensor }).hidden_states.shape[0]); });
    let steps = 0;
    const out = await generate({ ...prompt, seeds: [5, 6], onStep: () => { steps++; }, liveRows: () => (steps < 1 ? [0, 1] : [1]) });
    hook.remove();
    const perImage = calls[0] / 2;
    t.same(calls, [2 * perImage, perImage, perImage], `${name}: the model sees image 1 alone after the first step`);
    const alone = await generate({ ...promptRow(prompt, 1), seeds: [6] });
    same(t, slice(out.latents, 1), alone.latents, `${name}: image 1's latents`);
    same(t, slice(out.images!, 1), alone.images!, `${name}: image 1 decoded`);
    t.ok(slice(out.images!, 0).toArray().every((v) => v === 0.5), `${name}: image 0 not decoded (zeros, 0.5 in [0, 1])`);
  }
  const pipe = await pixart();
  await t.rejects(pipe.generate({ ...pixartPrompt, numInferenceSteps: 1, liveRows: () => [1, 0] }), { name: 'ArgumentError' }, 'not ascending');
  await t.rejects(pipe.generate({ ...pixartPrompt, numInferenceSteps: 1, liveRows: () => [] }), AbortError, 'none left');
  await t.rejects(pipe.generate({ ...pixartPrompt, liveRows: [0] as never }), { name: 'ArgumentError' }, 'not a function');
});

t.test('bad inputs: typed errors naming the argument', async (t) => {
  const px = await pixart();
  const sd = await sd3();
  const fl = await flux();
  const bad = async (p: Promise<unknown>, argument: string) => t.rejects(p, { name: 'ArgumentError', argument }, argument);
  await bad(px.generate({ ...pixartPrompt, promptEmbeds: randn([2, 6, 16], 1) }), 'options.promptEmbeds');
  await bad(px.generate({ ...pixartPrompt, promptEmbeds: randn([6, 32], 1) }), 'options.promptEmbeds');
  await bad(px.generate({ ...pixartPrompt, promptAttentionMask: undefined as never }), 'options.promptAttentionMask');
  await bad(px.generate({ ...pixartPrompt, promptAttentionMask: Tensor.zeros([2, 5], 'f32') }), 'options.promptAttentionMask');
  await bad(px.generate({ ...pixartPrompt, negativePromptEmbeds: undefined }), 'options.negativePromptEmbeds');
  await bad(px.generate({ ...pixartPrompt, negativePromptEmbeds: randn([2, 7, 32], 1) }), 'options.negativePromptEmbeds');
  await bad(px.generate({ ...pixartPrompt, negativePromptEmbeds: randn([3, 6, 32], 1) }), 'options.negativePromptEmbeds');
  await bad(px.generate({ ...pixartPrompt, negativePromptAttentionMask: undefined }), 'options.negativePromptAttentionMask');
  await bad(px.generate({ ...pixartPrompt, height: 10 }), 'options.height');
  await bad(px.generate({ ...pixartPrompt, width: 0 }), 'options.width');
  await bad(px.generate({ ...pixartPrompt, seeds: [1] }), 'options.seeds');
  await bad(px.generate({ ...pixartPrompt, numInferenceSteps: 0 }), 'options.numInferenceSteps');
  await bad(px.generate({ ...pixartPrompt, numImagesPerPrompt: 0 }), 'options.numImagesPerPrompt');
  await bad(px.generate({ ...pixartPrompt, latents: Tensor.zeros([2, 4, 4, 4], 'f32') }), 'options.latents');
  await bad(px.generate({ ...pixartPrompt, outputType: 'pil' as never }), 'options.outputType');
  await bad(sd.generate({ ...sd3Prompt, pooledPromptEmbeds: undefined as never }), 'options.pooledPromptEmbeds');
  await bad(sd.generate({ ...sd3Prompt, pooledPromptEmbeds: randn([2, 8], 1) }), 'options.pooledPromptEmbeds');
  await bad(sd.generate({ ...sd3Prompt, negativePooledPromptEmbeds: undefined }), 'options.negativePooledPromptEmbeds');
  await bad(sd.generate({ ...sd3Prompt, promptEmbeds: randn([2, 5, 16], 1) }), 'options.promptEmbeds');
  await bad(fl.generate({ ...fluxPrompt, height: 16, width: 18 }), 'options.width');
  await bad(fl.generate({ ...fluxPrompt, pooledPromptEmbeds: randn([1, 16], 1), height: 16, width: 16 }), 'options.pooledPromptEmbeds');
  await bad(fl.generate({ ...fluxPrompt, negativePromptEmbeds: fluxPrompt.promptEmbeds, height: 16, width: 16 } as never), 'options.negativePromptEmbeds');
  const noVae = new SD3PipelineWithoutVae();
  await bad((await noVae.pipe()).generate({ ...sd3Prompt, numInferenceSteps: 1 }), 'options.outputType');
  t.same((await (await noVae.pipe()).generate({ ...sd3Prompt, numInferenceSteps: 1, height: 16, width: 16, outputType: 'latent' })).latents.shape, [2, 4, 2, 2],
    'without a VAE: latents only, at the default factor 8');
  t.throws(() => new FluxPipeline({ transformer: null as never, scheduler: fl.scheduler }), { name: 'ArgumentError', argument: 'components.transformer' });
  // The Flux transformer (in_channels 16) with the 4-channel VAE is no SD3 denoiser.
  t.throws(() => new StableDiffusion3Pipeline({ transformer: fl.transformer, scheduler: sd.scheduler, vae: px.vae }), { name: 'ArgumentError', argument: 'components.vae' });
});

class SD3PipelineWithoutVae {
  async pipe(): Promise<StableDiffusion3Pipeline> {
    return new StableDiffusion3Pipeline({ transformer: await loadModel(join(FIXTURES, 'sd3')), scheduler: await fixtureScheduler('flow_sd3_shift3') });
  }
}

t.test('fromPretrained: a diffusers pipeline folder gives the same images', async (t) => {
  const root = t.testdir();
  const cases: [string, () => Promise<{ generate(o: object): Promise<{ images: Tensor | null }> }>, (dir: string) => Promise<{ generate(o: object): Promise<{ images: Tensor | null }> }>, object][] = [
    ['pixart', pixart, (d) => PixArtSigmaPipeline.fromPretrained(textPipelineFolder(d, 'PixArtSigmaPipeline', 'pixart', 'dpmpp2m_sd')), pixartPrompt],
    ['sd3', sd3, (d) => StableDiffusion3Pipeline.fromPretrained(textPipelineFolder(d, 'StableDiffusion3Pipeline', 'sd3', 'flow_sd3_shift3')), sd3Prompt],
    ['flux', flux, (d) => FluxPipeline.fromPretrained(textPipelineFolder(d, 'FluxPipeline', 'flux', 'flow_flux_dynamic')), { ...fluxPrompt, height: 8, width: 8 }],
  ];
  for (const [name, direct, load, prompt] of cases) {
    const a = await (await direct()).generate({ ...prompt, numInferenceSteps: 2 });
    const b = await (await load(join(root, name))).generate({ ...prompt, numInferenceSteps: 2 });
    same(t, b.images, a.images!, `${name}: loaded from a pipeline folder`);
  }
  await t.rejects(FluxPipeline.fromPretrained(join(FIXTURES, 'flux')), { name: 'ArgumentError', argument: 'source' }, 'a model folder is no pipeline folder');
  await t.rejects(FluxPipeline.fromPretrained(join(FIXTURES, 'flux', 'diffusion_pytorch_model.safetensors')), { name: 'ArgumentError', argument: 'options.scheduler' });
});

t.test('calibration from text pipeline runs: every step of every run, the whole timestep range, feeds quantize()', async (t) => {
  const pipe = await sd3();
  const calib = await capturePipelineCalibration(pipe, {
    prompts: [sd3Prompt, { ...sd3Prompt, promptEmbeds: slice(sd3Prompt.promptEmbeds, 0), pooledPromptEmbeds: slice(sd3Prompt.pooledPromptEmbeds, 0), negativePromptEmbeds: slice(sd3Prompt.negativePromptEmbeds, 0), negativePooledPromptEmbeds: slice(sd3Prompt.negativePooledPromptEmbeds, 0) }],
    numInferenceSteps: 4, guidanceScale: 7,
  });
  t.equal(calib.count, 8, '2 runs × 4 steps');
  const scheduler = await fixtureScheduler('flow_sd3_shift3');
  scheduler.setTimesteps(4);
  t.same(calib.timesteps, [...scheduler.timesteps, ...scheduler.timesteps], 'every timestep of the schedule, from 1000 down');
  const batches = [];
  for await (const b of calib) batches.push(b);
  t.same(Object.keys(batches[0]).sort(), ['encoder_hidden_states', 'hidden_states', 'pooled_projections', 'timestep']);
  t.same(batches[0].hidden_states.shape, [4, 4, 8, 8], 'the doubled CFG batch of 2 prompts');
  t.same(batches[4].hidden_states.shape, [2, 4, 8, 8], 'the second run: one prompt, doubled');
  const report = await quantize(pipe.transformer, { rank: 4, searchAlpha: false, gptq: false }, calib);
  t.ok(report.layers.length > 0, `${report.layers.length} layers quantized from the captured batches`);
  const after = await pipe.generate({ ...sd3Prompt, numInferenceSteps: 2 });
  t.ok(after.images!.toArray().every(Number.isFinite), 'the quantized pipeline still samples');

  const fl = await flux();
  const fluxCalib = await capturePipelineCalibration(fl, { prompts: [fluxPrompt], numInferenceSteps: 3, height: 8, width: 8 });
  t.equal(fluxCalib.count, 3);
  t.equal(fluxCalib.timesteps[0], 1, 'Flux: the model\'s timestep input t / 1000 starts at 1');
  t.ok(fluxCalib.timesteps[2] < fluxCalib.timesteps[1] && fluxCalib.timesteps[1] < 1, 'and falls');
  for await (const b of fluxCalib) {
    t.same(Object.keys(b).sort(), ['encoder_hidden_states', 'guidance', 'hidden_states', 'img_ids', 'pooled_projections', 'timestep', 'txt_ids']);
    break;
  }
  const px = await pixart();
  const file = join(t.testdir(), 'calib.safetensors');
  const pxCalib = await capturePipelineCalibration(px, { prompts: [pixartPrompt], numInferenceSteps: 2, seeds: [4, 5], file });
  t.equal(pxCalib.file, file);
  for await (const b of pxCalib) {
    t.same(b.encoder_attention_mask.shape, [4, 6], 'PixArt: the concatenated masks are captured');
    break;
  }
  await t.rejects(capturePipelineCalibration(px, { prompts: [pixartPrompt], classLabels: [1] }), { name: 'ArgumentError', argument: 'options' });
  await t.rejects(capturePipelineCalibration(px, { prompts: [] }), { name: 'ArgumentError', argument: 'options.prompts' });
  await t.rejects(capturePipelineCalibration(px, { prompts: [{ promptEmbeds: null as never }] }), { name: 'ArgumentError', argument: 'options.prompts[0].promptEmbeds' });
  await t.rejects(capturePipelineCalibration(px, { prompts: [pixartPrompt], seeds: [1] }), { name: 'ArgumentError', argument: 'options.seeds' });
});
