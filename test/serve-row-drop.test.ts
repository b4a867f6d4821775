/**
 * Dropping rows from a running rollout (what a cancelled request in a served batch does): the
 * built-in pipeline, as the server loads it, stops calling the model on the dropped rows from the
 * next step on, and the remaining images are bit-identical to the same requests generated alone.
 * Checked with classifier-free guidance on and off and with a multistep scheduler (DPM-Solver keeps
 * a history of model outputs across steps), and through the DynamicBatcher with a request that leaves
 * (the built-in model, and the PixArt-Σ fixture pipeline over prompt embeddings).
 */
import t from 'tap';
import { AbortError, ArgumentError } from '../lib/errors.js';
import { DiTPipeline } from '../lib/pipelines/dit-pipeline.js';
import { schedulerFromConfig } from '../lib/pipelines/schedulers/registry.js';
import { DynamicBatcher } from '../lib/serve/batcher.js';
import { RequestCancelledError } from '../lib/serve/errors.js';
import { loadServeModel } from '../lib/serve/model.js';
import { TextBatchPipeline } from '../lib/serve/text-model.js';
import { join } from 'node:path';
import { AutoencoderKL, PixArtSigmaPipeline, loadModel, loadSchedulerConfig, randn, Tensor } from '../lib/index.js';
import { FIXTURES } from './support/diffusers-fixture.js';

const builtin = (await loadServeModel({})).pipeline as DiTPipeline;
const dpm = new DiTPipeline({
  transformer: builtin.transformer,
  scheduler: schedulerFromConfig({ ...builtin.scheduler.config, _class_name: 'DPMSolverMultistepScheduler' }),
  id2label: builtin.id2label,
});

/** Records the batch size of every model call. */
function recordBatchSizes(pipeline: DiTPipeline): number[] {
  const sizes: number[] = [];
  const transformer = pipeline.transformer as unknown as { call(input: { hidden_states: { shape: number[] } }): Promise<unknown> };
  const call = transformer.call.bind(transformer);
  transformer.call = (input) => {
    sizes.push(input.hidden_states.shape[0]);
    return call(input);
  };
  t.teardown(() => { delete (transformer as { call?: unknown }).call; });
  return sizes;
}

const LABELS = [3, 8, 0, 5];
const SEEDS = [41, 7, 1234567, 99];
const STEPS = 6;
const DROP_AFTER = 2;

for (const [name, pipeline] of [['DDIM', builtin], ['DPM-Solver', dpm]] as const) {
  for (const guidanceScale of [1, 4]) {
    t.test(`${name}, guidance ${guidanceScale}: rows dropped after step ${DROP_AFTER} leave the model call; the rest equal their images alone`, async (t) => {
      const sizes = recordBatchSizes(pipeline);
      let steps = 0;
      const kept = [0, 3];
      const out = await pipeline.generate({
        classLabels: LABELS,
        seeds: SEEDS,
        numInferenceSteps: STEPS,
        guidanceScale,
        onStep: () => { steps++; },
        liveRows: () => (steps < DROP_AFTER ? [0, 1, 2, 3] : kept),
      });
      const perCall = guidanceScale > 1 ? 2 : 1;
      t.same(sizes, [...new Array(DROP_AFTER).fill(4 * perCall), ...new Array(STEPS - DROP_AFTER).fill(2 * perCall)], 'the model sees only the live rows after the drop');
      t.same(out.images.shape, [4, 1, 28, 28]);
      const size = 28 * 28;
      for (const row of kept) {
        const alone = await pipeline.generate({ classLabels: [LABELS[row]], seeds: [SEEDS[row]], numInferenceSteps: STEPS, guidanceScale });
        t.same(out.images.data.slice(row * size, (row + 1) * size), alone.images.data, `row ${row}: bit-identical to its image alone`);
        t.same(out.latents.to('f32').data.slice(row * size, (row + 1) * size), alone.latents.to('f32').data, `row ${row}: same final sample`);
      }
    });
  }
}

t.test('liveRows: bad answers are ArgumentErrors; none left is an AbortError', async (t) => {
  const base = { classLabels: [1, 2], seeds: [1, 2], numInferenceSteps: 2 };
  await t.rejects(builtin.generate({ ...base, liveRows: () => [1, 0] }), ArgumentError, 'not ascending');
  await t.rejects(builtin.generate({ ...base, liveRows: () => [2] }), ArgumentError, 'out of range');
  await t.rejects(builtin.generate({ ...base, liveRows: () => [] }), AbortError);
  await t.rejects(builtin.generate({ ...base, liveRows: [0] as never }), ArgumentError);
});

