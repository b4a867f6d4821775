/**
 * The HTTP API on Fastify: POST /v1/images (schema-validated; JSON with base64 PNGs, or one PNG),
 * GET /v1/jobs/:id (queue mode), /healthz, /readyz, /metrics. Errors are JSON
 * `{ error: kind, message }` with the status of their kind (lib/serve/errors.ts).
 */

import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { InvalidRequestError, ServeError } from './errors.js';
import type { ServeMetrics } from './metrics.js';
import { generationRequestSchema, normalizeRequest, type GenerationRequestBody, type ServeModelInfo } from './request.js';
import type { GeneratedImages, ImageService } from './service.js';

export interface ServeAppOptions {
  model: ServeModelInfo;
  service: ImageService;
  metrics: ServeMetrics;
  /** Most images per request (the batcher's maxBatch). */
  maxImagesPerRequest: number;
  /** Per-request timeout when the request names none (ms; 0: none); requests may ask for less, never more. */
  timeoutMs: number;
  /** Largest request body in bytes. */
  bodyLimit: number;
}

export interface ServeApp {
  readonly app: FastifyInstance;
  /** Whether /readyz answers 200 (cleared when shutdown starts). */
  ready: boolean;
}

export function createServeApp(options: ServeAppOptions): ServeApp {
  const app = Fastify({
    bodyLimit: options.bodyLimit,
    logger: false,
    // Strict bodies: unknown fields and wrongly typed values are 400s, never silently dropped or coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: true } },
  });
  const state: ServeApp = { app, ready: true };
  const imagesSent = new WeakMap<FastifyRequest, number>();
  const { metrics, service, model } = options;
  metrics.setSources({ queueDepth: () => service.queueDepth(), inFlight: () => service.inFlight() });

  app.setErrorHandler((error: FastifyError | ServeError | Error, request, reply) => {
    const { status, kind, message } = describeError(error);
    metrics.error(kind);
    if (error instanceof ServeError && 'retryAfterSeconds' in error) void reply.header('retry-after', String(error.retryAfterSeconds));
    if (status === 503) void reply.header('retry-after', '5');
    void reply.code(status).send({ error: kind, message });
  });

  app.addHook('onResponse', async (request, reply) => {
    if (request.url.startsWith('/v1/images')) metrics.requestDone(reply.statusCode, reply.elapsedTime / 1000, imagesSent.get(request) ?? 0);
  });

  app.post('/v1/images', { schema: { body: generationRequestSchema } }, async (request: FastifyRequest, reply: FastifyReply) => {
    const body = request.body as GenerationRequestBody;
    const params = normalizeRequest(body, model, options.maxImagesPerRequest);
    const query = request.query as Record<string, string | undefined>;
    if (query.async !== undefined && query.async !== 'false') {
      if (service.enqueue === undefined) throw new InvalidRequestError('async', 'jobs by id need the queue mode (svdquant serve --queue redis://...)');
      const id = await service.enqueue(params);
      return reply.code(202).send({ id, status: `/v1/jobs/${id}` });
    }
    const timeoutMs = body.timeoutMs !== undefined && (options.timeoutMs === 0 || body.timeoutMs < options.timeoutMs) ? body.timeoutMs : options.timeoutMs;
    // The client going away cancels its request: it leaves the queue, or its batch goes on without it.
    const controller = new AbortController();
    const onClose = (): void => { if (!reply.raw.writableEnded) controller.abort(); };
    reply.raw.on('close', onClose);
    let result: GeneratedImages;
    try {
      result = await service.generate(params, { signal: controller.signal, timeoutMs });
    } finally {
      reply.raw.off('close', onClose);
    }
    imagesSent.set(request, result.images.length);
    const timings = { ...result.timings, totalMs: reply.elapsedTime };
    if (body.format === 'png') {
      const [image] = result.images;
      if (image.label !== undefined) void reply.header('x-svdquant-label', String(image.label));
      return reply
        .type('image/png')
        .header('x-svdquant-seed', String(image.seed))
        .header('x-svdquant-timings', JSON.stringify(timings))
        .send(Buffer.from(image.png));
    }
    return reply.send({
      images: result.images.map((image) => imageJson(image, model)),
      steps: params.numInferenceSteps ?? null,
      guidance: params.guidanceScale ?? null,
      timings,
      ...(result.worker !== undefined ? { worker: result.worker } : {}),
    });
  });

  app.get('/v1/jobs/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    if (service.getJob === undefined) throw new InvalidRequestError('id', 'jobs by id need the queue mode (svdquant serve --queue redis://...)');
    const job = await service.getJob(id);
    if (job.state !== 'completed') return reply.send(job);
    return reply.send({
      id: job.id,
      state: job.state,
      images: job.result.images.map((image) => imageJson(image, model)),
      timings: job.result.timings,
      ...(job.result.worker !== undefined ? { worker: job.result.worker } : {}),
    });
  });

  app.delete('/v1/jobs/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    if (service.cancelJob === undefined) throw new InvalidRequestError('id', 'jobs by id need the queue mode (svdquant serve --queue redis://...)');
    const job = await service.cancelJob(id);
    if (job.state === 'completed') return reply.code(409).send({ id, state: job.state, error: 'already_completed' });
    return reply.send(job);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const ready = state.ready && service.ready();
    return reply.code(ready ? 200 : 503).send({ ready, model: model.name, mode: service.kind, ...(model.backend !== undefined ? { backend: model.backend } : {}) });
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  return state;
}

/** One image in a JSON answer: its class (class-conditional models), seed and base64 PNG. */
function imageJson(image: GeneratedImages['images'][number], model: ServeModelInfo): Record<string, unknown> {
  return {
    ...(image.label !== undefined ? { label: image.label, labelName: model.labels[image.label] } : {}),
    seed: image.seed,
    png: Buffer.from(image.png).toString('base64'),
  };
}

function describeError(error: FastifyError | ServeError | Error): { status: number; kind: string; message: string } {
  if (error instanceof ServeError) return { status: error.statusCode, kind: error.kind, message: error.message };
  const fastifyError = error as FastifyError;
  if (fastifyError.validation !== undefined) return { status: 400, kind: 'invalid_request', message: `invalid request body: ${error.message}` };
  if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, kind: 'body_too_large', message: error.message };
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return { status: fastifyError.statusCode, kind: 'invalid_request', message: error.message };
  }
  if (error.name === 'AbortError') return { status: 499, kind: 'cancelled', message: error.message };
  return { status: 500, kind: 'internal', message: `${error.name}: ${error.message}` };
}
