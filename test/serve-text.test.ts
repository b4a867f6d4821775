/**
 * Serving a text-conditioned pipeline (PixArt-Σ, from the diffusers fixture parts) as a real
 * `svdquant serve` process over HTTP on loopback: prompt embeddings sent as base64 little-endian
 * float32 with their shapes; compatible requests (same tensors and shapes past the batch, same
 * steps, guidance and size) share one forward per step and get the same PNG bytes as alone;
 * validation names the tensor; a class-conditional request is refused; over the BullMQ queue with
 * a worker (real redis-server) the images are the same.
 */
import t from 'tap';
import { PNG } from 'pngjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randn } from '../lib/pipelines/random.js';
import { requireBuiltCli } from './support/cli.js';
import { postImages, processTracker, startRedis, startServe, startWorker, stopGracefully, type JsonImages, type ServeProc } from './support/serve-process.js';
import { textPipelineFolder } from './support/text-pipeline-folder.js';

t.before(requireBuiltCli);

const dir = mkdtempSync(join(tmpdir(), 'svdq-serve-text-'));
const folder = textPipelineFolder(join(dir, 'pixart'), 'PixArtSigmaPipeline', 'pixart', 'dpmpp2m_sd');
const spawnTracked = processTracker(t);
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
async function serve(args: string[]): Promise<ServeProc> {
  return spawnTracked(await startServe(['--model', folder, ...args]));
}

/** A tensor as the API takes it. */
function tensor(values: ArrayLike<number>, shape: number[]): { shape: number[]; data: string } {
  const bytes = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) bytes.writeFloatLE(values[i], i * 4);
  return { shape, data: bytes.toString('base64') };
}
/** PixArt embeddings of `prompts` prompts of 6 tokens (caption_channels 32), the negative one of batch 1. */
function pixartEmbeddings(prompts: number, seed: number, keep = 4) {
  const mask = Array.from({ length: prompts * 6 }, (_, i) => (i % 6 < keep ? 1 : 0));
  return {
    prompt_embeds: tensor(randn([prompts, 6, 32], seed).data, [prompts, 6, 32]),
    prompt_attention_mask: tensor(mask, [prompts, 6]),
    negative_prompt_embeds: tensor(randn([1, 6, 32], seed + 1).data, [1, 6, 32]),
    negative_prompt_attention_mask: tensor([1, 0, 0, 0, 0, 0], [1, 6]),
  };
}

const STEPS = 4;
const REQUESTS = [
  { embeddings: pixartEmbeddings(1, 100), seed: 3 },
  { embeddings: pixartEmbeddings(2, 200, 5), seeds: [9, 12345] },
  { embeddings: pixartEmbeddings(1, 300, 2), seed: 77 },
];

t.test('PixArt-Σ over prompt embeddings: batched requests get the PNG bytes they get alone', async (t) => {
  const batched = await serve(['--max-batch', '4', '--batch-window-ms', '60000']);
  const alone = await serve(['--no-batching', '--max-batch', '4']);
  const ready = await (await fetch(`${batched.url}/readyz`)).json();
  t.match(ready, { ready: true, mode: 'local' });
  const together = await Promise.all(REQUESTS.map((r) => postImages(batched.url, { ...r, steps: STEPS })));
  for (const [i, r] of together.entries()) {
    t.equal(r.status, 200, JSON.stringify(r.json).slice(0, 300));
    const body = r.json as JsonImages;
    t.equal(body.timings.batchImages, 4, 'all four prompts in one forward');
    t.equal(body.timings.batchRequests, 3);
    const single = (await postImages(alone.url, { ...REQUESTS[i], steps: STEPS })).json as JsonImages;
    t.equal(single.timings.batchRequests, 1);
    t.same(body.images.map((im) => im.seed), single.images.map((im) => im.seed));
    t.same(body.images.map((im) => im.png), single.images.map((im) => im.png), `request ${i}: identical PNGs`);
    t.notOk('label' in body.images[0], 'no class label for a text model');
  }
  const png = PNG.sync.read(Buffer.from((together[0].json as JsonImages).images[0].png, 'base64'));
  t.equal(png.width, png.height, 'the default (square) size');
  // Different prompts give different images (the embeddings reach the model).
  t.not((together[1].json as JsonImages).images[0].png, (together[1].json as JsonImages).images[1].png);
  batched.kill();
  alone.kill();
  t.equal(await batched.exited, 0);
  t.equal(await alone.exited, 0);
});

