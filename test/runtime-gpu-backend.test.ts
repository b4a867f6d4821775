// The GPU backends on a machine without a GPU: the fake backend library (native/tests/
// fake_gpu_backend.cpp, compiled here with g++) implements the gpu_abi.h C ABI on the host. Tests the
// loader's reports (missing file, not a shared library, missing symbol, ABI mismatch, wrong platform,
// no device, driver mismatch), enableNativeInference on 'cuda' / 'hip' / 'auto' against the CPU
// native layer within the lowbit.h tolerance, the typed errors (out of memory leaves the model
// unchanged), unsupported schemes reported as skipped, DeviceTensor, and concurrent forwards.
import t from 'tap';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tensor, ErrorCorrectedLinear, NativeLinear, NativeLowbitLayer, GpuLowbitLayer, DeviceTensor,
  enableNativeInference, disableNativeInference, gpuBackends, probeGpuBackend, gpuLibraryPath,
  BackendUnavailableError, GpuError, GpuOutOfMemoryError, GpuNoDeviceError, GpuRuntimeError,
  FORMATS, SCHEMES, loadLora, applyLora, writeSafetensors,
} from '../lib/index.js';
import { input, bitsEqual, snapshot } from './support/model-fixture.js';
import { quantizedModel as quantized, termBound } from './support/error-bound.js';
import { checkConcurrentForwards } from './support/concurrency.js';
import { buildFakeGpuBackend, buildLibraryWithoutSymbol, withEnv } from './support/fake-gpu.js';

const dir = mkdtempSync(join(tmpdir(), 'svdq-fake-gpu-'));
const hipDir = mkdtempSync(join(tmpdir(), 'svdq-fake-hip-'));
t.teardown(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(hipDir, { recursive: true, force: true });
});
// Compiled once for the whole file; a failing compile fails the file (no silent skip).
const FAKE = buildFakeGpuBackend(dir);
const FAKE_HIP = join(hipDir, 'libsvdquant_hip.so');
copyFileSync(FAKE, FAKE_HIP);
const NOSYM = buildLibraryWithoutSymbol(dir);
const NOT_ELF = join(dir, 'not-a-library.so');
writeFileSync(NOT_ELF, 'this is not an ELF shared object\n'.repeat(64));
const MISSING = join(dir, 'missing', 'libsvdquant_cuda.so');
const MISSING_HIP = join(dir, 'missing', 'libsvdquant_hip.so');

// Every test starts from: cuda = the fake, hip = missing, default fake settings.
const FAKE_VARS = [
  'SVDQ_FAKE_GPU_DEVICES', 'SVDQ_FAKE_GPU_OOM_BYTES', 'SVDQ_FAKE_GPU_ABI', 'SVDQ_FAKE_GPU_NULL_API', 'SVDQ_FAKE_GPU_PLATFORM',
  'SVDQ_FAKE_GPU_DRIVER_MISMATCH', 'SVDQ_FAKE_GPU_UNSUPPORTED', 'SVDQ_FAKE_GPU_FAIL_FORWARD',
];
t.beforeEach(() => {
  process.env.SVDQUANT_CUDA_LIB = FAKE;
  process.env.SVDQUANT_HIP_LIB = MISSING_HIP;
  for (const v of FAKE_VARS) delete process.env[v];
});


async function usedBytes(): Promise<number> {
  const r = await probeGpuBackend('cuda');
  return r.devices[0].totalMemory - r.devices[0].freeMemory;
}

