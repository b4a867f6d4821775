// DiTPipeline through the public API: classifier-free guidance sampling against diffusers'
// DiTPipeline loop (test/data/diffusers/dit/cfg_ddim.safetensors, made by diffusers v0.30.3: the
// model input, timestep, labels and raw output of every model call and the latents after every
// step, within the fixtures' |a − b| <= 1e-4 + 1e-4·|b|), reproducible seeds, batch invariance,
// cancellation and the per-step callback, on the fixture DiT and on the built-in model.
import t from 'tap';
import { join } from 'node:path';
import {
  AbortError, ArgumentError, DiTPipeline, Tensor, builtinModelDir, loadModel, loadSchedulerConfig, schedulerFromConfig,
} from '../lib/index.js';
import { FIXTURES, closeTo, fixtureTensors } from './support/diffusers-fixture.js';

async function fixturePipeline(): Promise<DiTPipeline> {
  return new DiTPipeline({
    transformer: await loadModel(join(FIXTURES, 'dit')),
    scheduler: schedulerFromConfig(await loadSchedulerConfig(join(FIXTURES, 'schedulers', 'ddim_dit_alpha1'))),
  });
}

interface Call {
  hidden: Tensor;
  timestep: unknown;
  labels: number[];
  sample: Tensor;
}

function recordCalls(pipe: DiTPipeline): { calls: Call[]; remove(): void } {
  const calls: Call[] = [];
  const handle = pipe.transformer.registerForwardHook((_m, inputs, output) => {
    const x = inputs[0] as { hidden_states: Tensor; timestep: unknown; class_labels: Tensor };
    calls.push({ hidden: x.hidden_states.clone(), timestep: x.timestep, labels: x.class_labels.toArray(), sample: (output as { sample: Tensor }).sample.clone() });
  });
  return { calls, remove: () => handle.remove() };
}

t.test('CFG + DDIM sampling matches diffusers DiTPipeline (every model call and every step)', async (t) => {
  const pipe = await fixturePipeline();
  const fx = await fixtureTensors(join(FIXTURES, 'dit', 'cfg_ddim.safetensors'));
  const record = recordCalls(pipe);
  const stepLatents: Tensor[] = [];
  const out = await pipe.generate({
    classLabels: fx.get('class_labels')!.toArray(),
    latents: fx.get('latents_init')!,
    numInferenceSteps: 3,
    guidanceScale: 4,
    onStep: (info) => stepLatents.push(info.latents),
  });
  record.remove();
  t.equal(record.calls.length, 3, 'one model call per step (the doubled batch)');
  t.equal(pipe.numClasses, 10, 'null class = num_embeds_ada_norm');
  t.ok(pipe.learnedSigma, 'out_channels = 2 · in_channels: learned sigma');
  for (let i = 0; i < 3; i++) {
    const call = record.calls[i];
    const ts = fx.get(`step${i}/timestep`)!.toArray();
    t.same([call.timestep], [ts[0]], `step ${i}: timestep ${ts[0]}`);
    t.ok(ts.every((v) => v === ts[0]), 'the fixture passes one timestep for the whole doubled batch');
    t.same(call.labels, [1, 7, 10, 10], `step ${i}: labels then the null class`);
    const input = closeTo(call.hidden, fx.get(`step${i}/model_input`)!);
    t.ok(input.ok, `step ${i} model input: max |diff| ${input.maxAbs.toExponential(2)}`);
    const raw = closeTo(call.sample, fx.get(`step${i}/noise_pred_raw`)!);
    t.ok(raw.ok, `step ${i} raw prediction: max |diff| ${raw.maxAbs.toExponential(2)}`);
    const latents = closeTo(stepLatents[i], fx.get(`step${i}/latents`)!);
    t.ok(latents.ok, `step ${i} latents: max |diff| ${latents.maxAbs.toExponential(2)}`);
  }
  const final = closeTo(out.latents, fx.get('latents_final')!);
  t.ok(final.ok, `final latents: max |diff| ${final.maxAbs.toExponential(2)}`);
  t.same(out.images.shape, [2, 4, 8, 8], 'pixel-space output (no VAE): the latents as images');
  const expected = fx.get('latents_final')!.toArray().map((v) => Math.min(1, Math.max(0, v / 2 + 0.5)));
  t.ok(closeTo(out.images, Tensor.fromArray(expected)).ok, 'images = clamp(latents / 2 + 0.5, 0, 1)');
});

t.test('seeds: reproducible, per image, and a batch equals its images generated alone (bit-exact)', async (t) => {
  const pipe = await fixturePipeline();
  const a = await pipe.generate({ classLabels: [1, 7, 3], seeds: 11, numInferenceSteps: 4 });
  const b = await pipe.generate({ classLabels: [1, 7, 3], seeds: [11, 12, 13], numInferenceSteps: 4 });
  t.same(a.seeds, [11, 12, 13], 'a number seeds s, s+1, ...');
  t.same(a.images.toArray(), b.images.toArray(), 'same seeds, same images');
  const c = await pipe.generate({ classLabels: [1, 7, 3], seeds: [12, 11, 13], numInferenceSteps: 4 });
  t.notSame(c.images.toArray(), a.images.toArray(), 'other seeds, other images');
  const plane = a.latents.numel / 3;
  for (const guidanceScale of [4, 1]) {
    const batch = await pipe.generate({ classLabels: [1, 7, 3], seeds: 11, numInferenceSteps: 4, guidanceScale });
    for (let i = 0; i < 3; i++) {
      const alone = await pipe.generate({ classLabels: [[1, 7, 3][i]], seeds: [11 + i], numInferenceSteps: 4, guidanceScale });
      t.same(batch.latents.toArray().slice(i * plane, (i + 1) * plane), alone.latents.toArray(), `guidance ${guidanceScale}: image ${i} of the batch is the image alone, bit for bit`);
    }
  }
});

