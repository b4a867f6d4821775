/**
 * Prometheus metrics (prom-client, one registry per server or worker so several can live in one
 * process): of the server (queue depth, latencies, images per second, errors by type) and of a
 * worker (jobs by outcome, job latencies); both have the batch metrics and memory.
 */

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BatcherObserver } from './batcher.js';

export interface ServeMetrics {
  readonly registry: Registry;
  /** Hooks for the batcher. */
  readonly batcher: BatcherObserver;
  /** A request answered: HTTP status and seconds from arrival to answer; `images` generated (0 on error). */
  requestDone(status: number, seconds: number, images: number): void;
  /** An error answered to a client, by kind (invalid_request, queue_full, timeout, cancelled, ...). */
  error(kind: string): void;
  /** Where the current queue depth and the requests being generated are read from. */
  setSources(sources: { queueDepth(): number; inFlight(): number }): void;
}

const IMAGES_PER_SECOND_WINDOW_S = 60;

export function createServeMetrics(options: { maxBatch: number }): ServeMetrics {
  const registry = new Registry();
  registerProcessMetrics(registry);
  let sources = { queueDepth: (): number => 0, inFlight: (): number => 0 };
  const imageTimes: Array<{ at: number; count: number }> = [];

  new Gauge({
    name: 'svdquant_queue_depth',
    help: 'Requests waiting for a batch (not counting the running batch).',
    registers: [registry],
    collect() { this.set(sources.queueDepth()); },
  });
  new Gauge({
    name: 'svdquant_requests_in_flight',
    help: 'Requests being generated (in the running batch, or taken by a worker in queue mode) and not yet answered.',
    registers: [registry],
    collect() { this.set(sources.inFlight()); },
  });
  const requestSeconds = new Histogram({
    name: 'svdquant_request_duration_seconds',
    help: 'Time from a request\'s arrival to its answer, by HTTP status.',
    labelNames: ['status'],
    registers: [registry],
    buckets: DURATION_BUCKETS,
  });
  const images = new Counter({ name: 'svdquant_images_total', help: 'Images returned to clients.', registers: [registry] });
  new Gauge({
    name: 'svdquant_images_per_second',
    help: `Images returned per second over the last ${IMAGES_PER_SECOND_WINDOW_S} s.`,
    registers: [registry],
    collect() {
      const now = performance.now();
      while (imageTimes.length > 0 && imageTimes[0].at < now - IMAGES_PER_SECOND_WINDOW_S * 1000) imageTimes.shift();
      this.set(imageTimes.reduce((sum, e) => sum + e.count, 0) / IMAGES_PER_SECOND_WINDOW_S);
    },
  });
  const errors = new Counter({ name: 'svdquant_errors_total', help: 'Requests that ended in an error, by kind.', labelNames: ['kind'], registers: [registry] });

  return {
    registry,
    batcher: registerBatchMetrics(registry, options.maxBatch),
    requestDone(status, seconds, count) {
      requestSeconds.observe({ status: String(status) }, seconds);
      if (count > 0) {
        images.inc(count);
        imageTimes.push({ at: performance.now(), count });
      }
    },
    error(kind) {
      errors.inc({ kind });
    },
    setSources(read) {
      sources = read;
    },
  };
}

/** Metrics of `svdquant worker`: its jobs, its batches (as the server's), memory. */
export interface WorkerMetrics {
  readonly registry: Registry;
  readonly batcher: BatcherObserver;
  /** A job taken from the queue ended (cancelled: by the front end, its client gone): seconds processing it here, and since it was queued. */
  jobDone(state: 'completed' | 'failed' | 'cancelled', processingSeconds: number, totalSeconds: number): void;
  /** Jobs in hand (taken, not finished) changed by `delta`. */
  jobsActive(delta: number): void;
}

