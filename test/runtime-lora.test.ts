// LoRA on SVDQuant layers: diffusers and kohya files, strength and alpha, the LoRA term reproduced to
// fp32 tolerance on top of the quantized layer, several LoRAs, removal in any order restoring
// bit-identical outputs, the native path (enable then apply, apply then enable), and failures that
// leave the model unchanged.
import t, { type Test } from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tensor, ErrorCorrectedLinear, NativeLinear, quantizeModel, enableNativeInference, disableNativeInference,
  loadLora, applyLora, writeSafetensors, ArgumentError, type Module, type Lora,
} from '../lib/index.js';
import { buildModel, calibration, input, bitsEqual, snapshot, rng, randomTensor } from './support/model-fixture.js';

const dir = await mkdtemp(join(tmpdir(), 'svdquant-lora-'));
let fileNo = 0;

async function quantized(): Promise<Module> {
  const model = buildModel();
  await quantizeModel(model, { scheme: 'w4a4', rank: 8 }, calibration());
  return model;
}

interface Pair { path: string; a: Tensor<'f32'>; b: Tensor<'f32'>; alpha?: number }

function pair(path: string, r: number, k: number, n: number, seed: number, alpha?: number): Pair {
  const g = rng(seed);
  return { path, a: randomTensor([r, k], 0.2, g), b: randomTensor([n, r], 0.2, g), ...(alpha !== undefined ? { alpha } : {}) };
}

async function writeLora(pairs: Pair[], naming: 'diffusers' | 'peft' | 'kohya', extra: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = []): Promise<string> {
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  for (const p of pairs) {
    const [d, u] = naming === 'kohya' ? ['lora_down.weight', 'lora_up.weight'] : naming === 'peft' ? ['lora_A.default.weight', 'lora_B.default.weight'] : ['lora_A.weight', 'lora_B.weight'];
    tensors.push({ name: `${p.path}.${d}`, dtype: 'F32', shape: [...p.a.shape], data: p.a.data });
    tensors.push({ name: `${p.path}.${u}`, dtype: 'F32', shape: [...p.b.shape], data: p.b.data });
    if (p.alpha !== undefined) tensors.push({ name: `${p.path}.alpha`, dtype: 'F32', shape: [], data: Float32Array.of(p.alpha) });
  }
  const file = join(dir, `lora-${fileNo++}.safetensors`);
  await writeSafetensors(file, [...tensors, ...extra]);
  return file;
}

/** X·(s·B·A)ᵀ in double. */
function loraTerm(x: Tensor<'f32'>, p: Pair, s: number): Float64Array {
  const [r, k] = p.a.shape, n = p.b.shape[0], m = x.numel / k;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const d = new Float64Array(r);
    for (let q = 0; q < r; q++) for (let j = 0; j < k; j++) d[q] += x.data[i * k + j] * p.a.data[q * k + j];
    for (let o = 0; o < n; o++) {
      let acc = 0;
      for (let q = 0; q < r; q++) acc += d[q] * p.b.data[o * r + q];
      out[i * n + o] = s * acc;
    }
  }
  return out;
}

const norm = (a: ArrayLike<number>, b?: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - (b ? b[i] : 0)) ** 2;
  return Math.sqrt(s);
};
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const sub = (a: ArrayLike<number>, b: ArrayLike<number>): Float64Array => Float64Array.from({ length: a.length }, (_, i) => a[i] - b[i]);

/** Compares the LoRA contribution (with - without) to the expected term, and to the merged fp32 layer. */
function checkContribution(t: Test, got: Float64Array, want: Float64Array, tol: number, what: string): void {
  const scale = Math.max(...want.map(Math.abs));
  t.ok(scale > 1e-3, `${what}: the LoRA term is not negligible (${scale})`);
  t.ok(maxAbsDiff(got, want) <= tol * scale, `${what}: contribution within ${tol} of the term (max diff ${maxAbsDiff(got, want)}, scale ${scale})`);
}

