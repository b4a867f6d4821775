// A real diffusers DiT (the fixture, loaded through the public loader) quantized end to end with its
// preset and named calibration inputs, saved whole, reloaded without the original weights file and
// run natively.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadModel, quantize, saveCheckpoint, enableNativeInference, ErrorCorrectedLinear, NativeLinear, Tensor,
  DiTTransformer2DModel, type Module,
} from '../lib/index.js';
import { FIXTURES, fixtureInputs, fixtureTensors } from './support/diffusers-fixture.js';

const dir = join(FIXTURES, 'dit');

/** Deterministic calibration: named inputs over the whole timestep range, labels including the null class. */
function calibration(batches: number): Record<string, Tensor>[] {
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const out: Record<string, Tensor>[] = [];
  for (let b = 0; b < batches; b++) {
    out.push({
      hidden_states: Tensor.fromArray(Array.from({ length: 2 * 4 * 8 * 8 }, gauss), [2, 4, 8, 8]),
      timestep: Tensor.fromIntegers([Math.floor((b / batches) * 1000), Math.floor(next() * 1000)]),
      class_labels: Tensor.fromIntegers([b % 11, Math.floor(next() * 11)]),
    });
  }
  return out;
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

async function sample(model: Module, inputs: Record<string, Tensor>): Promise<Float32Array> {
  const { sample } = await model.call(inputs as never);
  return sample.toArray() as unknown as Float32Array;
}

t.test('DiT: quantize with the dit preset, save whole, reload alone, run natively', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'svdq-dit-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  const model = await loadModel(dir);
  const fp32 = await sample(model, inputs);

  const report = await quantize(model, { scheme: 'w4a4', rank: 4 }, calibration(6));
  t.equal(report.preset, 'dit', 'the preset is picked from the class name');
  const skipped = new Map(report.skipped.map((s) => [s.name, s.reason]));
  for (const name of ['transformer_blocks.0.norm1.linear', 'transformer_blocks.1.norm1.linear', 'proj_out_1', 'proj_out_2',
    'transformer_blocks.0.norm1.emb.timestep_embedder.linear_1']) {
    t.match(skipped.get(name), /preset 'dit'/, `${name} skipped, with the preset's reason`);
  }
  const quantized = [...model.namedModules()].filter(([, m]) => m instanceof ErrorCorrectedLinear).map(([n]) => n);
  t.same(quantized.sort(), ['0', '1'].flatMap((b) =>
    ['attn1.to_q', 'attn1.to_k', 'attn1.to_v', 'attn1.to_out.0', 'ff.net.0.proj', 'ff.net.2'].map((l) => `transformer_blocks.${b}.${l}`)).sort(),
  'every attention and feed-forward Linear is quantized');

  const simulated = await sample(model, inputs);
  const qErr = relErr(simulated, fp32);
  t.ok(qErr > 0 && qErr < 0.35, `quantized output differs from fp32 by a 4-bit-sized amount (relative L2 ${qErr.toFixed(4)})`);

  const file = join(tmp, 'dit-w4a4.safetensors');
  const saved = await saveCheckpoint(model, file);
  t.same(saved.layers.sort(), quantized, 'every quantized layer is saved in its canonical form');
  t.ok(saved.parameters.includes('transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight'), 'and the label table with the other parameters');

  // Reloaded from the checkpoint alone: the architecture and config come from the file.
  const reloaded = await loadModel(file);
  t.ok(reloaded instanceof DiTTransformer2DModel, 'the checkpoint names its architecture');
  t.same((reloaded as DiTTransformer2DModel).config.num_layers, 2, 'and carries its diffusers config');
  t.same(await sample(reloaded, inputs), simulated, 'reloaded model gives the very same outputs');

  const native = await enableNativeInference(reloaded, { backend: 'cpu', threads: 2 });
  t.equal(native.converted.length, quantized.length, 'every quantized layer runs natively');
  t.ok([...reloaded.namedModules()].some(([, m]) => m instanceof NativeLinear));
  const nativeOut = await sample(reloaded, inputs);
  const nErr = relErr(nativeOut, simulated);
  // The native kernels follow lowbit.h's bound per layer; through the model the difference must stay
  // far below the quantization error itself.
  t.ok(nErr < 0.1 * qErr, `native vs simulated relative L2 ${nErr.toExponential(2)} (quantization error ${qErr.toFixed(4)})`);
});

t.test('quantize rejects calibration inputs the model does not take, naming the batch', async (t) => {
  const model = await loadModel(dir);
  await t.rejects(quantize(model, { scheme: 'w4a4', rank: 4 }, [{ hidden_states: Tensor.zeros([1, 4, 8, 8], 'f32'), bogus: 1 }]),
    { name: 'ArgumentError' });
});