export function createWorkerMetrics(options: { maxBatch: number }): WorkerMetrics {
  const registry = new Registry();
  registerProcessMetrics(registry);
  const jobs = new Counter({ name: 'svdquant_worker_jobs_total', help: 'Jobs this worker finished, by outcome (completed, failed, cancelled).', labelNames: ['state'], registers: [registry] });
  const processing = new Histogram({
    name: 'svdquant_worker_job_processing_seconds',
    help: 'Time from this worker taking a job to its result, by outcome.',
    labelNames: ['state'],
    registers: [registry],
    buckets: DURATION_BUCKETS,
  });
  const total = new Histogram({
    name: 'svdquant_worker_job_latency_seconds',
    help: 'Time from a job being queued to its result (waiting in Redis included), by outcome.',
    labelNames: ['state'],
    registers: [registry],
    buckets: DURATION_BUCKETS,
  });
  const active = new Gauge({ name: 'svdquant_worker_jobs_active', help: 'Jobs taken from the queue and not yet finished.', registers: [registry] });
  for (const state of ['completed', 'failed', 'cancelled']) jobs.inc({ state }, 0);
  return {
    registry,
    batcher: registerBatchMetrics(registry, options.maxBatch),
    jobDone(state, processingSeconds, totalSeconds) {
      jobs.inc({ state });
      processing.observe({ state }, processingSeconds);
      total.observe({ state }, Math.max(0, totalSeconds));
    },
    jobsActive(delta) {
      active.inc(delta);
    },
  };
}

const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120];

/** Node's default metrics and the native memory gauge. */
function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: 'svdquant_' });
  new Gauge({
    name: 'svdquant_native_memory_bytes',
    help: 'Memory outside the JavaScript heap: the engine\'s native allocations (external) and array buffers.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const m = process.memoryUsage();
      this.set({ kind: 'external' }, m.external);
      this.set({ kind: 'array_buffers' }, m.arrayBuffers);
      this.set({ kind: 'rss' }, m.rss);
    },
  });
}

/** The batcher's metrics (server and worker alike): batch sizes and durations, dropped images, image-steps, failed batches. */
function registerBatchMetrics(registry: Registry, maxBatch: number): BatcherObserver {
  const batchImages = new Histogram({
    name: 'svdquant_batch_images',
    help: 'Images per pipeline.generate call.',
    registers: [registry],
    buckets: batchBuckets(maxBatch),
  });
  const batchRequests = new Histogram({
    name: 'svdquant_batch_requests',
    help: 'Requests per pipeline.generate call.',
    registers: [registry],
    buckets: batchBuckets(maxBatch),
  });
  const batchSeconds = new Histogram({
    name: 'svdquant_batch_duration_seconds',
    help: 'Duration of one pipeline.generate call.',
    registers: [registry],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
  });
  const droppedImages = new Counter({
    name: 'svdquant_batch_images_dropped_total',
    help: 'Images of cancelled or timed-out requests that left a running batch (not computed from the next step on).',
    registers: [registry],
  });
  const imageSteps = new Counter({
    name: 'svdquant_denoiser_image_steps_total',
    help: 'Denoising steps computed, summed over the images in each step (dropped images stop adding).',
    registers: [registry],
  });
  const batchErrors = new Counter({ name: 'svdquant_batch_errors_total', help: 'pipeline.generate calls that failed or were aborted.', registers: [registry] });
  return {
    imagesDropped(count) {
      droppedImages.inc(count);
    },
    stepFinished(count) {
      imageSteps.inc(count);
    },
    batchFinished(info) {
      if (info.error !== undefined) {
        batchErrors.inc();
        return;
      }
      batchImages.observe(info.images);
      batchRequests.observe(info.requests);
      batchSeconds.observe(info.seconds);
    },
  };
}

function batchBuckets(maxBatch: number): number[] {
  const buckets: number[] = [];
  for (let b = 1; b < maxBatch; b *= 2) buckets.push(b);
  buckets.push(maxBatch);
  return buckets;
}
