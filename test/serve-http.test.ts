/**
 * `svdquant serve` as a real process with the built-in model, over HTTP on loopback: batched
 * responses equal the requests alone, validation, back-pressure (429), client-disconnect
 * cancellation, timeouts, metrics, graceful shutdown. Tests wait for events (metrics, output,
 * exits); nothing is timed.
 */
import t from 'tap';
import { PNG } from 'pngjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, builtinModelDir, loadModel, quantizeModel, randnBatch, saveCheckpoint } from '../lib/index.js';
import { requireBuiltCli } from './support/cli.js';
import { metric, postImages, processTracker, startServe, waitForMetric, type JsonImages, type ServeProc } from './support/serve-process.js';

t.before(requireBuiltCli);

const track = processTracker(t);
async function serve(args: string[]): Promise<ServeProc> {
  return track(await startServe(args));
}

const STEPS = 8;
const REQUESTS = [
  { labels: ['Dress'], seed: 11 },
  { labels: [7, 'bag'], seed: 5 },
  { labels: [0], seeds: [123456789] },
];

t.test('batched requests get exactly the images they get alone (same PNG bytes)', async (t) => {
  // A window of a minute and max batch 4: the batch starts only when all four images are there.
  const batched = await serve(['--max-batch', '4', '--batch-window-ms', '60000']);
  const alone = await serve(['--no-batching', '--max-batch', '4']);
  const together = await Promise.all(REQUESTS.map((r) => postImages(batched.url, { ...r, steps: STEPS, guidance: 3 })));
  for (const r of together) {
    t.equal(r.status, 200);
    const body = r.json as JsonImages;
    t.equal(body.timings.batchImages, 4, 'all four images in one forward');
    t.equal(body.timings.batchRequests, 3);
  }
  const single = [];
  for (const r of REQUESTS) single.push(await postImages(alone.url, { ...r, steps: STEPS, guidance: 3 }));
  for (const [i, r] of single.entries()) {
    t.equal(r.status, 200);
    const a = r.json as JsonImages, b = together[i].json as JsonImages;
    t.equal(a.timings.batchRequests, 1);
    t.same(b.images.map((im) => [im.label, im.seed]), a.images.map((im) => [im.label, im.seed]));
    for (const [j, image] of a.images.entries()) t.equal(b.images[j].png, image.png, `request ${i} image ${j}: identical PNG`);
  }
  const png = PNG.sync.read(Buffer.from((together[0].json as JsonImages).images[0].png, 'base64'));
  t.same([png.width, png.height], [28, 28]);
  t.same((together[1].json as JsonImages).images.map((im) => im.labelName), ['Sneaker', 'Bag']);
  t.same((together[2].json as JsonImages).images[0].seed, 123456789);

  // format: 'png' gives the same image as bytes.
  const one = await fetch(`${alone.url}/v1/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...REQUESTS[0], steps: STEPS, guidance: 3, format: 'png' }) });
  t.equal(one.status, 200);
  t.equal(one.headers.get('content-type'), 'image/png');
  t.equal(one.headers.get('x-svdquant-seed'), '11');
  t.equal(Buffer.from(await one.arrayBuffer()).toString('base64'), (single[0].json as JsonImages).images[0].png);

  t.equal(await metric(batched.url, 'svdquant_batch_images_sum'), 4);
  t.equal(await metric(batched.url, 'svdquant_batch_images_count'), 1);
  t.equal(await metric(batched.url, 'svdquant_images_total'), 4);
  t.equal(await metric(batched.url, 'svdquant_request_duration_seconds_count{status="200"}'), 3);
  batched.kill();
  alone.kill();
  t.equal(await batched.exited, 0);
  t.equal(await alone.exited, 0);
});

t.test('bad requests: 400 with the field named, 413 for a large body; health and readiness', async (t) => {
  const s = await serve(['--max-batch', '2', '--body-limit', '1024']);
  const cases: Array<[unknown, RegExp]> = [
    [{}, /invalid field 'labels': required: this model is class-conditional/],
    [{ labels: [] }, /labels must NOT have fewer than 1 items/],
    [{ labels: [1], steps: '10' }, /steps must be integer/],
    [{ labels: [1], steps: 0 }, /steps must be >= 1/],
    [{ labels: [1], extra: true }, /must NOT have additional properties/],
    [{ labels: [1], format: 'gif' }, /format must be equal to one of the allowed values/],
    [{ labels: [10] }, /invalid field 'labels\[0\]': a class id in \[0, 9\], got 10/],
    [{ labels: ['Hat'] }, /invalid field 'labels\[0\]': a class name of this model/],
    [{ labels: [1, 2, 3] }, /invalid field 'labels': at most 2 images per request/],
    [{ labels: [1, 2], seeds: [1] }, /invalid field 'seeds': one seed per label: expected 2, got 1/],
    [{ labels: [1], seed: 1, seeds: [1] }, /give either 'seed' or 'seeds'/],
    [{ labels: [1], size: 64 }, /invalid field 'size': this model generates 28×28 images only, got 64/],
    [{ labels: [1, 2], format: 'png' }, /invalid field 'format'/],
    ['{"labels": [1', /./],
  ];
  for (const [body, message] of cases) {
    const r = await postImages(s.url, body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.equal(r.json.error, 'invalid_request');
    t.match(r.json.message, message);
  }
  const big = await postImages(s.url, { labels: [1], pad: 'x'.repeat(2000) });
  t.equal(big.status, 413);
  t.equal(big.json.error, 'body_too_large');
  t.equal(await metric(s.url, 'svdquant_errors_total{kind="invalid_request"}'), cases.length);
  t.same(await (await fetch(`${s.url}/healthz`)).json(), { status: 'ok' });
  const ready = await fetch(`${s.url}/readyz`);
  t.equal(ready.status, 200);
  t.match(await ready.json(), { ready: true, mode: 'local' });
  const jobs = await fetch(`${s.url}/v1/jobs/1`);
  t.equal(jobs.status, 400, 'jobs by id need the queue mode');
  s.kill();
  t.equal(await s.exited, 0);
});

t.test('back-pressure, cancellation and timeouts', async (t) => {
  const s = await serve(['--max-batch', '1', '--max-queue', '1', '--batch-window-ms', '0']);
  // A: a long request, cancelled by its client once it runs.
  const a = new AbortController();
  const requestA = postImages(s.url, { labels: [1], steps: 1000 }, { signal: a.signal }).catch((e: Error) => e);
  await waitForMetric(s.url, 'svdquant_requests_in_flight', (v) => v === 1);
  // B waits in the queue; C finds it full.
  const requestB = postImages(s.url, { labels: [2], steps: STEPS, seed: 3 });
  await waitForMetric(s.url, 'svdquant_queue_depth', (v) => v === 1);
  const c = await postImages(s.url, { labels: [3], steps: STEPS });
  t.equal(c.status, 429);
  t.equal(c.json.error, 'queue_full');
  t.ok(Number(c.headers.get('retry-after')) >= 1, 'Retry-After in seconds');
  a.abort();
  t.equal((await requestA as Error).name, 'AbortError', 'the client gave up');
  const b = await requestB;
  t.equal(b.status, 200, 'the queued request runs once the cancelled batch is aborted');
  t.equal(await waitForMetric(s.url, 'svdquant_errors_total{kind="cancelled"}', (v) => v === 1), 1);
  t.equal(await metric(s.url, 'svdquant_batch_errors_total'), 1, 'the abandoned batch was aborted, not finished');
  t.equal(await metric(s.url, 'svdquant_errors_total{kind="queue_full"}'), 1);

  const late = await postImages(s.url, { labels: [4], steps: 1000, timeoutMs: 50 });
  t.equal(late.status, 504);
  t.equal(late.json.error, 'timeout');
  t.match(late.json.message, /within its timeout of 50 ms/);
  const after = await postImages(s.url, { labels: [4], steps: STEPS });
  t.equal(after.status, 200, 'the server goes on');
  s.kill();
  t.equal(await s.exited, 0);
});

t.test('SIGTERM: the request in flight is answered, the server exits 0; past the deadline work is cancelled with 503', async (t) => {
  const s = await serve(['--max-batch', '1', '--batch-window-ms', '0']);
  const inFlight = postImages(s.url, { labels: [5], steps: 100 });
  await waitForMetric(s.url, 'svdquant_requests_in_flight', (v) => v === 1);
  s.kill('SIGTERM');
  await s.waitFor(/SIGTERM: shutting down/);
  const refused = await postImages(s.url, { labels: [5], steps: STEPS }).catch((e: Error) => e);
  t.ok(refused instanceof Error, 'no new connections once shutting down');
  const answered = await inFlight;
  t.equal(answered.status, 200);
  t.equal((answered.json as JsonImages).images.length, 1);
  t.equal(await s.exited, 0);
  t.match(s.output(), /stopped after SIGTERM/);

  const short = await serve(['--max-batch', '1', '--batch-window-ms', '0', '--shutdown-timeout-ms', '100']);
  const running = postImages(short.url, { labels: [6], steps: 1000 });
  const queued = postImages(short.url, { labels: [7], steps: 1000 });
  await waitForMetric(short.url, 'svdquant_queue_depth', (v) => v === 1);
  short.kill('SIGTERM');
  for (const r of [await running, await queued]) {
    t.equal(r.status, 503);
    t.equal(r.json.error, 'shutting_down');
    t.match(r.json.message, /cancelled at the shutdown deadline/);
  }
  t.equal(await short.exited, 0);
});

t.test('a w4a4 checkpoint of the built-in model, served on the native CPU kernels: batched responses equal the requests alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'svdq-serve-ckpt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const checkpoint = join(dir, 'fashion-w4a4.safetensors');
  const model = await loadModel(builtinModelDir(), { subfolder: 'transformer' });
  const calibration = [0, 1].map((b) => [{
    hidden_states: randnBatch([1, 28, 28], [4 * b, 4 * b + 1, 4 * b + 2, 4 * b + 3]),
    timestep: 700 - 400 * b,
    class_labels: Tensor.fromIntegers([0, 3, 7, 10]),
  }]);
  const report = await quantizeModel(model, { scheme: 'w4a4', rank: 16 }, calibration);
  t.ok(report.layers.length > 0, 'layers quantized');
  await saveCheckpoint(model, checkpoint);

  const batched = await serve(['--model', checkpoint, '--backend', 'cpu', '--max-batch', '4', '--batch-window-ms', '60000']);
  const alone = await serve(['--model', checkpoint, '--backend', 'cpu', '--no-batching', '--max-batch', '4']);
  const ready = await (await fetch(`${batched.url}/readyz`)).json() as { backend: string };
  t.match(ready.backend, new RegExp(`^cpu \\(${report.layers.length} quantized layers native\\)$`), 'every quantized layer on the native kernels');
  const together = await Promise.all(REQUESTS.map((r) => postImages(batched.url, { ...r, steps: STEPS })));
  for (const [i, r] of REQUESTS.entries()) {
    const single = (await postImages(alone.url, { ...r, steps: STEPS })).json as JsonImages;
    const shared = together[i].json as JsonImages;
    t.equal(shared.timings.batchImages, 4);
    t.same(shared.images.map((im) => im.png), single.images.map((im) => im.png), `request ${i}: identical PNGs from the native w4a4 engine in a batch of 4 and alone`);
  }
  batched.kill();
  alone.kill();
  t.equal(await batched.exited, 0);
  t.equal(await alone.exited, 0);
});