t.test('guidance <= 1 runs the plain batch; > 1 doubles it', async (t) => {
  const pipe = await fixturePipeline();
  const record = recordCalls(pipe);
  await pipe.generate({ classLabels: [2, 5], numInferenceSteps: 2, guidanceScale: 1 });
  await pipe.generate({ classLabels: [2, 5], numInferenceSteps: 2, guidanceScale: 1.5 });
  record.remove();
  t.same(record.calls.map((c) => c.labels), [[2, 5], [2, 5], [2, 5, 10, 10], [2, 5, 10, 10]]);
});

t.test('onStep is called once per step, in order, with the schedule\'s timesteps', async (t) => {
  const pipe = await fixturePipeline();
  const seen: { step: number; total: number; timestep: number }[] = [];
  await pipe.generate({ classLabels: [0], numInferenceSteps: 5, onStep: ({ step, total, timestep }) => seen.push({ step, total, timestep }) });
  t.same(seen, [800, 600, 400, 200, 0].map((timestep, i) => ({ step: i + 1, total: 5, timestep })));
});

t.test('an AbortSignal cancels between steps with AbortError', async (t) => {
  const pipe = await fixturePipeline();
  const controller = new AbortController();
  let steps = 0;
  const run = pipe.generate({
    classLabels: [0, 1], numInferenceSteps: 6, signal: controller.signal,
    onStep: ({ step }) => {
      steps++;
      if (step === 2) controller.abort(new Error('user cancelled'));
    },
  });
  await t.rejects(run, AbortError);
  await run.catch((e: AbortError) => {
    t.equal(e.code, 'ERR_SVDQ_ABORTED');
    t.equal(e.name, 'AbortError');
    t.match(e.message, /user cancelled/);
  });
  t.equal(steps, 2, 'no step runs after the abort');
  const record = recordCalls(pipe);
  await t.rejects(pipe.generate({ classLabels: [0], signal: AbortSignal.abort() }), AbortError, 'an aborted signal stops before the first step');
  record.remove();
  t.equal(record.calls.length, 0, 'and the model never runs');
});

t.test('bad arguments are ArgumentErrors naming the option', async (t) => {
  const pipe = await fixturePipeline();
  const cases: [object, string][] = [
    [{ classLabels: [] }, 'options.classLabels'],
    [{ classLabels: [10] }, 'options.classLabels[0]'],
    [{ classLabels: [1.5] }, 'options.classLabels[0]'],
    [{ classLabels: ['cat'] }, 'options.classLabels[0]'],
    [{ classLabels: [1, 2], seeds: [1] }, 'options.seeds'],
    [{ classLabels: [1], seeds: -1 }, 'options.seeds'],
    [{ classLabels: [1], numInferenceSteps: 0 }, 'options.numInferenceSteps'],
    [{ classLabels: [1], guidanceScale: NaN }, 'options.guidanceScale'],
    [{ classLabels: [1], latents: Tensor.zeros([2, 4, 8, 8], 'f32') }, 'options.latents'],
    [{ classLabels: [1], signal: {} }, 'options.signal'],
  ];
  for (const [options, argument] of cases) {
    await t.rejects(pipe.generate(options as never), { name: 'ArgumentError', argument }, argument);
  }
  t.throws(() => new DiTPipeline({ transformer: pipe.transformer, scheduler: {} as never }), ArgumentError);
});

t.test('the built-in model: a diffusers pipeline folder with class names, sampled in pixel space', async (t) => {
  const pipe = await DiTPipeline.fromPretrained(builtinModelDir());
  t.equal(pipe.vae, null, 'no VAE (model_index.json has vae [null, null])');
  t.equal(pipe.numClasses, 10);
  t.equal(pipe.classId('sneaker'), 7, 'names from id2label, case-insensitive');
  t.equal(pipe.classId('Ankle boot'), 9);
  const out = await pipe.generate({ classLabels: ['Trouser', 'Bag'], seeds: 3, numInferenceSteps: 4 });
  t.same(out.classLabels, [1, 8]);
  t.same(out.images.shape, [2, 1, 28, 28]);
  const values = out.images.toArray();
  t.ok(values.every((v) => v >= 0 && v <= 1), 'images in [0, 1]');
  t.ok(out.timings.totalMs >= out.timings.denoiserMs && out.timings.denoiserMs > 0, 'timings are reported');
  await t.rejects(DiTPipeline.fromPretrained(join(builtinModelDir(), 'transformer')), { name: 'ArgumentError', argument: 'source' }, 'a model folder is not a pipeline folder');
});