t.test('probe reports: every failure is a reason, never an exception', async (t) => {
  const ok = await probeGpuBackend('cuda');
  t.equal(ok.available, true);
  t.equal(ok.reason, '');
  t.equal(ok.path, FAKE);
  t.equal(ok.source, 'env');
  t.same(ok.builtArchs, ['fake_sm_00', 'fake_sm_01']);
  t.equal(ok.devices.length, 1);
  t.match(ok.devices[0], { index: 0, name: 'svdquant fake GPU 0', arch: 'fake_sm_00', multiprocessors: 4, driverVersion: 12040, runtimeVersion: 12040, matrixPath: 'portable' });
  t.ok(ok.devices[0].totalMemory > 0 && ok.devices[0].freeMemory <= ok.devices[0].totalMemory);

  const cases: [string, Record<string, string | undefined>, RegExp][] = [
    ['missing file', { SVDQUANT_CUDA_LIB: MISSING }, /^libsvdquant_cuda\.so not found at .*missing\/libsvdquant_cuda\.so \(from SVDQUANT_CUDA_LIB\)$/],
    ['not a shared library', { SVDQUANT_CUDA_LIB: NOT_ELF }, /^dlopen failed: .*not-a-library\.so: .*(invalid ELF header|too short)/],
    ['a directory', { SVDQUANT_CUDA_LIB: dir }, /is not a regular file/],
    ['missing symbol', { SVDQUANT_CUDA_LIB: NOSYM }, /libnosym\.so does not export svdq_gpu_get_api/],
    ['ABI version mismatch', { SVDQ_FAKE_GPU_ABI: '99' }, /^ABI version mismatch: .* implements GPU ABI version 99, this addon expects version 1/],
    ['NULL API table', { SVDQ_FAKE_GPU_NULL_API: '1' }, /svdq_gpu_get_api returned NULL/],
    ['wrong platform', { SVDQ_FAKE_GPU_PLATFORM: 'hip' }, /is a 'hip' backend, expected 'cuda'/],
    ['no device', { SVDQ_FAKE_GPU_DEVICES: '0' }, /^no device: the cuda driver reports 0 devices/],
    ['driver mismatch', { SVDQ_FAKE_GPU_DRIVER_MISMATCH: '1' }, /^driver mismatch: fake: the driver is older than the runtime/],
  ];
  for (const [what, vars, reason] of cases) {
    const r = await withEnv(vars, () => probeGpuBackend('cuda'));
    t.equal(r.available, false, `${what}: not available`);
    t.match(r.reason, reason, `${what}: reason`);
    t.same(r.devices, [], `${what}: no devices`);
  }
  // Two devices.
  const two = await withEnv({ SVDQ_FAKE_GPU_DEVICES: '2' }, () => probeGpuBackend('cuda'));
  t.same(two.devices.map((d) => [d.index, d.name]), [[0, 'svdquant fake GPU 0'], [1, 'svdquant fake GPU 1']]);
  // hip: the library's own name makes the fake report 'hip'; the cuda fake under SVDQUANT_HIP_LIB is refused.
  const both = await withEnv({ SVDQUANT_HIP_LIB: FAKE_HIP }, () => gpuBackends());
  t.equal(both.cuda.available, true);
  t.equal(both.hip.available, true);
  t.equal(both.hip.platform, 'hip');
  const wrong = await withEnv({ SVDQUANT_HIP_LIB: FAKE }, () => probeGpuBackend('hip'));
  t.match(wrong.reason, /is a 'cuda' backend, expected 'hip'/);
  // Without the variables: the package's build-gpu/ directory.
  const dflt = await withEnv({ SVDQUANT_CUDA_LIB: undefined, SVDQUANT_HIP_LIB: undefined }, async () => [gpuLibraryPath('cuda'), gpuLibraryPath('hip'), await probeGpuBackend('hip')] as const);
  t.match(dflt[0], { source: 'default', path: /build-gpu\/libsvdquant_cuda\.so$/ });
  t.match(dflt[1], { source: 'default', path: /build-gpu\/libsvdquant_hip\.so$/ });
  t.equal(dflt[2].source, 'default');
  t.equal(dflt[2].path, dflt[1].path);
  await t.rejects(probeGpuBackend('tpu' as never), { name: 'ArgumentError', argument: 'platform' });
});

