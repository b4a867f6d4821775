// Forward never blocks the event loop, and concurrent forwards on one model give the sequential
// results bit for bit (the kernels sum in a fixed order whatever thread runs them).
import t from 'tap';
import { Tensor } from '../lib/tensor.js';
import { add, LayerNorm, Linear, MLP, Module, SelfAttention } from '../lib/graph/index.js';
import { randomTensor, rng } from './support/graph-reference.js';

t.test('the event loop keeps ticking during a large Linear forward (max gap < 50 ms)', async (t) => {
  const k = 2048, n = 4096, m = 1024; // 17 GFLOP, plus packing 32 MiB of weights
  const l = new Linear(k, n, { seed: 1 });
  const x = randomTensor([m, k], 1, rng(1));
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 2);
  const t0 = performance.now();
  const y = await l.call(x);
  await l.call(x); // again, with the packed weights cached
  const elapsed = performance.now() - t0;
  clearInterval(timer);
  maxGap = Math.max(maxGap, performance.now() - last);
  t.same(y.shape, [m, n]);
  t.ok(elapsed > 100, `the forwards took long enough to matter (${elapsed.toFixed(0)} ms)`);
  t.ok(ticks > 10, `${ticks} ticks`);
  t.ok(maxGap < 50, `largest gap between ticks ${maxGap.toFixed(1)} ms`);
});

t.test('the event loop keeps ticking during transformer-block forwards at 1024 tokens (max gap < 50 ms)', async (t) => {
  // The non-linear ops and their large outputs: attention, GELU, LayerNorm, add; outputs are
  // allocated by the workers, never zero-filled or freed on this thread.
  const dim = 256, tokens = 1024;
  const norm = new LayerNorm(dim);
  const attn = new SelfAttention(dim, 4, { seed: 11 });
  const mlp = new MLP(dim, 4 * dim, { seed: 12, activation: 'gelu' });
  const x = randomTensor([tokens, dim], 1, rng(3));
  const forward = async () => {
    const h = await add(x, await attn.call(await norm.call(x)));
    return add(h, await mlp.call(await norm.call(h)));
  };
  await forward(); // packs the weights
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 1);
  const t0 = performance.now();
  let y: Tensor | undefined;
  for (let i = 0; i < 3; i++) y = await forward();
  const elapsed = performance.now() - t0;
  clearInterval(timer);
  maxGap = Math.max(maxGap, performance.now() - last);
  t.same(y!.shape, [tokens, dim]);
  t.ok(ticks > 10, `${ticks} ticks in ${elapsed.toFixed(0)} ms`);
  t.ok(maxGap < 50, `largest gap between ticks ${maxGap.toFixed(1)} ms`);
});

class Block extends Module {
  constructor() {
    super();
    this.registerModule('norm1', new LayerNorm(64));
    this.registerModule('attn', new SelfAttention(64, 4, { seed: 3 }));
    this.registerModule('norm2', new LayerNorm(64));
    this.registerModule('mlp', new MLP(64, 256, { seed: 7, activation: 'silu' }));
  }
  override async forward(x: Tensor): Promise<Tensor> {
    const h = await add(x, await this.getSubmodule('attn').call(await this.getSubmodule('norm1').call(x)));
    return add(h, await this.getSubmodule('mlp').call(await this.getSubmodule('norm2').call(h)));
  }
}

t.test('64 concurrent forward calls on one model equal the sequential results', async (t) => {
  const model = new Block();
  const r = rng(2);
  const inputs = Array.from({ length: 64 }, (_, i) => randomTensor(i % 2 === 0 ? [1 + (i % 7), 64] : [2, 3 + (i % 5), 64], 1, r));
  const sequential: Float32Array[] = [];
  for (const x of inputs) sequential.push((await model.call(x)).data as Float32Array);
  const concurrent = await Promise.all(inputs.map((x) => model.call(x)));
  let same = 0;
  concurrent.forEach((y, i) => {
    if (Buffer.compare(Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength),
      Buffer.from(sequential[i].buffer, sequential[i].byteOffset, sequential[i].byteLength)) === 0) same++;
  });
  t.equal(same, 64, 'bit-identical');

  // Concurrent calls while the weights are first packed share one packing.
  const fresh = new Linear(64, 32, { seed: 5 });
  const ys = await Promise.all(inputs.slice(0, 16).map((x) => fresh.call(x)));
  const again = await fresh.call(inputs[0]);
  t.same(Array.from(ys[0].data), Array.from(again.data));
});
