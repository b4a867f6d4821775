/**
 * `svdquant worker`: takes image jobs from the BullMQ queue, batches the ones it holds (it takes up
 * to maxBatch jobs at once) through its own DynamicBatcher, and stores the PNGs as each job's
 * return value. Job data from Redis is validated again (JSON schema + the model's labels).
 */

import { hostname } from 'node:os';
import { Ajv } from 'ajv';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { DynamicBatcher, type BatchPipeline } from './batcher.js';
import { InvalidRequestError, RequestCancelledError } from './errors.js';
import type { WorkerMetrics } from './metrics.js';
import { DEFAULT_QUEUE_NAME, redisConnection, listenForCancellations, type ImageJobData, type ImageJobResult } from './redis-queue.js';
import { decodeEmbedding, EMBEDDING_NAMES, embeddingTensorSchema, MAX_SEED, MAX_SIZE, MAX_STEPS, type EmbeddingTensor, type GenerationParams, type ServeModelInfo } from './request.js';
import { toGeneratedImages } from './service.js';

const jobDataSchema = {
  type: 'object',
  required: ['params'],
  properties: {
    params: {
      type: 'object',
      additionalProperties: false,
      required: ['classLabels', 'seeds'],
      properties: {
        classLabels: { type: 'array', items: { type: 'integer', minimum: 0 } },
        seeds: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0, maximum: MAX_SEED } },
        numInferenceSteps: { type: 'integer', minimum: 1, maximum: MAX_STEPS },
        guidanceScale: { type: 'number', minimum: 0, maximum: 100 },
        embeddings: {
          type: 'object',
          additionalProperties: false,
          properties: Object.fromEntries(EMBEDDING_NAMES.map((name) => [name, embeddingTensorSchema])),
        },
        height: { type: 'integer', minimum: 1, maximum: MAX_SIZE },
        width: { type: 'integer', minimum: 1, maximum: MAX_SIZE },
      },
    },
  },
} as const;

const validateJobData = new Ajv({ allErrors: true }).compile<ImageJobData>(jobDataSchema);

export interface ImageWorkerOptions {
  url: string;
  queueName?: string;
  pipeline: BatchPipeline;
  model: ServeModelInfo;
  maxBatch: number;
  batchWindowMs: number;
  /** How long a job's lock lasts without renewal: a dead worker's job is taken over after about this. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs (of dead workers). */
  stalledIntervalMs?: number;
  /** Called when a job starts and ends (for logs). */
  onJob?(event: { id: string; state: 'active' | 'completed' | 'failed'; reason?: string }): void;
  /** Jobs, batches and memory for Prometheus (createWorkerMetrics). */
  metrics?: WorkerMetrics;
}

export interface ImageWorker {
  readonly id: string;
  /** Stops taking jobs; waits for the jobs in hand up to the deadline, then lets go of them (they stall and another worker runs them). */
  close(deadlineMs: number): Promise<void>;
}

