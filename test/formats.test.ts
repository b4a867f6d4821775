// Formats API: hand-written vectors from DESIGN.md §3 through the public TypeScript API, argument
// errors, NaN policy, and every ISA level forced through SVDQUANT_ISA in a child process.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  Tensor, quantize, quantizeSync, dequantize, dequantizeSync, cpuIsa, nvfp4GlobalScale,
  ArgumentError, NonFiniteError,
} from '../lib/index.js';

t.test('mxfp4 tie points and saturation (even rule, scale 2^0)', async (t) => {
  const x = Tensor.fromArray([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6.5, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5, -6], [1, 16]);
  const q = await quantize(x, 'mxfp4');
  t.equal(q.codes.dtype, 'fp4_e2m1');
  t.same(q.codes.shape, [1, 32], 'K padded to one group of 32');
  t.same(Array.from(q.scales.data), [127]);
  // codes 0,2,2,4,4,6,6,7 | 0,A,A,C,C,E,E,F, element 2i in the low nibble, padding 0
  t.same(Array.from(q.codes.data), [0x20, 0x42, 0x64, 0x76, 0xa0, 0xca, 0xec, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0]);
  const d = await dequantize(q);
  t.same(d.toArray(), [0, 1, 1, 2, 2, 4, 4, 6, 0, -1, -1, -2, -2, -4, -4, -6]);
  t.equal(q.scaleRule, 'even');
});

t.test('mxfp4 scale rules: floor clips 7.9, ceil does not', async (t) => {
  const x = Tensor.fromArray([7.9, 1, 0, 0], [1, 4]);
  const floor = quantizeSync(x, 'mxfp4', { scaleRule: 'floor' });
  t.equal(floor.scales.data[0], 127);
  t.equal(dequantizeSync(floor).toArray()[0], 6);
  const ceil = quantizeSync(x, 'mxfp4', { scaleRule: 'ceil' });
  t.equal(ceil.scales.data[0], 128);
  t.same(dequantizeSync(ceil).toArray(), [8, 1, 0, 0], '7.9/2 = 3.95 -> 4 (x2 = 8); 1/2 = 0.5 is a code value');
  const even = quantizeSync(x, 'mxfp4', { scaleRule: 'even' });
  t.equal(even.scales.data[0], 128, 'mantissa of 7.9 is >= 1.75: one step up');
});

t.test('int4: scale amax/7, RNE codes, two per byte, zero padding', async (t) => {
  const vals = [7, -7, 2.5, 3.5, -2.5, 0.5, 1.5, -0.4, 3];
  const x = Tensor.fromArray(vals, [1, 9]);
  const q = await quantize(x, 'int4');
  t.same(q.codes.shape, [1, 64]);
  t.same(Array.from(q.scales.data), [1]);
  t.same(Array.from(q.codes.data.slice(0, 6)), [0x97, 0x42, 0x0e, 0x02, 0x03, 0x00]);
  t.same((await dequantize(q)).toArray(), [7, -7, 2, 4, -2, 0, 2, 0, 3]);
});

t.test('int8 per row and nvfp4 with its tensor scale', async (t) => {
  const x = Tensor.fromArray([127, -63.5, 0.5, 1.5, 0, 0, 0, 0], [2, 4]);
  const q8 = await quantize(x, 'int8');
  t.same(Array.from(q8.codes.data), [127, -64, 0, 2, 0, 0, 0, 0]);
  t.same(Array.from(q8.scales.data), [1, 0]);
  const nv = Tensor.fromArray([6, -0.75, 2.5, -5, 3, 1, -0.25, 1.75], [2, 4]);
  const q4 = await quantize(nv, 'nvfp4');
  t.equal(q4.globalScale, 448, 'G = 448*6/6');
  t.same(Array.from(q4.scales.data), [0x7e, 0x76], 'E4M3(448) and E4M3(224)');
  t.same(Array.from(q4.codes.data.slice(0, 2)), [0xa7, 0xe4]);
  t.same(Array.from(q4.codes.data.slice(8, 10)), [0x47, 0x69]);
  t.same((await dequantize(q4)).toArray(), [6, -1, 2, -4, 3, 1, -0.25, 2]);
  t.equal(nvfp4GlobalScale(0), 1, 'all-zero tensor');
  t.equal(nvfp4GlobalScale(1e-45), 1, 'G would overflow');
  const fixed = await quantize(nv, 'nvfp4', { globalScale: 896 });
  t.equal(fixed.globalScale, 896);
});

t.test('non-finite weights are an error naming the tensor; activations get NaN groups', async (t) => {
  const x = Tensor.fromArray([1, 2, NaN, 4, 5, 6, 7, 8], [2, 4]);
  await t.rejects(quantize(x, 'int4', { name: 'blocks.0.attn.qkv.weight' }), {
    name: 'NonFiniteError', code: 'ERR_SVDQ_NONFINITE', tensor: 'blocks.0.attn.qkv.weight', index: 2,
  });
  t.throws(() => quantizeSync(Tensor.fromArray([Infinity], [1, 1]), 'mxfp4'), NonFiniteError);
  for (const format of ['int4', 'mxfp4', 'nvfp4', 'int8'] as const) {
    const q = await quantize(x, format, { role: 'activation' });
    const d = (await dequantize(q)).toArray();
    t.ok(d.slice(0, 4).every(Number.isNaN), `${format}: the NaN row's group dequantizes to NaN`);
    t.ok(d.slice(4).every(Number.isFinite), `${format}: finite row stays finite`);
  }
});

