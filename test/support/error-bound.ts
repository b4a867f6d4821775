// The CPU layer's documented error bound (native/include/svdquant/lowbit.h), shared by the tests that
// compare native layers (CPU, fake GPU, real GPU) with the reference path.
import { quantizeModel, type ErrorCorrectedLinear, type Module, type Tensor } from '../../lib/index.js';
import { buildModel, calibration } from './model-fixture.js';

/** The fixture model, quantized with `scheme` at rank 8. */
export async function quantizedModel(scheme: 'w4a4' | 'mxfp4' | 'nvfp4' | 'w8a8' | 'w4a16' = 'w4a4'): Promise<Module> {
  const model = buildModel();
  await quantizeModel(model, { scheme, rank: 8 }, calibration());
  return model;
}

/** S = Σ|terms| per output of an ErrorCorrectedLinear (lowbit.h's error bound), in double. */
export async function termBound(layer: ErrorCorrectedLinear, x: Tensor<'f32'>): Promise<Float64Array> {
  const k = layer.inFeatures, n = layer.outFeatures, r = layer.rank, m = x.numel / k;
  const xhat = layer.smoothInput(x.data);
  const xq = await layer.quantizeActivations(xhat, m);
  const w = await layer.dequantizedWeight();
  const s = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const d = new Float64Array(r);
    for (let q = 0; q < r; q++) for (let j = 0; j < k; j++) d[q] += Math.abs(xhat[i * k + j] * layer.lDown!.data[q * k + j]);
    for (let o = 0; o < n; o++) {
      let acc = Math.abs(layer.bias?.data[o] ?? 0);
      for (let j = 0; j < k; j++) acc += Math.abs(xq[i * k + j] * w[o * k + j]);
      for (let q = 0; q < r; q++) acc += d[q] * Math.abs(layer.lUp!.data[o * r + q]);
      s[i * n + o] = acc;
    }
  }
  return s;
}
