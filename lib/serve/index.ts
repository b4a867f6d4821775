/** Serving: the HTTP server with dynamic batching, its metrics, and scale-out workers over BullMQ. */
export { startServer, SERVE_DEFAULTS } from './server.js';
export type { ServeOptions, RunningServer } from './server.js';
export { createServeApp } from './app.js';
export type { ServeApp, ServeAppOptions } from './app.js';
export { DynamicBatcher } from './batcher.js';
export type { BatchPipeline, BatcherOptions, BatchResult, BatcherObserver } from './batcher.js';
export { LocalImageService } from './service.js';
export type { ImageService, GeneratedImages, JobState } from './service.js';
export { RedisImageService, DEFAULT_QUEUE_NAME } from './redis-queue.js';
export { startImageWorker } from './worker.js';
export type { ImageWorker, ImageWorkerOptions } from './worker.js';
export { createServeMetrics } from './metrics.js';
export type { ServeMetrics } from './metrics.js';
export { loadServeModel, readServeModelInfo } from './model.js';
export { generationRequestSchema, normalizeRequest } from './request.js';
export type { GenerationRequestBody, GenerationParams, ServeModelInfo } from './request.js';
export { ServeError, QueueFullError, RequestTimeoutError, RequestCancelledError, ShuttingDownError, InvalidRequestError, JobNotFoundError } from './errors.js';
export { onShutdownSignal } from './shutdown.js';
