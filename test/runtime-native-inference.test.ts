// quantizeModel + enable/disableNativeInference on a small model: selection and skip reasons, hooks,
// failure leaves the model unchanged, native vs reference within the lowbit.h tolerance, bit-identical
// round trip, 64 concurrent forwards, typed argument and backend errors.
import t from 'tap';
import {
  Tensor, Linear, Module, Sequential, ErrorCorrectedLinear, NativeLinear, quantizeModel, enableNativeInference,
  disableNativeInference, BackendUnavailableError, FORMATS, SCHEMES,
} from '../lib/index.js';
import { buildModel, calibration, input, bitsEqual, snapshot } from './support/model-fixture.js';
import { quantizedModel as quantized, termBound } from './support/error-bound.js';
import { checkConcurrentForwards } from './support/concurrency.js';

// This file tests the CPU backend: point the GPU backends at libraries that do not exist, so that
// 'auto' means 'cpu' on every machine (test/runtime-gpu-backend.test.ts tests the GPU paths).
process.env.SVDQUANT_CUDA_LIB = '/nonexistent/libsvdquant_cuda.so';
process.env.SVDQUANT_HIP_LIB = '/nonexistent/libsvdquant_hip.so';


t.test('quantizeModel replaces the eligible Linear layers and reports every skipped one', async (t) => {
  const model = buildModel();
  const fc1 = model.getSubmodule('1.fc1');
  const events: string[] = [];
  const report = await quantizeModel(model, { rank: 8, exclude: ['*.fc2'] , minDim: 50 }, calibration(), {
    onProgress: (e) => events.push(`${e.layer}:${e.stage}`),
  });
  t.same(report.layers.map((l) => l.name), ['1.fc1']);
  t.same(report.skipped.map((s) => s.name).sort(), ['1.fc2', '2']);
  t.match(report.skipped.find((s) => s.name === '1.fc2')!.reason, /excluded by pattern '\*\.fc2'/);
  t.match(report.skipped.find((s) => s.name === '2')!.reason, /below minDim 50/);
  t.equal(report.calibrationBatches, 4);
  t.ok(report.layers[0].evalTokens > 0);
  t.ok(model.getSubmodule('1.fc1') instanceof ErrorCorrectedLinear);
  t.ok(model.getSubmodule('1.fc2') instanceof Linear);
  t.ok(events.includes('1.fc1:start') && events.includes('1.fc1:done'), 'progress reported');
  t.equal((fc1 as Linear).forwardHookCount, 0, 'hooks removed');
  for (const [, m] of model.namedModules()) t.equal(m.forwardHookCount, 0);
  const y = await model.call(input());
  t.same(y.shape, [5, 40]);
  // Already quantized layers are reported on a second run, and async iterables work.
  async function* gen() { for (const b of calibration(2)) yield b; }
  const again = await quantizeModel(model, { rank: 4 }, gen());
  t.same(again.layers.map((l) => l.name).sort(), ['1.fc2', '2']);
  t.match(again.skipped, [{ name: '1.fc1', reason: /already an ErrorCorrectedLinear/ }]);
});

t.test('shared layers, the root, and layers that saw no calibration inputs are skipped with reasons', async (t) => {
  const x = Tensor.zeros([2, 16], 'f32');
  x.data.fill(0.5);
  const shared = new Linear(16, 16, { seed: 1 });
  const model = new Sequential(shared, shared);
  model.registerModule('other', new Linear(16, 16, { seed: 2 }));
  const r1 = await quantizeModel(model, { rank: 2 }, [[x]]);
  t.match(r1.skipped, [{ name: '0', reason: /shared/ }], 'a Linear under two names is skipped');
  t.same(r1.layers.map((l) => l.name), ['other']);
  t.equal(model.getSubmodule('1'), shared);
  const r2 = await quantizeModel(new Linear(16, 16, { seed: 9 }), {}, [[x]]);
  t.match(r2.skipped, [{ name: '', reason: /root/ }]);
  t.equal(r2.layers.length, 0);
  // A layer the forward never calls gets no inputs: skipped with the reason.
  class UsesOne extends Module {
    constructor() {
      super();
      this.registerModule('used', new Linear(16, 16, { seed: 10 }));
      this.registerModule('unused', new Linear(16, 16, { seed: 11 }));
    }
    override async forward(input: Tensor): Promise<Tensor> {
      return this.getSubmodule('used').call(input);
    }
  }
  const r3 = await quantizeModel(new UsesOne(), { rank: 2 }, [[x]]);
  t.match(r3.skipped, [{ name: 'unused', reason: /no calibration inputs/ }]);
  t.same(r3.layers.map((l) => l.name), ['used']);
});