t.test('batch dimensions, f16/bf16 input and async/sync agreement', async (t) => {
  const n = 3 * 2 * 65;
  const vals = Array.from({ length: n }, (_, i) => Math.sin(i * 1.3) * (1 + (i % 7)));
  const x = Tensor.fromArray(vals, [3, 2, 65]);
  for (const format of ['int4', 'mxfp4', 'nvfp4', 'int8'] as const) {
    const a = await quantize(x, format);
    const s = quantizeSync(x, format);
    t.same(a.codes.shape.slice(0, 2), [3, 2]);
    t.same(Array.from(a.codes.bytes()), Array.from(s.codes.bytes()), `${format} async == sync codes`);
    t.same(Array.from(a.scales.bytes()), Array.from(s.scales.bytes()), `${format} async == sync scales`);
    const d = await dequantize(a);
    t.same(d.shape, [3, 2, 65]);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(d.data[i] - x.data[i]) / 7);
    t.ok(worst < 1, `${format} dequantized values stay near the input (${worst})`);
  }
  const h = x.to('f16');
  const qh = await quantize(h, 'int4');
  const qf = await quantize(h.to('f32'), 'int4');
  t.same(Array.from(qh.codes.bytes()), Array.from(qf.codes.bytes()), 'f16 input equals its f32 value');
});

t.test('argument errors are typed and name the argument', async (t) => {
  const x = Tensor.fromArray([1, 2], [1, 2]);
  t.throws(() => quantizeSync({} as never, 'int4'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'tensor' });
  t.throws(() => quantizeSync(x, 'int3' as never), { name: 'ArgumentError', argument: 'format' });
  t.throws(() => quantizeSync(x, 'mxfp4', { scaleRule: 'round' as never }), { name: 'ArgumentError', argument: 'options.scaleRule' });
  t.throws(() => quantizeSync(x, 'mxfp4', { role: 'bias' as never }), { name: 'ArgumentError', argument: 'options.role' });
  t.throws(() => quantizeSync(x, 'int4', { globalScale: 2 }), { name: 'ArgumentError', argument: 'options.globalScale' });
  t.throws(() => quantizeSync(x, 'nvfp4', { globalScale: -1 }), { name: 'ArgumentError', argument: 'options.globalScale' });
  t.throws(() => quantizeSync(x, 'nvfp4', { globalScale: 1e300 }), { name: 'ArgumentError', argument: 'options.globalScale' });
  t.throws(() => quantizeSync(Tensor.zeros([], 'f32'), 'int4'), { name: 'ArgumentError', argument: 'tensor' });
  t.throws(() => quantizeSync(Tensor.zeros([2, 0], 'f32'), 'int4'), /last dimension of at least 1/);
  t.throws(() => quantizeSync(Tensor.zeros([2, 4], 'int4'), 'int4'), ArgumentError);
  const q = quantizeSync(x, 'int4');
  t.throws(() => dequantizeSync({ ...q, scales: Tensor.zeros([1, 2], 'f32') }), { name: 'ArgumentError', argument: 'quantized.scales' });
  t.throws(() => dequantizeSync({ ...q, codes: Tensor.zeros([1, 64], 'fp4_e2m1') }), { name: 'ArgumentError', argument: 'quantized.codes' });
  t.throws(() => dequantizeSync({ ...q, format: 'nvfp4' }), ArgumentError);
  t.same(Array.from(quantizeSync(Tensor.zeros([0, 8], 'f32'), 'int4').codes.shape), [0, 64], 'zero rows is fine');
});

const here = fileURLToPath(new URL('.', import.meta.url));
const probe = `
  import { Tensor, quantizeSync, cpuIsa } from '../lib/index.js';
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5);
  const x = Tensor.fromArray(Array.from({ length: 37 * 131 }, (_, i) => rnd() * 10 ** ((i % 13) - 6)), [37, 131]);
  const h = (a) => { let v = 2166136261; for (const b of a) v = Math.imul(v ^ b, 16777619) >>> 0; return v; };
  const out = { isa: cpuIsa().active };
  for (const f of ['int4', 'mxfp4', 'nvfp4', 'int8']) { const q = quantizeSync(x, f); out[f] = [h(q.codes.bytes()), h(q.scales.bytes())]; }
  console.log(JSON.stringify(out));
`;

function runWithIsa(isa: string | undefined) {
  const env = { ...process.env };
  if (isa === undefined) delete env.SVDQUANT_ISA;
  else env.SVDQUANT_ISA = isa;
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { cwd: here, env, encoding: 'utf8' });
}

t.test('every ISA level gives identical bytes (SVDQUANT_ISA forces lower levels)', async (t) => {
  const detected = cpuIsa().detected;
  const order = ['portable', 'avx2', 'avx512'];
  const results: Record<string, unknown> = {};
  for (const isa of order.slice(0, order.indexOf(detected) + 1)) {
    const r = runWithIsa(isa);
    t.equal(r.status, 0, `child with SVDQUANT_ISA=${isa} ran: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as { isa: string };
    t.equal(out.isa, isa, `active level is ${isa}`);
    results[isa] = { ...out, isa: undefined };
  }
  for (const isa of Object.keys(results)) t.same(results[isa], results.portable, `${isa} matches portable`);
  t.ok(Object.keys(results).length >= 1);
});

t.test('an invalid SVDQUANT_ISA is a clear error, not a silent fallback', async (t) => {
  const r = runWithIsa('sse9');
  t.not(r.status, 0);
  t.match(r.stderr, /invalid SVDQUANT_ISA="sse9": expected portable, avx2 or avx512/);
});
