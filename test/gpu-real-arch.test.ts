// A device whose target the GPU library holds no code for is refused, naming both targets: the probe
// reports it unsupported (matrix path 'none', backend not available), the toggles throw
// BackendUnavailableError, and a layer on it GpuDriverError, from the addon's check and from the
// library's own. Needs a device that claims another target than the library's: the emulated backend
// with SVDQ_EMU_DEVICE_ARCH set (scripts/test-gpu-emu.mjs runs it so); skips otherwise.
import t from 'tap';
import {
  GpuLowbitLayer, GpuDriverError, BackendUnavailableError, probeGpuBackend, quantizeModel, enableNativeInference,
  ErrorCorrectedLinear,
} from '../lib/index.js';
import { buildModel, calibration } from './support/model-fixture.js';

const platform = process.env.SVDQUANT_TEST_GPU_PLATFORM === 'hip' ? 'hip' : 'cuda';
const claimed = process.env.SVDQ_EMU_DEVICE_ARCH;

if (process.env.SVDQUANT_TEST_REAL_GPU !== '1' || claimed === undefined || claimed === '') {
  t.plan(0, 'needs the emulated GPU backend with SVDQ_EMU_DEVICE_ARCH (npm run test:gpu-emu)');
} else {
  const report = await probeGpuBackend(platform);
  const names = (msg: string): boolean => msg.includes(claimed) && report.builtArchs.every((a) => msg.includes(a));

  t.test('the probe reports the device unsupported, naming both targets', async (t) => {
    t.equal(report.devices.length, 1);
    t.equal(report.devices[0].arch, claimed);
    t.equal(report.devices[0].supported, false);
    t.equal(report.devices[0].matrixPath, 'none', 'no matrix path is claimed');
    t.equal(report.available, false);
    t.ok(names(report.reason), `the reason names ${claimed} and ${report.builtArchs.join(', ')}: ${report.reason}`);
  });

  t.test('enableNativeInference and GpuLowbitLayer.create refuse the device', async (t) => {
    const model = buildModel();
    await quantizeModel(model, { scheme: 'w4a4', rank: 8 }, calibration());
    const err = await enableNativeInference(model, { backend: platform }).catch((e: unknown) => e);
    t.ok(err instanceof BackendUnavailableError && names(err.message), `toggles: ${String(err)}`);
    const src = [...model.namedModules()].map(([, m]) => m).find((m) => m instanceof ErrorCorrectedLinear) as ErrorCorrectedLinear;
    // The library is loaded by the probe above, so this create skips the probe: the library refuses.
    const e2 = await GpuLowbitLayer.create(src.data(), { backend: platform, device: 0 }).catch((e: unknown) => e);
    t.ok(e2 instanceof GpuDriverError && names(e2.message), `the library's own check: ${String(e2)}`);
  });
}
