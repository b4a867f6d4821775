/**
 * A running server: the model (or the queue), the service, the Fastify app, listening; `close`
 * shuts it down gracefully (stop accepting, finish or cancel work within the deadline, close).
 */

import type { AddressInfo } from 'node:net';
import { createServeApp, type ServeApp } from './app.js';
import type { BatchPipeline } from './batcher.js';
import { createServeMetrics, type ServeMetrics } from './metrics.js';
import { loadServeModel, readServeModel } from './model.js';
import { RedisImageService } from './redis-queue.js';
import type { ServeModelInfo } from './request.js';
import type { NativeBackend } from '../runtime/native-inference.js';
import { LocalImageService, type ImageService } from './service.js';

export interface ServeOptions {
  /** A diffusers DiTPipeline folder or a checkpoint file; default: the built-in model. */
  model?: string;
  /** For a checkpoint: the pipeline folder with the scheduler and class names. */
  scheduler?: string;
  /** Where a quantized checkpoint's layers run (see loadServeModel). */
  backend?: NativeBackend | 'reference';
  /** An already loaded pipeline and its description (instead of `model`), for embedding. */
  pipeline?: { pipeline: BatchPipeline; info: ServeModelInfo };
  /** redis://… : put jobs on this BullMQ queue for `svdquant worker`s instead of generating here. */
  queue?: string;
  queueName?: string;
  host?: string;
  /** 0: any free port. */
  port?: number;
  maxBatch?: number;
  maxQueue?: number;
  batchWindowMs?: number;
  /** false: each request runs alone. */
  batching?: boolean;
  timeoutMs?: number;
  bodyLimit?: number;
}

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  maxBatch: 8,
  maxQueue: 64,
  batchWindowMs: 10,
  timeoutMs: 120_000,
  bodyLimit: 64 * 1024,
  /** A text model's requests carry prompt embeddings (base64 float32). */
  textBodyLimit: 32 << 20,
} as const;

export interface RunningServer {
  /** http://host:port */
  readonly url: string;
  readonly serveApp: ServeApp;
  readonly service: ImageService;
  readonly metrics: ServeMetrics;
  readonly model: ServeModelInfo;
  /** Graceful shutdown; resolves when everything is closed. */
  close(deadlineMs: number): Promise<void>;
}

export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  const maxBatch = options.maxBatch ?? SERVE_DEFAULTS.maxBatch;
  const maxQueue = options.maxQueue ?? SERVE_DEFAULTS.maxQueue;
  const metrics = createServeMetrics({ maxBatch });
  let model: ServeModelInfo;
  let service: ImageService;
  if (options.queue !== undefined) {
    // A text model is loaded here too: its embedding shapes are checked before a job is queued.
    const loaded = options.pipeline ?? await readServeModel({ model: options.model, scheduler: options.scheduler, backend: options.backend });
    model = loaded.info;
    const check = loaded.pipeline?.check?.bind(loaded.pipeline);
    service = await RedisImageService.connect({ url: options.queue, queueName: options.queueName, maxQueue, maxBatch, ...(check !== undefined ? { check } : {}) });
  } else {
    const loaded = options.pipeline ?? await loadServeModel({ model: options.model, scheduler: options.scheduler, backend: options.backend });
    model = loaded.info;
    service = new LocalImageService(loaded.pipeline, {
      maxBatch,
      maxQueue,
      batchWindowMs: options.batchWindowMs ?? SERVE_DEFAULTS.batchWindowMs,
      timeoutMs: options.timeoutMs ?? SERVE_DEFAULTS.timeoutMs,
      batching: options.batching ?? true,
    }, metrics.batcher);
  }
  const serveApp = createServeApp({
    model,
    service,
    metrics,
    maxImagesPerRequest: maxBatch,
    timeoutMs: options.timeoutMs ?? SERVE_DEFAULTS.timeoutMs,
    bodyLimit: options.bodyLimit ?? (model.text !== undefined ? SERVE_DEFAULTS.textBodyLimit : SERVE_DEFAULTS.bodyLimit),
  });
  const { app } = serveApp;
  try {
    await app.listen({ host: options.host ?? SERVE_DEFAULTS.host, port: options.port ?? SERVE_DEFAULTS.port });
  } catch (error) {
    await service.close(0);
    throw error;
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | null = null;

  return {
    url: `http://${host}:${address.port}`,
    serveApp,
    service,
    metrics,
    model,
    close(deadlineMs: number): Promise<void> {
      closing ??= (async () => {
        serveApp.ready = false;
        // Stops listening at once; requests already on open connections are answered (new ones: 503).
        const appClosed = app.close();
        await service.close(deadlineMs);
        // Every request has its answer now; connections that still linger are cut after a short grace.
        let timer: NodeJS.Timeout | null = null;
        const grace = new Promise<'grace'>((resolve) => { timer = setTimeout(() => resolve('grace'), 2000); });
        if ((await Promise.race([appClosed.then(() => 'closed' as const), grace])) === 'grace') app.server.closeAllConnections();
        if (timer !== null) clearTimeout(timer);
        await appClosed;
      })();
      return closing;
    },
  };
}
