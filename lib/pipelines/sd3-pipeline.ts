/**
 * StableDiffusion3Pipeline (diffusers pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py,
 * v0.30.3) over precomputed prompt embeddings (the joint CLIP + T5 sequence and the pooled CLIP
 * vector): flow matching with the FlowMatch Euler scheduler, the 0..1000 timestep given to the model
 * as it is, classifier-free guidance on the doubled batch [negative..., prompt...] (pooled embeddings
 * concatenated the same way), and the VAE decode of latents / scaling_factor + shift_factor.
 *
 * Difference from diffusers, deliberate: the size must be a multiple of the VAE factor times the
 * patch size (diffusers asks for a multiple of 8 and floors).
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import type { Tensor } from '../tensor.js';
import { doubleBatch, guide } from './guidance.js';
import {
  TextToImagePipeline, checkComponents, checkEmbedding, concatBatch, conditionRows, configInt, loadTextPipelineComponents, matchBatch, repeatEach,
  type PreparedRun, type RunShape, type TextGenerateCommonOptions, type TextPipelineComponents, type TextPipelineLoadOptions,
} from './text-pipeline.js';

export interface SD3GenerateOptions extends TextGenerateCommonOptions {
  /** The prompts' joint text embeddings [B, T, joint_attention_dim]. */
  readonly promptEmbeds: Tensor;
  /** Their pooled embeddings [B, pooled_projection_dim]. */
  readonly pooledPromptEmbeds: Tensor;
  /** The negative prompt's (e.g. "") [B or 1, T, joint_attention_dim]: required for guidance (guidanceScale > 1). */
  readonly negativePromptEmbeds?: Tensor;
  /** [B or 1, pooled_projection_dim]; required with negativePromptEmbeds. */
  readonly negativePooledPromptEmbeds?: Tensor;
}

export class StableDiffusion3Pipeline extends TextToImagePipeline<SD3GenerateOptions> {
  readonly name = 'StableDiffusion3Pipeline';
  readonly defaultNumInferenceSteps = 28;
  readonly defaultGuidanceScale = 7.0;
  readonly latentChannels: number;
  readonly textDim: number;
  readonly pooledDim: number;
  readonly #patchSize: number;
  readonly #sampleSize: number;

  constructor(components: TextPipelineComponents) {
    const parts = checkComponents(components, 'SD3');
    super(parts);
    const c = parts.config as Record<string, unknown>;
    this.latentChannels = configInt(c, 'in_channels', 16);
    const out = configInt(c, 'out_channels', this.latentChannels);
    if (out !== this.latentChannels) throw new ArgumentError('transformer.config.out_channels', `in_channels (${this.latentChannels})`, out);
    this.textDim = configInt(c, 'joint_attention_dim', 4096);
    this.pooledDim = configInt(c, 'pooled_projection_dim', 2048);
    this.#patchSize = configInt(c, 'patch_size', 2);
    this.#sampleSize = configInt(c, 'sample_size', 128);
    if (parts.vae !== null && parts.vae.latentChannels !== this.latentChannels) {
      throw new ArgumentError('components.vae', `a VAE with ${this.latentChannels} latent channels (the transformer's in_channels)`, parts.vae.latentChannels);
    }
  }

  /** Loads a diffusers StableDiffusion3Pipeline folder (text encoders and tokenizers are not needed) or a transformer checkpoint with options.scheduler / vae. */
  static async fromPretrained(source: string, options: TextPipelineLoadOptions = {}): Promise<StableDiffusion3Pipeline> {
    return new StableDiffusion3Pipeline(await loadTextPipelineComponents(source, options, 'StableDiffusion3Pipeline'));
  }

  get defaultImageSize(): number {
    return this.#sampleSize * this.vaeScaleFactor;
  }

  protected get sizeMultiple(): number {
    return this.vaeScaleFactor * this.#patchSize;
  }

  protected promptCount(o: SD3GenerateOptions): number {
    return checkEmbedding(o.promptEmbeds, 'options.promptEmbeds', [-1, -1, this.textDim], 'the joint CLIP + T5 prompt embeddings').shape[0];
  }

  protected async prepare(o: SD3GenerateOptions, shape: RunShape): Promise<PreparedRun> {
    const embeds = checkEmbedding(o.promptEmbeds, 'options.promptEmbeds', [-1, -1, this.textDim], 'the joint CLIP + T5 prompt embeddings');
    const [batch, tokens] = embeds.shape;
    if (o.pooledPromptEmbeds === undefined) throw new ArgumentError('options.pooledPromptEmbeds', `the pooled CLIP embeddings [${batch}, ${this.pooledDim}] of the same prompts (SD3 needs both)`, undefined);
    const pooled = checkEmbedding(o.pooledPromptEmbeds, 'options.pooledPromptEmbeds', [batch, this.pooledDim], 'the pooled prompt embeddings');
    const perPrompt = shape.images / batch;
    let context = repeatEach(embeds, perPrompt);
    let pooledBatch = repeatEach(pooled, perPrompt);
    const cfg = shape.guidanceScale > 1;
    if (cfg) {
      if (o.negativePromptEmbeds === undefined) {
        throw new ArgumentError('options.negativePromptEmbeds', 'the negative prompt\'s embeddings (e.g. of "") for classifier-free guidance (guidanceScale > 1), or guidanceScale <= 1', undefined);
      }
      const negative = checkEmbedding(o.negativePromptEmbeds, 'options.negativePromptEmbeds', [-1, tokens, this.textDim], `embeddings like promptEmbeds (${tokens} tokens)`);
      const nb = negative.shape[0];
      if (nb !== 1 && nb !== batch) throw new ArgumentError('options.negativePromptEmbeds', `a batch of 1 or ${batch} (one per prompt)`, negative.toString());
      if (o.negativePooledPromptEmbeds === undefined) throw new ArgumentError('options.negativePooledPromptEmbeds', `the negative prompt's pooled embeddings [${nb}, ${this.pooledDim}]`, undefined);
      const negativePooled = checkEmbedding(o.negativePooledPromptEmbeds, 'options.negativePooledPromptEmbeds', [nb, this.pooledDim], 'the pooled negative prompt embeddings');
      context = concatBatch(repeatEach(matchBatch(negative, batch), perPrompt), context);
      pooledBatch = concatBatch(repeatEach(matchBatch(negativePooled, batch), perPrompt), pooledBatch);
    }
    const transformer = this.transformer as Module<[object], { sample: Tensor }>;
    return {
      predict: async (x, timestep, rows) => {
        const { sample } = await transformer.call({
          hidden_states: cfg ? doubleBatch(x) : x, timestep,
          encoder_hidden_states: conditionRows(context, rows, shape.images, cfg), pooled_projections: conditionRows(pooledBatch, rows, shape.images, cfg),
        });
        return cfg ? guide(sample, shape.guidanceScale, this.latentChannels, 'uncond-first') : sample;
      },
    };
  }
}
