/**
 * The generation request: its JSON schema (Fastify validates HTTP bodies with it) and its
 * normalization against the model: for a class-conditional model, labels resolved to class ids; for
 * a text-conditioned one (PixArt-Σ, SD3, Flux), prompt embeddings decoded from base64 little-endian
 * float32 (one image per prompt); one seed per image; the size checked.
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
  /** A text-conditioned model: its pipeline class and the embedding tensors it takes (diffusers' names); absent for a class-conditional model. */
  readonly text?: { readonly pipeline: string; readonly required: readonly string[]; readonly optional: readonly string[] };
}

/** One tensor of a request's prompt embeddings as sent: shape and base64 of its little-endian float32 values (row-major). */
export interface EmbeddingTensorBody {
  shape: number[];
  data: string;
  dtype?: 'float32';
}

/** A decoded embedding tensor. */
export interface EmbeddingTensor {
  shape: number[];
  data: Float32Array;
}

/** The body of POST /v1/images as the client sends it. */
export interface GenerationRequestBody {
  labels?: Array<number | string>;
  embeddings?: Record<string, EmbeddingTensorBody>;
  height?: number;
  width?: number;
  seed?: number;
  seeds?: number[];
  steps?: number;
  guidance?: number;
  size?: number;
  format?: 'json' | 'png';
  timeoutMs?: number;
}

/** A request normalized for the batcher: class ids (none for a text model) and one seed per image. */
export interface GenerationParams {
  classLabels: number[];
  seeds: number[];
  /** A text model's prompt embeddings by diffusers name, every one with one row per image. */
  embeddings?: Record<string, EmbeddingTensor>;
  /** A text model's image size in pixels; undefined: the model's default. */
  height?: number;
  width?: number;
  /** Undefined: the pipeline's default. */
  numInferenceSteps?: number;
  guidanceScale?: number;
}

/** The pipeline's seeds are integers in [0, 2^53). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;
export const MAX_STEPS = 1000;
export const MAX_IMAGES_PER_REQUEST = 64;
/** The embedding tensor names any text pipeline takes (diffusers' argument names). */
export const EMBEDDING_NAMES = [
  'prompt_embeds', 'prompt_attention_mask', 'pooled_prompt_embeds',
  'negative_prompt_embeds', 'negative_prompt_attention_mask', 'negative_pooled_prompt_embeds',
] as const;
export const MAX_SIZE = 4096;

export const embeddingTensorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['shape', 'data'],
  properties: {
    shape: { type: 'array', minItems: 1, maxItems: 4, items: { type: 'integer', minimum: 1, maximum: 1 << 20 } },
    data: { type: 'string', maxLength: 1 << 30 },
    dtype: { type: 'string', enum: ['float32'] },
  },
} as const;

export const generationRequestSchema = {
  type: 'object',
  additionalProperties: false,
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
    embeddings: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: Object.fromEntries(EMBEDDING_NAMES.map((name) => [name, embeddingTensorSchema])),
    },
    size: { type: 'integer', minimum: 1, maximum: MAX_SIZE },
    height: { type: 'integer', minimum: 1, maximum: MAX_SIZE },
    width: { type: 'integer', minimum: 1, maximum: MAX_SIZE },
    format: { type: 'string', enum: ['json', 'png'] },
    timeoutMs: { type: 'integer', minimum: 1 },
  },
} as const;

/**
 * Checks what the schema cannot: labels the model knows (or, for a text model, the embeddings it
 * takes), one seed per image, the model's size, at most `maxImages` images, PNG output for one image
 * only. Throws InvalidRequestError.
 */
export function normalizeRequest(body: GenerationRequestBody, model: ServeModelInfo, maxImages: number): GenerationParams {
  if (model.text !== undefined) return normalizeTextRequest(body, model.text, maxImages);
  if (body.labels === undefined) throw new InvalidRequestError('labels', 'required: this model is class-conditional (one class id or name per image)');
  for (const field of ['embeddings', 'height', 'width'] as const) {
    if (body[field] !== undefined) throw new InvalidRequestError(field, `not taken by this class-conditional model (give 'labels'${field === 'embeddings' ? '' : " and 'size'"})`);
  }
  const classLabels = body.labels.map((label, i) => resolveLabel(label, model, `labels[${i}]`));
  if (classLabels.length > maxImages) {
    throw new InvalidRequestError('labels', `at most ${maxImages} images per request (the server's --max-batch), got ${classLabels.length}`);
  }
  if (body.size !== undefined && body.size !== model.sampleSize) {
    throw new InvalidRequestError('size', `this model generates ${model.sampleSize}×${model.sampleSize} images only, got ${body.size}`);
  }
  return withCommonFields({ classLabels, seeds: resolveSeeds(body, classLabels.length, 'label') }, body);
}