t.test('a failed quantize leaves the model exactly as it was', async (t) => {
  const model = buildModel();
  const before = snapshot(model);
  const y0 = (await model.call(input())).data;
  await t.rejects(quantizeModel(model, { rank: 8 }, [[input()], ['not a tensor' as never]]), { name: 'ArgumentError', argument: 'calibration[1]' });
  t.same(snapshot(model), before);
  for (const [, m] of model.namedModules()) t.equal(m.forwardHookCount, 0, 'hooks removed after failure');
  // A failure inside quantizeLinear (non-finite weight in the second layer) after the first layer was quantized.
  const fc2 = model.getSubmodule('1.fc2') as Linear;
  const saved = fc2.weight.data[3];
  fc2.weight.data[3] = NaN;
  fc2.weightChanged();
  await t.rejects(quantizeModel(model, { rank: 8, exclude: ['2'] }, calibration()), { name: 'NonFiniteError' });
  t.same(snapshot(model), before, 'no partial replacement');
  fc2.weight.data[3] = saved;
  fc2.weightChanged();
  t.ok(bitsEqual((await model.call(input())).data, y0));
  // A throwing async iterable.
  async function* boom() { yield [input()]; throw new Error('data source failed'); }
  await t.rejects(quantizeModel(model, {}, boom()), /data source failed/);
  t.same(snapshot(model), before);
  for (const [, m] of model.namedModules()) t.equal(m.forwardHookCount, 0);
});

t.test('quantizeModel argument errors are typed and name the argument', async (t) => {
  await t.rejects(quantizeModel({} as never, {}, []), { name: 'ArgumentError', argument: 'model' });
  await t.rejects(quantizeModel(buildModel(), { rank: -1 }, []), { name: 'ArgumentError', argument: 'config.rank' });
  await t.rejects(quantizeModel(buildModel(), {}, 42 as never), { name: 'ArgumentError', argument: 'calibration' });
  await t.rejects(quantizeModel(buildModel(), {}, [], { onProgress: 1 as never }), { name: 'ArgumentError', argument: 'options.onProgress' });
});

for (const scheme of ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as const) {
  t.test(`${scheme}: native outputs within the lowbit.h tolerance; round trip restores bit-identical reference outputs`, async (t) => {
    const model = await quantized(scheme);
    const x = input();
    const refLayers = [...model.namedModules()].filter(([, m]) => m instanceof ErrorCorrectedLinear);
    t.equal(refLayers.length, 3);
    const yRef = (await model.call(x)).data;
    for (const lowRank of ['fused', 'side', 'unfused'] as const) {
      const report = await enableNativeInference(model, { backend: 'auto', lowRank, threads: 2 });
      t.same(report.converted, ['1.fc1', '1.fc2', '2']);
      t.same(report.skipped, []);
      t.equal(report.backend, 'cpu');
      t.match(report.reason, /auto.*cpu/);
      for (const [name, src] of refLayers) {
        const nat = model.getSubmodule(name) as NativeLinear;
        t.ok(nat instanceof NativeLinear);
        t.equal(nat.source, src, 'keeps a reference to its source');
        // Per-layer check against the reference on the same input.
        const ecl = src as ErrorCorrectedLinear;
        const xl = Tensor.fromArray(Array.from({ length: 3 * ecl.inFeatures }, (_, i) => Math.sin(i * 0.37) * 3), [3, ecl.inFeatures]);
        const yn = (await nat.call(xl)).data;
        const yr = (await ecl.call(xl)).data;
        const s = await termBound(ecl, xl);
        const g = FORMATS[SCHEMES[scheme].weights].group || ecl.inFeatures;
        const c = (ecl.inFeatures + 2 * g + ecl.rank + 8) * 2 ** -24;
        let bad = 0;
        for (let i = 0; i < yn.length; i++) if (!(Math.abs(yn[i] - yr[i]) <= 2 * c * s[i] + 1e-30)) bad++;
        t.equal(bad, 0, `${name} ${lowRank}: native within 2·(K+2G+r+8)·2^-24·Σ|terms| of the reference`);
      }
      const yNat = (await model.call(x)).data;
      t.equal(yNat.length, yRef.length);
      const restored = disableNativeInference(model);
      t.same(restored.restored, ['1.fc1', '1.fc2', '2']);
      for (const [name, src] of refLayers) t.equal(model.getSubmodule(name), src, 'the very same ErrorCorrectedLinear');
      t.ok(bitsEqual((await model.call(x)).data, yRef), 'reference outputs bit-identical after the round trip');
    }
  });
}

