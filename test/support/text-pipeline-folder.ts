// A diffusers pipeline folder (model_index.json, transformer/, vae/, scheduler/) assembled from the
// fixture parts (test/data/diffusers), for the text-conditioned pipeline tests.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES } from './diffusers-fixture.js';

/** Writes the folder at `dir` with the `model` fixture transformer, the fixture VAE and a fixture scheduler case; returns `dir`. */
export function textPipelineFolder(dir: string, className: string, model: string, schedulerCase: string): string {
  const component = (name: string, from: string, files: string[]) => {
    mkdirSync(join(dir, name), { recursive: true });
    for (const f of files) copyFileSync(join(from, f), join(dir, name, f));
  };
  component('transformer', join(FIXTURES, model), ['config.json', 'diffusion_pytorch_model.safetensors']);
  component('vae', join(FIXTURES, 'vae'), ['config.json', 'diffusion_pytorch_model.safetensors']);
  component('scheduler', join(FIXTURES, 'schedulers', schedulerCase), ['scheduler_config.json']);
  // The text encoders and tokenizers a real folder lists are not needed (the prompts come as embeddings).
  writeFileSync(join(dir, 'model_index.json'), JSON.stringify({
    _class_name: className, _diffusers_version: '0.30.3', transformer: ['diffusers', `${model}-transformer`], vae: ['diffusers', 'AutoencoderKL'],
    scheduler: ['diffusers', `${schedulerCase}-scheduler`], text_encoder: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'T5TokenizerFast'],
  }));
  return dir;
}
