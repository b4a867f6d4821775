/**
 * PixArtSigmaPipeline (diffusers pipelines/pixart_alpha/pipeline_pixart_sigma.py, v0.30.3) over
 * precomputed T5 prompt embeddings: classifier-free guidance on the doubled batch
 * [negative..., prompt...] with the attention masks concatenated the same way, the timestep given
 * per sample, a learned-sigma model's variance channels dropped after guidance, and the VAE decode of
 * latents / scaling_factor.
 *
 * Differences from diffusers, deliberate: no resolution binning (the size is used as given and must be
 * a multiple of the VAE factor times the patch size); with numImagesPerPrompt > 1 and several prompts
 * the masks are repeated per prompt like the embeddings (diffusers 0.30.3 tiles them instead).
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import type { Tensor } from '../tensor.js';
import { doubleBatch, epsChannels, guide } from './guidance.js';
import {
  TextToImagePipeline, checkComponents, checkEmbedding, concatBatch, conditionRows, configInt, loadTextPipelineComponents, matchBatch, repeatEach,
  type PreparedRun, type RunShape, type TextGenerateCommonOptions, type TextPipelineComponents, type TextPipelineLoadOptions,
} from './text-pipeline.js';

export interface PixArtGenerateOptions extends TextGenerateCommonOptions {
  /** T5 embeddings of the prompts [B, T, caption_channels]. */
  readonly promptEmbeds: Tensor;
  /** Their token mask [B, T]: 1 keep, 0 padding. */
  readonly promptAttentionMask: Tensor;
  /** Embeddings of the negative prompt (e.g. of "") [B or 1, T, caption_channels]: required for guidance (guidanceScale > 1). */
  readonly negativePromptEmbeds?: Tensor;
  /** Its mask [B or 1, T]; required with negativePromptEmbeds. */
  readonly negativePromptAttentionMask?: Tensor;
}

export class PixArtSigmaPipeline extends TextToImagePipeline<PixArtGenerateOptions> {
  readonly name = 'PixArtSigmaPipeline';
  readonly defaultNumInferenceSteps = 20;
  readonly defaultGuidanceScale = 4.5;
  readonly latentChannels: number;
  /** Width of the text embeddings the transformer takes (caption_channels, else cross_attention_dim). */
  readonly textDim: number;
  readonly learnedSigma: boolean;
  readonly #patchSize: number;
  readonly #sampleSize: number;

  constructor(components: TextPipelineComponents) {
    const parts = checkComponents(components, 'PixArt');
    super(parts);
    const c = parts.config as Record<string, unknown>;
    this.latentChannels = configInt(c, 'in_channels', 4);
    const out = configInt(c, 'out_channels', this.latentChannels);
    if (out !== this.latentChannels && out !== 2 * this.latentChannels) throw new ArgumentError('transformer.config.out_channels', `in_channels (${this.latentChannels}) or twice it (learned sigma)`, out);
    this.learnedSigma = out === 2 * this.latentChannels;
    this.textDim = configInt(c, 'caption_channels', configInt(c, 'cross_attention_dim', 1152));
    this.#patchSize = configInt(c, 'patch_size', 2);
    this.#sampleSize = configInt(c, 'sample_size', 128);
    if (c.use_additional_conditions === true) {
      throw new ArgumentError('transformer.config.use_additional_conditions', 'false (a PixArt-Σ model; PixArt-α at 1024 px needs resolution conditions this pipeline does not pass)', true);
    }
    if (parts.vae !== null && parts.vae.latentChannels !== this.latentChannels) {
      throw new ArgumentError('components.vae', `a VAE with ${this.latentChannels} latent channels (the transformer's in_channels)`, parts.vae.latentChannels);
    }
  }

  /** Loads a diffusers PixArtSigmaPipeline folder (or a transformer checkpoint with options.scheduler / vae). */
  static async fromPretrained(source: string, options: TextPipelineLoadOptions = {}): Promise<PixArtSigmaPipeline> {
    return new PixArtSigmaPipeline(await loadTextPipelineComponents(source, options, 'PixArtSigmaPipeline'));
  }

  get defaultImageSize(): number {
    return this.#sampleSize * this.vaeScaleFactor;
  }

  protected get sizeMultiple(): number {
    return this.vaeScaleFactor * this.#patchSize;
  }

  protected promptCount(o: PixArtGenerateOptions): number {
    return checkEmbedding(o.promptEmbeds, 'options.promptEmbeds', [-1, -1, this.textDim], 'the T5 prompt embeddings').shape[0];
  }

  protected async prepare(o: PixArtGenerateOptions, shape: RunShape): Promise<PreparedRun> {
    const embeds = checkEmbedding(o.promptEmbeds, 'options.promptEmbeds', [-1, -1, this.textDim], 'the T5 prompt embeddings');
    const [batch, tokens] = embeds.shape;
    if (o.promptAttentionMask === undefined) throw new ArgumentError('options.promptAttentionMask', `the prompt embeddings' token mask [${batch}, ${tokens}] (1 keep, 0 padding)`, undefined);
    const mask = checkEmbedding(o.promptAttentionMask, 'options.promptAttentionMask', [batch, tokens], 'the token mask of promptEmbeds');
    const perPrompt = shape.images / batch;
    let context = repeatEach(embeds, perPrompt);
    let keyMask = repeatEach(mask, perPrompt);
    const cfg = shape.guidanceScale > 1;
    if (cfg) {
      if (o.negativePromptEmbeds === undefined) {
        throw new ArgumentError('options.negativePromptEmbeds', 'the negative prompt\'s embeddings (e.g. of "") for classifier-free guidance (guidanceScale > 1), or guidanceScale <= 1', undefined);
      }
      const negative = checkEmbedding(o.negativePromptEmbeds, 'options.negativePromptEmbeds', [-1, tokens, this.textDim], `embeddings like promptEmbeds (${tokens} tokens)`);
      if (negative.shape[0] !== 1 && negative.shape[0] !== batch) throw new ArgumentError('options.negativePromptEmbeds', `a batch of 1 or ${batch} (one per prompt)`, negative.toString());
      if (o.negativePromptAttentionMask === undefined) throw new ArgumentError('options.negativePromptAttentionMask', `the negative embeddings' token mask [${negative.shape[0]}, ${tokens}]`, undefined);
      const negativeMask = checkEmbedding(o.negativePromptAttentionMask, 'options.negativePromptAttentionMask', [negative.shape[0], tokens], 'the token mask of negativePromptEmbeds');
      context = concatBatch(repeatEach(matchBatch(negative, batch), perPrompt), context);
      keyMask = concatBatch(repeatEach(matchBatch(negativeMask, batch), perPrompt), keyMask);
    }
    const transformer = this.transformer as Module<[object], { sample: Tensor }>;
    const channels = this.latentChannels;
    return {
      predict: async (x, timestep, rows) => {
        const { sample } = await transformer.call({
          hidden_states: cfg ? doubleBatch(x) : x, timestep,
          encoder_hidden_states: conditionRows(context, rows, shape.images, cfg), encoder_attention_mask: conditionRows(keyMask, rows, shape.images, cfg),
        });
        return cfg ? guide(sample, shape.guidanceScale, channels, 'uncond-first') : epsChannels(sample, channels);
      },
    };
  }
}
