// Forward never blocks the event loop (counted loop turns), and concurrent forwards on one model give the sequential
// results bit for bit (the kernels sum in a fixed order whatever thread runs them).
import t from 'tap';
import { createHook } from 'node:async_hooks';
import type { Tensor as TensorType } from '../lib/tensor.js';

// Counted, not timed: how long the loop waits depends on the machine's load (bench/event-loop.ts
// reports those figures). What is deterministic is how the work is scheduled: every native op runs
// on an engine thread and delivers its result in a callback from the event loop (through the
// addon's thread-safe function, an async resource of type 'svdquant'), so the JavaScript thread is
// back in the loop, free to serve other work, once per op. Counting those callbacks counts the
// forward's yields to the loop. The resource is created once, when the addon loads, so the hook
// that learns its id is enabled before the library is imported.
const nativeResources = new Set<number>();
let counting = false;
let callbacks = 0;
createHook({
  init(asyncId, type) {
    if (type === 'svdquant') nativeResources.add(asyncId);
  },
  before(asyncId) {
    if (counting && nativeResources.has(asyncId)) callbacks++;
  },
}).enable();
const { Tensor } = await import('../lib/tensor.js');
const { add, LayerNorm, Linear, MLP, Module, SelfAttention } = await import('../lib/graph/index.js');
const { randomTensor, rng } = await import('./support/graph-reference.js');

function countNativeCallbacks(): { stop(): number } {
  callbacks = 0;
  counting = true;
  return {
    stop() {
      counting = false;
      return callbacks;
    },
  };
}

t.test('a large Linear forward runs off the JavaScript thread and returns through the event loop', async (t) => {
  const k = 2048, n = 4096, m = 1024; // 17 GFLOP, plus packing 32 MiB of weights
  const l = new Linear(k, n, { seed: 1 });
  const x = randomTensor([m, k], 1, rng(1));
  const counter = countNativeCallbacks();
  const y = await l.call(x);
  await l.call(x); // again, with the packed weights cached
  const callbacks = counter.stop();
  t.same(y.shape, [m, n]);
  t.ok(callbacks >= 2, `${callbacks} returns through the event loop in 2 forwards (at least one per forward)`);
});

t.test('transformer-block forwards at 1024 tokens yield to the event loop at least once per op', async (t) => {
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
  // Native ops of one forward: norm, to_q, to_k, to_v, attention, to_out, add, norm, fc1, GELU, fc2, add.
  const opsPerForward = 12;
  await forward(); // packs the weights
  const counter = countNativeCallbacks();
  let y: TensorType | undefined;
  for (let i = 0; i < 3; i++) y = await forward();
  const callbacks = counter.stop();
  t.same(y!.shape, [tokens, dim]);
  t.ok(callbacks >= 3 * opsPerForward, `${callbacks} returns through the event loop in 3 forwards, at least one per op (${3 * opsPerForward})`);
});

class Block extends Module {
  constructor() {
    super();
    this.registerModule('norm1', new LayerNorm(64));
    this.registerModule('attn', new SelfAttention(64, 4, { seed: 3 }));
    this.registerModule('norm2', new LayerNorm(64));
    this.registerModule('mlp', new MLP(64, 256, { seed: 7, activation: 'silu' }));
  }
  override async forward(x: TensorType): Promise<TensorType> {
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
