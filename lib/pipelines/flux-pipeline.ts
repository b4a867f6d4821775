/**
 * FluxPipeline (diffusers pipelines/flux/pipeline_flux.py, v0.30.3) over precomputed prompt
 * embeddings (T5 sequence and pooled CLIP vector): the VAE latents packed into 2×2-patch tokens with
 * (0, row, col) position ids and all-zero text ids, the FlowMatch schedule from sigmas
 * linspace(1, 1/N, N) shifted by mu = calculateShift(image tokens), the timestep given to the model as
 * t / 1000, the guidance scale as the model's guidance input when the config has guidance_embeds
 * (FLUX.1-dev; no classifier-free guidance batch), and the VAE decode of the unpacked latents
 * / scaling_factor + shift_factor.
 *
 * Differences from diffusers, deliberate: the size must be a multiple of the VAE factor (diffusers'
 * vae_scale_factor, 2^len(block_out_channels)) and is not floored; `latents` (given and returned) are
 * the unpacked [B, C, h, w] VAE latents (diffusers' output_type='latent' returns the packed tokens:
 * packLatents / unpackLatents convert).
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import { imageIds, packLatents, textIds, unpackLatents } from '../models/flux-latents.js';
import type { Tensor } from '../tensor.js';
import { calculateShift } from './schedulers/flow-match-euler-discrete.js';
import { numpyLinspace } from './schedulers/numerics.js';
import {
  TextToImagePipeline, checkComponents, checkEmbedding, conditionRows, configInt, loadTextPipelineComponents, repeatEach,
  type PreparedRun, type RunShape, type TextGenerateCommonOptions, type TextPipelineComponents, type TextPipelineLoadOptions,
} from './text-pipeline.js';

export interface FluxGenerateOptions extends TextGenerateCommonOptions {
  /** The prompts' T5 embeddings [B, T, joint_attention_dim]. */
  readonly promptEmbeds: Tensor;
  /** Their pooled CLIP embeddings [B, pooled_projection_dim]. */
  readonly pooledPromptEmbeds: Tensor;
}

/** diffusers FluxPipeline's default_sample_size: the default image is 64 · vae_scale_factor pixels. */
const DEFAULT_SAMPLE_SIZE = 64;

export class FluxPipeline extends TextToImagePipeline<FluxGenerateOptions> {
  readonly name = 'FluxPipeline';
  readonly defaultNumInferenceSteps = 28;
  readonly defaultGuidanceScale = 3.5;
  /** VAE latent channels: the transformer's in_channels / 4 (each token packs a 2×2 patch). */
  readonly latentChannels: number;
  readonly textDim: number;
  readonly pooledDim: number;
  /** Whether the guidance scale is a model input (FLUX.1-dev) or unused (FLUX.1-schnell). */
  readonly guidanceEmbeds: boolean;

  constructor(components: TextPipelineComponents) {
    const parts = checkComponents(components, 'Flux');
    super(parts);
    const c = parts.config as Record<string, unknown>;
    const inChannels = configInt(c, 'in_channels', 64);
    if (inChannels % 4 !== 0) throw new ArgumentError('transformer.config.in_channels', 'a multiple of 4 (packed 2×2 latent patches)', inChannels);
    this.latentChannels = inChannels / 4;
    this.textDim = configInt(c, 'joint_attention_dim', 4096);
    this.pooledDim = configInt(c, 'pooled_projection_dim', 768);
    this.guidanceEmbeds = c.guidance_embeds === true;
    if (parts.vae !== null && parts.vae.latentChannels !== this.latentChannels) {
      throw new ArgumentError('components.vae', `a VAE with ${this.latentChannels} latent channels (the transformer's in_channels / 4)`, parts.vae.latentChannels);
    }
  }

  /** Loads a diffusers FluxPipeline folder (text encoders and tokenizers are not needed) or a transformer checkpoint with options.scheduler / vae. */
  static async fromPretrained(source: string, options: TextPipelineLoadOptions = {}): Promise<FluxPipeline> {
    return new FluxPipeline(await loadTextPipelineComponents(source, options, 'FluxPipeline'));
  }

  /** diffusers' Flux vae_scale_factor: 2^len(block_out_channels) (twice the VAE's own factor: one latent 2×2 patch per token), 16 without a VAE. */
  override get vaeScaleFactor(): number {
    return this.vae === null ? 16 : 2 * this.vae.spatialFactor;
  }

  get defaultImageSize(): number {
    return DEFAULT_SAMPLE_SIZE * this.vaeScaleFactor;
  }

  protected get sizeMultiple(): number {
    return this.vaeScaleFactor;
  }

  protected override latentSize(pixels: number): number {
    return 2 * (pixels / this.vaeScaleFactor);
  }

  protected promptCount(o: FluxGenerateOptions): number {
    return checkEmbedding(o.promptEmbeds, 'options.promptEmbeds', [-1, -1, this.textDim], 'the T5 prompt embeddings').shape[0];
  }

  protected override toModelLayout(latents: Tensor): Promise<Tensor> {
    return packLatents(latents);
  }

  protected override fromModelLayout(sample: Tensor, shape: RunShape): Promise<Tensor> {
    return unpackLatents(sample, shape.latentHeight, shape.latentWidth);
  }

  protected async prepare(o: FluxGenerateOptions, shape: RunShape): Promise<PreparedRun> {
    const embeds = checkEmbedding(o.promptEmbeds, 'options.promptEmbeds', [-1, -1, this.textDim], 'the T5 prompt embeddings');
    const [batch, tokens] = embeds.shape;
    if (o.pooledPromptEmbeds === undefined) throw new ArgumentError('options.pooledPromptEmbeds', `the pooled CLIP embeddings [${batch}, ${this.pooledDim}] of the same prompts (Flux needs both)`, undefined);
    const pooled = checkEmbedding(o.pooledPromptEmbeds, 'options.pooledPromptEmbeds', [batch, this.pooledDim], 'the pooled prompt embeddings');
    for (const key of ['negativePromptEmbeds', 'negativePooledPromptEmbeds', 'promptAttentionMask'] as const) {
      if ((o as unknown as Record<string, unknown>)[key] !== undefined) throw new ArgumentError(`options.${key}`, 'nothing: FluxPipeline (diffusers 0.30.3) has no negative prompt and no attention mask', '(given)');
    }
    const perPrompt = shape.images / batch;
    const context = repeatEach(embeds, perPrompt);
    const pooledBatch = repeatEach(pooled, perPrompt);
    const imageTokens = (shape.latentHeight / 2) * (shape.latentWidth / 2);
    const n = shape.numInferenceSteps;
    const timestepOptions = { sigmas: numpyLinspace(1, 1 / n, n), mu: calculateShift(imageTokens, this.scheduler.config) };
    const imgIds = imageIds(shape.latentHeight, shape.latentWidth);
    const txtIds = textIds(tokens);
    const guidance = this.guidanceEmbeds ? shape.guidanceScale : null;
    const transformer = this.transformer as Module<[object], { sample: Tensor }>;
    return {
      timestepOptions,
      predict: async (x, t, rows) => {
        const { sample } = await transformer.call({
          hidden_states: x, timestep: Math.fround(t / 1000), guidance, pooled_projections: conditionRows(pooledBatch, rows, shape.images, false),
          encoder_hidden_states: conditionRows(context, rows, shape.images, false), txt_ids: txtIds, img_ids: imgIds,
        });
        return sample;
      },
    };
  }
}