t.test('64 concurrent forwards equal sequential ones on a quantized + native model', async (t) => {
  const model = await quantized('w4a4');
  await enableNativeInference(model, { backend: 'cpu' });
  await checkConcurrentForwards(t, model, 'native memory freed');
});

t.test('backend and argument errors', async (t) => {
  const model = await quantized('w4a4');
  const before = snapshot(model);
  for (const backend of ['cuda', 'hip'] as const) {
    const err = await enableNativeInference(model, { backend }).then(() => null, (e) => e);
    t.ok(err instanceof BackendUnavailableError, `${backend}: BackendUnavailableError`);
    t.equal(err.backend, backend);
    t.match(err.message, new RegExp(`'${backend}' is not available: libsvdquant_${backend}\\.so not found at /nonexistent/`));
    t.equal(err.code, 'ERR_SVDQ_NATIVE');
  }
  const auto = await enableNativeInference(model, { backend: 'auto' });
  t.equal(auto.backend, 'cpu');
  t.match(auto.reason, /^'auto' chose 'cpu': cuda: libsvdquant_cuda\.so not found at .*; hip: libsvdquant_hip\.so not found at /);
  disableNativeInference(model);
  t.same(snapshot(model), before, 'the model is untouched');
  await t.rejects(enableNativeInference(model, { backend: 'tpu' as never }), { name: 'ArgumentError', argument: 'options.backend' });
  await t.rejects(enableNativeInference(model, { lowRank: 'fast' as never }), { name: 'ArgumentError', argument: 'options.lowRank' });
  await t.rejects(enableNativeInference(model, { threads: -1 }), { name: 'ArgumentError', argument: 'options.threads' });
  await t.rejects(enableNativeInference(model, { thread: 2 } as never), { name: 'ArgumentError', argument: 'options.thread' });
  await t.rejects(enableNativeInference(null as never), { name: 'ArgumentError', argument: 'model' });
  t.throws(() => disableNativeInference(42 as never), { name: 'ArgumentError', argument: 'model' });
  t.same(snapshot(model), before);
  // Enabling twice reports the native layers as skipped; nothing is silently dropped.
  await enableNativeInference(model);
  const second = await enableNativeInference(model);
  t.same(second.converted, []);
  t.equal(second.skipped.length, 3);
  t.match(second.skipped[0].reason, /already running natively/);
  const nat = model.getSubmodule('2') as NativeLinear;
  await t.rejects(nat.call(input(1), input(2)), { name: 'ArgumentError', argument: 'inputs' });
  disableNativeInference(model);
  t.same(snapshot(model), before);
  t.ok(nat.disposed);
  const src = nat.source;
  const xz = input(5);
  t.ok(bitsEqual((await nat.call(xz)).data, (await src.call(xz)).data), 'a disposed native layer runs its source (reference path)');
});

