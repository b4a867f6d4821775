// saveCheckpoint / loadCheckpoint: naming and metadata, native on or off, bit-identical outputs in a
// fresh process, and failed loads (missing tensor, wrong shape/dtype, bad metadata, truncated file,
// mismatched model) that throw typed errors and leave the model exactly as it was.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ErrorCorrectedLinear, Linear, Sequential, quantizeModel, enableNativeInference, disableNativeInference,
  saveCheckpoint, loadCheckpoint, openSafetensors, writeSafetensors, type Module,
} from '../lib/index.js';
import { buildModel, calibration, input, bitsEqual, snapshot } from './support/model-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'svdq-ckpt-'));

async function quantized(scheme: 'w4a4' | 'mxfp4' | 'nvfp4' | 'w8a8' | 'w4a16'): Promise<Module> {
  const model = buildModel();
  await quantizeModel(model, { scheme, rank: 8, exclude: ['2'] }, calibration());
  return model;
}

for (const scheme of ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as const) {
  t.test(`${scheme}: save, then load in a fresh process: bit-identical outputs`, async (t) => {
    const model = await quantized(scheme);
    const x = input();
    const y = (await model.call(x)).data;
    const file = join(dir, `${scheme}.safetensors`);
    // Saved with native inference ON (read from the reference layers).
    await enableNativeInference(model);
    const rep = await saveCheckpoint(model, file);
    disableNativeInference(model);
    t.same(rep.layers, ['1.fc1', '1.fc2'], 'the quantized layers');
    t.same(rep.parameters, ['0.weight', '0.bias', '2.weight', '2.bias'], 'every other parameter, under its own name');
    const st = await openSafetensors(file);
    t.equal(st.metadata.format, 'svdquant.checkpoint');
    t.equal(st.metadata.format_version, '2');
    t.equal(st.metadata.contents, 'model', 'a whole model');
    const meta = JSON.parse(st.metadata['layer:1.fc1']);
    t.match(meta, { kind: 'svdquant', scheme, rank: 8, in_features: 96, out_features: 160, smooth: true, bias: true });
    t.equal(st.metadata['layer:2'], undefined, 'unquantized layers are plain parameters');
    t.ok(st.has('1.fc1.qweight') && st.has('1.fc1.wscales') && st.has('1.fc1.smooth') && st.has('1.fc1.lora_down') && st.has('1.fc1.lora_up') && st.has('1.fc1.bias'));
    t.equal(st.info('1.fc1.qweight').dtype, scheme === 'w8a8' ? 'I8' : 'U8');
    t.same(st.info('1.fc1.lora_down').shape, [8, 96]);
    t.ok(st.has('0.weight') && st.has('0.bias') && st.has('2.weight'));
    await st.close();
    // In this process, onto a fresh model with other random weights.
    const fresh = buildModel(777);
    const lr = await loadCheckpoint(file, fresh);
    t.same(lr.replaced, ['1.fc1', '1.fc2']);
    t.ok(fresh.getSubmodule('1.fc1') instanceof ErrorCorrectedLinear);
    t.ok(bitsEqual((await fresh.call(x)).data, y), 'same process: bit-identical');
    // In a fresh process.
    const out = join(dir, `${scheme}.out`);
    execFileSync(process.execPath, ['--import', 'tsx', join('test', 'support', 'checkpoint-child.ts'), file, out], { stdio: 'pipe' });
    const got = new Float32Array(new Uint8Array(readFileSync(out)).buffer);
    t.ok(bitsEqual(got, y), 'fresh process: bit-identical');
    // Saving the loaded model gives the same tensors.
    const file2 = join(dir, `${scheme}-2.safetensors`);
    await saveCheckpoint(fresh, file2);
    t.ok(bitsEqual(readFileSync(file2), readFileSync(file)), 'save(load(file)) writes the same bytes');
  });
}

