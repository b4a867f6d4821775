// Quick start (README): build a small model, quantize it with SVDQuant, run it on the native CPU
// kernels, save it and load it back, and add a LoRA. Run: node examples/quickstart.mjs (after npm install).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  Tensor, Sequential, LayerNorm, MLP, Linear,
  quantizeModel, enableNativeInference, disableNativeInference, saveCheckpoint, loadCheckpoint,
  writeSafetensors, loadLora, applyLora,
} from 'svdquant';

// A transformer-style block: norm -> MLP (256 -> 1024 -> 256) -> head.
const model = () => new Sequential(new LayerNorm(256), new MLP(256, 1024, { seed: 1 }), new Linear(256, 64, { seed: 2 }));
const net = model();

// Calibration inputs: a few batches of 64 tokens with one outlier channel, as diffusion models have.
const batch = (seed) => {
  let s = seed;
  const x = Tensor.fromArray(Array.from({ length: 64 * 256 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 2), [64, 256]);
  for (let t = 0; t < 64; t++) x.data[t * 256 + 7] *= 30;
  return [x];
};
const calibration = [1, 2, 3, 4].map(batch);
const [x] = batch(99);
const before = await net.call(x);

const report = await quantizeModel(net, { scheme: 'w4a4', rank: 32, smoothAlpha: 0.5 }, calibration);
for (const l of report.layers) console.log(`${l.name}: alpha ${l.alpha}, rank ${l.rank}, error ${l.errorBefore.toFixed(4)} -> ${l.errorAfter.toFixed(4)}`);

const native = await enableNativeInference(net, { backend: 'auto', lowRank: 'fused' });
console.log(`native layers: ${native.converted.join(', ')} (backend ${native.backend})`);
const y = await net.call(x);
let num = 0, den = 0;
for (let i = 0; i < y.numel; i++) { num += (y.data[i] - before.data[i]) ** 2; den += before.data[i] ** 2; }
console.log(`relative output error of the quantized model: ${Math.sqrt(num / den).toFixed(4)}`);

const file = join(await mkdtemp(join(tmpdir(), 'svdquant-')), 'model.safetensors');
await saveCheckpoint(net, file);
const restored = model();
await loadCheckpoint(file, restored);
const y2 = await restored.call(x);
disableNativeInference(net);
const y3 = await net.call(x);
console.log(`reloaded model matches the reference path: ${y2.data.every((v, i) => v === y3.data[i])}`);

// A LoRA (diffusers naming: P.lora_A.weight [r, K], P.lora_B.weight [N, r]) for layer 1.fc1, added to
// the low-rank branch of the reloaded model without re-quantizing, then removed again.
const rnd = (n, seed) => { let s = seed; return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1); };
const loraFile = join(dirname(file), 'lora.safetensors');
await writeSafetensors(loraFile, [
  { name: '1.fc1.lora_A.weight', dtype: 'F32', shape: [8, 256], data: rnd(8 * 256, 5) },
  { name: '1.fc1.lora_B.weight', dtype: 'F32', shape: [1024, 8], data: rnd(1024 * 8, 6) },
]);
const lora = await loadLora(loraFile);
const handle = await applyLora(restored, lora, { strength: 0.8 });
const y4 = await restored.call(x);
await handle.remove();
const y5 = await restored.call(x);
console.log(`LoRA on ${handle.layers.join(', ')}: output changed ${y4.data.some((v, i) => v !== y2.data[i])}, restored exactly after remove ${y5.data.every((v, i) => v === y2.data[i])}`);