t.test('diffusers naming: output = quantized base + LoRA term; matches the merged fp32 layer up to the base error', async (t) => {
  const fp = buildModel();
  const model = await quantized();
  const x = input();
  const fc1 = model.getSubmodule('1.fc1') as ErrorCorrectedLinear;
  t.ok(fc1 instanceof ErrorCorrectedLinear);
  const rank0 = fc1.rank;
  const p = pair('1.fc1', 4, 96, 160, 5);
  const lora = await loadLora(await writeLora([p], 'diffusers'), { strength: 0.8 });
  t.equal(lora.naming, 'diffusers');
  t.equal(lora.modules.length, 1);
  const yFp: Tensor<'f32'> = await fp.getSubmodule('1.fc1').call(x);
  const yBase = await fc1.call(x);
  const handle = await applyLora(model, lora);
  t.same(handle.layers, ['1.fc1']);
  t.equal(handle.strength, 0.8);
  t.equal(fc1.rank, rank0 + 4, 'the branch grows by r');
  t.equal(model.getSubmodule('1.fc1'), fc1, 'the layer object stays in place');
  const yLora = await fc1.call(x);
  const term = loraTerm(x, p, 0.8);
  checkContribution(t, sub(yLora.data, yBase.data), term, 1e-4, 'reference');
  const merged = Float64Array.from(yFp.data, (v, i) => v + term[i]);
  const eBase = norm(yBase.data, yFp.data), eLora = norm(yLora.data, merged);
  t.ok(Math.abs(eLora - eBase) <= 1e-3 * eBase + 1e-4, `error vs merged fp32 ${eLora} ≈ base error ${eBase}`);
  await handle.remove();
  t.equal(handle.active, false);
  t.equal(fc1.rank, rank0);
  t.ok(bitsEqual((await fc1.call(x)).data, yBase.data), 'removal restores bit-identical outputs');
  await handle.remove(); // no-op
});

t.test('kohya naming with alpha, underscores and a prefix; PEFT adapter names; strengths', async (t) => {
  const model = await quantized();
  const x = input(7);
  const fc2 = model.getSubmodule('1.fc2') as ErrorCorrectedLinear;
  const head = model.getSubmodule('2') as ErrorCorrectedLinear;
  const p1 = pair('lora_unet_1_fc2', 6, 160, 96, 8, 3); // alpha 3, r 6: scale 0.5
  const p2 = pair('lora_unet_2', 2, 96, 40, 9);
  const file = await writeLora([p1, p2], 'kohya');
  const xh = Tensor.fromStorage(new Float32Array(5 * 160).map((_, i) => Math.sin(i * 0.37)), [5, 160], 'f32');
  const base2 = await fc2.call(xh), baseH = await head.call(x);
  for (const [opts, strength] of [[{}, 1], [{ prefix: 'lora_unet_' }, -0.5]] as const) {
    const lora = await loadLora(file, opts);
    t.equal(lora.naming, 'kohya');
    const h = await applyLora(model, lora, { strength });
    t.same([...h.layers].sort(), ['1.fc2', '2']);
    checkContribution(t, sub((await fc2.call(xh)).data, base2.data), loraTerm(xh, p1, strength * 0.5), 1e-4, `fc2 strength ${strength}`);
    checkContribution(t, sub((await head.call(x)).data, baseH.data), loraTerm(x, p2, strength), 1e-4, `head strength ${strength}`);
    await h.remove();
    t.ok(bitsEqual((await fc2.call(xh)).data, base2.data) && bitsEqual((await head.call(x)).data, baseH.data), 'restored');
  }
  const peft = pair('transformer.1.fc2', 3, 160, 96, 10);
  const lora = await loadLora(await writeLora([peft], 'peft'), { name: 'style' });
  t.equal(lora.name, 'style');
  const h = await applyLora(model, lora, { strength: 2 });
  t.same(h.layers, ['1.fc2'], 'known prefix transformer. stripped');
  checkContribution(t, sub((await fc2.call(xh)).data, base2.data), loraTerm(xh, peft, 2), 1e-4, 'peft');
  await h.remove();
});

