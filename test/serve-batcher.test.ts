/**
 * The dynamic batcher against a pipeline-shaped test double written here (the end-to-end tests in
 * serve-http.test.ts use the real pipeline): which requests share a generate call, that each gets
 * its own images, the bounded queue, cancellation, timeouts and close. No timing assertions: the
 * double holds a batch open until the test releases it.
 */
import t from 'tap';
import { DynamicBatcher, type BatchPipeline, type BatcherOptions } from '../lib/serve/batcher.js';
import { QueueFullError, RequestCancelledError, RequestTimeoutError, ShuttingDownError } from '../lib/serve/errors.js';
import type { GenerationParams } from '../lib/serve/request.js';

type GenerateOptions = Parameters<BatchPipeline['generate']>[0];

/** Image i is [label, seed, steps, guidance]: what a real pipeline's image depends on. */
class PipelineDouble implements BatchPipeline {
  readonly calls: GenerateOptions[] = [];
  private gates: Array<() => void> = [];
  private startWaiters: Array<() => void> = [];
  hold = false;
  failWith: Error | null = null;

  async generate(options: GenerateOptions) {
    this.calls.push(options);
    for (const w of this.startWaiters.splice(0)) w();
    if (this.hold) await new Promise<void>((resolve) => this.gates.push(resolve));
    if (options.signal?.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    if (this.failWith !== null) throw this.failWith;
    const b = options.classLabels.length;
    const data = new Float32Array(b * 4);
    for (let i = 0; i < b; i++) data.set([options.classLabels[i], options.seeds[i], options.numInferenceSteps ?? -1, options.guidanceScale ?? -1], i * 4);
    return { images: { shape: [b, 1, 2, 2], data } };
  }

  /** Resolves when the next generate call has started (or now, if `count` calls already did). */
  started(count: number): Promise<void> {
    if (this.calls.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.startWaiters.push(() => void this.started(count).then(resolve)));
  }

  release(): void {
    for (const g of this.gates.splice(0)) g();
  }
}

const OPTIONS: BatcherOptions = { maxBatch: 8, maxQueue: 16, batchWindowMs: 20, timeoutMs: 0 };
const params = (labels: number[], seed: number, steps?: number, guidance?: number): GenerationParams => ({
  classLabels: labels,
  seeds: labels.map((_, i) => seed + i),
  ...(steps !== undefined ? { numInferenceSteps: steps } : {}),
  ...(guidance !== undefined ? { guidanceScale: guidance } : {}),
});
const imagesOf = (r: { pixels: Float32Array[] }) => r.pixels.map((p) => Array.from(p));

t.test('compatible requests within the window share one generate call; each gets its own images', async (t) => {
  const pipe = new PipelineDouble();
  const batcher = new DynamicBatcher(pipe, OPTIONS);
  const [a, b, c] = await Promise.all([
    batcher.submit(params([1, 2], 10, 5, 3)),
    batcher.submit(params([7], 99, 5, 3)),
    batcher.submit(params([0], 4, 5, 3)),
  ]);
  t.equal(pipe.calls.length, 1, 'one generate call');
  t.same(pipe.calls[0].classLabels, [1, 2, 7, 0]);
  t.same(pipe.calls[0].seeds, [10, 11, 99, 4]);
  t.same(imagesOf(a), [[1, 10, 5, 3], [2, 11, 5, 3]]);
  t.same(imagesOf(b), [[7, 99, 5, 3]]);
  t.same(imagesOf(c), [[0, 4, 5, 3]]);
  t.same(a.timings.batchImages, 4);
  t.same(a.timings.batchRequests, 3);
  t.same([a.channels, a.height, a.width], [1, 2, 2]);
});

t.test('different steps or guidance never share a batch; the oldest request leads', async (t) => {
  const pipe = new PipelineDouble();
  const batcher = new DynamicBatcher(pipe, OPTIONS);
  const results = await Promise.all([
    batcher.submit(params([1], 1, 5)),
    batcher.submit(params([2], 2, 6)),
    batcher.submit(params([3], 3, 5)),
    batcher.submit(params([4], 4, 5, 2)),
    batcher.submit(params([5], 5)),
  ]);
  t.same(pipe.calls.map((c) => c.classLabels), [[1, 3], [2], [4], [5]]);
  t.same(pipe.calls.map((c) => [c.numInferenceSteps, c.guidanceScale]), [[5, undefined], [6, undefined], [5, 2], [undefined, undefined]]);
  t.same(results.map((r) => imagesOf(r)[0][0]), [1, 2, 3, 4, 5]);
});

t.test('a batch holds at most maxBatch images; it starts once that many compatible images wait; a request that does not fit waits for the next', async (t) => {
  const pipe = new PipelineDouble();
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, maxBatch: 4, batchWindowMs: 60_000 });
  // With a one-minute window, only a full batch can start these.
  await Promise.all([
    batcher.submit(params([0, 1, 2], 0)),
    batcher.submit(params([5], 5)),
    batcher.submit(params([3, 4], 3)),
    batcher.submit(params([6, 7], 6)),
  ]);
  t.same(pipe.calls.map((c) => c.classLabels), [[0, 1, 2, 5], [3, 4, 6, 7]]);

