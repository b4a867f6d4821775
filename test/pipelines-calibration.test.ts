// Calibration from pipeline runs: the denoiser's named inputs at every sampling step (CFG batches
// included), covering the whole schedule, in memory or streamed to a safetensors file, and fed to
// quantize().
import t from 'tap';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AbortError, DiTPipeline, FileFormatError, builtinModelDir, capturePipelineCalibration, loadModel, loadPipelineCalibration,
  loadSchedulerConfig, quantize, schedulerFromConfig, type CapturedInputs,
} from '../lib/index.js';
import { FIXTURES } from './support/diffusers-fixture.js';

async function fixturePipeline(): Promise<DiTPipeline> {
  return new DiTPipeline({
    transformer: await loadModel(join(FIXTURES, 'dit')),
    scheduler: schedulerFromConfig(await loadSchedulerConfig(join(FIXTURES, 'schedulers', 'ddim_dit_alpha1'))),
  });
}

async function collect(batches: AsyncIterable<CapturedInputs>): Promise<CapturedInputs[]> {
  const out: CapturedInputs[] = [];
  for await (const b of batches) out.push(b);
  return out;
}

t.test('captures every step\'s named inputs (CFG batch) over the whole schedule', async (t) => {
  const pipe = await fixturePipeline();
  const steps: number[] = [];
  const calib = await capturePipelineCalibration(pipe, {
    classLabels: [1, 7, 3], seeds: 4, numInferenceSteps: 5, guidanceScale: 4, batchSize: 2,
    onStep: ({ step, run, runs }) => steps.push(run * 100 + step + runs * 0),
  });
  t.equal(calib.count, 10, '2 runs (batch size 2 of 3 labels) x 5 steps');
  t.same(calib.timesteps, [800, 600, 400, 200, 0, 800, 600, 400, 200, 0], 'the timesteps of the schedule, every one');
  const schedule = schedulerFromConfig(pipe.scheduler.config);
  schedule.setTimesteps(5);
  t.equal(Math.max(...calib.timesteps), schedule.timesteps[0], 'from the first (noisiest) timestep');
  t.equal(Math.min(...calib.timesteps), schedule.timesteps[4], 'to the last');
  t.same(steps, [101, 102, 103, 104, 105, 201, 202, 203, 204, 205]);
  const batches = await collect(calib);
  t.same(Object.keys(batches[0]).sort(), ['class_labels', 'hidden_states', 'timestep']);
  t.same(batches[0].hidden_states.shape, [4, 4, 8, 8], 'doubled batch of the first run');
  t.same(batches[0].class_labels.toArray(), [1, 7, 10, 10], 'labels then the null class');
  t.same(batches[9].class_labels.toArray(), [3, 10]);
  t.same(batches[9].timestep.toArray(), [0]);
  // The captured inputs are what the model saw: the same seeds sampled alone give the same first input.
  const alone = await capturePipelineCalibration(pipe, { classLabels: [3], seeds: [6], numInferenceSteps: 5, guidanceScale: 4 });
  const first = (await collect(alone))[0];
  t.same(first.hidden_states.toArray(), batches[5].hidden_states.toArray());
  t.equal(pipe.transformer.forwardHookCount, 0, 'the capture hook is removed');
});

t.test('streamed to a safetensors file, read back one batch at a time, identical to memory', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'calib.safetensors');
  const pipe = await fixturePipeline();
  const options = { classLabels: [2, 9], seeds: [5, 8], numInferenceSteps: 3 };
  const onDisk = await capturePipelineCalibration(pipe, { ...options, file });
  const inMemory = await capturePipelineCalibration(pipe, options);
  t.equal(onDisk.file, file);
  t.same(readdirSync(dir), ['calib.safetensors'], 'no side file left behind');
  t.same(onDisk.timesteps, inMemory.timesteps);
  const a = await collect(onDisk), b = await collect(inMemory);
  t.equal(a.length, 3);
  for (let i = 0; i < a.length; i++) {
    for (const name of Object.keys(b[i])) {
      t.same(a[i][name].shape, b[i][name].shape, `call ${i} ${name} shape`);
      t.same(a[i][name].toArray(), b[i][name].toArray(), `call ${i} ${name}`);
    }
  }
  const reloaded = await loadPipelineCalibration(file);
  t.equal(reloaded.count, 3);
  t.same((await collect(reloaded))[2].hidden_states.toArray(), b[2].hidden_states.toArray());

  const other = join(dir, 'other.safetensors');
  writeFileSync(other, Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]));
  await t.rejects(loadPipelineCalibration(other), FileFormatError, 'a file of another kind is refused');
});

t.test('an aborted capture leaves no file', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'calib.safetensors');
  const pipe = await fixturePipeline();
  const controller = new AbortController();
  await t.rejects(capturePipelineCalibration(pipe, {
    classLabels: [1], numInferenceSteps: 4, file, signal: controller.signal,
    onStep: ({ step }) => { if (step === 2) controller.abort(); },
  }), AbortError);
  t.notOk(existsSync(file));
  t.same(readdirSync(dir), [], 'nor a side file');
  t.equal(pipe.transformer.forwardHookCount, 0);
});

t.test('the captured batches feed quantize() (built-in model)', async (t) => {
  const pipe = await DiTPipeline.fromPretrained(builtinModelDir());
  const calib = await capturePipelineCalibration(pipe, { classLabels: [0, 7], numInferenceSteps: 4 });
  const report = await quantize(pipe.transformer, { rank: 8, searchAlpha: false, gptq: false }, calib);
  t.equal(report.calibrationBatches, 4, 'every captured call ran through the model');
  t.ok(report.layers.length >= 24, `${report.layers.length} layers quantized (attention and feed-forward of 6 blocks)`);
  const out = await pipe.generate({ classLabels: [0], numInferenceSteps: 2 });
  t.ok(out.images.toArray().every(Number.isFinite), 'the quantized pipeline samples');
});

t.test('bad options are ArgumentErrors', async (t) => {
  const pipe = await fixturePipeline();
  await t.rejects(capturePipelineCalibration(pipe, { classLabels: [] }), { name: 'ArgumentError', argument: 'options.classLabels' });
  await t.rejects(capturePipelineCalibration(pipe, { classLabels: [1], batchSize: 0 }), { name: 'ArgumentError', argument: 'options.batchSize' });
  await t.rejects(capturePipelineCalibration(pipe, { classLabels: [1, 2], seeds: [1] }), { name: 'ArgumentError', argument: 'options.seeds' });
  await t.rejects(capturePipelineCalibration({} as never, { classLabels: [1] }), { name: 'ArgumentError', argument: 'pipe' });
});
