// Outputs of the native forwards: a caller's buffer (`out`) gets exactly what a fresh output gets;
// engine-allocated outputs are recycled from the pool whether they are disposed or collected; bad
// `out` tensors are typed errors; an invalid SVDQUANT_SPIN_US stops the addon from loading.
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Tensor, quantize, NativeLowbitLayer, LOW_RANK_MODES } from '../lib/index.js';
import { Linear } from '../lib/graph/index.js';
import { native } from '../lib/native.js';
import { randomTensor, rng } from './support/graph-reference.js';
import { requireBuiltCli, svdquant } from './support/cli.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function layerOf(n: number, k: number, rank: number, seed: number): Promise<NativeLowbitLayer> {
  const r = rng(seed);
  return NativeLowbitLayer.create({
    scheme: 'w4a4',
    weight: await quantize(randomTensor([n, k], 0.1, r), 'int4'),
    smooth: Tensor.fromStorage(Float32Array.from({ length: k }, () => 0.5 + Math.abs(r())), [k], 'f32'),
    lDown: randomTensor([rank, k], 0.05, r),
    lUp: randomTensor([n, rank], 0.05, r),
    bias: randomTensor([n], 1, r),
  });
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.every((v, i) => v === ub[i]);
}

t.test('NativeLowbitLayer.forward writes into options.out exactly what it returns otherwise', async (t) => {
  const layer = await layerOf(40, 130, 8, 1);
  for (const shape of [[1, 130], [5, 130], [2, 3, 130], [130]]) {
    const x = randomTensor(shape, 2, rng(shape.length));
    for (const lowRank of LOW_RANK_MODES) {
      const fresh = await layer.forward(x, { lowRank, threads: 2 });
      const out = Tensor.fromStorage(new Float32Array(fresh.numel).fill(NaN), fresh.shape, 'f32');
      const y = await layer.forward(x, { lowRank, threads: 2, out });
      t.equal(y, out, 'resolves to the caller\'s tensor');
      t.ok(sameBits(out.data, fresh.data), `[${shape.join(', ')}] ${lowRank}: bit-identical to a fresh output`);
      // Reusing the same buffer again overwrites it completely.
      out.data.fill(7);
      await layer.forward(x, { lowRank, out });
      t.ok(sameBits(out.data, fresh.data), 'a reused buffer is overwritten completely');
    }
  }
  layer.dispose();
});

t.test('Linear.forwardInto writes into out exactly what forward returns', async (t) => {
  const lin = new Linear(70, 33, { seed: 3 });
  const x = randomTensor([9, 70], 1, rng(4));
  const fresh = await lin.forward(x);
  const out = Tensor.zeros([9, 33], 'f32');
  t.equal(await lin.forwardInto(x, out), out);
  t.ok(sameBits(out.data, fresh.data), 'bit-identical');
  const again = await lin.forwardInto(x);
  t.ok(sameBits(again.data, fresh.data), 'without out: a new output');
  t.not(again, fresh);
});

t.test('a bad out is an ArgumentError naming it', async (t) => {
  const layer = await layerOf(16, 64, 4, 5);
  const x = randomTensor([3, 64], 1, rng(6));
  const bad: [unknown, RegExp][] = [
    [Tensor.zeros([3, 17], 'f32'), /shape \[3, 16\]/],
    [Tensor.zeros([48], 'f32'), /shape \[3, 16\]/],
    [Tensor.zeros([3, 16], 'bf16'), /an f32 tensor/],
    [new Float32Array(48), /an f32 tensor/],
  ];
  for (const [out, message] of bad) {
    await t.rejects(layer.forward(x, { out: out as Tensor<'f32'> }), { name: 'ArgumentError', argument: 'options.out', message });
  }
  const disposed = Tensor.zeros([3, 16], 'f32');
  disposed.dispose();
  await t.rejects(layer.forward(x, { out: disposed }), { name: 'ArgumentError', argument: 'options.out' });
  // Storage shared with the input (a square layer, out over x's own buffer).
  const square = await layerOf(64, 64, 4, 7);
  const xs = randomTensor([3, 64], 1, rng(8));
  await t.rejects(square.forward(xs, { out: xs }), { name: 'ArgumentError', argument: 'options.out', message: /shares no storage/ });
  const half = Tensor.fromStorage(new Float32Array(xs.data.buffer, 64 * 4, 2 * 64), [2, 64], 'f32');
  await t.rejects(square.forward(Tensor.fromStorage(new Float32Array(xs.data.buffer, 0, 2 * 64), [2, 64], 'f32'), { out: half }), { argument: 'options.out' } as never);
  const lin = new Linear(8, 8, { seed: 1 });
  const xl = randomTensor([2, 8], 1, rng(9));
  await t.rejects(lin.forwardInto(xl, xl), { name: 'ArgumentError', argument: 'out' });
  await t.rejects(lin.forwardInto(xl, Tensor.zeros([2, 9], 'f32')), { name: 'ArgumentError', argument: 'out' });
  layer.dispose();
  square.dispose();
});