  pipe.hold = true;
  const busy = new DynamicBatcher(pipe, { ...OPTIONS, maxBatch: 4, batchWindowMs: 0 });
  const first = busy.submit(params([9], 9));
  await pipe.started(3);
  const queued = [busy.submit(params([0, 1, 2], 0)), busy.submit(params([3, 4], 3)), busy.submit(params([5], 5))];
  pipe.hold = false;
  pipe.release();
  await Promise.all([first, ...queued]);
  t.same(pipe.calls.slice(2).map((c) => c.classLabels), [[9], [0, 1, 2, 5], [3, 4]], 'the two-image request did not fit and led the next batch');
});

t.test('batching off: every request runs alone', async (t) => {
  const pipe = new PipelineDouble();
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, batching: false });
  await Promise.all([batcher.submit(params([1], 1)), batcher.submit(params([2], 2)), batcher.submit(params([3, 4], 3))]);
  t.same(pipe.calls.map((c) => c.classLabels), [[1], [2], [3, 4]]);
});

t.test('the queue is bounded: QueueFullError with a Retry-After, and room again once it drains', async (t) => {
  const pipe = new PipelineDouble();
  pipe.hold = true;
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, maxBatch: 1, maxQueue: 2, batchWindowMs: 0 });
  const running = batcher.submit(params([0], 0));
  await pipe.started(1);
  const queued = [batcher.submit(params([1], 1)), batcher.submit(params([2], 2))];
  t.equal(batcher.queueDepth, 2);
  const refused = await batcher.submit(params([3], 3)).catch((e: unknown) => e);
  t.ok(refused instanceof QueueFullError, 'QueueFullError');
  t.ok((refused as QueueFullError).retryAfterSeconds >= 1);
  t.equal((refused as QueueFullError).statusCode, 429);
  pipe.hold = false;
  pipe.release();
  await Promise.all([running, ...queued]);
  t.same(imagesOf(await batcher.submit(params([3], 3))), [[3, 3, -1, -1]]);
});

t.test('cancellation: a waiting request leaves the queue; one in a running batch is answered at once and the rest continue', async (t) => {
  const pipe = new PipelineDouble();
  pipe.hold = true;
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, batchWindowMs: 0, maxBatch: 1 });
  const first = new AbortController();
  const p1 = batcher.submit(params([1], 1), { signal: first.signal });
  await pipe.started(1);
  const waiting = new AbortController();
  const p2 = batcher.submit(params([2], 2), { signal: waiting.signal });
  const p3 = batcher.submit(params([3], 3));
  waiting.abort();
  t.ok(await p2.catch((e: unknown) => e) instanceof RequestCancelledError, 'the waiting request is cancelled');
  t.equal(batcher.queueDepth, 1, 'and left the queue');
  pipe.hold = false;
  pipe.release();
  await p1;
  await p3;
  t.same(pipe.calls.map((c) => c.classLabels), [[1], [3]], 'the cancelled request was never generated');

  const shared = new DynamicBatcher(pipe, OPTIONS);
  pipe.hold = true;
  const leaving = new AbortController();
  const q1 = shared.submit(params([4], 4), { signal: leaving.signal });
  const q2 = shared.submit(params([5], 5));
  await pipe.started(3);
  t.same(pipe.calls[2].classLabels, [4, 5], 'both in one batch');
  leaving.abort();
  t.ok(await q1.catch((e: unknown) => e) instanceof RequestCancelledError, 'answered while the batch still runs');
  t.equal(pipe.calls[2].signal?.aborted, false, 'the batch goes on for the other request');
  pipe.hold = false;
  pipe.release();
  t.same(imagesOf(await q2), [[5, 5, -1, -1]]);
});

