/**
 * Serving a text-conditioned pipeline (PixArt-Σ, SD3, Flux over precomputed prompt embeddings): the
 * adapter that gives the batcher its BatchPipeline (request embeddings by diffusers name -> the
 * pipeline's tensor options), and loading such a pipeline from its folder.
 */

import { ArgumentError } from '../errors.js';
import { FluxPipeline } from '../pipelines/flux-pipeline.js';
import { PixArtSigmaPipeline } from '../pipelines/pixart-sigma-pipeline.js';
import { StableDiffusion3Pipeline } from '../pipelines/sd3-pipeline.js';
import type { TextGenerateCommonOptions, TextToImagePipeline } from '../pipelines/text-pipeline.js';
import { Tensor } from '../tensor.js';
import type { BatchPipeline } from './batcher.js';
import { InvalidRequestError } from './errors.js';
import type { EmbeddingTensor, GenerationParams, ServeModelInfo } from './request.js';

/** The embedding tensors each pipeline takes (diffusers' argument names). */
export const TEXT_PIPELINES = {
  PixArtSigmaPipeline: {
    load: (dir: string) => PixArtSigmaPipeline.fromPretrained(dir),
    required: ['prompt_embeds', 'prompt_attention_mask'],
    optional: ['negative_prompt_embeds', 'negative_prompt_attention_mask'],
  },
  StableDiffusion3Pipeline: {
    load: (dir: string) => StableDiffusion3Pipeline.fromPretrained(dir),
    required: ['prompt_embeds', 'pooled_prompt_embeds'],
    optional: ['negative_prompt_embeds', 'negative_pooled_prompt_embeds'],
  },
  FluxPipeline: {
    load: (dir: string) => FluxPipeline.fromPretrained(dir),
    required: ['prompt_embeds', 'pooled_prompt_embeds'],
    optional: [],
  },
} as const;

export type TextPipelineName = keyof typeof TEXT_PIPELINES;

export function isTextPipelineName(name: unknown): name is TextPipelineName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(TEXT_PIPELINES, name);
}

type AnyTextPipeline = TextToImagePipeline<TextGenerateCommonOptions>;

/** prompt_embeds -> promptEmbeds (the pipelines' option names). */
function optionName(name: string): string {
  return name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function tensorOptions(embeddings: Record<string, EmbeddingTensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(embeddings)) out[optionName(name)] = Tensor.fromStorage(t.data, t.shape, 'f32');
  return out;
}

/** A text pipeline as the batcher's BatchPipeline. */
export class TextBatchPipeline implements BatchPipeline {
  readonly pipeline: AnyTextPipeline;

  constructor(pipeline: AnyTextPipeline) {
    this.pipeline = pipeline;
  }

  /** The options of the pipeline for a request or a batch (one row per image in every tensor). */
  private options(p: { seeds: number[]; embeddings?: Record<string, EmbeddingTensor>; height?: number; width?: number; numInferenceSteps?: number; guidanceScale?: number }): TextGenerateCommonOptions {
    if (p.embeddings === undefined) throw new InvalidRequestError('embeddings', 'required by a text-conditioned model');
    return {
      ...tensorOptions(p.embeddings),
      seeds: p.seeds,
      ...(p.numInferenceSteps !== undefined ? { numInferenceSteps: p.numInferenceSteps } : {}),
      ...(p.guidanceScale !== undefined ? { guidanceScale: p.guidanceScale } : {}),
      ...(p.height !== undefined ? { height: p.height } : {}),
      ...(p.width !== undefined ? { width: p.width } : {}),
    } as TextGenerateCommonOptions;
  }

  async check(params: GenerationParams): Promise<void> {
    try {
      await this.pipeline.checkOptions(this.options(params));
    } catch (error) {
      if (error instanceof ArgumentError) throw new InvalidRequestError(requestField(error.argument), error.message);
      throw error;
    }
  }

  async generate(o: Parameters<BatchPipeline['generate']>[0]): ReturnType<BatchPipeline['generate']> {
    const result = await this.pipeline.generate({
      ...this.options(o),
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
      ...(o.onStep !== undefined ? { onStep: o.onStep } : {}),
      ...(o.liveRows !== undefined ? { liveRows: o.liveRows } : {}),
    });
    if (result.images === null) throw new Error(`${this.pipeline.name} returned no images`);
    return { images: result.images, decoded: result.decoded ?? undefined, latents: result.latents, timings: result.timings };
  }
}

/** options.promptEmbeds -> embeddings.prompt_embeds; options.height -> height. */
function requestField(argument: string): string {
  const name = argument.replace(/^options\./, '');
  if (name === 'height' || name === 'width' || name === 'seeds') return name;
  return `embeddings.${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
}

/** The description of a loaded text pipeline for the HTTP layer. */
export function textModelInfo(name: string, className: TextPipelineName, pipeline: AnyTextPipeline, backend?: string): ServeModelInfo {
  const spec = TEXT_PIPELINES[className];
  return {
    name,
    labels: [],
    sampleSize: pipeline.defaultImageSize,
    ...(backend !== undefined ? { backend } : {}),
    text: { pipeline: className, required: spec.required, optional: spec.optional },
  };
}