t.test('the batcher: a request cancelled inside a running batch stops being computed; the others get their images alone', async (t) => {
  const sizes = recordBatchSizes(builtin);
  const events = { dropped: 0, imageSteps: 0 };
  const batcher = new DynamicBatcher(builtin, { maxBatch: 4, maxQueue: 4, batchWindowMs: 60_000, timeoutMs: 0 }, {
    imagesDropped: (n) => { events.dropped += n; },
    stepFinished: (n) => {
      events.imageSteps += n;
      // Cancel request B (two images) once the batch has run two steps.
      if (events.imageSteps === 2 * 4) cancelB.abort();
    },
  });
  const cancelB = new AbortController();
  const requests = [
    { classLabels: [2], seeds: [17] },
    { classLabels: [6, 9], seeds: [3, 4] },
    { classLabels: [1], seeds: [250] },
  ];
  const params = { numInferenceSteps: STEPS, guidanceScale: 3 };
  const results = await Promise.allSettled([
    batcher.submit({ ...requests[0], ...params }),
    batcher.submit({ ...requests[1], ...params }, { signal: cancelB.signal }),
    batcher.submit({ ...requests[2], ...params }),
  ]);
  t.equal(results[1].status, 'rejected');
  t.ok((results[1] as PromiseRejectedResult).reason instanceof RequestCancelledError, 'B answered with its cancellation');
  t.same(sizes, [8, 8, 4, 4, 4, 4], 'two steps of 4 images (doubled by guidance), then 2');
  t.equal(events.dropped, 2);
  t.equal(events.imageSteps, 2 * 4 + (STEPS - 2) * 2, 'image-steps computed');
  for (const i of [0, 2]) {
    const r = results[i];
    t.equal(r.status, 'fulfilled');
    if (r.status !== 'fulfilled') continue;
    t.equal(r.value.timings.batchImages, 4);
    const alone = await builtin.generate({ ...requests[i], ...params });
    t.same(r.value.pixels[0], alone.images.data, `request ${i}: bit-identical to its image alone`);
  }
  await batcher.close(0);
});

t.test('the batcher with a text pipeline (PixArt-Σ fixture, guidance on): a cancelled request\'s rows leave the running batch', async (t) => {
  const pixart = new PixArtSigmaPipeline({
    transformer: await loadModel(join(FIXTURES, 'pixart')),
    scheduler: schedulerFromConfig(await loadSchedulerConfig(join(FIXTURES, 'schedulers', 'dpmpp2m_sd'))),
    vae: await loadModel(join(FIXTURES, 'vae')) as AutoencoderKL,
  });
  const sizes: number[] = [];
  const hook = pixart.transformer.registerForwardHook((_m, args) => { sizes.push((args[0] as { hidden_states: Tensor }).hidden_states.shape[0]); });
  t.teardown(() => hook.remove());
  /** One row per image in every tensor, as the request decoder hands them to the batcher. */
  const embeddings = (images: number, seed: number) => ({
    prompt_embeds: { shape: [images, 6, 32], data: randn([images, 6, 32], seed).data },
    prompt_attention_mask: { shape: [images, 6], data: Float32Array.from({ length: images * 6 }, (_, i) => (i % 6 < 4 ? 1 : 0)) },
    negative_prompt_embeds: { shape: [images, 6, 32], data: randn([images, 6, 32], seed + 1).data },
    negative_prompt_attention_mask: { shape: [images, 6], data: Float32Array.from({ length: images * 6 }, (_, i) => (i % 6 < 1 ? 1 : 0)) },
  });
  const cancelB = new AbortController();
  let stepsRun = 0;
  const batcher = new DynamicBatcher(new TextBatchPipeline(pixart), { maxBatch: 4, maxQueue: 4, batchWindowMs: 60_000, timeoutMs: 0 }, {
    stepFinished: () => { if (++stepsRun === 2) cancelB.abort(); },
  });
  const requests = [
    { classLabels: [], seeds: [17], embeddings: embeddings(1, 10) },
    { classLabels: [], seeds: [3, 4], embeddings: embeddings(2, 20) },
    { classLabels: [], seeds: [250], embeddings: embeddings(1, 30) },
  ];
  const params = { numInferenceSteps: STEPS, guidanceScale: 4 };
  const results = await Promise.allSettled([
    batcher.submit({ ...requests[0], ...params }),
    batcher.submit({ ...requests[1], ...params }, { signal: cancelB.signal }),
    batcher.submit({ ...requests[2], ...params }),
  ]);
  t.ok(results[1].status === 'rejected' && results[1].reason instanceof RequestCancelledError, 'B answered with its cancellation');
  t.same(sizes, [8, 8, 4, 4, 4, 4], 'two steps of 4 images (doubled by guidance), then 2');
  for (const i of [0, 2]) {
    const r = results[i];
    t.equal(r.status, 'fulfilled');
    if (r.status !== 'fulfilled') continue;
    const e = requests[i].embeddings;
    const f32 = (x: { shape: number[]; data: Float32Array }) => Tensor.fromStorage(x.data, x.shape, 'f32');
    const alone = await pixart.generate({
      promptEmbeds: f32(e.prompt_embeds), promptAttentionMask: f32(e.prompt_attention_mask),
      negativePromptEmbeds: f32(e.negative_prompt_embeds), negativePromptAttentionMask: f32(e.negative_prompt_attention_mask),
      seeds: requests[i].seeds, ...params,
    });
    t.same(r.value.pixels[0], alone.images!.data, `request ${i}: bit-identical to its image alone`);
  }
  await batcher.close(0);
});
