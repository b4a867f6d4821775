// PixArtTransformer2DModel through the public loader against the diffusers fixture (test/data/
// diffusers/pixart, real diffusers v0.30.3; the second caption is padded: mask [1,1,1,1,0,0]), then
// quantized with the 'pixart' preset, run natively, saved whole and reloaded.
import t from 'tap';
import { join } from 'node:path';
import { loadModel, maskToKeyBias, PixArtTransformer2DModel, Tensor } from '../lib/index.js';
import { FIXTURES, closeTo, fixtureInputs, fixtureTensors } from './support/diffusers-fixture.js';
import { checkAgainstFixture, checkQuantizedRoundTrip } from './support/text-to-image-checks.js';

const dir = join(FIXTURES, 'pixart');

t.test('PixArt: output and every Linear input match diffusers', (t) => checkAgainstFixture(t, 'pixart', PixArtTransformer2DModel, 'PixArtTransformer2DModel'));

t.test('PixArt: the padding mask is applied (the padded caption tokens change nothing)', async (t) => {
  const model = await loadModel(dir);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  const expected = io.get('output/sample')!;
  // Changing what sits in the masked positions of sample 1 leaves the output as it was.
  const caption = inputs.encoder_hidden_states.clone();
  const data = caption.data as Float32Array;
  const [, tokens, width] = caption.shape;
  for (const tok of [4, 5]) data.fill(7, (tokens + tok) * width, (tokens + tok + 1) * width);
  const masked = await model.call({ ...inputs, encoder_hidden_states: caption } as never);
  t.ok(closeTo(masked.sample, expected).ok, 'masked tokens are ignored');
  // Without the mask the padded tokens count and the output changes.
  const unmasked = await model.call({ ...inputs, encoder_attention_mask: null } as never);
  t.notOk(closeTo(unmasked.sample, expected).ok, 'without the mask the output differs');
  // The bias form [B, 1, Tk] of the same mask gives the same output.
  const bias = maskToKeyBias(inputs.encoder_attention_mask, 2, tokens).reshape([2, 1, tokens]);
  t.same(bias.toArray().slice(tokens).map((v) => v + 0), [0, 0, 0, 0, -10000, -10000], 'bias (1 − m)·−10000');
  const viaBias = await model.call({ ...inputs, encoder_attention_mask: bias } as never);
  t.ok(closeTo(viaBias.sample, expected).ok, 'a bias [B, 1, Tk] works as the mask');
});

t.test('PixArt: bad inputs get typed errors naming them', async (t) => {
  const model = await loadModel(dir);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  await t.rejects(model.call({ ...inputs, encoder_hidden_states: Tensor.zeros([2, 6, 31], 'f32') } as never), { name: 'ArgumentError', argument: 'inputs.encoder_hidden_states' });
  await t.rejects(model.call({ ...inputs, encoder_attention_mask: Tensor.zeros([2, 5], 'f32') } as never), { name: 'ArgumentError', argument: 'inputs.encoder_attention_mask' });
  await t.rejects(model.call({ ...inputs, hidden_states: Tensor.zeros([2, 4, 7, 8], 'f32') } as never), { name: 'ArgumentError', argument: 'inputs.hidden_states' });
});

t.test('PixArt: use_additional_conditions embeds resolution and aspect ratio', async (t) => {
  const config = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(join(dir, 'config.json'), 'utf8')));
  t.throws(() => new PixArtTransformer2DModel({ ...config, use_additional_conditions: true }), { name: 'ArgumentError', argument: 'config.use_additional_conditions' });
  // Width 48 (3 heads of 16): 16 values per size condition, as PixArt-α's 1152 = 3 · 384.
  const model = new PixArtTransformer2DModel({ ...config, num_attention_heads: 3, cross_attention_dim: 48, use_additional_conditions: true });
  const names = [...model.namedModules()].map(([n]) => n);
  for (const n of ['adaln_single.emb.resolution_embedder.linear_1', 'adaln_single.emb.aspect_ratio_embedder.linear_2']) t.ok(names.includes(n), n);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  await t.rejects(model.call(inputs as never), { name: 'ArgumentError', argument: 'inputs.added_cond_kwargs' });
  const sizes = { resolution: Tensor.fromArray([64, 64, 64, 48], [2, 2]), aspect_ratio: Tensor.fromArray([1, 0.75], [2, 1]) };
  const out = await model.call({ ...inputs, added_cond_kwargs: sizes } as never);
  t.same(out.sample.shape, [2, 8, 8, 8]);
});

t.test('PixArt: quantized with its preset, native, saved whole and reloaded', (t) => checkQuantizedRoundTrip(t, 'pixart', 'pixart', PixArtTransformer2DModel));
