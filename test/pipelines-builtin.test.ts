// The built-in model (models/fashion-dit) through DiTPipeline, against samples made by its own
// training code (test/data/fashion-dit/reference_samples.safetensors, written by
// training/reference_samples.py with Debian's torch: the training script's DDIM + CFG sampler on
// the exported BF16 weights, from the noise stored in the file), and the JS port of its classifier
// against the logits the PyTorch classifier gave on those samples.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiTPipeline, Tensor, builtinModelDir, loadBuiltinClassifier, unitToSigned } from '../lib/index.js';
import { closeTo, fixtureTensors } from './support/diffusers-fixture.js';

const REFERENCE = join('test', 'data', 'fashion-dit', 'reference_samples.safetensors');

t.test('builtinModelDir() is a diffusers DiTPipeline folder shipped in the package', async (t) => {
  const dir = builtinModelDir();
  const index = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8'));
  t.equal(index._class_name, 'DiTPipeline');
  t.ok(existsSync(join(dir, 'transformer', 'diffusion_pytorch_model.safetensors')));
  t.ok(existsSync(join(dir, 'README.md')), 'with a model card');
  const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
  t.ok(pkg.files.includes('models/fashion-dit'), 'package.json "files" ships it');
});

t.test('50 DDIM + CFG steps reproduce the training code\'s own samples from the same noise', async (t) => {
  const ref = await fixtureTensors(REFERENCE);
  const pipe = await DiTPipeline.fromPretrained(builtinModelDir());
  const labels = ref.get('labels')!.toArray();
  const out = await pipe.generate({ classLabels: labels, latents: ref.get('noise')!, numInferenceSteps: 50, guidanceScale: 4 });
  // Observed here: 3.2e-5 at absmax 2.3 after 50 steps (float32 rounding of two implementations);
  // the bound leaves room for other CPUs' summation orders.
  const c = closeTo(out.latents, ref.get('samples')!, 5e-4, 5e-4);
  t.ok(c.ok, `max |diff| ${c.maxAbs.toExponential(2)} (worst ratio to 5e-4 + 5e-4·|b|: ${c.worstRatio.toFixed(3)})`);
  const classifier = await loadBuiltinClassifier();
  t.same(await classifier.predict(unitToSigned(out.images)), labels, 'the classifier recognises every sample as its label');
});

t.test('the JS classifier gives the PyTorch classifier\'s logits', async (t) => {
  const ref = await fixtureTensors(REFERENCE);
  const samples = ref.get('samples')!.toArray().map((v) => Math.min(1, Math.max(-1, v)));
  const classifier = await loadBuiltinClassifier();
  const logits = await classifier.call(Tensor.fromArray(samples, ref.get('samples')!.shape));
  const c = closeTo(logits, ref.get('logits')!);
  t.ok(c.ok, `max |diff| ${c.maxAbs.toExponential(2)}`);
  await t.rejects(classifier.call(Tensor.zeros([1, 3, 28, 28], 'f32')), { name: 'ArgumentError', argument: 'images' });
});
