// Issue 20 item 4: sensitivity-aware precision on the built-in trained DiT. Calibration batches are
// noisy images at three timesteps; the model's output error is measured against its own fp32 output.
import t from 'tap';
import { Linear, Tensor } from '../lib/index.js';
import { ErrorCorrectedLinear, SeededRandom, moduleBytes, outputVector, quantizeModel, resolveConfig } from '../lib/quant/index.js';
import { ArgumentError } from '../lib/errors.js';
import { loadFashionDit } from './support/dit-activations.js';

function batches() {
  const rng = new SeededRandom(3);
  return [999, 600, 200].map((timestep, i) => ({
    hidden_states: Tensor.fromStorage(Float32Array.from({ length: 4 * 28 * 28 }, () => rng.normal()), [4, 1, 28, 28], 'f32'),
    timestep,
    class_labels: [i, i + 3, i + 6, 10],
  }));
}

async function outputError(model: Awaited<ReturnType<typeof loadFashionDit>>, refs: Float32Array[]): Promise<number> {
  let num = 0, den = 0;
  for (const [b, batch] of batches().entries()) {
    const y = outputVector(await model.call(batch));
    for (let i = 0; i < y.length; i++) {
      num += (y[i] - refs[b][i]) ** 2;
      den += refs[b][i] ** 2;
    }
  }
  return Math.sqrt(num / den);
}

const fp = await loadFashionDit();
const refs: Float32Array[] = [];
for (const batch of batches()) refs.push(outputVector(await fp.call(batch)));

t.test('off by default', async (t) => {
  t.equal(resolveConfig({}).sensitivity, false);
  const model = await loadFashionDit();
  const report = await quantizeModel(model, {}, batches());
  t.equal(report.sensitivity, null);
});

t.test('w8a8 within a budget: the most error per byte kept, budget respected, the model error measured and lower', async (t) => {
  const budget = 60_000;
  const model = await loadFashionDit();
  const report = await quantizeModel(model, { sensitivity: { budgetBytes: budget, batches: 3 } }, batches());
  const s = report.sensitivity!;
  t.equal(s.layers.length, report.layers.length, 'every quantized layer measured');
  t.equal(s.batches, 3);
  const kept = s.layers.filter((l) => l.kept);
  t.ok(kept.length > 0 && kept.length < s.layers.length, `${kept.length} of ${s.layers.length} kept`);
  t.equal(s.usedBytes, kept.reduce((a, l) => a + l.extraBytes, 0));
  t.ok(s.usedBytes <= budget);
  // Greedy order: error removed per byte, descending; every layer skipped for the budget did not fit.
  const perByte = s.layers.map((l) => (l.errorQuantized - l.errorKept) / Math.max(1, l.extraBytes));
  for (let i = 1; i < perByte.length; i++) t.ok(perByte[i] <= perByte[i - 1]);
  let used = 0;
  for (const l of s.layers) {
    if (l.kept) used += l.extraBytes;
    else if (l.errorQuantized > l.errorKept) t.ok(used + l.extraBytes > budget, `${l.name}: ${l.reason}`);
  }
  t.match(kept[0].reason, /^kept at w8a8: error alone/);
  // The kept layers are w8a8 in the model, the others 4-bit; the report says which.
  for (const l of s.layers) {
    const m = model.getSubmodule(l.name);
    t.ok(m instanceof ErrorCorrectedLinear);
    t.equal((m as ErrorCorrectedLinear).scheme, l.kept ? 'w8a8' : 'w4a4', l.name);
    t.equal(report.layers.find((r) => r.name === l.name)!.scheme, l.kept ? 'w8a8' : 'w4a4');
  }
  // The reported errors are the model's, measured independently here.
  const err = await outputError(model, refs);
  t.ok(Math.abs(err - s.errorWithKept) <= 1e-6 * Math.max(1, err), `error with kept layers ${err} vs reported ${s.errorWithKept}`);
  t.ok(s.errorWithKept < s.errorAllQuantized, `model error ${s.errorAllQuantized} -> ${s.errorWithKept}`);
  const all4 = await loadFashionDit();
  await quantizeModel(all4, {}, batches());
  t.ok(Math.abs((await outputError(all4, refs)) - s.errorAllQuantized) <= 1e-6, 'all-quantized error = the default quantization\'s');
});

t.test("keep 'none': kept layers stay the original Linear; budget 0 keeps nothing", async (t) => {
  const model = await loadFashionDit();
  const one = model.getSubmodule('transformer_blocks.0.ff.net.0.proj') as Linear;
  const report = await quantizeModel(model, { sensitivity: { budgetBytes: moduleBytes(one), keep: 'none', batches: 2 } }, batches());
  const s = report.sensitivity!;
  const kept = s.layers.filter((l) => l.kept);
  t.ok(kept.length >= 1);
  for (const l of kept) {
    t.ok(model.getSubmodule(l.name) instanceof Linear, `${l.name} unquantized`);
    t.equal(l.errorKept, 0);
    t.match(report.skipped.find((x) => x.name === l.name)!.reason, /^sensitivity: kept at the original precision/);
  }
  t.equal(report.layers.length + kept.length, s.layers.length);
  const none = await quantizeModel(await loadFashionDit(), { sensitivity: { budgetBytes: 0 } }, batches());
  t.same(none.sensitivity!.layers.filter((l) => l.kept), []);
  t.equal(none.sensitivity!.errorWithKept, none.sensitivity!.errorAllQuantized);
});

t.test('bad sensitivity settings: typed errors', async (t) => {
  t.throws(() => resolveConfig({ sensitivity: { budgetBytes: -1 } }), ArgumentError);
  t.throws(() => resolveConfig({ sensitivity: { budgetBytes: 10, keep: 'fp8' as 'none' } }), /config\.sensitivity\.keep/);
  t.throws(() => resolveConfig({ sensitivity: { budgetBytes: 10, batches: 0 } }), /config\.sensitivity\.batches/);
  t.throws(() => resolveConfig({ sensitivity: { budgetBytes: 10, extra: 1 } as never }), /config\.sensitivity\.extra/);
});
