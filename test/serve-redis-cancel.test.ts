/**
 * Queue mode over a real redis-server, as real processes: a job whose client disconnects while a
 * worker runs it leaves that worker's batch (the others get the images they get in-process); a job
 * cancelled while it waits (client gone, or DELETE /v1/jobs/:id) is removed before any worker takes
 * it; `svdquant worker --metrics-port` serves Prometheus metrics of its jobs and batches.
 */
import t from 'tap';
import { Queue } from 'bullmq';
import { requireBuiltCli } from './support/cli.js';
import { metric, postImages, processTracker, startRedis, startServe, startWorker, stopGracefully, waitForMetric, type JsonImages } from './support/serve-process.js';

t.before(requireBuiltCli);

let redis: Awaited<ReturnType<typeof startRedis>>;
t.before(async () => { redis = await startRedis(); });
const track = processTracker(t);
t.teardown(async () => { await redis?.stop(); });
const connection = () => {
  const url = new URL(redis.url);
  return { host: url.hostname, port: Number(url.port) };
};
// Long enough that the batch still runs when the disconnect reaches the worker.
const STEPS = 300;

t.test('a client disconnecting while a worker runs its job: the job leaves the batch; worker metrics count it', async (t) => {
  const front = track(await startServe(['--queue', redis.url, '--queue-name', 'cancel', '--max-batch', '4']));
  const local = track(await startServe(['--max-batch', '4', '--no-batching']));
  const worker = track(await startWorker(['--queue', redis.url, '--queue-name', 'cancel', '--max-batch', '4', '--batch-window-ms', '60000', '--metrics-port', '0']));
  const [, metricsUrl] = worker.output().match(/metrics on (http:\/\/\S+)\/metrics/) ?? [];
  t.ok(metricsUrl, 'the worker prints where its metrics are');
  t.same(await (await fetch(`${metricsUrl}/healthz`)).json(), { status: 'ok' });
  t.equal((await fetch(`${metricsUrl}/nothing`)).status, 404);

  const requests = [{ labels: ['Shirt'], seed: 5 }, { labels: [2, 3], seed: 40 }, { labels: [7], seed: 1 }];
  const leaving = new AbortController();
  const responses = requests.map((r, i) => postImages(front.url, { ...r, steps: STEPS }, i === 1 ? { signal: leaving.signal } : {}).catch((e: Error) => e));
  await waitForMetric(metricsUrl, 'svdquant_denoiser_image_steps_total', (v) => v >= 4);
  leaving.abort();
  const [first, gone, last] = await Promise.all(responses);
  t.equal((gone as Error).name, 'AbortError');
  for (const [i, r] of [[0, first], [2, last]] as const) {
    const response = r as Awaited<ReturnType<typeof postImages>>;
    t.equal(response.status, 200);
    const body = response.json as JsonImages;
    t.equal(body.worker, worker.id);
    t.equal(body.timings.batchImages, 4, 'ran in the worker\'s batch of four');
    const alone = (await postImages(local.url, { ...requests[i], steps: STEPS })).json as JsonImages;
    t.same(body.images.map((im) => im.png), alone.images.map((im) => im.png), `request ${i}: identical PNG to the request alone, in-process`);
  }
  t.equal(await waitForMetric(metricsUrl, 'svdquant_worker_jobs_total{state="cancelled"}', (v) => v === 1), 1, 'the cancelled job is counted');
  t.equal(await metric(metricsUrl, 'svdquant_worker_jobs_total{state="completed"}'), 2);
  t.equal(await metric(metricsUrl, 'svdquant_batch_images_dropped_total'), 2, 'its two images left the running batch');
  const imageSteps = await metric(metricsUrl, 'svdquant_denoiser_image_steps_total');
  t.ok(imageSteps < 4 * STEPS && imageSteps >= 2 * STEPS + 4, `the dropped images stopped being computed (${imageSteps} image-steps)`);
  t.equal(await metric(metricsUrl, 'svdquant_batch_images_count'), 1, 'one batch');
  t.equal(await metric(metricsUrl, 'svdquant_batch_images_sum'), 4);
  t.equal(await metric(metricsUrl, 'svdquant_worker_job_latency_seconds_count{state="completed"}'), 2);
  t.equal(await metric(metricsUrl, 'svdquant_worker_job_processing_seconds_count{state="completed"}'), 2);
  t.equal(await metric(metricsUrl, 'svdquant_worker_jobs_active'), 0);
  t.ok(await metric(metricsUrl, 'svdquant_native_memory_bytes{kind="external"}') > 0, 'native memory reported');

  // A job the front end did not validate (put on the queue directly) fails on the worker and is counted.
  const queue = new Queue('cancel', { connection: connection() });
  t.teardown(() => queue.close());
  const bad = await queue.add('generate', { params: { classLabels: [42], seeds: [1] } });
  await worker.waitFor(new RegExp(`job ${bad.id} failed: invalid field .classLabels.: class ids below 10, got 42`));
  t.equal(await waitForMetric(metricsUrl, 'svdquant_worker_jobs_total{state="failed"}', (v) => v === 1), 1);

  t.same(await stopGracefully(worker), [0], 'the worker exits 0 on SIGTERM');
  t.same(await stopGracefully(front, local), [0, 0], 'front and local exit 0 on SIGTERM');
});

t.test('a job cancelled while it waits is removed before any worker takes it', async (t) => {
  const front = track(await startServe(['--queue', redis.url, '--queue-name', 'idle']));
  const queue = new Queue('idle', { connection: connection() });
  t.teardown(() => queue.close());

  const leaving = new AbortController();
  const request = postImages(front.url, { labels: [1], steps: 4 }, { signal: leaving.signal }).catch((e: Error) => e);
  for (;;) {
    if (await queue.getWaitingCount() === 1) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  leaving.abort();
  t.equal((await request as Error).name, 'AbortError');
  for (;;) {
    if (await queue.getWaitingCount() === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.pass('the disconnected client\'s job left the queue');

  const posted = await fetch(`${front.url}/v1/images?async=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ labels: [2], steps: 4 }) });
  const { id } = await posted.json() as { id: string };
  t.equal(await queue.getWaitingCount(), 1);
  const deleted = await fetch(`${front.url}/v1/jobs/${id}`, { method: 'DELETE' });
  t.equal(deleted.status, 200);
  t.same(await deleted.json(), { id, state: 'cancelled' });
  t.equal(await queue.getWaitingCount(), 0);
  t.equal((await fetch(`${front.url}/v1/jobs/${id}`)).status, 404, 'gone');
  t.equal((await fetch(`${front.url}/v1/jobs/${id}`, { method: 'DELETE' })).status, 404);

  // A worker started now finds nothing to do.
  const worker = track(await startWorker(['--queue', redis.url, '--queue-name', 'idle']));
  t.same(await stopGracefully(worker), [0], 'the worker exits 0 on SIGTERM');
  t.notMatch(worker.output(), /job \S+ active/, 'no cancelled job ran');
  t.same(await stopGracefully(front), [0], 'the front exits 0 on SIGTERM');
});
