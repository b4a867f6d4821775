// The layers against plain double references: Linear (and its repacking), the norms, MLP,
// SelfAttention, and a transformer block end to end; argument errors.
//
// Tolerances: Linear |y - ref| <= 1e-5 · Σ|x·w| + 1e-6 (the fp32 GEMM bound, see
// native/tests/test_gemm_f32.cpp). Composite blocks: |y - ref| <= 2e-4 · (1 + |ref|) — several
// fp32 layers in a row, each adding errors of ~1e-6 relative; a wrong op (missing residual,
// wrong head split, wrong scale) is off by O(1).
import t from 'tap';
import { Tensor } from '../lib/tensor.js';
import { ArgumentError } from '../lib/errors.js';
import {
  add, GELU, LayerNorm, Linear, MLP, Module, RMSNorm, SelfAttention, Sequential, SiLU,
} from '../lib/graph/index.js';
import {
  addRef, attentionRef, geluRef, layerNormRef, linearRef, mapRef, mat, randomTensor, rmsNormRef, rng, siluRef, worstRatio,
  type Mat,
} from './support/graph-reference.js';

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

function linRef(l: Linear, x: Mat): Mat {
  return linearRef(x, mat(l.weight), l.bias ? l.bias.data : null).y;
}

t.test('Linear matches a TS matmul on odd shapes, with and without bias, [K] .. [B, T, K]', async (t) => {
  const r = rng(11);
  for (const [shape, n, bias] of [[[1, 1], 1, true], [[3, 17], 5, true], [[2, 7, 129], 33, false], [[64], 70, true], [[40, 300], 31, true]] as const) {
    const k = shape[shape.length - 1];
    const l = new Linear(k, n, { bias, seed: 5 });
    t.equal(l.bias === null, !bias);
    const x = randomTensor([...shape], 1, r);
    const y = await l.call(x);
    t.same(y.shape, [...shape.slice(0, -1), n]);
    const { y: ref, mag } = linearRef(mat(x), mat(l.weight), l.bias ? l.bias.data : null);
    const worst = worstRatio(y.data, ref.d, 1e-6, 1e-5, mag);
    t.ok(worst <= 1, `[${shape}] -> ${n} bias=${bias}: worst ${worst.toFixed(3)}`);
  }
});

