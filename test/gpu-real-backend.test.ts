// The real GPU backend (CUDA or HIP) against the CPU native layer. Run by `npm run test:gpu`
// (scripts/test-gpu.mjs), which sets SVDQUANT_TEST_REAL_GPU=1 and SVDQUANT_TEST_GPU_PLATFORM when a
// backend with a device is present; not part of `npm test` (package.json "tap.files" leaves out
// test/gpu-real-*.test.ts). Run alone without those variables, it skips and says why.
import t from 'tap';
import {
  Tensor, Linear, Sequential, ErrorCorrectedLinear, NativeLinear, NativeLowbitLayer, GpuLowbitLayer, DeviceTensor,
  quantizeModel, enableNativeInference, disableNativeInference, probeGpuBackend, FORMATS, SCHEMES, type Module,
} from '../lib/index.js';
import { buildModel, calibration, input, bitsEqual, rng, randomTensor } from './support/model-fixture.js';
import { termBound } from './support/error-bound.js';

const platform = process.env.SVDQUANT_TEST_GPU_PLATFORM === 'hip' ? 'hip' : 'cuda';

if (process.env.SVDQUANT_TEST_REAL_GPU !== '1') {
  t.plan(0, 'SVDQUANT_TEST_REAL_GPU is not set: run `npm run test:gpu` on a machine with a GPU');
} else {
  await run();
}

/** Outputs outside 2·(K+2G+r+8)·2⁻²⁴·S of the CPU native layer (NaN must match NaN). */
async function outside(src: ErrorCorrectedLinear, scheme: keyof typeof SCHEMES, x: Tensor<'f32'>, yg: Float32Array, yc: Float32Array): Promise<number> {
  const s = await termBound(src, x);
  const g = FORMATS[SCHEMES[scheme].weights].group || src.inFeatures;
  const c = (src.inFeatures + 2 * g + src.rank + 8) * 2 ** -24;
  let bad = 0;
  for (let i = 0; i < yg.length; i++) {
    if (Number.isNaN(yc[i])) {
      if (!Number.isNaN(yg[i])) bad++;
    } else if (!(Math.abs(yg[i] - yc[i]) <= 2 * c * s[i] + 1e-30)) bad++;
  }
  return bad;
}

async function run(): Promise<void> {
  const report = await probeGpuBackend(platform);
  t.ok(report.available, `${platform} is available (${report.reason || report.path})`);
  if (!report.available) return;
  t.comment(`${platform}: ${report.devices.map((d) => `${d.name} ${d.arch} (matrix path ${d.matrixPath})`).join(', ')}; built for ${report.builtArchs.join(', ')}`);

  for (const scheme of ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as const) {
    t.test(`${scheme}: the ${platform} layers match the CPU native layers within the lowbit.h tolerance`, async (t) => {
      // The fixture model plus a wider layer (K not a multiple of any group, odd N).
      const model: Module = buildModel();
      await quantizeModel(model, { scheme, rank: 16 }, calibration());
      const wide = new Sequential(new Linear(1000, 517, { seed: 5 }));
      const r = rng(7);
      await quantizeModel(wide, { scheme, rank: 16 }, [[randomTensor([32, 1000], 1, r)]]);
      for (const m of [model, wide]) {
        const refLayers = [...m.namedModules()].filter(([, l]) => l instanceof ErrorCorrectedLinear) as [string, ErrorCorrectedLinear][];
        const report = await enableNativeInference(m, { backend: platform });
        t.equal(report.backend, platform);
        t.same(report.skipped, [], 'every layer converted');
        for (const [name, src] of refLayers) {
          const nat = m.getSubmodule(name) as NativeLinear;
          t.ok(nat.layer instanceof GpuLowbitLayer);
          const cpu = await NativeLowbitLayer.create(src.data());
          for (const rows of [1, 7, 77]) {
            const x = randomTensor([rows, src.inFeatures], 2, rng(rows * 31 + src.inFeatures));
            const yc = (await cpu.forward(x)).data;
            for (const lowRank of ['fused', 'side', 'unfused'] as const) {
              nat.lowRank = lowRank;
              const yg = (await nat.call(x)).data as Float32Array;
              t.equal(await outside(src, scheme, x, yg, yc), 0, `${name} M=${rows} ${lowRank}: within tolerance`);
            }
          }
          cpu.dispose();
        }
        disableNativeInference(m);
      }
    });
  }

  t.test('DeviceTensor round trip and forward on device buffers', async (t) => {
    const model = buildModel();
    await quantizeModel(model, { scheme: 'w4a4', rank: 8 }, calibration());
    await enableNativeInference(model, { backend: platform });
    const layer = (model.getSubmodule('1.fc1') as NativeLinear).layer as GpuLowbitLayer;
    const x = input(3, 33);
    const d = await DeviceTensor.from(x, { backend: platform });
    t.ok(bitsEqual((await d.toHost()).data, x.data), 'bit-identical round trip');
    const yd = await layer.forward(d);
    const yh = await layer.forward(x);
    const back = (await yd.toHost()).data;
    let maxDiff = 0, scale = 0;
    for (let i = 0; i < back.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(back[i] - yh.data[i]));
      scale = Math.max(scale, Math.abs(yh.data[i]));
    }
    t.ok(maxDiff <= 1e-5 * scale, `device-buffer forward agrees with the host forward (max diff ${maxDiff})`);
    yd.dispose();
    d.dispose();
    t.equal(d.bytes, 0);
    disableNativeInference(model);
  });

  t.test('32 concurrent forwards equal sequential ones', async (t) => {
    const model = buildModel();
    await quantizeModel(model, { scheme: 'w4a4', rank: 8 }, calibration());
    await enableNativeInference(model, { backend: platform });
    const inputs = Array.from({ length: 32 }, (_, i) => input(500 + i, 1 + (i % 9)));
    const sequential: Float32Array[] = [];
    for (const x of inputs) sequential.push((await model.call(x)).data as Float32Array);
    const concurrent = await Promise.all(inputs.map((x) => model.call(x)));
    let close = 0;
    for (let i = 0; i < 32; i++) {
      const a = concurrent[i].data as Float32Array, b = sequential[i];
      let ok = a.length === b.length;
      for (let j = 0; ok && j < a.length; j++) if (!(Math.abs(a[j] - b[j]) <= 1e-5 * (Math.abs(b[j]) + 1))) ok = false;
      if (ok) close++;
    }
    t.equal(close, 32);
    disableNativeInference(model);
  });
}
