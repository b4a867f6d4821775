// The inputs of every Linear of the tiny diffusers fixture models (test/data/diffusers: DiT,
// PixArt-Σ, SD3, Flux; random weights), for layer-level quantizer checks beside the trained
// built-in model. Each draw runs the model on the fixture's inputs with the float sample and
// conditioning replaced by seeded normal noise of the same shapes (timesteps, labels, masks and
// position ids kept), so two seeds give a calibration set and a fresh set.
import { join } from 'node:path';
import { randn, type Tensor } from '../../lib/index.js';
import { loadModel } from '../../lib/models/index.js';
import { recordLinearInputs, type CapturedLayer } from './dit-activations.js';
import { FIXTURES, fixtureInputs, fixtureTensors } from './diffusers-fixture.js';

export const FIXTURE_MODELS = ['dit', 'pixart', 'sd3', 'flux'] as const;
const NOISED = new Set(['hidden_states', 'encoder_hidden_states', 'pooled_projections']);

/** Every Linear's inputs over `draws` forwards of fixture model `name` (seeds seed, seed + 1, ...). */
export async function captureFixtureLinearInputs(name: (typeof FIXTURE_MODELS)[number], options: { seed: number; draws: number }): Promise<Map<string, CapturedLayer>> {
  const model = await loadModel(join(FIXTURES, name));
  const inputs = fixtureInputs(await fixtureTensors(join(FIXTURES, name, 'io.safetensors')));
  return recordLinearInputs(model, () => true, async () => {
    for (let d = 0; d < options.draws; d++) {
      const drawn: Record<string, Tensor> = {};
      let k = 0;
      for (const [key, t] of Object.entries(inputs)) drawn[key] = NOISED.has(key) ? randn(t.shape, options.seed * 1000 + d * 10 + k++) : t;
      await model.call(drawn);
    }
  });
}
