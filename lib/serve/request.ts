/**
 * The generation request: its JSON schema (Fastify validates HTTP bodies with it, the worker
 * validates jobs taken from Redis with the same schema) and its normalization against the model
 * (labels resolved to class ids, one seed per image, the size checked).
 */

import { InvalidRequestError } from './errors.js';

/** What the server knows about the loaded model. */
export interface ServeModelInfo {
  /** A name for logs and /readyz (folder or checkpoint path). */
  readonly name: string;
  /** Class names by id (id2label); their count is the number of classes. */
  readonly labels: readonly string[];
  /** Image side in pixels (the model generates square images of this size only). */
  readonly sampleSize: number;
  /** Where the quantized layers run (for /readyz and logs); absent when no model is loaded here (queue front end). */
  readonly backend?: string;
}

/** The body of POST /v1/images as the client sends it. */
export interface GenerationRequestBody {
  labels: Array<number | string>;
  seed?: number;
  seeds?: number[];
  steps?: number;
  guidance?: number;
  size?: number;
  format?: 'json' | 'png';
  timeoutMs?: number;
}

/** A request normalized for the batcher: class ids and one seed per image. */
export interface GenerationParams {
  classLabels: number[];
  seeds: number[];
  /** Undefined: the pipeline's default. */
  numInferenceSteps?: number;
  guidanceScale?: number;
}

/** The pipeline's seeds are integers in [0, 2^53). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;
export const MAX_STEPS = 1000;
export const MAX_IMAGES_PER_REQUEST = 64;

export const generationRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['labels'],
  properties: {
    labels: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_IMAGES_PER_REQUEST,
      items: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string', minLength: 1, maxLength: 200 }] },
    },
    seed: { type: 'integer', minimum: 0, maximum: MAX_SEED },
    seeds: { type: 'array', minItems: 1, maxItems: MAX_IMAGES_PER_REQUEST, items: { type: 'integer', minimum: 0, maximum: MAX_SEED } },
    steps: { type: 'integer', minimum: 1, maximum: MAX_STEPS },
    guidance: { type: 'number', minimum: 0, maximum: 100 },
    size: { type: 'integer', minimum: 1 },
    format: { type: 'string', enum: ['json', 'png'] },
    timeoutMs: { type: 'integer', minimum: 1 },
  },
} as const;

/**
 * Checks what the schema cannot: labels the model knows, one seed per image, the model's size, at
 * most `maxImages` images, PNG output for one image only. Throws InvalidRequestError.
 */
export function normalizeRequest(body: GenerationRequestBody, model: ServeModelInfo, maxImages: number): GenerationParams {
  const classLabels = body.labels.map((label, i) => resolveLabel(label, model, `labels[${i}]`));
  if (classLabels.length > maxImages) {
    throw new InvalidRequestError('labels', `at most ${maxImages} images per request (the server's --max-batch), got ${classLabels.length}`);
  }
  if (body.seed !== undefined && body.seeds !== undefined) throw new InvalidRequestError('seeds', "give either 'seed' or 'seeds', not both");
  let seeds: number[];
  if (body.seeds !== undefined) {
    if (body.seeds.length !== classLabels.length) {
      throw new InvalidRequestError('seeds', `one seed per label: expected ${classLabels.length}, got ${body.seeds.length}`);
    }
    seeds = [...body.seeds];
  } else {
    const first = body.seed ?? 0;
    if (first + classLabels.length - 1 > MAX_SEED) throw new InvalidRequestError('seed', `seed + number of images - 1 must be at most ${MAX_SEED}`);
    seeds = classLabels.map((_, i) => first + i);
  }
  if (body.size !== undefined && body.size !== model.sampleSize) {
    throw new InvalidRequestError('size', `this model generates ${model.sampleSize}×${model.sampleSize} images only, got ${body.size}`);
  }
  if (body.format === 'png' && classLabels.length !== 1) {
    throw new InvalidRequestError('format', `'png' returns one image; ask for 'json' for ${classLabels.length} images`);
  }
  const params: GenerationParams = { classLabels, seeds };
  if (body.steps !== undefined) params.numInferenceSteps = body.steps;
  if (body.guidance !== undefined) params.guidanceScale = body.guidance;
  return params;
}

function resolveLabel(label: number | string, model: ServeModelInfo, field: string): number {
  if (typeof label === 'number') {
    if (!Number.isInteger(label) || label < 0 || label >= model.labels.length) {
      throw new InvalidRequestError(field, `a class id in [0, ${model.labels.length - 1}], got ${label}`);
    }
    return label;
  }
  // Names match as the pipeline matches them: trimmed, case-insensitive.
  const wanted = label.trim().toLowerCase();
  const id = model.labels.findIndex((name) => name.toLowerCase() === wanted);
  if (id < 0) throw new InvalidRequestError(field, `a class name of this model (${model.labels.map((l) => JSON.stringify(l)).join(', ')}), got ${JSON.stringify(label)}`);
  return id;
}