for (const scheme of ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as const) {
  t.test(`${scheme}: 'cuda' layers match the CPU native layers within the lowbit.h tolerance; round trip is bit-identical`, async (t) => {
    const model = await quantized(scheme);
    const x = input();
    const refLayers = [...model.namedModules()].filter(([, m]) => m instanceof ErrorCorrectedLinear) as [string, ErrorCorrectedLinear][];
    const yRef = (await model.call(x)).data;
    for (const lowRankBf16 of [false, true]) {
      const cpu = new Map<string, NativeLowbitLayer>();
      for (const [name, src] of refLayers) cpu.set(name, await NativeLowbitLayer.create({ ...src.data(), lowRankBf16 }));
      const report = await enableNativeInference(model, { backend: 'cuda', lowRankBf16, lowRank: lowRankBf16 ? 'side' : 'fused' });
      t.equal(report.backend, 'cuda');
      t.equal(report.device, 0);
      t.equal(report.requested, 'cuda');
      t.match(report.reason, /^'cuda' requested: device 0 svdquant fake GPU 0/);
      t.same(report.converted, ['1.fc1', '1.fc2', '2']);
      t.same(report.skipped, []);
      for (const [name, src] of refLayers) {
        const nat = model.getSubmodule(name) as NativeLinear;
        t.ok(nat instanceof NativeLinear && nat.layer instanceof GpuLowbitLayer, `${name} runs on the GPU layer`);
        t.equal(nat.backend, 'cuda');
        t.equal(nat.device, 0);
        t.equal(nat.source, src);
        t.ok(nat.layer.bytes > 0);
        const xl = Tensor.fromArray(Array.from({ length: 3 * src.inFeatures }, (_, i) => Math.sin(i * 0.37) * 3), [3, src.inFeatures]);
        const yg = (await nat.call(xl)).data;
        const yc = (await cpu.get(name)!.forward(xl)).data;
        const s = await termBound(src, xl);
        const g = FORMATS[SCHEMES[scheme].weights].group || src.inFeatures;
        const c = (src.inFeatures + 2 * g + src.rank + 8) * 2 ** -24;
        let bad = 0;
        for (let i = 0; i < yg.length; i++) if (!(Math.abs(yg[i] - yc[i]) <= 2 * c * s[i] + 1e-30)) bad++;
        t.equal(bad, 0, `${name} bf16=${lowRankBf16}: GPU within 2·(K+2G+r+8)·2^-24·Σ|terms| of the CPU native layer`);
      }
      for (const l of cpu.values()) l.dispose();
      const restored = disableNativeInference(model);
      t.same(restored.restored, ['1.fc1', '1.fc2', '2']);
      t.ok(bitsEqual((await model.call(x)).data, yRef), 'reference outputs bit-identical after the round trip');
    }
  });
}

t.test("'auto' chooses cuda, then hip, then cpu, and says why", async (t) => {
  const model = await quantized('w4a4');
  const cuda = await enableNativeInference(model);
  t.equal(cuda.backend, 'cuda');
  t.match(cuda.reason, /^'auto' chose 'cuda': device 0 svdquant fake GPU 0 \(fake_sm_00\)$/);
  disableNativeInference(model);

  const hip = await withEnv({ SVDQUANT_CUDA_LIB: MISSING, SVDQUANT_HIP_LIB: FAKE_HIP }, () => enableNativeInference(model, { backend: 'auto' }));
  t.equal(hip.backend, 'hip');
  t.match(hip.reason, /^'auto' chose 'hip': device 0 .*\(cuda: libsvdquant_cuda\.so not found at .*\)$/);
  t.equal((model.getSubmodule('2') as NativeLinear).backend, 'hip');
  disableNativeInference(model);

  const cpu = await withEnv({ SVDQ_FAKE_GPU_DEVICES: '0' }, () => enableNativeInference(model, { backend: 'auto' }));
  t.equal(cpu.backend, 'cpu');
  t.equal(cpu.device, undefined);
  t.match(cpu.reason, /^'auto' chose 'cpu': cuda: no device: the cuda driver reports 0 devices.*; hip: libsvdquant_hip\.so not found at /);
  t.ok((model.getSubmodule('2') as NativeLinear).layer instanceof NativeLowbitLayer);
  disableNativeInference(model);

  const dev1 = await enableNativeInference(model, { device: 1 });
  t.equal(dev1.backend, 'cpu');
  t.match(dev1.reason, /cuda: device 1 does not exist \(1 device: 0\)/);
  disableNativeInference(model);
  const onDev1 = await withEnv({ SVDQ_FAKE_GPU_DEVICES: '2' }, async () => {
    const r = await enableNativeInference(model, { backend: 'cuda', device: 1 });
    const y = (await model.call(input())).data;
    disableNativeInference(model);
    return { r, y };
  });
  t.equal(onDev1.r.device, 1);
  t.equal(onDev1.y.length, 5 * 40);
});