t.test('two LoRAs at once, removed in either order', async (t) => {
  const model = await quantized();
  const x = input(3);
  const fc1 = model.getSubmodule('1.fc1') as ErrorCorrectedLinear;
  const base = await fc1.call(x);
  const pa = pair('1.fc1', 4, 96, 160, 21), pb = pair('1.fc1', 3, 96, 160, 22, 6);
  const la = await loadLora(await writeLora([pa], 'diffusers'));
  const lb = await loadLora(await writeLora([pb], 'kohya'));
  for (const order of ['ab', 'ba']) {
    const ha = await applyLora(model, la, { strength: 0.7 });
    const yA = await fc1.call(x);
    const hb = await applyLora(model, lb);
    const both = await fc1.call(x);
    const tA = loraTerm(x, pa, 0.7), tB = loraTerm(x, pb, 2);
    checkContribution(t, sub(both.data, base.data), Float64Array.from(tA, (v, i) => v + tB[i]), 1e-4, 'both');
    if (order === 'ab') {
      await ha.remove();
      checkContribution(t, sub((await fc1.call(x)).data, base.data), tB, 1e-4, 'b remains');
      await hb.remove();
    } else {
      await hb.remove();
      t.ok(bitsEqual((await fc1.call(x)).data, yA.data), 'removing the last one restores the state with the first');
      await ha.remove();
    }
    t.ok(bitsEqual((await fc1.call(x)).data, base.data), `order ${order}: bit-identical after removing both`);
    t.equal(fc1.rank, 8);
  }
});

t.test('native path: enable then apply, apply then enable; removal restores native outputs exactly', async (t) => {
  const model = await quantized();
  const x = input(4);
  const fc1 = model.getSubmodule('1.fc1') as ErrorCorrectedLinear;
  const p = pair('1.fc1', 4, 96, 160, 31);
  const lora = await loadLora(await writeLora([p], 'diffusers'));
  const term = loraTerm(x, p, 1.5);
  const refBase = await fc1.call(x);

  await enableNativeInference(model, { lowRank: 'fused' });
  const nat = model.getSubmodule('1.fc1') as NativeLinear;
  t.ok(nat instanceof NativeLinear);
  const oldLayer = nat.layer;
  const natBase = await nat.call(x);
  const h = await applyLora(model, lora, { strength: 1.5 });
  t.equal(model.getSubmodule('1.fc1'), nat, 'the NativeLinear stays in place');
  t.not(nat.layer, oldLayer, 'a new native layer');
  t.ok(oldLayer.disposed, 'the old native layer is freed');
  t.equal(nat.layer.rank, 12);
  const natLora = await nat.call(x);
  checkContribution(t, sub(natLora.data, natBase.data), term, 2e-3, 'native enable-then-apply');
  const refLora = await fc1.call(x);
  checkContribution(t, sub(natLora.data, refBase.data), sub(refLora.data, refBase.data), 2e-2, 'native close to reference');
  await h.remove();
  t.equal(nat.layer.rank, 8);
  t.ok(bitsEqual((await nat.call(x)).data, natBase.data), 'native outputs bit-identical after removal');
  disableNativeInference(model);

  const h2 = await applyLora(model, lora, { strength: 1.5 });
  await enableNativeInference(model);
  const nat2 = model.getSubmodule('1.fc1') as NativeLinear;
  t.equal(nat2.layer.rank, 12, 'enable after apply builds the grown branch');
  checkContribution(t, sub((await nat2.call(x)).data, natBase.data), term, 2e-3, 'native apply-then-enable');
  await h2.remove();
  t.ok(bitsEqual((await nat2.call(x)).data, natBase.data), 'bit-identical after removal (apply then enable)');
  disableNativeInference(model);
  t.ok(bitsEqual((await fc1.call(x)).data, refBase.data), 'reference path unchanged');
});