t.test('quantize without calibration, or with a rank the layers cannot hold, is an ArgumentError; the model is untouched (issue 18)', async (t) => {
  const model = buildModel();
  const before = snapshot(model);
  // Before: resolved "successfully" with every layer skipped.
  await t.rejects(quantizeModel(model, { rank: 8 }), { name: 'ArgumentError', argument: 'calibration', message: /expected at least one batch of calibration inputs/ });
  await t.rejects(quantizeModel(model, { rank: 8, scheme: 'w4a16' }, (function* () {})()), { name: 'ArgumentError', argument: 'calibration' }, 'no scheme is exempt, w4a16 included');
  t.same(snapshot(model), before);
  // Before: silently clipped to min(N, K) = 40 for the head (a layer larger than its bf16 form).
  let consumed = false;
  const batches = (function* () {
    consumed = true;
    yield* calibration();
  })();
  await t.rejects(quantizeModel(model, { rank: 41 }, batches), {
    name: 'ArgumentError', argument: 'config.rank',
    message: /^invalid argument 'config\.rank': expected at most min\(N, K\) = 40 for layer '2' \(40x96\); exclude the layer or raise minDim to skip small layers, got 41$/,
  });
  t.notOk(consumed, 'refused before any calibration ran');
  t.same(snapshot(model), before);
  const r = await quantizeModel(model, { rank: 41, exclude: ['2'] }, calibration());
  t.same(r.layers.map((l) => [l.name, l.rank]), [['1.fc1', 41], ['1.fc2', 41]], 'excluding the small layer is the way out');
});

t.test('NaN or Inf reaching a layer during calibration: NonFiniteError naming the layer; the model is untouched (issue 18)', async (t) => {
  const model = buildModel();
  const before = snapshot(model);
  const batches = calibration();
  batches[2][0].data[3 * 96 + 17] = Number.NaN;
  // Before: accepted, with NaN errors in the report.
  await t.rejects(quantizeModel(model, { rank: 8 }, batches), {
    name: 'NonFiniteError', code: 'ERR_SVDQ_NONFINITE', tensor: '1.fc1 (calibration input)', message: /\(token 3, channel \d+ of this batch\): expected finite calibration inputs/,
  });
  t.same(snapshot(model), before);
  for (const [, m] of model.namedModules()) t.equal(m.forwardHookCount, 0, 'hooks removed');
});

t.test('disableNativeInference during a forward: layers already run stay native, later ones run the reference path (documented)', async (t) => {
  const model = buildModel();
  await quantizeModel(model, { rank: 8 }, calibration());
  const x = input(7);
  const reference = (await model.call(x)).data;
  await enableNativeInference(model, { backend: 'cpu' });
  const native = (await model.call(x)).data;
  const fc1 = model.getSubmodule('1.fc1') as NativeLinear;
  const fc2 = (model.getSubmodule('1.fc2') as NativeLinear).source;
  const head = (model.getSubmodule('2') as NativeLinear).source;
  // The mixed result, step by step: fc1 native, fc2 and the head on the reference path.
  const h = await fc1.call(await model.getSubmodule('0').call(x));
  const expected = (await head.call(await fc2.call(await model.getSubmodule('1.act').call(h)))).data;
  const hook = fc1.registerForwardHook(() => void disableNativeInference(model));
  const mixed = (await model.call(x)).data;
  hook.remove();
  t.ok(bitsEqual(mixed, expected), 'fc1 ran natively, fc2 and the head on the reference path');
  t.notOk(bitsEqual(mixed, native), 'so the output matches neither the native path');
  t.notOk(bitsEqual(mixed, reference), 'nor the reference path');
  t.ok(bitsEqual((await model.call(x)).data, reference), 'the next forward is all reference again');
});

t.test('a quantized layer\'s output is freed by the enclosing module, on the reference and the native path', async (t) => {
  // Left to V8, a 4-bit model's layer outputs triggered a major GC every few layers (DiT-XL/2 bench).
  const model = buildModel();
  await quantizeModel(model, { rank: 8, exclude: ['*.fc2'], minDim: 50 }, calibration());
  const fc1 = model.getSubmodule('1.fc1');
  const seen: Tensor[] = [];
  fc1.registerForwardHook((_m, _i, out) => void seen.push(out as Tensor), { retainsTensors: false });
  t.ok(fc1 instanceof ErrorCorrectedLinear);
  const ref = await model.call(input());
  t.ok(seen[0].disposed, 'reference path: ErrorCorrectedLinear output freed when the MLP returned');
  await enableNativeInference(model, { backend: 'cpu' });
  const nativeFc1 = model.getSubmodule('1.fc1');
  t.ok(nativeFc1 instanceof NativeLinear);
  nativeFc1.registerForwardHook((_m, _i, out) => void seen.push(out as Tensor), { retainsTensors: false });
  const y = await model.call(input());
  t.ok(seen[1].disposed, 'native path: NativeLinear output freed when the MLP returned');
  t.notOk(y.disposed || ref.disposed, 'the model outputs are the caller\'s');
});
