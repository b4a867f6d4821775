/**
 * Dynamic batching: requests with compatible parameters (same steps and guidance) that arrive within
 * the batch window share one pipeline.generate call, each image with its own seed, so every request
 * gets what it would have got alone. A bounded queue gives back-pressure (QueueFullError) instead of
 * unbounded growth. One batch runs at a time: the native engine already uses every core.
 *
 * Cancellation and timeouts: a waiting request leaves the queue; a request inside a running batch is
 * answered at once (rejected) and leaves the batch: the pipeline asks `liveRows` before every step,
 * so its images stop being computed at the next step while the others go on, unchanged (every image
 * is independent of its batch). A batch whose requests have all left is aborted through the
 * pipeline's AbortSignal (checked between steps).
 */

import { QueueFullError, RequestCancelledError, RequestTimeoutError, ShuttingDownError } from './errors.js';
import type { EmbeddingTensor, GenerationParams } from './request.js';

/**
 * The part of a pipeline that the batcher uses: lib/pipelines DiTPipeline, or a text pipeline behind
 * TextBatchPipeline (lib/serve/text-model.ts), which takes `embeddings` (one row per image) instead
 * of class labels.
 */
export interface BatchPipeline {
  generate(options: {
    classLabels: number[];
    seeds: number[];
    embeddings?: Record<string, EmbeddingTensor>;
    height?: number;
    width?: number;
    numInferenceSteps?: number;
    guidanceScale?: number;
    signal?: AbortSignal;
    /** Asked before every step: the images (ascending indices) still wanted; the others stop being computed. */
    liveRows?: () => readonly number[];
    /** Called after every step. */
    onStep?: () => void;
  }): Promise<{
    images: PipelineImages;
    /** Other tensors of the result (DiTPipeline's decoded output and final latents): disposed with the images. */
    decoded?: { dispose?(): void };
    latents?: { dispose?(): void };
    timings?: { totalMs: number; denoiserMs: number; decodeMs: number };
  }>;
  /** Checks a request as generate would (throws InvalidRequestError), before it is queued. */
  check?(params: GenerationParams): Promise<void>;
}

/** A [B, C, H, W] float tensor with values in [0, 1] (lib/tensor Tensor<'f32'>). */
export interface PipelineImages {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
  dispose?(): void;
}

/** The images of one request, with how it was served. */
export interface BatchResult {
  /** One [C·H·W] array per image, values in [0, 1]. */
  pixels: Float32Array[];
  channels: number;
  height: number;
  width: number;
  timings: {
    /** From submit to the start of its batch. */
    queueMs: number;
    /** The batch's generate call. */
    generateMs: number;
    /** Images and requests in the batch it ran in. */
    batchImages: number;
    batchRequests: number;
  };
}

export interface BatcherOptions {
  /** Most images in one generate call (and per request). */
  maxBatch: number;
  /** Most requests waiting (not counting the running batch); more are refused with QueueFullError. */
  maxQueue: number;
  /** How long the oldest waiting request waits for compatible company before its batch starts. */
  batchWindowMs: number;
  /** Default per-request timeout (submit to result); 0: none. */
  timeoutMs: number;
  /** false: every request runs alone (for comparison; the window is ignored). */
  batching?: boolean;
}

/** Hooks for metrics. */
export interface BatcherObserver {
  batchFinished?(info: { images: number; requests: number; seconds: number; error?: unknown }): void;
  queueChanged?(depth: number): void;
  /** A request's images left a running batch: the pipeline stopped computing them before a step. */
  imagesDropped?(images: number): void;
  /** A denoising step finished with `images` images in it. */
  stepFinished?(images: number): void;
}

interface PendingRequest {
  params: GenerationParams;
  key: string;
  images: number;
  submittedAt: number;
  resolve(result: BatchResult): void;
  reject(error: unknown): void;
  settled: boolean;
  /** Whether the pipeline was told that its images left the running batch. */
  dropped: boolean;
  batch: RunningBatch | null;
  cleanup(): void;
}

interface RunningBatch {
  members: PendingRequest[];
  controller: AbortController;
}

export class DynamicBatcher {
  readonly options: Required<BatcherOptions>;
  private readonly pipeline: BatchPipeline;
  private readonly observer: BatcherObserver;
  private readonly queue: PendingRequest[] = [];
  private running: RunningBatch | null = null;
  private windowTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private idleWaiters: Array<() => void> = [];
  /** Seconds the last batches took, for Retry-After. */
  private lastBatchSeconds = 1;

  constructor(pipeline: BatchPipeline, options: BatcherOptions, observer: BatcherObserver = {}) {
    this.pipeline = pipeline;
    this.options = { batching: true, ...options };
    this.observer = observer;
  }

  /** Requests waiting for a batch. */
  get queueDepth(): number {
    return this.queue.length;
  }

  /** Requests in the running batch that still wait for their result. */
  get inFlight(): number {
    return this.running === null ? 0 : this.running.members.filter((m) => !m.settled).length;
  }

  get closed(): boolean {
    return this.closing;
  }

