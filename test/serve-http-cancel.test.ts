/**
 * Cancellation over real HTTP on loopback against `svdquant serve` with the built-in model: a client
 * that disconnects while its batch runs leaves the batch (its images stop being computed at the next
 * step) and the others get exactly the images they get alone; a client that disconnects while its
 * request waits in the queue leaves the queue and is never computed. The metrics count both. Tests
 * wait for events (metrics, exits); nothing is timed.
 */
import t from 'tap';
import { requireBuiltCli } from './support/cli.js';
import { metric, postImages, processTracker, startServe, waitForMetric, type JsonImages, type ServeProc } from './support/serve-process.js';

t.before(requireBuiltCli);

const track = processTracker(t);
async function serve(args: string[]): Promise<ServeProc> {
  return track(await startServe(args));
}

// Long enough that the batch is still running when the disconnect reaches the server.
const STEPS = 300;

t.test('a client disconnecting mid-batch: its images leave the batch, the others get their images alone', async (t) => {
  const batched = await serve(['--max-batch', '4', '--batch-window-ms', '60000']);
  const alone = await serve(['--no-batching', '--max-batch', '4']);
  const requests = [
    { labels: ['Trouser'], seed: 31 },
    { labels: [6, 'Sandal'], seed: 8 },
    { labels: [9], seeds: [77] },
  ];
  const leaving = new AbortController();
  const responses = requests.map((r, i) => postImages(batched.url, { ...r, steps: STEPS, guidance: 2 }, i === 1 ? { signal: leaving.signal } : {})
    .catch((e: Error) => e));
  // The batch of four images has computed at least one step: then request 1's client goes away.
  await waitForMetric(batched.url, 'svdquant_denoiser_image_steps_total', (v) => v >= 4);
  leaving.abort();
  const [first, gone, last] = await Promise.all(responses);
  t.equal((gone as Error).name, 'AbortError', 'the client gave up');
  for (const [i, r] of [[0, first], [2, last]] as const) {
    const response = r as Awaited<ReturnType<typeof postImages>>;
    t.equal(response.status, 200);
    const body = response.json as JsonImages;
    t.equal(body.timings.batchImages, 4, 'ran in the batch of four');
    const single = (await postImages(alone.url, { ...requests[i], steps: STEPS, guidance: 2 })).json as JsonImages;
    t.same(body.images.map((im) => im.png), single.images.map((im) => im.png), `request ${i}: identical PNG to the request alone`);
  }
  t.equal(await metric(batched.url, 'svdquant_batch_images_dropped_total'), 2, 'two images left the running batch');
  const imageSteps = await metric(batched.url, 'svdquant_denoiser_image_steps_total');
  t.ok(imageSteps < 4 * STEPS, `the dropped images stopped being computed (${imageSteps} image-steps < ${4 * STEPS})`);
  t.ok(imageSteps >= 2 * STEPS + 4, 'the others ran every step');
  t.equal(await waitForMetric(batched.url, 'svdquant_errors_total{kind="cancelled"}', (v) => v === 1), 1, 'the cancellation is counted');
  t.equal(await metric(batched.url, 'svdquant_batch_errors_total'), 0, 'the batch itself finished');
  t.equal(await metric(batched.url, 'svdquant_images_total'), 2);
  batched.kill();
  alone.kill();
  t.equal(await batched.exited, 0);
  t.equal(await alone.exited, 0);
});

t.test('a client disconnecting while its request waits in the queue: it leaves the queue and is never computed', async (t) => {
  const s = await serve(['--max-batch', '1', '--batch-window-ms', '0']);
  const running = postImages(s.url, { labels: [1], steps: STEPS, seed: 2 });
  await waitForMetric(s.url, 'svdquant_requests_in_flight', (v) => v === 1);
  const leaving = new AbortController();
  const queued = postImages(s.url, { labels: [2], steps: STEPS }, { signal: leaving.signal }).catch((e: Error) => e);
  await waitForMetric(s.url, 'svdquant_queue_depth', (v) => v === 1);
  leaving.abort();
  t.equal((await queued as Error).name, 'AbortError');
  t.equal(await waitForMetric(s.url, 'svdquant_queue_depth', (v) => v === 0), 0, 'it left the queue');
  t.equal(await waitForMetric(s.url, 'svdquant_errors_total{kind="cancelled"}', (v) => v === 1), 1);
  t.equal((await running).status, 200);
  t.equal(await metric(s.url, 'svdquant_batch_images_count'), 1, 'only the running request was ever batched');
  t.equal(await metric(s.url, 'svdquant_denoiser_image_steps_total'), STEPS, 'and only its steps computed');
  t.equal(await metric(s.url, 'svdquant_batch_images_dropped_total'), 0);
  s.kill();
  t.equal(await s.exited, 0);
});
