// AutoencoderKL through the public loader against the diffusers fixtures (test/data/diffusers/vae,
// made by the real diffusers v0.30.3): decode, the decoder's intermediate outputs (so a mistake is
// located), encode's mean and logvar, within |a − b| <= 1e-4 + 1e-4·|b|.
import t from 'tap';
import { join } from 'node:path';
import { loadModel, AutoencoderKL, Tensor } from '../lib/index.js';
import { FIXTURES, closeTo, fixtureTensors } from './support/diffusers-fixture.js';

const dir = join(FIXTURES, 'vae');

t.test('AutoencoderKL: decode, its intermediates, and encode match diffusers', async (t) => {
  const vae = await loadModel(dir) as AutoencoderKL;
  t.ok(vae instanceof AutoencoderKL);
  t.equal(vae.spatialFactor, 2);
  t.equal(vae.scalingFactor, 0.18215);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const seen = new Map<string, Tensor>();
  const decoder = vae.getSubmodule('decoder');
  const handles = ['conv_in', 'mid_block', 'up_blocks.0', 'up_blocks.1', 'conv_norm_out', 'conv_out'].map((name) =>
    decoder.getSubmodule(name).registerForwardHook((_m, _args, out) => void seen.set(name, (out as Tensor).clone())));
  const postQuant = vae.getSubmodule('post_quant_conv').registerForwardHook((_m, _a, out) => void seen.set('post_quant_conv', (out as Tensor).clone()));
  const decoded = await vae.decode(io.get('input/latents')!);
  for (const h of [...handles, postQuant]) h.remove();
  const check = (name: string, got: Tensor | undefined, want: Tensor): void => {
    const c = got === undefined ? undefined : closeTo(got, want);
    t.ok(c?.ok, `${name}: max |diff| ${c?.maxAbs.toExponential(2)}`);
  };
  check('post_quant_conv_out', seen.get('post_quant_conv'), io.get('post_quant_conv_out')!);
  for (const name of ['conv_in', 'mid_block', 'up_blocks.0', 'up_blocks.1', 'conv_norm_out', 'conv_out']) {
    check(`decoder_out/${name}`, seen.get(name), io.get(`decoder_out/${name}`)!);
  }
  t.same(decoded.shape, [2, 3, 8, 8]);
  check('output/decoded', decoded, io.get('output/decoded')!);
  const { mean, logvar } = await vae.encode(io.get('input/image')!);
  check('output/latent_mean', mean, io.get('output/latent_mean')!);
  check('output/latent_logvar', logvar, io.get('output/latent_logvar')!);
  const { sample } = await vae.call({ sample: io.get('input/image')! });
  t.same(sample.shape, [2, 3, 16, 16], 'forward decodes the mean of the encoding');
});
