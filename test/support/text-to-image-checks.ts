// The checks every text-to-image transformer test runs on its diffusers fixture (test/data/diffusers/
// <name>, made by the real diffusers v0.30.3): through the public loader, the output and the input of
// every Linear within |a − b| <= 1e-4 + 1e-4·|b|; then quantized with its architecture's preset,
// run natively, saved whole and reloaded from the checkpoint alone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import {
  loadModel, quantizeModel, enableNativeInference, saveCheckpoint, ErrorCorrectedLinear, NativeLinear, Linear, PRESETS, Tensor, type Module,
} from '../../lib/index.js';
import { FIXTURES, captureLinearInputs, closeTo, fixtureInputs, fixtureTensors } from './diffusers-fixture.js';

type ModelClass = abstract new (...args: never[]) => Module;

/** Output and every Linear input of the model loaded from the fixture folder, against diffusers. */
export async function checkAgainstFixture(t: Test, name: string, cls: ModelClass, className: string): Promise<void> {
  const dir = join(FIXTURES, name);
  const model = await loadModel(dir);
  t.ok(model instanceof cls, `loadModel builds a ${className}`);
  t.equal((model as unknown as { config: { _class_name: string } }).config._class_name, className);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const capture = captureLinearInputs(model);
  const { sample } = await model.call(fixtureInputs(io) as never) as { sample: Tensor };
  capture.remove();
  const expected = io.get('output/sample')!;
  t.same(sample.shape, expected.shape, 'output shape');
  const c = closeTo(sample, expected);
  t.ok(c.ok, `output/sample: max |diff| ${c.maxAbs.toExponential(2)} (worst ratio to tolerance ${c.worstRatio.toFixed(3)})`);
  const names = [...io.keys()].filter((n) => n.startsWith('linear_in/')).map((n) => n.slice('linear_in/'.length));
  t.ok(names.length > 0, 'the fixture has Linear inputs');
  t.same([...capture.inputs.keys()].sort(), names.sort(), 'every Linear is called as in diffusers (same names, same call counts)');
  for (const n of names) {
    const got = capture.inputs.get(n);
    const r = got === undefined ? undefined : closeTo(got, io.get(`linear_in/${n}`)!);
    t.ok(r?.ok, `linear_in/${n}: max |diff| ${r?.maxAbs.toExponential(2)}`);
  }
}

function relativeError(a: Tensor, b: Tensor): number {
  const x = a.toArray(), y = b.toArray();
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i] - y[i]) ** 2;
    den += y[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/**
 * Quantizes the fixture model with its preset (calibrated on the fixture's inputs, rank 4 so that
 * the 4-bit residual matters at width 32), checks that exactly the preset's layers were kept, runs
 * it natively, saves it whole, reloads it from the file alone and runs that natively too: the same
 * output bit for bit.
 */
export async function checkQuantizedRoundTrip(t: Test, name: string, preset: string, cls: ModelClass): Promise<void> {
  const dir = join(FIXTURES, name);
  const io = await fixtureTensors(join(dir, 'io.safetensors'));
  const inputs = fixtureInputs(io);
  const model = await loadModel(dir);
  const linears = [...model.namedModules()].filter(([, m]) => m instanceof Linear).map(([n]) => n);
  const report = await quantizeModel(model, { preset: 'auto', rank: 4, scheme: 'w4a4' }, [inputs]);
  t.equal(report.preset, preset, `the '${preset}' preset is chosen from the config's class`);
  const kept = report.skipped.filter((s) => s.reason.startsWith(`preset '${preset}'`)).map((s) => s.name);
  const rules = PRESETS[preset].exclude;
  t.ok(kept.length > 0, `the preset keeps ${kept.length} layers in high precision`);
  t.equal(report.skipped.length, kept.length, 'no layer is skipped for another reason');
  t.equal(report.layers.length + kept.length, linears.length, 'every other Linear is quantized');
  for (const rule of rules.filter((r) => !r.pattern.startsWith('pos_embed'))) {
    t.ok(report.skipped.some((s) => s.reason.includes(`(${rule.pattern})`)), `rule ${rule.pattern} keeps at least one layer`);
  }

  const native = await enableNativeInference(model, { backend: 'cpu' });
  t.equal(native.converted.length, report.layers.length, 'every quantized layer runs natively');
  const { sample } = await model.call(inputs as never) as { sample: Tensor };
  const reference = io.get('output/sample')!;
  const err = relativeError(sample, reference);
  t.ok(err > 0 && err < 0.25, `the quantized output is near the fp32 one (relative L2 error ${err.toFixed(4)})`);

  const tmp = mkdtempSync(join(tmpdir(), `svdq-${name}-`));
  try {
    const file = join(tmp, `${name}-w4a4.safetensors`);
    const saved = await saveCheckpoint(model, file);
    t.equal(saved.layers.length, report.layers.length, 'the checkpoint holds every quantized layer');
    const reloaded = await loadModel(file);
    t.ok(reloaded instanceof cls, 'the checkpoint alone rebuilds the model class');
    const quantizedNames = [...reloaded.namedModules()].filter(([, m]) => m instanceof ErrorCorrectedLinear).map(([n]) => n);
    t.same(quantizedNames, report.layers.map((l) => l.name), 'the same layers are quantized after reloading');
    await enableNativeInference(reloaded, { backend: 'cpu' });
    t.ok([...reloaded.namedModules()].some(([, m]) => m instanceof NativeLinear), 'the reloaded model runs natively');
    const again = await reloaded.call(inputs as never) as { sample: Tensor };
    t.same(again.sample.toArray(), sample.toArray(), 'the reloaded model gives the same output, bit for bit');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