/** One seed per image from 'seed' (image i gets seed + i) or 'seeds'. */
function resolveSeeds(body: GenerationRequestBody, images: number, per: 'label' | 'prompt'): number[] {
  if (body.seed !== undefined && body.seeds !== undefined) throw new InvalidRequestError('seeds', "give either 'seed' or 'seeds', not both");
  if (body.seeds !== undefined) {
    if (body.seeds.length !== images) throw new InvalidRequestError('seeds', `one seed per ${per}: expected ${images}, got ${body.seeds.length}`);
    return [...body.seeds];
  }
  const first = body.seed ?? 0;
  if (first + images - 1 > MAX_SEED) throw new InvalidRequestError('seed', `seed + number of images - 1 must be at most ${MAX_SEED}`);
  return Array.from({ length: images }, (_, i) => first + i);
}

function withCommonFields(params: GenerationParams, body: GenerationRequestBody): GenerationParams {
  if (body.format === 'png' && params.seeds.length !== 1) {
    throw new InvalidRequestError('format', `'png' returns one image; ask for 'json' for ${params.seeds.length} images`);
  }
  if (body.steps !== undefined) params.numInferenceSteps = body.steps;
  if (body.guidance !== undefined) params.guidanceScale = body.guidance;
  return params;
}

/**
 * A text model's request: the embeddings it takes (diffusers' names), decoded; one image per prompt
 * (prompt_embeds' first dimension); a negative embedding of batch 1 is repeated for every prompt, so
 * that every tensor has one row per image (and requests can be batched by concatenation). Shapes
 * against the model are checked by the pipeline (LocalImageService, before queueing).
 */
function normalizeTextRequest(body: GenerationRequestBody, text: NonNullable<ServeModelInfo['text']>, maxImages: number): GenerationParams {
  if (body.labels !== undefined) throw new InvalidRequestError('labels', `not taken by this text-conditioned model (${text.pipeline}): send 'embeddings'`);
  if (body.embeddings === undefined) throw new InvalidRequestError('embeddings', `required: this model (${text.pipeline}) takes prompt embeddings ${text.required.join(', ')}`);
  const names = Object.keys(body.embeddings);
  for (const name of text.required) if (!names.includes(name)) throw new InvalidRequestError(`embeddings.${name}`, `required by ${text.pipeline}`);
  for (const name of names) {
    if (!text.required.includes(name) && !text.optional.includes(name)) {
      throw new InvalidRequestError(`embeddings.${name}`, `not taken by ${text.pipeline} (it takes ${[...text.required, ...text.optional].join(', ')})`);
    }
  }
  const decoded: Record<string, EmbeddingTensor> = {};
  for (const name of names) decoded[name] = decodeEmbedding(body.embeddings[name], `embeddings.${name}`);
  const images = decoded.prompt_embeds.shape[0];
  if (images > maxImages) throw new InvalidRequestError('embeddings.prompt_embeds', `at most ${maxImages} prompts per request (the server's --max-batch), got ${images}`);
  for (const name of names) {
    const rows = decoded[name].shape[0];
    if (rows === images) continue;
    if (rows === 1 && name.startsWith('negative_')) decoded[name] = repeatRows(decoded[name], images);
    else throw new InvalidRequestError(`embeddings.${name}`, `one row per prompt (${images})${name.startsWith('negative_') ? ' or 1' : ''}, got ${rows}`);
  }
  if (body.size !== undefined && (body.height !== undefined || body.width !== undefined)) throw new InvalidRequestError('size', "give either 'size' or 'height'/'width'");
  const params: GenerationParams = { classLabels: [], seeds: resolveSeeds(body, images, 'prompt'), embeddings: decoded };
  const height = body.height ?? body.size, width = body.width ?? body.size;
  if (height !== undefined) params.height = height;
  if (width !== undefined) params.width = width;
  return withCommonFields(params, body);
}

/** A tensor as sent (base64 little-endian float32) decoded and checked; InvalidRequestError naming `field`. */
export function decodeEmbedding(tensor: EmbeddingTensorBody, field: string): EmbeddingTensor {
  const count = tensor.shape.reduce((a, d) => a * d, 1);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(tensor.data)) throw new InvalidRequestError(`${field}.data`, 'base64 (standard alphabet) of little-endian float32 values');
  const bytes = Buffer.from(tensor.data, 'base64');
  if (bytes.length !== count * 4) throw new InvalidRequestError(`${field}.data`, `${count * 4} bytes (${count} float32 values for shape [${tensor.shape.join(', ')}]), got ${bytes.length}`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = bytes.readFloatLE(i * 4);
  if (!data.every(Number.isFinite)) throw new InvalidRequestError(`${field}.data`, 'finite values (no NaN or infinity)');
  return { shape: [...tensor.shape], data };
}

/** A decoded tensor back to its wire form (the queue stores jobs as JSON). */
export function encodeEmbedding(tensor: EmbeddingTensor): EmbeddingTensorBody {
  const bytes = Buffer.alloc(tensor.data.length * 4);
  for (let i = 0; i < tensor.data.length; i++) bytes.writeFloatLE(tensor.data[i], i * 4);
  return { shape: [...tensor.shape], data: bytes.toString('base64') };
}

function repeatRows(tensor: EmbeddingTensor, rows: number): EmbeddingTensor {
  const data = new Float32Array(tensor.data.length * rows);
  for (let r = 0; r < rows; r++) data.set(tensor.data, r * tensor.data.length);
  return { shape: [rows, ...tensor.shape.slice(1)], data };
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