/** Collects garbage until no more pool blocks come back (finalizers run on later event-loop turns). */
async function collect(): Promise<void> {
  let live = native().hostPoolStats().liveBytes;
  for (let i = 0; i < 20; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    const now = native().hostPoolStats().liveBytes;
    if (now === live && i >= 2) return;
    live = now;
  }
}

t.test('engine outputs are recycled: at once after dispose, after collection when dropped', async (t) => {
  await collect(); // earlier tests' dropped outputs, so that only this test's come back below
  const layer = await layerOf(512, 256, 8, 10);
  const x = randomTensor([300, 256], 1, rng(11)); // 600 KiB outputs: above the pool's small-block size
  const y0 = await layer.forward(x);
  y0.dispose();
  const s0 = native().hostPoolStats();
  // Dropped (not disposed, no reference kept): its block returns when V8 collects the array.
  await (async () => {
    await layer.forward(x);
  })();
  const s1 = native().hostPoolStats();
  t.equal(s1.allocs - s0.allocs, 1, 'one output allocated');
  t.equal(s1.reused - s0.reused, 1, 'the disposed output\'s block served it');
  t.equal(s1.freshBytes, s0.freshBytes, 'no fresh pages');
  await collect();
  const s = native().hostPoolStats();
  t.ok(s.liveBytes <= s1.liveBytes - 300 * 512 * 4, 'the collected output went back to the pool');
  const y2 = await layer.forward(x);
  const s2 = native().hostPoolStats();
  t.equal(s2.reused - s.reused, 1, 'and served the next forward');
  t.equal(s2.freshBytes, s.freshBytes, 'no fresh pages');
  y2.dispose();
  layer.dispose();
});

t.test('SVDQUANT_SPIN_US: an invalid value stops the addon from loading', async (t) => {
  requireBuiltCli();
  for (const bad of ['soon', '-5', '200000', '1.5']) {
    const r = await svdquant(['doctor'], { env: { ...process.env, SVDQUANT_SPIN_US: bad } });
    t.equal(r.code, 1, `SVDQUANT_SPIN_US=${bad}`);
    t.match(r.stderr, new RegExp(`invalid SVDQUANT_SPIN_US="${bad.replace('.', '\\.')}": expected microseconds, an integer in \\[0, 100000\\]`));
  }
  const off = await svdquant(['doctor'], { env: { ...process.env, SVDQUANT_SPIN_US: '0' } });
  t.equal(off.code, 0, '0 (no spinning) is valid');
});

t.test('SVDQUANT_V8_MEMORY_REDUCER: 0 or 1, anything else stops the addon from loading', async (t) => {
  requireBuiltCli();
  for (const bad of ['off', '2', 'true']) {
    const r = await svdquant(['doctor'], { env: { ...process.env, SVDQUANT_V8_MEMORY_REDUCER: bad } });
    t.equal(r.code, 1, `SVDQUANT_V8_MEMORY_REDUCER=${bad}`);
    t.match(r.stderr, new RegExp(`invalid SVDQUANT_V8_MEMORY_REDUCER="${bad}": expected 0 \\(off, the default\\) or 1`));
  }
  for (const good of ['0', '1']) {
    const r = await svdquant(['doctor'], { env: { ...process.env, SVDQUANT_V8_MEMORY_REDUCER: good } });
    t.equal(r.code, 0, `SVDQUANT_V8_MEMORY_REDUCER=${good} is valid`);
  }
});

t.test('an input disposed while a forward reads it stays allocated until the forward ends', async (t) => {
  await collect();
  const layer = await layerOf(256, 512, 8, 12);
  // A pool-backed input: the [200, 512] output of another layer.
  const first = await layerOf(512, 256, 8, 14);
  const input = await first.forward(randomTensor([200, 256], 1, rng(15)));
  const copy = Tensor.fromStorage(input.data.slice(), input.shape, 'f32');
  const expected = await layer.forward(copy);
  const before = native().hostPoolStats();
  const running = layer.forward(input); // in flight, reading `input`
  input.dispose();
  // Same-size allocations while it runs must not be handed the disposed input's block.
  const others = await Promise.all([first.forward(randomTensor([200, 256], 1, rng(16))), first.forward(randomTensor([200, 256], 1, rng(17)))]);
  const y = await running;
  t.ok(sameBits(y.data, expected.data), 'the forward read the input as it was');
  const inputBytes = 200 * 512 * 4, outBytes = 200 * 256 * 4;
  t.equal(native().hostPoolStats().liveBytes, before.liveBytes - inputBytes + 2 * inputBytes + outBytes, 'the disposed input\'s block was returned at the end');
  for (const o of others) o.dispose();
  layer.dispose();
  first.dispose();
});