t.test('text requests: validation names the tensor; labels are refused', async (t) => {
  const s = await serve(['--max-batch', '2']);
  const good = pixartEmbeddings(1, 5);
  const cases: Array<[unknown, RegExp]> = [
    [{ labels: [1] }, /invalid field 'labels': not taken by this text-conditioned model \(PixArtSigmaPipeline\)/],
    [{ embeddings: { prompt_embeds: good.prompt_embeds } }, /invalid field 'embeddings.prompt_attention_mask': required by PixArtSigmaPipeline/],
    [{ embeddings: { ...good, pooled_prompt_embeds: good.prompt_embeds } }, /invalid field 'embeddings.pooled_prompt_embeds': not taken by PixArtSigmaPipeline/],
    [{ embeddings: { ...good, prompt_embeds: { shape: [1, 6, 32], data: 'AAAA' } } }, /invalid field 'embeddings.prompt_embeds.data': 768 bytes/],
    [{ embeddings: { ...good, prompt_embeds: tensor(randn([1, 6, 16], 1).data, [1, 6, 16]) } }, /invalid field 'embeddings.prompt_embeds'.*\[B, T, 32\]/],
    [{ embeddings: { ...good, negative_prompt_embeds: tensor(randn([2, 6, 32], 1).data, [2, 6, 32]) } }, /invalid field 'embeddings.negative_prompt_embeds': one row per prompt \(1\) or 1, got 2/],
    [{ embeddings: pixartEmbeddings(3, 1) }, /at most 2 prompts per request/],
    [{ embeddings: good, height: 13 }, /invalid field 'height': .*a positive multiple of/],
    [{ embeddings: { ...good, prompt_embeds: { ...good.prompt_embeds, dtype: 'float16' } } }, /dtype must be equal to one of the allowed values/],
  ];
  for (const [body, message] of cases) {
    const r = await postImages(s.url, body);
    t.equal(r.status, 400, JSON.stringify(body).slice(0, 120));
    t.equal(r.json.error, 'invalid_request');
    t.match(r.json.message, message);
  }
  s.kill();
  t.equal(await s.exited, 0);
});

t.test('over the queue: serve --queue and a worker with the same text model give the PNGs of the in-process server', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const front = await serve(['--queue', redis.url, '--queue-name', 'text', '--max-batch', '4']);
  const local = await serve(['--no-batching', '--max-batch', '4']);
  const worker = spawnTracked(await startWorker(['--queue', redis.url, '--queue-name', 'text', '--model', folder, '--max-batch', '4', '--batch-window-ms', '60000']));
  const together = await Promise.all(REQUESTS.map((r) => postImages(front.url, { ...r, steps: STEPS })));
  for (const [i, r] of together.entries()) {
    t.equal(r.status, 200, JSON.stringify(r.json).slice(0, 300));
    const body = r.json as JsonImages;
    t.equal(body.worker, worker.id);
    t.equal(body.timings.batchImages, 4, 'batched on the worker');
    const single = (await postImages(local.url, { ...REQUESTS[i], steps: STEPS })).json as JsonImages;
    t.same(body.images.map((im) => im.png), single.images.map((im) => im.png), `request ${i}: identical PNGs over the queue`);
  }
  const bad = await postImages(front.url, { embeddings: { ...pixartEmbeddings(1, 5), prompt_embeds: tensor(randn([1, 6, 16], 1).data, [1, 6, 16]) } });
  t.equal(bad.status, 400, 'shapes checked by the front end before queueing');
  t.match(bad.json.message, /invalid field 'embeddings.prompt_embeds'/);
  t.same(await stopGracefully(worker), [0], 'the worker exits 0 on SIGTERM');
  t.same(await stopGracefully(front, local), [0, 0], 'front and local exit 0 on SIGTERM');
});
