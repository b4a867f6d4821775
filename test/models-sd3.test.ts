// SD3Transformer2DModel through the public loader against the diffusers fixture (test/data/diffusers/
// sd3, real diffusers v0.30.3; its weights include the persistent pos_embed.pos_embed of the 16×16
// grid, cropped to 4×4), the SD3.5 options, then quantized with the 'sd3' preset, run natively,
// saved whole and reloaded.
import t from 'tap';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { loadModel, SD3Transformer2DModel, Tensor } from '../lib/index.js';
import { FIXTURES, fixtureInputs, fixtureTensors } from './support/diffusers-fixture.js';
import { checkAgainstFixture, checkQuantizedRoundTrip } from './support/text-to-image-checks.js';

const dir = join(FIXTURES, 'sd3');

t.test('SD3: output and every Linear input match diffusers', (t) => checkAgainstFixture(t, 'sd3', SD3Transformer2DModel, 'SD3Transformer2DModel'));

t.test('SD3: the last block is context_pre_only', async (t) => {
  const model = await loadModel(dir);
  const names = new Set([...model.namedModules()].map(([n]) => n));
  t.ok(names.has('transformer_blocks.0.attn.to_add_out') && names.has('transformer_blocks.0.ff_context.net.2'), 'block 0 has a context output');
  t.notOk(names.has('transformer_blocks.1.attn.to_add_out') || names.has('transformer_blocks.1.ff_context'), 'block 1 has none');
  t.ok(names.has('transformer_blocks.1.attn.add_q_proj'), 'block 1 still projects context queries');
});

t.test('SD3.5 options: qk_norm and dual_attention_layers build the SD3.5 keys and run', async (t) => {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  const model = new SD3Transformer2DModel({ ...config, qk_norm: 'rms_norm', dual_attention_layers: [0] });
  const names = new Set([...model.namedModules()].map(([n]) => n));
  for (const n of ['transformer_blocks.0.attn.norm_q', 'transformer_blocks.0.attn.norm_added_k', 'transformer_blocks.0.attn2.to_q', 'transformer_blocks.0.attn2.norm_k']) t.ok(names.has(n), n);
  t.notOk(names.has('transformer_blocks.1.attn2'), 'only the listed blocks get attn2');
  t.same((model.getSubmodule('transformer_blocks.0.norm1.linear') as unknown as { outFeatures: number }).outFeatures, 9 * 32, 'SD35AdaLayerNormZeroX: 9 chunks');
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const out = await model.call(fixtureInputs(io) as never);
  t.same(out.sample.shape, [2, 4, 8, 8]);
  t.ok(out.sample.toArray().every(Number.isFinite), 'finite output');
  t.throws(() => new SD3Transformer2DModel({ ...config, qk_norm: 'layer_norm_across_heads' }), { name: 'ArgumentError', argument: 'config.qk_norm' });
});

t.test('SD3: bad inputs get typed errors naming them', async (t) => {
  const model = await loadModel(dir);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  await t.rejects(model.call({ ...inputs, pooled_projections: Tensor.zeros([2, 15], 'f32') } as never), { name: 'ArgumentError', argument: 'inputs.pooled_projections' });
  await t.rejects(model.call({ ...inputs, encoder_hidden_states: Tensor.zeros([1, 5, 32], 'f32') } as never), { name: 'ArgumentError', argument: 'inputs.encoder_hidden_states' });
  await t.rejects(model.call({ ...inputs, hidden_states: Tensor.zeros([2, 4, 34, 34], 'f32') } as never), { name: 'ArgumentError', argument: 'hidden_states' });
});

t.test('SD3: quantized with its preset, native, saved whole and reloaded', (t) => checkQuantizedRoundTrip(t, 'sd3', 'sd3', SD3Transformer2DModel));
