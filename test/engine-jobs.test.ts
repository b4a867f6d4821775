// The engine's job threads (native/addon/engine_jobs.h): results come back to the thread that asked,
// in any number and order; a worker thread that is terminated with jobs in flight leaves the
// process healthy (its jobs are abandoned, never completed into a dead environment).
import t from 'tap';
import { Worker } from 'node:worker_threads';
import { Tensor } from '../lib/tensor.js';
import { gelu, Linear } from '../lib/graph/index.js';
import { randomTensor, rng } from './support/graph-reference.js';
import { requireBuiltCli } from './support/cli.js';

const WORKER = `
const { parentPort } = require('node:worker_threads');
(async () => {
  const { Linear } = await import(${JSON.stringify(new URL('../dist/graph/index.js', import.meta.url).href)});
  const { Tensor } = await import(${JSON.stringify(new URL('../dist/tensor.js', import.meta.url).href)});
  const lin = new Linear(1024, 1024, { seed: 1 });
  const x = Tensor.zeros([512, 1024], 'f32');
  await lin.forward(x);
  parentPort.postMessage('ready');
  for (;;) await Promise.all([lin.forward(x), lin.forward(x), lin.forward(x)]);
})();
`;

t.test('a worker thread terminated with jobs in flight: the process goes on', async (t) => {
  requireBuiltCli(); // the worker loads the built library (dist/), as a user's worker would
  for (let round = 0; round < 3; round++) {
    const worker = new Worker(WORKER, { eval: true });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    await new Promise((resolve) => setTimeout(resolve, 20 + 15 * round)); // jobs queued and running
    await worker.terminate();
  }
  // The main thread's jobs still run and complete.
  const x = randomTensor([64, 256], 1, rng(1));
  const y = await gelu(x);
  t.equal(y.numel, 64 * 256);
  const lin = new Linear(256, 128, { seed: 2 });
  const outs = await Promise.all(Array.from({ length: 16 }, () => lin.forward(x)));
  t.ok(outs.every((o) => o.data.every((v, i) => v === outs[0].data[i])), 'concurrent forwards agree');
});

t.test('results come back to their callers, whichever finishes first', async (t) => {
  const big = new Linear(512, 512, { seed: 3 });
  const slow = big.forward(Tensor.zeros([1024, 512], 'f32'));
  const fast = gelu(Tensor.fromArray([1, 2, 3]));
  const order: string[] = [];
  await Promise.all([slow.then(() => order.push('slow')), fast.then(() => order.push('fast'))]);
  t.same(order.sort(), ['fast', 'slow']);
  const g = Array.from((await fast).data);
  [0.8413447, 1.9544997, 2.9959502].forEach((v, i) => t.ok(Math.abs(g[i] - v) < 1e-5, `gelu(${i + 1})`));
});
