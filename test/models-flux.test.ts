// FluxTransformer2DModel through the public loader against the diffusers fixture (test/data/diffusers/
// flux, real diffusers v0.30.3, whose img_ids / txt_ids are 3-D), the 2-D ids of newer diffusers, the
// latent packing helpers, then quantized with the 'flux' preset, run natively, saved whole and reloaded.
import t from 'tap';
import { join } from 'node:path';
import { loadModel, FluxTransformer2DModel, packLatents, unpackLatents, imageIds, textIds, rotaryTable, applyRotaryEmbedding, Tensor } from '../lib/index.js';
import { FIXTURES, closeTo, fixtureInputs, fixtureTensors } from './support/diffusers-fixture.js';
import { checkAgainstFixture, checkQuantizedRoundTrip } from './support/text-to-image-checks.js';

const dir = join(FIXTURES, 'flux');

t.test('Flux: output and every Linear input match diffusers', (t) => checkAgainstFixture(t, 'flux', FluxTransformer2DModel, 'FluxTransformer2DModel'));

t.test('Flux: 2-D ids (shared by the batch) and the id builders give the fixture output', async (t) => {
  const model = await loadModel(dir);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  t.same(imageIds(8, 8).toArray(), inputs.img_ids.toArray().slice(0, 16 * 3), 'imageIds(8, 8) is the fixture\'s (0, row, col) grid of 4×4 tokens');
  const out = await model.call({ ...inputs, img_ids: imageIds(8, 8), txt_ids: textIds(4) } as never);
  t.ok(closeTo(out.sample, io.get('output/sample')!).ok);
  await t.rejects(model.call({ ...inputs, guidance: null } as never), { name: 'ArgumentError', argument: 'inputs.guidance' });
  await t.rejects(model.call({ ...inputs, img_ids: imageIds(8, 10) } as never), { name: 'ArgumentError', argument: 'inputs.img_ids' });
  await t.rejects(model.call({ ...inputs, txt_ids: Tensor.zeros([4, 2], 'f32') } as never), { name: 'ArgumentError', argument: 'inputs.txt_ids' });
});

t.test('packLatents / unpackLatents: 2×2 patches, channel-major, and back', async (t) => {
  // One sample, 2 channels, 2×4 latent: value = c·100 + row·10 + col.
  const values: number[] = [];
  for (let c = 0; c < 2; c++) for (let r = 0; r < 2; r++) for (let x = 0; x < 4; x++) values.push(c * 100 + r * 10 + x);
  const latents = Tensor.fromArray(values, [1, 2, 2, 4]);
  const tokens = await packLatents(latents);
  t.same(tokens.shape, [1, 2, 8]);
  // Token 1 is the patch of columns 2..3: per channel (0,2) (0,3) (1,2) (1,3).
  t.same(tokens.toArray().slice(8), [2, 3, 12, 13, 102, 103, 112, 113]);
  t.same((await unpackLatents(tokens, 2, 4)).toArray(), values);
  await t.rejects(packLatents(Tensor.zeros([1, 2, 3, 4], 'f32')), { name: 'ArgumentError', argument: 'height' });
  await t.rejects(unpackLatents(tokens, 4, 4), { name: 'ArgumentError', argument: 'tokens' });
});

t.test('rotary embedding: hand-computed rotation of one head', async (t) => {
  // ids (3, 2) with axis dims [2, 4] and theta 100: axis 0 has one pair (turn 3·1), axis 1 two pairs
  // (turns 2·1 and 2·100^(−2/4) = 0.2).
  const table = rotaryTable(Tensor.fromArray([3, 2], [1, 2]), [2, 4], 100);
  const angles = [3, 2, 2 / 10];
  t.same(table.cos.shape, [1, 1, 3]);
  angles.forEach((a, j) => {
    t.ok(Math.abs(table.cos.toArray()[j] - Math.cos(a)) < 1e-7 && Math.abs(table.sin.toArray()[j] - Math.sin(a)) < 1e-7, `pair ${j} turns by ${a}`);
  });
  const x = Tensor.fromArray([1, 0, 0, 1, 2, 3], [1, 1, 6]);
  const y = (await applyRotaryEmbedding(x, table, 1)).toArray();
  const want = [Math.cos(3), Math.sin(3), -Math.sin(2), Math.cos(2), 2 * Math.cos(0.2) - 3 * Math.sin(0.2), 2 * Math.sin(0.2) + 3 * Math.cos(0.2)];
  want.forEach((w, i) => t.ok(Math.abs(y[i] - w) < 1e-6, `y[${i}] = ${w.toFixed(6)} (got ${y[i].toFixed(6)})`));
  await t.rejects(applyRotaryEmbedding(Tensor.zeros([1, 2, 6], 'f32'), table, 1), { name: 'ArgumentError', argument: 'table.cos' });
  await t.rejects(applyRotaryEmbedding(x, table, 4), { name: 'ArgumentError', argument: 'heads' });
  t.throws(() => rotaryTable(Tensor.zeros([2, 3], 'f32'), [2, 4]), { name: 'ArgumentError', argument: 'ids' });
  t.throws(() => rotaryTable(Tensor.zeros([2, 2], 'f32'), [3, 4]), { name: 'ArgumentError', argument: 'axesDim' });
});

t.test('Flux: quantized with its preset, native, saved whole and reloaded', (t) => checkQuantizedRoundTrip(t, 'flux', 'flux', FluxTransformer2DModel));
