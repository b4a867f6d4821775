/**
 * `svdquant generate --embeddings FILE`, run as a user would (spawned dist/cli/main.js), on pipeline
 * folders assembled from the tiny diffusers fixture models (PixArt-Σ, SD3, Flux + the fixture VAE).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { Tensor, randn, tensorToSafetensors, writeSafetensors } from '../lib/index.js';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';
import { textPipelineFolder } from './support/text-pipeline-folder.js';

t.before(requireBuiltCli);

async function embeddingsFile(path: string, tensors: Record<string, Tensor>): Promise<string> {
  await writeSafetensors(path, Object.entries(tensors).map(([name, tensor]) => tensorToSafetensors(name, tensor)));
  return path;
}

const sd3Embeddings = {
  prompt_embeds: randn([2, 5, 32], 1),
  pooled_prompt_embeds: randn([2, 16], 2),
  negative_prompt_embeds: randn([1, 5, 32], 3),
  negative_pooled_prompt_embeds: randn([1, 16], 4),
};

interface Report { pipeline: string; prompts: number; seeds: number[]; height: number; width: number; quantized: boolean; guidance: number }

t.test('SD3: one PNG of one image per prompt, reproducible from the seed', async (t) => {
  const dir = t.testdir();
  const model = textPipelineFolder(join(dir, 'sd3'), 'StableDiffusion3Pipeline', 'sd3', 'flow_sd3_shift3');
  const file = await embeddingsFile(join(dir, 'prompts.safetensors'), sd3Embeddings);
  const [a, b, c] = ['a.png', 'b.png', 'c.png'].map((f) => join(dir, f));
  const r = await svdquant(['generate', '--model', model, '--embeddings', file, '--steps', '2', '--seed', '3', '-o', a, '--json']);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  t.equal(report.pipeline, 'StableDiffusion3Pipeline');
  t.equal(report.prompts, 2);
  t.same(report.seeds, [3, 4]);
  t.equal(report.guidance, 7, 'the pipeline\'s default guidance');
  t.same([report.height, report.width], [16, 16], 'default size: sample_size 8 · VAE factor 2');
  const png = PNG.sync.read(readFileSync(a));
  t.ok(png.width >= 2 * 16 && png.height >= 16, `${png.width}x${png.height}`);
  t.match(r.stderr, /generate: \[2\/2\] sampling steps/, 'progress per step on stderr');
  t.equal((await svdquant(['generate', '--model', model, '--embeddings', file, '--steps', '2', '--seed', '3', '-o', b])).code, 0);
  t.same(readFileSync(b), readFileSync(a), 'same seed: the same PNG');
  t.equal((await svdquant(['generate', '--model', model, '--embeddings', file, '--steps', '2', '--seed', '9', '-o', c])).code, 0);
  t.notSame(readFileSync(c), readFileSync(a), 'another seed: another PNG');
});

t.test('Flux with --height/--width, PixArt-Σ with int64 masks, --scheme quantizes from the prompts', async (t) => {
  const dir = t.testdir();
  const flux = textPipelineFolder(join(dir, 'flux'), 'FluxPipeline', 'flux', 'flow_flux_dynamic');
  const fluxFile = await embeddingsFile(join(dir, 'flux.safetensors'), { prompt_embeds: randn([1, 4, 32], 5), pooled_prompt_embeds: randn([1, 16], 6) });
  const f = await svdquant(['generate', '--model', flux, '--embeddings', fluxFile, '--steps', '2', '--height', '8', '--width', '16', '-o', join(dir, 'f.png'), '--json']);
  t.equal(f.code, 0, f.stderr);
  const fr = JSON.parse(f.stdout) as Report;
  t.same([fr.pipeline, fr.height, fr.width], ['FluxPipeline', 8, 16]);

  const pixart = textPipelineFolder(join(dir, 'pixart'), 'PixArtSigmaPipeline', 'pixart', 'dpmpp2m_sd');
  const pixartFile = await embeddingsFile(join(dir, 'pixart.safetensors'), {
    prompt_embeds: randn([2, 6, 32], 7), prompt_attention_mask: Tensor.fromIntegers([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).reshape([2, 6]),
    negative_prompt_embeds: randn([1, 6, 32], 8), negative_prompt_attention_mask: Tensor.fromIntegers([1, 0, 0, 0, 0, 0]).reshape([1, 6]),
  });
  const q = await svdquant(['generate', '--model', pixart, '--embeddings', pixartFile, '--steps', '2', '--scheme', 'w4a4', '--rank', '4', '-o', join(dir, 'q.png'), '--json']);
  t.equal(q.code, 0, q.stderr);
  t.equal((JSON.parse(q.stdout) as Report).quantized, true);
  t.match(q.stderr, /generate: quantizing \(w4a4, rank 4\) from 2 captured model calls/, 'calibrated from 1 run x 2 steps over the prompts');
});

t.test('bad --embeddings input: one-line errors naming the tensor or option', async (t) => {
  const dir = t.testdir();
  const sd3 = textPipelineFolder(join(dir, 'sd3'), 'StableDiffusion3Pipeline', 'sd3', 'flow_sd3_shift3');
  const pixart = textPipelineFolder(join(dir, 'pixart'), 'PixArtSigmaPipeline', 'pixart', 'dpmpp2m_sd');
  const good = await embeddingsFile(join(dir, 'good.safetensors'), sd3Embeddings);
  const { pooled_prompt_embeds: _pooled, ...noPooled } = sd3Embeddings;
  const cases: [string[], Record<string, Tensor> | null, RegExp][] = [
    [['--model', sd3], noPooled, /tensor 'pooled_prompt_embeds': expected the pooled CLIP embeddings \[2, 16\]/],
    [['--model', sd3], { ...sd3Embeddings, prompt_embeds: randn([2, 5, 16], 1) }, /tensor 'prompt_embeds': expected the joint CLIP \+ T5 prompt embeddings: a tensor of shape \[B, T, 32\]/],
    [['--model', sd3], { ...sd3Embeddings, prompt_attention_mask: Tensor.zeros([2, 5], 'f32') }, /tensor 'prompt_attention_mask' is not one StableDiffusion3Pipeline takes/],
    [['--model', sd3], { pooled_prompt_embeds: randn([2, 16], 2) }, /no tensor 'prompt_embeds'/],
    [['--model', pixart], { prompt_embeds: randn([1, 6, 32], 1), prompt_attention_mask: Tensor.fromIntegers([1, 1, 1, 1, 1, 1]).reshape([1, 6]) }, /tensor 'negative_prompt_embeds': .*--guidance > 1/],
    [['--model', sd3, '--height', '10'], sd3Embeddings, /--height: expected a positive multiple of 4 pixels/],
    [[], sd3Embeddings, /--embeddings needs --model/],
    [['--model', sd3, '--labels', '1'], sd3Embeddings, /--labels and --embeddings exclude each other/],
  ];
  let i = 0;
  for (const [args, tensors, pattern] of cases) {
    const file = tensors === null ? good : await embeddingsFile(join(dir, `case${i++}.safetensors`), tensors);
    assertOneLineError(t, await svdquant(['generate', ...args, '--embeddings', file, '--steps', '1', '-o', join(dir, 'x.png')]), 2, pattern);
  }
  assertOneLineError(t, await svdquant(['generate', '--height', '16']), 2, /--height applies with --embeddings only/);
  const missing = await svdquant(['generate', '--model', sd3, '--embeddings', join(dir, 'nope.safetensors')]);
  t.not(missing.code, 0);
  t.match(missing.stderr, /^svdquant: .*nope\.safetensors[^\n]*\n$/, 'a missing file: one line naming it');
});