t.test('Linear repacks after the weight is replaced or changed in place; bias is settable', async (t) => {
  const r = rng(12);
  const l = new Linear(19, 9, { seed: 1 });
  const x = randomTensor([4, 19], 1, r);
  const y1 = await l.call(x);
  const v0 = l.weightVersion;
  l.weight = randomTensor([9, 19], 1, r);
  t.equal(l.weightVersion, v0 + 1);
  const y2 = await l.call(x);
  t.notSame(Array.from(y2.data), Array.from(y1.data));
  t.ok(worstRatio(y2.data, linRef(l, mat(x)).d, 1e-5, 1e-5) <= 1, 'uses the new weight');
  l.weight.data.fill(0);
  l.weightChanged();
  const y3 = await l.call(x);
  t.same(Array.from(y3.data), Array.from({ length: 36 }, (_, i) => l.bias!.data[i % 9]), 'in-place change + weightChanged()');
  l.bias = null;
  t.same(Array.from(await l.call(x).then((y) => y.data)), new Array(36).fill(0), 'bias removed');
  l.bias = Tensor.fromArray(Array.from({ length: 9 }, (_, i) => i));
  t.same(Array.from((await l.call(x)).data.slice(0, 9)), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  // Same seed, same weights.
  t.same(Array.from(new Linear(19, 9, { seed: 4 }).weight.data), Array.from(new Linear(19, 9, { seed: 4 }).weight.data));
});

t.test('norm and activation layers match the references', async (t) => {
  const r = rng(13);
  const x = randomTensor([3, 4, 24], 2, r);
  const ln = new LayerNorm(24, { eps: 1e-5 });
  ln.weight = randomTensor([24], 1, r);
  ln.bias = randomTensor([24], 1, r);
  t.ok(worstRatio((await ln.call(x)).data, layerNormRef(mat(x), ln.weight.data, ln.bias.data, 1e-5).d, 1e-5, 1e-5) <= 1, 'LayerNorm');
  const ln2 = new LayerNorm(24, { affine: false, eps: 1e-6 });
  t.equal(ln2.weight, null);
  t.ok(worstRatio((await ln2.call(x)).data, layerNormRef(mat(x), null, null, 1e-6).d, 1e-5, 1e-5) <= 1, 'LayerNorm without affine');
  const rms = new RMSNorm(24, { eps: 1e-6 });
  rms.weight = randomTensor([24], 1, r);
  t.ok(worstRatio((await rms.call(x)).data, rmsNormRef(mat(x), rms.weight.data, 1e-6).d, 1e-5, 1e-5) <= 1, 'RMSNorm');
  for (const approximate of ['none', 'tanh'] as const) {
    const g = await new GELU({ approximate }).call(x);
    t.ok(worstRatio(g.data, mapRef(mat(x), (v) => geluRef(v, approximate)).d, 1e-6, 1e-6) <= 1, `GELU ${approximate}`);
  }
  t.ok(worstRatio((await new SiLU().call(x)).data, mapRef(mat(x), siluRef).d, 1e-6, 1e-6) <= 1, 'SiLU');
});

/** norm → attention → residual → norm → MLP → residual, as a user-defined Module. */
class Block extends Module {
  constructor(dim: number, heads: number, hidden: number, seed: number) {
    super();
    this.registerModule('norm1', new LayerNorm(dim));
    this.registerModule('attn', new SelfAttention(dim, heads, { seed }));
    this.registerModule('norm2', new LayerNorm(dim));
    this.registerModule('mlp', new MLP(dim, hidden, { activation: 'gelu_tanh', seed: seed + 10 }));
  }
  override async forward(x: Tensor): Promise<Tensor> {
    const a = await this.getSubmodule('attn').call(await this.getSubmodule('norm1').call(x));
    const h = await add(x, a);
    const m = await this.getSubmodule('mlp').call(await this.getSubmodule('norm2').call(h));
    return add(h, m);
  }
}

function blockRef(block: Block, x: Mat, batch: number): Mat {
  const ln = (name: string, v: Mat) => {
    const l = block.getSubmodule(name) as LayerNorm;
    return layerNormRef(v, l.weight!.data, l.bias!.data, l.eps);
  };
  const lin = (name: string, v: Mat) => linRef(block.getSubmodule(name) as Linear, v);
  const attn = block.getSubmodule('attn') as SelfAttention;
  const n1 = ln('norm1', x);
  const o = attentionRef(lin('attn.to_q', n1), lin('attn.to_k', n1), lin('attn.to_v', n1), batch, attn.heads);
  const h = addRef(x, lin('attn.to_out', o));
  const m = lin('mlp.fc2', mapRef(lin('mlp.fc1', ln('norm2', h)), (v) => geluRef(v, 'tanh')));
  return addRef(h, m);
}

t.test('a transformer block matches the TS reference end to end ([T, D] and [B, T, D])', async (t) => {
  const r = rng(14);
  const block = new Block(32, 4, 64, 100);
  (block.getSubmodule('norm1') as LayerNorm).weight = randomTensor([32], 1, r);
  (block.getSubmodule('norm2') as LayerNorm).bias = randomTensor([32], 0.5, r);
  for (const shape of [[9, 32], [2, 13, 32]]) {
    const x = randomTensor(shape, 1, r);
    const y = await block.call(x);
    t.same(y.shape, shape);
    const ref = blockRef(block, mat(x), shape.length === 3 ? shape[0] : 1);
    const worst = worstRatio(y.data, ref.d, 2e-4, 2e-4);
    t.ok(worst <= 1, `[${shape}]: worst ${worst.toFixed(3)} of tolerance`);
  }
});

t.test('SelfAttention accepts [T, D] and [B, T, D] consistently', async (t) => {
  const r = rng(15);
  const attn = new SelfAttention(16, 2, { seed: 9 });
  const x = randomTensor([2, 5, 16], 1, r);
  const yb = await attn.call(x);
  const y0 = await attn.call(Tensor.fromStorage(x.data.slice(0, 80), [5, 16], 'f32'));
  t.same(Array.from(y0.data), Array.from(yb.data.slice(0, 80)), 'batch 0 alone gives the same rows');
  t.same([...attn.namedChildren()].map(([n]) => n), ['to_q', 'to_k', 'to_v', 'to_out']);
});

t.test('layer argument errors are typed and name the argument', async (t) => {
  const sync: [string, () => unknown][] = [
    ['inFeatures', () => new Linear(0, 3)],
    ['outFeatures', () => new Linear(3, 1.5)],
    ['options.bias', () => new Linear(3, 3, { bias: 'yes' as unknown as boolean })],
    ['options', () => new Linear(3, 3, null as unknown as object)],
    ['weight', () => { new Linear(3, 2).weight = Tensor.zeros([3, 2], 'f32'); }],
    ['bias', () => { new Linear(3, 2).bias = Tensor.zeros([3], 'f32'); }],
    ['dim', () => new LayerNorm(-1)],
    ['options.eps', () => new RMSNorm(4, { eps: -1 })],
    ['options.affine', () => new LayerNorm(4, { affine: 1 as unknown as boolean })],
    ['options.approximate', () => new GELU({ approximate: 'erf' as 'none' })],
    ['options.activation', () => new MLP(4, 8, { activation: 'relu' as 'gelu' })],
    ['heads', () => new SelfAttention(10, 3)],
    ['modules[1]', () => new Sequential(new SiLU(), 5 as unknown as Module)],
  ];
  for (const [argument, fn] of sync) {
    const e = errorOf(fn);
    t.ok(e instanceof ArgumentError && e.argument === argument, `names '${argument}': ${(e as Error)?.message}`);
  }
  const l = new Linear(4, 2);
  const x = Tensor.zeros([3, 4], 'f32');
  const asyncCases: [string, () => Promise<unknown>][] = [
    ['x', () => l.call(Tensor.zeros([3, 5], 'f32'))],
    ['x', () => l.call(Tensor.zeros([3, 4], 'i8'))],
    ['inputs', () => l.call(x, x)],
    ['inputs', () => l.call()],
    ['x', () => new SelfAttention(4, 2).call(Tensor.zeros([1, 2, 3, 4], 'f32'))],
    ['x', () => new LayerNorm(3).call(x)],
  ];
  for (const [argument, fn] of asyncCases) {
    const e = await fn().then(() => undefined, (err: unknown) => err);
    t.ok(e instanceof ArgumentError && e.argument === argument, `names '${argument}': ${(e as Error)?.message}`);
  }
});