t.test("'cuda' / 'hip' unavailable: BackendUnavailableError with the reason, the model untouched", async (t) => {
  const model = await quantized('w4a4');
  const before = snapshot(model);
  const used = await usedBytes();
  const cases: [string, Record<string, string | undefined>, RegExp][] = [
    ['cuda', { SVDQUANT_CUDA_LIB: MISSING }, /^native backend 'cuda' is not available: libsvdquant_cuda\.so not found at /],
    ['cuda', { SVDQ_FAKE_GPU_ABI: '2' }, /ABI version mismatch/],
    ['cuda', { SVDQ_FAKE_GPU_DEVICES: '0' }, /no device/],
    ['hip', {}, /^native backend 'hip' is not available: libsvdquant_hip\.so not found at /],
  ];
  for (const [backend, vars, message] of cases) {
    const err = await withEnv(vars, () => enableNativeInference(model, { backend: backend as 'cuda' | 'hip' })).then(() => null, (e: unknown) => e);
    t.ok(err instanceof BackendUnavailableError, `${backend}: BackendUnavailableError`);
    const e = err as BackendUnavailableError;
    t.equal(e.backend, backend);
    t.equal(e.code, 'ERR_SVDQ_NATIVE');
    t.match(e.message, message);
    t.equal(e.message, `native backend '${backend}' is not available: ${e.reason}`);
  }
  const dev = await enableNativeInference(model, { backend: 'cuda', device: 3 }).then(() => null, (e: unknown) => e);
  t.ok(dev instanceof BackendUnavailableError);
  t.match((dev as Error).message, /device 3 does not exist/);
  t.same(snapshot(model), before, 'the model is untouched');
  t.equal(await usedBytes(), used, 'no device memory left allocated');
  await t.rejects(enableNativeInference(model, { backend: 'cuda', device: -1 }), { name: 'ArgumentError', argument: 'options.device' });
  await t.rejects(enableNativeInference(model, { backend: 'cuda', device: 0.5 }), { name: 'ArgumentError', argument: 'options.device' });
});

t.test('out of device memory: typed error, layers built so far freed, the model unchanged', async (t) => {
  const model = await quantized('w4a4');
  const before = snapshot(model);
  const x = input();
  const y0 = (await model.call(x)).data;
  const fc1 = model.getSubmodule('1.fc1') as ErrorCorrectedLinear;
  const probe = await GpuLowbitLayer.create(fc1.data(), { backend: 'cuda' });
  const fc1Bytes = probe.bytes;
  probe.dispose();
  const used = await usedBytes();
  t.equal(used, 0, 'the probe layer was freed');
  // Room for the first layer only: the second allocation fails.
  const err = await withEnv({ SVDQ_FAKE_GPU_OOM_BYTES: String(fc1Bytes + 64) }, () => enableNativeInference(model, { backend: 'cuda' })).then(() => null, (e: unknown) => e);
  t.ok(err instanceof GpuOutOfMemoryError, 'GpuOutOfMemoryError');
  t.ok(err instanceof GpuError);
  const e = err as GpuOutOfMemoryError;
  t.equal(e.code, 'ERR_SVDQ_GPU_OOM');
  t.equal(e.platform, 'cuda');
  t.equal(e.device, 0);
  t.equal(e.status, 2);
  t.match(e.message, /^cuda: fake: out of device memory allocating a layer of \d+ bytes/);
  t.same(snapshot(model), before, 'no layer replaced');
  t.equal(await usedBytes(), 0, 'the layer built before the failure was freed');
  t.ok(bitsEqual((await model.call(x)).data, y0), 'reference outputs unchanged');
  // A DeviceTensor too large for the device.
  await withEnv({ SVDQ_FAKE_GPU_OOM_BYTES: '1000' }, async () => {
    await t.rejects(DeviceTensor.from(x, { backend: 'cuda' }), { name: 'GpuOutOfMemoryError', code: 'ERR_SVDQ_GPU_OOM' });
  });
});

