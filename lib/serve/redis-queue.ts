/**
 * Scale-out over a BullMQ queue in Redis: RedisImageService puts each HTTP request on the queue as a
 * job and waits for its result (or returns the job id); the workers (lib/serve/worker.ts) take jobs,
 * batch them and store PNGs as the job's return value. A job whose worker dies is found stalled by
 * another worker (its lock expired) and runs again there. A job nobody waits for any more (client
 * gone, timeout, DELETE /v1/jobs/:id) is removed while it waits; once a worker runs it, a cancel
 * event on the queue's event stream makes that worker drop it from its batch.
 */

import { Queue, QueueEvents, QueueEventsProducer, type ConnectionOptions, type Job } from 'bullmq';
import { ArgumentError } from '../errors.js';
import { JobNotFoundError, QueueFullError, RequestCancelledError, RequestTimeoutError, ShuttingDownError } from './errors.js';
import { encodeEmbedding, type EmbeddingTensorBody, type GenerationParams } from './request.js';
import type { GeneratedImages, ImageService, JobState } from './service.js';

export const DEFAULT_QUEUE_NAME = 'svdquant-images';
/** Completed and failed jobs (their PNGs) are kept this long for GET /v1/jobs/:id. */
export const JOB_RETENTION_SECONDS = 3600;

/** What a job holds in Redis: the normalized request, a text model's embeddings in their wire form (base64 float32). */
export interface ImageJobData {
  params: Omit<GenerationParams, 'embeddings'> & { embeddings?: Record<string, EmbeddingTensorBody> };
}

/** A request as job data. */
export function encodeJobParams(params: GenerationParams): ImageJobData['params'] {
  if (params.embeddings === undefined) return params as ImageJobData['params'];
  const embeddings: Record<string, EmbeddingTensorBody> = {};
  for (const [name, tensor] of Object.entries(params.embeddings)) embeddings[name] = encodeEmbedding(tensor);
  return { ...params, embeddings };
}

/** A job's return value: PNGs as base64 (Redis stores JSON). */
export interface ImageJobResult {
  images: Array<{ label?: number; seed: number; png: string }>;
  timings: GeneratedImages['timings'];
  worker: string;
}