t.test('failures: typed errors, nothing changed', async (t) => {
  const model = await quantized();
  const x = input(5);
  const before = snapshot(model);
  const y0 = await model.call(x);
  const ranks = () => ['1.fc1', '1.fc2', '2'].map((n) => (model.getSubmodule(n) as ErrorCorrectedLinear).rank);
  const unchanged = async (what: string) => {
    t.same(snapshot(model), before, `${what}: tree unchanged`);
    t.same(ranks(), [8, 8, 8], `${what}: ranks unchanged`);
    t.ok(bitsEqual((await model.call(x)).data, y0.data), `${what}: outputs unchanged`);
  };
  // Unknown layer (and a good one): error listing it, nothing applied.
  const mixed = await loadLora(await writeLora([pair('1.fc1', 2, 96, 160, 1), pair('blocks.9.attn', 2, 96, 96, 2)], 'diffusers'));
  await t.rejects(applyLora(model, mixed), { name: 'ArgumentError', message: /blocks\.9\.attn/ });
  await unchanged('unknown layer');
  const h = await applyLora(model, mixed, { ignoreMissing: true });
  t.same(h.skipped, ['blocks.9.attn']);
  t.same(h.layers, ['1.fc1']);
  await h.remove();
  await unchanged('ignoreMissing then remove');
  // Shape mismatch on the second module: the first is not applied either.
  const bad = await loadLora(await writeLora([pair('1.fc1', 2, 96, 160, 1), pair('1.fc2', 2, 96, 96, 2)], 'kohya'));
  await t.rejects(applyLora(model, bad), { name: 'ArgumentError', message: /1\.fc2\.lora_down\.weight/ });
  await unchanged('shape mismatch');
  // A plain Linear is not an SVDQuant layer.
  const plain = buildModel();
  await t.rejects(applyLora(plain, await loadLora(await writeLora([pair('1.fc1', 2, 96, 160, 1)], 'diffusers'))), ArgumentError);
  // Bad options.
  await t.rejects(applyLora(model, mixed, { strength: Number.NaN }), ArgumentError);
  await t.rejects(applyLora(model, mixed, { bogus: 1 } as never), ArgumentError);
  await t.rejects(applyLora({} as never, mixed), ArgumentError);
  await t.rejects(applyLora(model, {} as Lora), ArgumentError);
  await unchanged('bad options');
  // File problems.
  const nan = pair('1.fc1', 2, 96, 160, 1);
  nan.b.data[7] = Number.NaN;
  await t.rejects(loadLora(await writeLora([nan], 'diffusers')), { name: 'FileFormatError', message: /'1\.fc1\.lora_B\.weight' holds a non-finite/ });
  const noUp = await writeLora([], 'diffusers', [{ name: '1.fc1.lora_A.weight', dtype: 'F32', shape: [2, 96], data: new Float32Array(192) }]);
  await t.rejects(loadLora(noUp), { name: 'FileFormatError', message: /no up/ });
  const odd = await writeLora([pair('1.fc1', 2, 96, 160, 1)], 'diffusers', [{ name: '1.fc1.dora_scale', dtype: 'F32', shape: [160], data: new Float32Array(160) }]);
  await t.rejects(loadLora(odd), { name: 'FileFormatError', message: /dora_scale/ });
  const rankMismatch = await writeLora([], 'kohya', [
    { name: 'x.lora_down.weight', dtype: 'F32', shape: [2, 96], data: new Float32Array(192) },
    { name: 'x.lora_up.weight', dtype: 'F32', shape: [160, 3], data: new Float32Array(480) },
  ]);
  await t.rejects(loadLora(rankMismatch), { name: 'FileFormatError', message: /x\.lora_up\.weight/ });
  await t.rejects(loadLora(join(dir, 'missing.safetensors')), { name: 'IoError' });
  await t.rejects(loadLora(''), ArgumentError);
  await t.rejects(loadLora(noUp, { strength: Infinity }), ArgumentError);
  await unchanged('file errors');
});