t.test('failed loads throw typed errors and leave the model exactly as it was', async (t) => {
  const model = await quantized('w4a4');
  const good = join(dir, 'good.safetensors');
  await saveCheckpoint(model, good);
  const st = await openSafetensors(good);
  const entries = await st.readAll();
  const metadata = { ...st.metadata };
  await st.close();
  const variant = async (name: string, edit: (e: typeof entries, m: Record<string, string>) => void): Promise<string> => {
    const e = entries.map((x) => ({ ...x, shape: [...x.shape] }));
    const m = { ...metadata };
    edit(e, m);
    const f = join(dir, `${name}.safetensors`);
    await writeSafetensors(f, e, m);
    return f;
  };
  const cases: [string, string, { name: string; message?: RegExp }][] = [
    ['missing', await variant('missing', (e) => e.splice(e.findIndex((x) => x.name === '1.fc2.lora_up'), 1)), { name: 'FileFormatError', message: /'1\.fc2\.lora_up' is missing/ }],
    ['dtype', await variant('dtype', (e) => { const i = e.findIndex((x) => x.name === '1.fc2.bias'); e[i] = { ...e[i], dtype: 'I32' }; }), { name: 'FileFormatError', message: /1\.fc2\.bias.*expected F32/ }],
    ['shape', await variant('shape', (e) => { const i = e.findIndex((x) => x.name === '1.fc1.smooth'); e[i] = { ...e[i], shape: [48, 2] }; }), { name: 'FileFormatError', message: /1\.fc1\.smooth/ }],
    ['version', await variant('version', (_e, m) => { m.format_version = '99'; }), { name: 'FileFormatError', message: /format_version/ }],
    ['badjson', await variant('badjson', (_e, m) => { m['layer:1.fc2'] = '{not json'; }), { name: 'FileFormatError', message: /layer:1\.fc2/ }],
    ['scheme', await variant('scheme', (_e, m) => { m['layer:1.fc2'] = m['layer:1.fc2'].replace('"w4a4"', '"w3a3"'); }), { name: 'FileFormatError', message: /scheme/ }],
    ['extra', await variant('extra', (e) => { e.push({ name: 'stray', dtype: 'F32', shape: [1], data: new Uint8Array(4) }); }), { name: 'FileFormatError', message: /stray/ }],
    ['nan', await variant('nan', (e) => { const i = e.findIndex((x) => x.name === '1.fc2.lora_down'); const d = e[i].data.slice(); new Float32Array(d.buffer)[7] = NaN; e[i] = { ...e[i], data: d }; }), { name: 'FileFormatError', message: /non-finite/ }],
    ['zero-smooth', await variant('zsmooth', (e) => { const i = e.findIndex((x) => x.name === '1.fc2.smooth'); e[i] = { ...e[i], data: new Uint8Array(e[i].data.byteLength) }; }), { name: 'FileFormatError', message: /1\.fc2/ }],
  ];
  const truncated = join(dir, 'truncated.safetensors');
  writeFileSync(truncated, readFileSync(good));
  truncateSync(truncated, statSync(truncated).size - 100);
  cases.push(['truncated', truncated, { name: 'FileFormatError' }]);
  const target = buildModel(31);
  const before = snapshot(target);
  const y0 = (await target.call(input())).data;
  for (const [what, file, expected] of cases) {
    await t.rejects(loadCheckpoint(file, target), expected, what);
    t.same(snapshot(target), before, `${what}: same modules`);
  }
  t.ok(bitsEqual((await target.call(input())).data, y0), 'outputs unchanged after all failed loads');
  // Model mismatches: typed ArgumentError naming the model.
  await t.rejects(loadCheckpoint(good, new Sequential(new Linear(96, 96))), { name: 'ArgumentError', argument: 'model' });
  const native = await quantized('w4a4');
  await enableNativeInference(native);
  await t.rejects(loadCheckpoint(good, native), { name: 'ArgumentError', argument: 'model', message: /disableNativeInference/ });
  disableNativeInference(native);
  await t.rejects(loadCheckpoint(join(dir, 'nope.safetensors'), target), { name: 'IoError' });
  await t.rejects(loadCheckpoint(42 as never, target), { name: 'ArgumentError', argument: 'file' });
  await t.rejects(loadCheckpoint(good, {} as never), { name: 'ArgumentError', argument: 'model' });
  await t.rejects(saveCheckpoint({} as never, good), { name: 'ArgumentError', argument: 'model' });
  await t.rejects(saveCheckpoint(model, ''), { name: 'ArgumentError', argument: 'file' });
  // A good load still works on the target afterwards.
  await loadCheckpoint(good, target);
  t.ok(bitsEqual((await target.call(input())).data, (await model.call(input())).data));
});