/** BullMQ connection options from a redis:// or rediss:// URL (redis://[user:password@]host[:port][/db]). */
export function redisConnection(url: string): ConnectionOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ArgumentError('queue', 'a redis:// URL such as redis://127.0.0.1:6379', url);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new ArgumentError('queue', 'a redis:// or rediss:// URL', url);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new ArgumentError('queue', 'a database number after the host (redis://host:port/0)', url);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    ...(parsed.username !== '' ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password !== '' ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(db !== '' ? { db: Number(db) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** The custom queue event that asks the worker running a job to cancel it. */
export const CANCEL_EVENT = 'svdquant-cancel';

/** Calls `onCancel(jobId)` for every cancel event on the queue's event stream (the workers' side). */
export async function listenForCancellations(url: string, queueName: string, onCancel: (jobId: string) => void): Promise<{ close(): Promise<void> }> {
  const events = new QueueEvents(queueName, { connection: redisConnection(url) });
  events.on('error', () => {});
  events.on(CANCEL_EVENT as 'error', (args: unknown) => {
    const jobId = (args as { jobId?: unknown }).jobId;
    if (typeof jobId === 'string') onCancel(jobId);
  });
  await events.waitUntilReady();
  return { close: () => events.close() };
}

export function decodeJobResult(result: ImageJobResult): GeneratedImages {
  return {
    images: result.images.map((image) => ({ label: image.label, seed: image.seed, png: new Uint8Array(Buffer.from(image.png, 'base64')) })),
    timings: result.timings,
    worker: result.worker,
  };
}

export interface RedisImageServiceOptions {
  url: string;
  queueName?: string;
  /** Most jobs waiting in Redis; more are refused with QueueFullError. */
  maxQueue: number;
  /** Images per batch on the workers (for the Retry-After estimate). */
  maxBatch: number;
  /** Checks a request against the model before it is queued (a text model's embedding shapes). */
  check?(params: GenerationParams): Promise<void>;
}

/** The producer side: HTTP requests become jobs. */
export class RedisImageService implements ImageService {
  readonly kind = 'redis' as const;
  private readonly queue: Queue<ImageJobData, ImageJobResult>;
  private readonly events: QueueEvents;
  private readonly producer: QueueEventsProducer;
  private readonly options: RedisImageServiceOptions;
  private closing = false;
  private lastDepth = 0;
  private jobSeconds = 1;
  private readonly waiting = new Set<(error: Error) => void>();
  /** The queue's Redis connection (its status tells /readyz whether Redis is reachable). */
  private readonly client: { status: string };

  private constructor(options: RedisImageServiceOptions, queue: Queue<ImageJobData, ImageJobResult>, events: QueueEvents, producer: QueueEventsProducer, client: { status: string }) {
    this.options = options;
    this.queue = queue;
    this.events = events;
    this.producer = producer;
    this.client = client;
  }

  /** Connects to Redis (both the queue and its event stream) before resolving. */
  static async connect(options: RedisImageServiceOptions): Promise<RedisImageService> {
    const connection = redisConnection(options.url);
    const name = options.queueName ?? DEFAULT_QUEUE_NAME;
    const queue = new Queue<ImageJobData, ImageJobResult>(name, { connection });
    const events = new QueueEvents(name, { connection });
    const producer = new QueueEventsProducer(name, { connection });
    // Connection errors are retried by ioredis; without listeners they would crash the process.
    queue.on('error', () => {});
    events.on('error', () => {});
    producer.on('error', () => {});
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), producer.waitUntilReady()]);
    } catch (cause) {
      await Promise.allSettled([queue.close(), events.close(), producer.close()]);
      throw cause;
    }
    return new RedisImageService(options, queue, events, producer, await queue.client);
  }

  async enqueue(params: GenerationParams): Promise<string> {
    return (await this.add(params)).id as string;
  }

  async generate(params: GenerationParams, options: { signal?: AbortSignal; timeoutMs?: number }): Promise<GeneratedImages> {
    const job = await this.add(params);
    const started = performance.now();
    let timer: NodeJS.Timeout | null = null;
    let fail: (error: Error) => void = () => {};
    const stopped = new Promise<never>((_, reject) => {
      fail = reject;
      this.waiting.add(fail);
      const timeoutMs = options.timeoutMs ?? 0;
      if (timeoutMs > 0) timer = setTimeout(() => reject(new RequestTimeoutError(timeoutMs)), timeoutMs);
      options.signal?.addEventListener('abort', () => reject(new RequestCancelledError()), { once: true });
    });
    try {
      const result = await Promise.race([job.waitUntilFinished(this.events), stopped]);
      this.jobSeconds = (performance.now() - started) / 1000;
      return decodeJobResult(result);
    } catch (error) {
      // A job nobody waits for any more leaves the queue, or the batch of the worker running it.
      if (error instanceof RequestCancelledError || error instanceof RequestTimeoutError) await this.cancel(job).catch(() => {});
      throw error;
    } finally {
      if (timer !== null) clearTimeout(timer);
      this.waiting.delete(fail);
    }
  }

  /** Cancels a job by id: removed if it waits, dropped by its worker if it runs; a finished job is left as it is. */
  async cancelJob(id: string): Promise<JobState> {
    const job = (await this.queue.getJob(id)) as Job<ImageJobData, ImageJobResult> | undefined;
    if (job === undefined) throw new JobNotFoundError(id);
    const before = await this.getJob(id);
    if (before.state === 'completed' || before.state === 'failed') return before;
    await this.cancel(job);
    return { id, state: 'cancelled' };
  }

  async getJob(id: string): Promise<JobState> {
    const job = (await this.queue.getJob(id)) as Job<ImageJobData, ImageJobResult> | undefined;
    if (job === undefined) throw new JobNotFoundError(id);
    const state = await job.getState();
    if (state === 'completed') return { id, state, result: decodeJobResult(job.returnvalue) };
    if (state === 'failed') return { id, state, reason: job.failedReason };
    if (state === 'waiting' || state === 'active' || state === 'delayed') return { id, state };
    if (state === 'prioritized' || state === 'waiting-children') return { id, state: 'waiting' };
    return { id, state: 'unknown' };
  }

  queueDepth(): number {
    return this.lastDepth;
  }

  inFlight(): number {
    return this.waiting.size;
  }

  ready(): boolean {
    return !this.closing && this.client.status === 'ready';
  }

  /** Waits for the answers in hand up to the deadline; requests still waiting then get ShuttingDownError (their jobs stay queued, readable by id). */
  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    const until = performance.now() + deadlineMs;
    while (this.waiting.size > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const fail of this.waiting) fail(new ShuttingDownError('the request was cancelled at the shutdown deadline; its job stays queued'));
    await Promise.allSettled([this.events.close(), this.producer.close(), this.queue.close()]);
  }

  /** Removes a job that no worker holds; otherwise asks the worker holding it to drop it. */
  private async cancel(job: Job<ImageJobData, ImageJobResult>): Promise<void> {
    try {
      await job.remove();
    } catch {
      // Locked by a worker (it runs): the cancel event reaches it.
      await this.producer.publishEvent({ eventName: CANCEL_EVENT, jobId: String(job.id) });
    }
  }

  private async add(params: GenerationParams): Promise<Job<ImageJobData, ImageJobResult>> {
    if (this.closing) throw new ShuttingDownError('new requests are refused');
    await this.options.check?.(params);
    this.lastDepth = await this.queue.getWaitingCount();
    if (this.lastDepth >= this.options.maxQueue) {
      throw new QueueFullError(this.options.maxQueue, Math.max(1, Math.ceil((this.lastDepth / this.options.maxBatch + 1) * this.jobSeconds)));
    }
    return this.queue.add('generate', { params: encodeJobParams(params) }, {
      removeOnComplete: { age: JOB_RETENTION_SECONDS },
      removeOnFail: { age: JOB_RETENTION_SECONDS },
    });
  }
}
