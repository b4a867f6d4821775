/**
 * Where the HTTP layer sends generation work: the in-process batcher (LocalImageService) or a BullMQ
 * queue served by workers (RedisImageService in lib/serve/redis-queue.ts). Both answer with PNGs.
 */

import type { BatcherObserver, BatchPipeline, BatcherOptions } from './batcher.js';
import { DynamicBatcher } from './batcher.js';
import { pixelsToPng } from './png-images.js';
import type { GenerationParams } from './request.js';

export interface GeneratedImages {
  /** `label`: the class id (class-conditional models only). */
  images: Array<{ label?: number; seed: number; png: Uint8Array }>;
  timings: { queueMs: number; generateMs: number; batchImages: number; batchRequests: number };
  /** The worker that generated them (queue mode). */
  worker?: string;
}

export type JobState =
  | { id: string; state: 'waiting' | 'active' | 'delayed' | 'unknown' }
  | { id: string; state: 'completed'; result: GeneratedImages }
  | { id: string; state: 'failed'; reason: string }
  | { id: string; state: 'cancelled' };

export interface ImageService {
  readonly kind: 'local' | 'redis';
  generate(params: GenerationParams, options: { signal?: AbortSignal; timeoutMs?: number }): Promise<GeneratedImages>;
  /** Queues a job and returns its id at once (queue mode only). */
  enqueue?(params: GenerationParams): Promise<string>;
  getJob?(id: string): Promise<JobState>;
  /** Cancels a queued or running job by id (queue mode only); a finished job is left as it is. */
  cancelJob?(id: string): Promise<JobState>;
  queueDepth(): number;
  /** Requests being generated and not yet answered (queue mode: every request waiting for its job). */
  inFlight(): number;
  ready(): boolean;
  /** Finishes or cancels the work in hand within the deadline, then releases everything. */
  close(deadlineMs: number): Promise<void>;
}

/** Encodes a batch result to PNGs. */
export function toGeneratedImages(params: GenerationParams, result: Awaited<ReturnType<DynamicBatcher['submit']>>): GeneratedImages {
  return {
    images: result.pixels.map((pixels, i) => ({
      ...(params.classLabels.length > 0 ? { label: params.classLabels[i] } : {}),
      seed: params.seeds[i],
      png: pixelsToPng(pixels, result.channels, result.height, result.width),
    })),
    timings: result.timings,
  };
}

/** Generation in this process: a DynamicBatcher over the loaded pipeline. */
export class LocalImageService implements ImageService {
  readonly kind = 'local' as const;
  readonly batcher: DynamicBatcher;
  private readonly pipeline: BatchPipeline;

  constructor(pipeline: BatchPipeline, options: BatcherOptions, observer?: BatcherObserver) {
    this.pipeline = pipeline;
    this.batcher = new DynamicBatcher(pipeline, options, observer);
  }

  async generate(params: GenerationParams, options: { signal?: AbortSignal; timeoutMs?: number }): Promise<GeneratedImages> {
    // What only the pipeline can check (embedding shapes against the model, a text model's size) is a 400 before queueing.
    await this.pipeline.check?.(params);
    return toGeneratedImages(params, await this.batcher.submit(params, options));
  }

  queueDepth(): number {
    return this.batcher.queueDepth;
  }

  inFlight(): number {
    return this.batcher.inFlight;
  }

  ready(): boolean {
    return !this.batcher.closed;
  }

  close(deadlineMs: number): Promise<void> {
    return this.batcher.close(deadlineMs);
  }
}