export async function startImageWorker(options: ImageWorkerOptions): Promise<ImageWorker> {
  const id = `${hostname()}:${process.pid}`;
  // The queue gives each job to one worker; the batcher's queue only holds the jobs this worker took.
  const batcher = new DynamicBatcher(options.pipeline, {
    maxBatch: options.maxBatch,
    maxQueue: options.maxBatch,
    batchWindowMs: options.batchWindowMs,
    timeoutMs: 0,
  }, options.metrics?.batcher);

  let abandoned = false;
  const generateJob = async (job: Job<ImageJobData, ImageJobResult>, signal?: AbortSignal): Promise<ImageJobResult> => {
    const params = await checkJob(job.data, options.model, options.maxBatch, options.pipeline);
    let result;
    try {
      // The signal fires when the front end cancels the job (its client went away): the job leaves its batch.
      result = await batcher.submit(params, signal !== undefined ? { signal } : {});
    } catch (error) {
      // Abandoned at the shutdown deadline: never settle, so that nothing marks the job failed; its
      // lock expires and another worker runs it.
      if (abandoned) await new Promise<never>(() => {});
      // A cancelled job is not retried.
      if (error instanceof RequestCancelledError) throw new UnrecoverableError(`cancelled: ${error.message}`);
      throw error;
    }
    const generated = toGeneratedImages(params, result);
    return {
      images: generated.images.map((image) => ({ label: image.label, seed: image.seed, png: Buffer.from(image.png).toString('base64') })),
      timings: generated.timings,
      worker: id,
    };
  };
  const processJob = async (job: Job<ImageJobData, ImageJobResult>, _token?: string, signal?: AbortSignal): Promise<ImageJobResult> => {
    const metrics = options.metrics;
    if (metrics === undefined) return generateJob(job, signal);
    const started = performance.now();
    metrics.jobsActive(1);
    let state: 'completed' | 'failed' | 'cancelled' = 'failed';
    try {
      const result = await generateJob(job, signal);
      state = 'completed';
      return result;
    } catch (error) {
      if (signal?.aborted === true) state = 'cancelled';
      throw error;
    } finally {
      metrics.jobsActive(-1);
      metrics.jobDone(state, (performance.now() - started) / 1000, (Date.now() - job.timestamp) / 1000);
    }
  };

  const worker = new Worker<ImageJobData, ImageJobResult>(options.queueName ?? DEFAULT_QUEUE_NAME, processJob, {
    connection: redisConnection(options.url),
    concurrency: options.maxBatch,
    ...(options.lockDurationMs !== undefined ? { lockDuration: options.lockDurationMs } : {}),
    ...(options.stalledIntervalMs !== undefined ? { stalledInterval: options.stalledIntervalMs } : {}),
    autorun: false,
  });
  worker.on('active', (job) => options.onJob?.({ id: String(job.id), state: 'active' }));
  worker.on('completed', (job) => options.onJob?.({ id: String(job.id), state: 'completed' }));
  worker.on('failed', (job, error) => options.onJob?.({ id: String(job?.id), state: 'failed', reason: error.message }));
  // Connection errors are retried by BullMQ; without a listener they would crash the process.
  worker.on('error', () => {});
  await worker.waitUntilReady();
  // The front end cancels a job whose client went away: if it runs here, it leaves its batch.
  const cancellations = await listenForCancellations(options.url, options.queueName ?? DEFAULT_QUEUE_NAME, (jobId) => {
    worker.cancelJob(jobId, 'cancelled by the front end');
  });
  void worker.run();

  return {
    id,
    async close(deadlineMs: number): Promise<void> {
      let timer: NodeJS.Timeout | null = null;
      await cancellations.close();
      const graceful = worker.close();
      const deadline = new Promise<'deadline'>((resolve) => { timer = setTimeout(() => resolve('deadline'), deadlineMs); });
      const outcome = await Promise.race([graceful.then(() => 'closed' as const), deadline]);
      if (timer !== null) clearTimeout(timer);
      if (outcome === 'deadline') {
        // Jobs in hand are not finished: leave them to stall (their locks expire) rather than fail them.
        abandoned = true;
        const aborted = batcher.close(0);
        // A forced close can still wait on an unreachable Redis: bounded, then the connections are dropped.
        let grace: NodeJS.Timeout | null = null;
        await Promise.race([worker.close(true), new Promise((resolve) => { grace = setTimeout(resolve, 1000); })]);
        if (grace !== null) clearTimeout(grace);
        await worker.disconnect().catch(() => {});
        await aborted;
      }
    },
  };
}

/** Job data from Redis checked again (schema, the model's classes or embeddings); UnrecoverableError: no retry. */
async function checkJob(data: unknown, model: ServeModelInfo, maxBatch: number, pipeline: BatchPipeline): Promise<GenerationParams> {
  if (!validateJobData(data)) {
    const detail = validateJobData.errors?.map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ') ?? '';
    throw new UnrecoverableError(`invalid job data: ${detail}`);
  }
  const { embeddings: wire, ...rest } = data.params;
  const images = rest.seeds.length;
  if (images > maxBatch) throw new UnrecoverableError(`invalid job data: ${images} images, this worker's --max-batch is ${maxBatch}`);
  if (model.text === undefined) {
    if (wire !== undefined || rest.classLabels.length !== images) throw new UnrecoverableError('invalid job data: one class label and seed per image (this worker\'s model is class-conditional)');
    const bad = rest.classLabels.find((label) => label >= model.labels.length);
    if (bad !== undefined) throw new UnrecoverableError(new InvalidRequestError('classLabels', `class ids below ${model.labels.length}, got ${bad}`).message);
    return rest;
  }
  if (wire === undefined || rest.classLabels.length !== 0) throw new UnrecoverableError(`invalid job data: prompt embeddings and no class labels (this worker's model is ${model.text.pipeline})`);
  try {
    const embeddings: Record<string, EmbeddingTensor> = {};
    for (const [name, tensor] of Object.entries(wire)) {
      embeddings[name] = decodeEmbedding(tensor, `embeddings.${name}`);
      if (embeddings[name].shape[0] !== images) throw new InvalidRequestError(`embeddings.${name}`, `one row per image (${images})`);
    }
    const params: GenerationParams = { ...rest, embeddings };
    await pipeline.check?.(params);
    return params;
  } catch (error) {
    if (error instanceof InvalidRequestError) throw new UnrecoverableError(error.message);
    throw error;
  }
}