t.test('schemes the GPU build does not support are reported as skipped, never silently kept', async (t) => {
  const model = await quantized('nvfp4');
  const report = await withEnv({ SVDQ_FAKE_GPU_UNSUPPORTED: 'mxfp4,nvfp4' }, () => enableNativeInference(model, { backend: 'cuda' }));
  t.equal(report.backend, 'cuda');
  t.same(report.converted, []);
  t.same(report.skipped.map((s) => s.name), ['1.fc1', '1.fc2', '2']);
  for (const s of report.skipped) t.match(s.reason, /^the cuda layer could not be built: cuda: fake: scheme nvfp4 is not supported by this build/);
  for (const [, m] of model.namedModules()) t.notOk(m instanceof NativeLinear);
  t.equal(await usedBytes(), 0);
});

t.test('a failing kernel: GpuRuntimeError from forward; a missing device: GpuNoDeviceError', async (t) => {
  const model = await quantized('w4a4');
  await enableNativeInference(model, { backend: 'cuda' });
  const err = await withEnv({ SVDQ_FAKE_GPU_FAIL_FORWARD: '1' }, () => model.call(input())).then(() => null, (e: unknown) => e);
  t.ok(err instanceof GpuRuntimeError);
  t.match(err, { code: 'ERR_SVDQ_GPU_RUNTIME', platform: 'cuda', message: /unspecified launch failure/ });
  t.equal((await model.call(input())).shape.join(), '5,40', 'works again afterwards');
  disableNativeInference(model);
  const fc1 = model.getSubmodule('1.fc1') as ErrorCorrectedLinear;
  const noDev = await withEnv({ SVDQ_FAKE_GPU_DEVICES: '2' }, async () => {
    const layer = await GpuLowbitLayer.create(fc1.data(), { backend: 'cuda', device: 1 });
    return layer;
  });
  t.equal(noDev.device, 1);
  noDev.dispose();
  // The backend is loaded; a device that does not exist is the backend's NO_DEVICE status.
  await t.rejects(GpuLowbitLayer.create(fc1.data(), { backend: 'cuda', device: 4 }), { name: 'GpuNoDeviceError', code: 'ERR_SVDQ_GPU_NO_DEVICE' });
  await t.rejects(DeviceTensor.from(input(), { backend: 'cuda', device: 4 }), GpuNoDeviceError);
  await t.rejects(GpuLowbitLayer.create(fc1.data(), { backend: 'tpu' as never }), { name: 'ArgumentError', argument: 'options.backend' });
});

t.test('DeviceTensor: round trip, forward on device buffers, dispose', async (t) => {
  const x = input(7, 6);
  const d = await DeviceTensor.from(x, { backend: 'cuda' });
  t.same(d.shape, [6, 96]);
  t.equal(d.dtype, 'f32');
  t.equal(d.backend, 'cuda');
  t.equal(d.device, 0);
  t.equal(d.bytes, 6 * 96 * 4);
  t.equal(d.numel, 6 * 96);
  t.equal(await usedBytes(), 6 * 96 * 4);
  t.match(d.toString(), 'DeviceTensor(f32, [6, 96], cuda:0)');
  const back = await d.toHost();
  t.ok(bitsEqual(back.data, x.data), 'bit-identical round trip');
  // f16 input is converted to f32 on the way.
  const h = await DeviceTensor.from(x.to('f16'), { backend: 'cuda' });
  t.ok(bitsEqual((await h.toHost()).data, x.to('f16').to('f32').data));
  h.dispose();

  const model = await quantized('mxfp4');
  await enableNativeInference(model, { backend: 'cuda' });
  const layer = (model.getSubmodule('1.fc1') as NativeLinear).layer as GpuLowbitLayer;
  const yHost = await layer.forward(x);
  const yDev = await layer.forward(d, { lowRank: 'unfused' });
  t.ok(yDev instanceof DeviceTensor);
  t.same(yDev.shape, [6, 160]);
  t.ok(bitsEqual((await yDev.toHost()).data, yHost.data), 'device-buffer forward equals host forward');
  yDev.dispose();
  await t.rejects(layer.forward(d, { lowRank: 'fast' as never }), { name: 'ArgumentError', argument: 'options.lowRank' });
  await t.rejects(layer.forward(Tensor.zeros([2, 95], 'f32')), { name: 'ArgumentError', argument: 'x' });
  const wrongDevice = await withEnv({ SVDQ_FAKE_GPU_DEVICES: '2' }, () => DeviceTensor.from(x, { backend: 'cuda', device: 1 }));
  await t.rejects(layer.forward(wrongDevice), { name: 'ArgumentError', argument: 'x' });
  wrongDevice.dispose();
  disableNativeInference(model);

  d.dispose();
  t.equal(d.disposed, true);
  t.equal(d.bytes, 0);
  d.dispose(); // idempotent
  await t.rejects(d.toHost(), { name: 'ArgumentError', argument: 'this' });
  t.equal(await usedBytes(), 0, 'all device memory freed');
  await t.rejects(DeviceTensor.from('x' as never, { backend: 'cuda' }), { name: 'ArgumentError', argument: 'tensor' });
  await t.rejects(DeviceTensor.from(x, { backend: 'tpu' as never }), { name: 'ArgumentError', argument: 'options.backend' });
  await t.rejects(DeviceTensor.from(x, { backend: 'cuda', device: -2 }), { name: 'ArgumentError', argument: 'options.device' });
  await t.rejects(DeviceTensor.from(x, { backend: 'cuda', stream: 1 } as never), { name: 'ArgumentError', argument: 'options.stream' });
  const err = await withEnv({ SVDQUANT_HIP_LIB: MISSING_HIP }, () => DeviceTensor.from(x, { backend: 'hip' })).then(() => null, (e: unknown) => e);
  t.ok(err instanceof BackendUnavailableError);
});

