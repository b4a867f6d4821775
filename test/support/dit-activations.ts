// Real-weight test material (issue 20): the built-in trained DiT (models/fashion-dit) and the inputs
// of its Linear layers, captured by running the model along short DDIM rollouts with classifier-free
// guidance (conditional and null-class halves of every batch, as the pipeline runs it). Two rollouts
// with different seeds give a calibration set and a fresh set that no quantizer ever sees.
import { fileURLToPath } from 'node:url';
import { Linear, Tensor } from '../../lib/index.js';
import { loadModel } from '../../lib/models/index.js';
import { DDIMScheduler, loadSchedulerConfig } from '../../lib/pipelines/schedulers/index.js';
import { SeededRandom } from '../../lib/quant/index.js';
import type { Module } from '../../lib/graph/module.js';

export const FASHION_DIT = fileURLToPath(new URL('../../models/fashion-dit', import.meta.url));

export interface CapturedLayer {
  name: string;
  weight: Float32Array;
  bias: Float32Array | undefined;
  outFeatures: number;
  inFeatures: number;
  /** Inputs [tokens, K] row-major, in the order the model produced them. */
  x: Float32Array;
  tokens: number;
}

export async function loadFashionDit(): Promise<Module> {
  return loadModel(FASHION_DIT, { subfolder: 'transformer' });
}

/**
 * Runs `steps` DDIM steps (guidance 4) for one image of each class in `classes` from seeded noise,
 * recording every Linear's inputs (only layers whose name matches `keep`).
 */
export async function captureLinearInputs(model: Module, options: {
  seed: number; classes: number[]; steps: number; keep?: (name: string) => boolean;
}): Promise<Map<string, CapturedLayer>> {
  return recordLinearInputs(model, options.keep ?? (() => true), async () => {
    const scheduler = new DDIMScheduler(await loadSchedulerConfig(`${FASHION_DIT}/scheduler`));
    scheduler.setTimesteps(options.steps);
    const b = options.classes.length, side = 28, guidance = 4, nullClass = 10;
    const rng = new SeededRandom(options.seed);
    let sample = Tensor.fromStorage(Float32Array.from({ length: b * side * side }, () => rng.normal()), [b, 1, side, side], 'f32');
    for (const t of scheduler.timesteps) {
      const both = new Float32Array(2 * sample.numel);
      both.set(sample.data as Float32Array);
      both.set(sample.data as Float32Array, sample.numel);
      const out = await model.call({
        hidden_states: Tensor.fromStorage(both, [2 * b, 1, side, side], 'f32'),
        timestep: t,
        class_labels: [...options.classes, ...options.classes.map(() => nullClass)],
      }) as { sample: Tensor };
      const eps = out.sample.to('f32').data as Float32Array;
      const guided = new Float32Array(sample.numel);
      for (let i = 0; i < guided.length; i++) {
        const u = eps[sample.numel + i];
        guided[i] = u + guidance * (eps[i] - u);
      }
      sample = scheduler.step(Tensor.fromStorage(guided, sample.shape, 'f32'), t, sample);
    }
  });
}

/** Runs `run` with hooks that record the inputs of every Linear of `model` whose name passes `keep`; their tokens in call order. */
export async function recordLinearInputs(model: Module, keep: (name: string) => boolean, run: () => Promise<void>): Promise<Map<string, CapturedLayer>> {
  const chunks = new Map<string, Float32Array[]>();
  const layers = new Map<string, Linear>();
  const handles = [];
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear) || !keep(name)) continue;
    layers.set(name, m);
    chunks.set(name, []);
    handles.push(m.registerForwardHook((_m, inputs) => {
      const x = inputs[0] as Tensor;
      chunks.get(name)!.push((x.to('f32').data as Float32Array).slice());
    }, { retainsTensors: false }));
  }
  try {
    await run();
  } finally {
    for (const h of handles) h.remove();
  }
  const out = new Map<string, CapturedLayer>();
  for (const [name, m] of layers) {
    const parts = chunks.get(name)!;
    const total = parts.reduce((s, p) => s + p.length, 0);
    const x = new Float32Array(total);
    let off = 0;
    for (const p of parts) {
      x.set(p, off);
      off += p.length;
    }
    out.set(name, {
      name, outFeatures: m.outFeatures, inFeatures: m.inFeatures, x, tokens: total / m.inFeatures,
      weight: (m.weight.to('f32').data as Float32Array).slice(),
      bias: m.bias ? (m.bias.to('f32').data as Float32Array).slice() : undefined,
    });
  }
  return out;
}