  /**
   * Queues a request; resolves with its images. Rejects with QueueFullError (queue full),
   * ShuttingDownError (closing), RequestTimeoutError, RequestCancelledError (signal), or the
   * pipeline's error.
   */
  submit(params: GenerationParams, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<BatchResult> {
    if (this.closing) return Promise.reject(new ShuttingDownError('new requests are refused'));
    if (this.queue.length >= this.options.maxQueue) {
      return Promise.reject(new QueueFullError(this.options.maxQueue, this.retryAfterSeconds()));
    }
    if (options.signal?.aborted) return Promise.reject(new RequestCancelledError());
    return new Promise<BatchResult>((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
      let timer: NodeJS.Timeout | null = null;
      const onAbort = (): void => this.leave(request, new RequestCancelledError());
      const request: PendingRequest = {
        params,
        key: batchKey(params),
        images: params.seeds.length,
        submittedAt: performance.now(),
        resolve,
        reject,
        settled: false,
        dropped: false,
        batch: null,
        cleanup: () => {
          if (timer !== null) clearTimeout(timer);
          options.signal?.removeEventListener('abort', onAbort);
        },
      };
      if (timeoutMs > 0) timer = setTimeout(() => this.leave(request, new RequestTimeoutError(timeoutMs)), timeoutMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(request);
      this.observer.queueChanged?.(this.queue.length);
      this.schedule();
    });
  }

  /**
   * Stops accepting requests and waits until the queue and the running batch are done; after
   * `deadlineMs`, what is left is rejected with ShuttingDownError and the running batch aborted.
   */
  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    const idle = this.whenIdle();
    let timer: NodeJS.Timeout | null = null;
    const deadline = new Promise<'deadline'>((resolve) => { timer = setTimeout(() => resolve('deadline'), deadlineMs); });
    const outcome = await Promise.race([idle.then(() => 'idle' as const), deadline]);
    if (timer !== null) clearTimeout(timer);
    if (outcome === 'deadline') {
      for (const request of [...this.queue]) this.leave(request, new ShuttingDownError('the request was cancelled at the shutdown deadline'));
      if (this.running !== null) {
        for (const member of this.running.members) this.settle(member, null, new ShuttingDownError('the request was cancelled at the shutdown deadline'));
        this.running.controller.abort();
      }
      await idle;
    }
  }

  private whenIdle(): Promise<void> {
    if (this.queue.length === 0 && this.running === null) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private retryAfterSeconds(): number {
    const batchesAhead = Math.ceil(this.queue.length / Math.max(1, this.options.batching ? this.options.maxBatch : 1)) + 1;
    return Math.max(1, Math.ceil(batchesAhead * this.lastBatchSeconds));
  }

  /** A request leaves: out of the queue if it waits; answered at once if its batch runs (abort the batch when nobody is left). */
  private leave(request: PendingRequest, error: Error): void {
    if (request.settled) return;
    const index = this.queue.indexOf(request);
    if (index >= 0) {
      this.queue.splice(index, 1);
      this.observer.queueChanged?.(this.queue.length);
    }
    this.settle(request, null, error);
    const batch = request.batch;
    if (batch !== null && batch.members.every((m) => m.settled)) batch.controller.abort();
    if (index >= 0) this.schedule();
  }

  private settle(request: PendingRequest, result: BatchResult | null, error?: unknown): void {
    if (request.settled) return;
    request.settled = true;
    request.cleanup();
    if (result !== null) request.resolve(result);
    else request.reject(error);
  }

  /** Starts the next batch when nothing runs and the oldest request's window has passed (or the batch is full). */
  private schedule(): void {
    if (this.running !== null) return;
    if (this.queue.length === 0) {
      this.clearWindow();
      this.notifyIdle();
      return;
    }
    const head = this.queue[0];
    const wait = this.options.batching ? head.submittedAt + this.options.batchWindowMs - performance.now() : 0;
    if (wait > 0 && !this.closing && this.compatibleImages(head) < this.options.maxBatch) {
      if (this.windowTimer === null) {
        this.windowTimer = setTimeout(() => {
          this.windowTimer = null;
          this.schedule();
        }, Math.ceil(wait));
      }
      return;
    }
    this.clearWindow();
    void this.runBatch(this.takeBatch());
  }

  private clearWindow(): void {
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    this.windowTimer = null;
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private compatibleImages(head: PendingRequest): number {
    let images = 0;
    for (const r of this.queue) if (r.key === head.key) images += r.images;
    return images;
  }

  /** The oldest request and, FIFO, every compatible one that still fits. */
  private takeBatch(): PendingRequest[] {
    const head = this.queue[0];
    const members: PendingRequest[] = [head];
    let images = head.images;
    if (this.options.batching) {
      for (const r of this.queue.slice(1)) {
        if (r.key === head.key && images + r.images <= this.options.maxBatch) {
          members.push(r);
          images += r.images;
        }
      }
    }
    for (const m of members) this.queue.splice(this.queue.indexOf(m), 1);
    this.observer.queueChanged?.(this.queue.length);
    return members;
  }

  private async runBatch(members: PendingRequest[]): Promise<void> {
    const batch: RunningBatch = { members, controller: new AbortController() };
    this.running = batch;
    for (const m of members) m.batch = batch;
    const startedAt = performance.now();
    const classLabels = members.flatMap((m) => m.params.classLabels);
    const seeds = members.flatMap((m) => m.params.seeds);
    const first = members[0].params;
    const embeddings = first.embeddings === undefined ? undefined : concatEmbeddings(members.map((m) => m.params.embeddings!));
    // The rows of the requests still waiting for their images; asked by the pipeline before every step.
    let liveImages = classLabels.length;
    const liveRows = (): number[] => {
      const rows: number[] = [];
      let offset = 0;
      for (const m of members) {
        if (!m.settled) for (let i = 0; i < m.images; i++) rows.push(offset + i);
        else if (!m.dropped) {
          m.dropped = true;
          this.observer.imagesDropped?.(m.images);
        }
        offset += m.images;
      }
      liveImages = rows.length;
      return rows;
    };
    let error: unknown;
    try {
      const out = await this.pipeline.generate({
        classLabels,
        seeds,
        ...(embeddings !== undefined ? { embeddings } : {}),
        ...(first.height !== undefined ? { height: first.height } : {}),
        ...(first.width !== undefined ? { width: first.width } : {}),
        liveRows,
        onStep: () => this.observer.stepFinished?.(liveImages),
        ...(first.numInferenceSteps !== undefined ? { numInferenceSteps: first.numInferenceSteps } : {}),
        ...(first.guidanceScale !== undefined ? { guidanceScale: first.guidanceScale } : {}),
        signal: batch.controller.signal,
      });
      const generateMs = performance.now() - startedAt;
      try {
        this.deliver(members, out.images, { startedAt, generateMs, images: seeds.length });
      } finally {
        // Freed now rather than at a later collection: a long-running server stays flat (README, event loop).
        for (const tensor of new Set([out.images, out.decoded, out.latents])) tensor?.dispose?.();
      }
    } catch (caught) {
      error = caught;
      for (const m of members) this.settle(m, null, caught);
    }
    const seconds = (performance.now() - startedAt) / 1000;
    if (error === undefined) this.lastBatchSeconds = seconds;
    this.observer.batchFinished?.({ images: seeds.length, requests: members.length, seconds, ...(error !== undefined ? { error } : {}) });
    this.running = null;
    this.schedule();
  }

  private deliver(members: PendingRequest[], images: PipelineImages, info: { startedAt: number; generateMs: number; images: number }): void {
    const [batch, channels, height, width] = images.shape;
    if (images.shape.length !== 4 || batch !== info.images) {
      throw new Error(`the pipeline returned images of shape [${images.shape.join(', ')}], expected [${info.images}, C, H, W]`);
    }
    const perImage = channels * height * width;
    let offset = 0;
    for (const m of members) {
      const pixels: Float32Array[] = [];
      for (let i = 0; i < m.images; i++, offset++) {
        pixels.push(copyRange(images.data, offset * perImage, perImage));
      }
      this.settle(m, {
        pixels,
        channels,
        height,
        width,
        timings: { queueMs: info.startedAt - m.submittedAt, generateMs: info.generateMs, batchImages: info.images, batchRequests: members.length },
      });
    }
  }
}

/**
 * Requests with the same key can share a generate call: same steps and guidance, and for a text
 * model the same size and the same embedding tensors with the same shapes past the batch dimension
 * (token counts included), so that they concatenate along the batch.
 */
function batchKey(params: GenerationParams): string {
  const key = `${params.numInferenceSteps ?? 'default'}|${params.guidanceScale ?? 'default'}`;
  if (params.embeddings === undefined) return key;
  const tensors = Object.keys(params.embeddings).sort().map((name) => `${name}[${params.embeddings![name].shape.slice(1).join(',')}]`);
  return `${key}|${params.height ?? 'default'}x${params.width ?? 'default'}|${tensors.join(';')}`;
}

/** The members' embeddings concatenated along the batch (their keys are equal, so names and trailing shapes match). */
function concatEmbeddings(list: Array<Record<string, EmbeddingTensor>>): Record<string, EmbeddingTensor> {
  const out: Record<string, EmbeddingTensor> = {};
  for (const name of Object.keys(list[0])) {
    const parts = list.map((e) => e[name]);
    const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
    let offset = 0;
    for (const p of parts) {
      data.set(p.data, offset);
      offset += p.data.length;
    }
    out[name] = { shape: [parts.reduce((n, p) => n + p.shape[0], 0), ...parts[0].shape.slice(1)], data };
  }
  return out;
}

function copyRange(data: ArrayLike<number>, start: number, length: number): Float32Array {
  if (data instanceof Float32Array) return data.slice(start, start + length);
  const out = new Float32Array(length);
  for (let j = 0; j < length; j++) out[j] = data[start + j];
  return out;
}