t.test('64 concurrent forwards equal sequential ones; disable while in flight', async (t) => {
  const model = await quantized('w4a4');
  await enableNativeInference(model, { backend: 'cuda' });
  const natives = await checkConcurrentForwards(t, model, 'device memory freed');
  t.equal(await usedBytes(), 0);
  // A disposed GPU layer refuses new forwards with a typed error.
  await t.rejects(natives[0].layer.forward(input()), { name: 'ArgumentError', argument: 'this' });
});

t.test('applyLora on a GPU model rebuilds the GPU layers; removal restores the outputs exactly', async (t) => {
  const model = await quantized('w4a4');
  const x = input(4);
  const a = Tensor.fromArray(Array.from({ length: 4 * 96 }, (_, i) => Math.cos(i * 0.7) * 0.2), [4, 96]);
  const b = Tensor.fromArray(Array.from({ length: 160 * 4 }, (_, i) => Math.sin(i * 0.3) * 0.2), [160, 4]);
  const file = join(dir, 'lora.safetensors');
  await writeSafetensors(file, [
    { name: '1.fc1.lora_A.weight', dtype: 'F32', shape: [4, 96], data: a.data },
    { name: '1.fc1.lora_B.weight', dtype: 'F32', shape: [160, 4], data: b.data },
  ]);
  const lora = await loadLora(file);
  await enableNativeInference(model, { backend: 'cuda' });
  const nat = model.getSubmodule('1.fc1') as NativeLinear;
  const base = (await nat.call(x)).data;
  const old = nat.layer;
  const h = await applyLora(model, lora);
  t.ok(nat.layer instanceof GpuLowbitLayer, 'still a GPU layer');
  t.equal(nat.layer.rank, 12);
  t.ok(old.disposed, 'the old GPU layer is freed');
  const withLora = (await nat.call(x)).data;
  const cpu = await NativeLowbitLayer.create((model.getSubmodule('1.fc1') as NativeLinear).source.data());
  const cpuLora = (await cpu.forward(x)).data;
  cpu.dispose();
  let maxDiff = 0, scale = 0;
  for (let i = 0; i < withLora.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(withLora[i] - cpuLora[i]));
    scale = Math.max(scale, Math.abs(cpuLora[i]));
  }
  t.ok(maxDiff <= 1e-5 * scale, `GPU with LoRA matches the CPU layer with LoRA (max diff ${maxDiff}, scale ${scale})`);
  await h.remove();
  t.equal(nat.layer.rank, 8);
  t.ok(bitsEqual((await nat.call(x)).data, base), 'outputs bit-identical after removal');
  const cpuLayer = await NativeLowbitLayer.create(nat.source.data());
  t.throws(() => nat.replaceLayer(cpuLayer), { name: 'ArgumentError', argument: 'layer', message: /a native layer on cuda:0/ });
  cpuLayer.dispose();
  disableNativeInference(model);
});
