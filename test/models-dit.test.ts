// DiTTransformer2DModel through the public loader against the diffusers fixtures (test/data/
// diffusers/dit, made by the real diffusers v0.30.3): the output and the input of every Linear within
// |a − b| <= 1e-4 + 1e-4·|b|, with F32 weights and with BF16 weights.
import t from 'tap';
import { join } from 'node:path';
import { loadModel, DiTTransformer2DModel, Tensor } from '../lib/index.js';
import { FIXTURES, captureLinearInputs, closeTo, fixtureInputs, fixtureTensors } from './support/diffusers-fixture.js';

const dir = join(FIXTURES, 'dit');

t.test('DiT (F32 weights): output and every Linear input match diffusers', async (t) => {
  const model = await loadModel(dir);
  t.ok(model instanceof DiTTransformer2DModel);
  t.equal((model as DiTTransformer2DModel).config._class_name, 'DiTTransformer2DModel');
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const capture = captureLinearInputs(model);
  const { sample } = await model.call(fixtureInputs(io) as never);
  capture.remove();
  const expected = io.get('output/sample')!;
  t.same(sample.shape, expected.shape, 'output shape');
  const c = closeTo(sample, expected);
  t.ok(c.ok, `output/sample: max |diff| ${c.maxAbs.toExponential(2)} (worst ratio to tolerance ${c.worstRatio.toFixed(3)})`);
  const names = [...io.keys()].filter((n) => n.startsWith('linear_in/')).map((n) => n.slice('linear_in/'.length));
  t.same([...capture.inputs.keys()].sort(), names.sort(), 'every Linear is called as in diffusers (same names, same call counts)');
  for (const name of names) {
    const got = capture.inputs.get(name);
    const r = got === undefined ? undefined : closeTo(got, io.get(`linear_in/${name}`)!);
    t.ok(r?.ok, `linear_in/${name}: max |diff| ${r?.maxAbs.toExponential(2)}`);
  }
});

t.test('DiT (BF16 weights, variant "bf16"): output matches output_bf16_weights', async (t) => {
  const model = await loadModel(dir, { variant: 'bf16' });
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const { sample } = await model.call(fixtureInputs(io) as never);
  const c = closeTo(sample, io.get('output_bf16_weights/sample')!);
  t.ok(c.ok, `max |diff| ${c.maxAbs.toExponential(2)}`);
  const f32 = closeTo(sample, io.get('output/sample')!);
  t.notOk(f32.ok, 'and differs from the F32-weight output (the BF16 weights were really used)');
});

t.test('a single timestep number is used for every sample', async (t) => {
  const model = await loadModel(dir);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  const a = await model.call({ ...inputs, timestep: 37 } as never);
  const b = await model.call({ ...inputs, timestep: Tensor.fromIntegers([37, 37]) } as never);
  t.same(a.sample.toArray(), b.sample.toArray());
});