t.test('a batch whose requests all left is aborted through the signal', async (t) => {
  const pipe = new PipelineDouble();
  pipe.hold = true;
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, batchWindowMs: 0 });
  const a = new AbortController();
  const p = batcher.submit(params([1], 1), { signal: a.signal });
  await pipe.started(1);
  a.abort();
  t.ok(await p.catch((e: unknown) => e) instanceof RequestCancelledError);
  t.equal(pipe.calls[0].signal?.aborted, true, 'the pipeline sees the abort');
  pipe.hold = false;
  pipe.release();
  t.same(imagesOf(await batcher.submit(params([2], 2))), [[2, 2, -1, -1]], 'the next request runs');
});

t.test('per-request timeout: RequestTimeoutError (504), whether waiting or running', async (t) => {
  const pipe = new PipelineDouble();
  pipe.hold = true;
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, batchWindowMs: 0, maxBatch: 1 });
  const running = batcher.submit(params([1], 1), { timeoutMs: 5 });
  const waiting = batcher.submit(params([2], 2), { timeoutMs: 5 });
  const e1 = await running.catch((e: unknown) => e);
  const e2 = await waiting.catch((e: unknown) => e);
  t.ok(e1 instanceof RequestTimeoutError && e2 instanceof RequestTimeoutError);
  t.equal((e1 as RequestTimeoutError).statusCode, 504);
  t.equal(batcher.queueDepth, 0);
  pipe.hold = false;
  pipe.release();
  await batcher.close(10_000);
  t.same(pipe.calls.map((c) => c.classLabels), [[1]]);
});

t.test('a pipeline error fails its batch only', async (t) => {
  const pipe = new PipelineDouble();
  const batcher = new DynamicBatcher(pipe, OPTIONS);
  pipe.failWith = new Error('engine failure');
  const failed = await Promise.allSettled([batcher.submit(params([1], 1)), batcher.submit(params([2], 2))]);
  t.same(failed.map((r) => r.status), ['rejected', 'rejected']);
  t.match((failed[0] as PromiseRejectedResult).reason, { message: 'engine failure' });
  pipe.failWith = null;
  t.same(imagesOf(await batcher.submit(params([3], 3))), [[3, 3, -1, -1]]);
});

t.test('close: refuses new requests, finishes the queued ones; past the deadline it cancels the rest', async (t) => {
  const pipe = new PipelineDouble();
  const batcher = new DynamicBatcher(pipe, { ...OPTIONS, maxBatch: 1 });
  const pending = [batcher.submit(params([1], 1)), batcher.submit(params([2], 2))];
  const closed = batcher.close(60_000);
  t.ok(await batcher.submit(params([3], 3)).catch((e: unknown) => e) instanceof ShuttingDownError);
  await closed;
  t.same((await Promise.all(pending)).map((r) => imagesOf(r)[0][0]), [1, 2], 'queued work finished');

  const stuck = new PipelineDouble();
  stuck.hold = true;
  const late = new DynamicBatcher(stuck, { ...OPTIONS, maxBatch: 1, batchWindowMs: 0 });
  const work = [late.submit(params([1], 1)), late.submit(params([2], 2))];
  await stuck.started(1);
  const closing = late.close(10);
  const outcomes = await Promise.allSettled(work);
  t.ok(outcomes.every((o) => o.status === 'rejected' && o.reason instanceof ShuttingDownError), 'both cancelled at the deadline');
  t.equal(stuck.calls[0].signal?.aborted, true, 'the running batch was aborted');
  stuck.release();
  await closing;
  t.equal(stuck.calls.length, 1, 'the queued request never ran');
});
