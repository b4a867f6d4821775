/**
 * The built-in model as files and as per-layer data: `svdquant demo --export DIR` writes
 * model.safetensors (every parameter, F32) and calib.safetensors (the inputs each linear layer saw
 * while calibration tokens ran through the model, named after the layer: the format `quantize` and
 * `calibrate` read), and `calibrate` without files works on the same data in memory.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LayerNorm, Linear } from '../graph/layers.js';
import type { Module } from '../graph/module.js';
import { checkOutputDirectory, checkOutputFile, makeDirectory } from '../io/output-path.js';
import { writeSafetensors } from '../io/safetensors.js';
import type { SafetensorsTensorInput } from '../io/safetensors-encode.js';
import { tensorToSafetensors } from '../io/tensor-bridge.js';
import { tinyDit, tinyDitCalibration, resolveTinyDitOptions, type TinyDitOptions } from '../models/tiny-dit.js';
import { Tensor } from '../tensor.js';

/** One linear layer with its calibration inputs. */
export interface CalibratedLayer {
  name: string;
  weight: Tensor<'f32'>;
  bias: Tensor<'f32'> | undefined;
  /** Inputs [tokens, K] in the order the model saw them. */
  inputs: Tensor<'f32'>;
}

/** Runs `tokens` calibration tokens (batches of at most 256) through the model, recording every Linear's inputs. */
export async function recordLinearInputs(model: Module, dim: number, tokens: number): Promise<Map<string, Tensor<'f32'>>> {
  const parts = new Map<string, Float32Array[]>();
  const linears = [...model.namedModules()].filter((e): e is [string, Linear] => e[1] instanceof Linear);
  const handles = linears.map(([name, l]) => l.registerForwardHook((_m, inputs) => {
    const x = inputs[0];
    const list = parts.get(name) ?? [];
    list.push(Float32Array.from(x.data as Float32Array));
    parts.set(name, list);
  }));
  try {
    for (const batch of tinyDitCalibration(tokens, dim)) await model.call(batch);
  } finally {
    for (const h of handles) h.remove();
  }
  const out = new Map<string, Tensor<'f32'>>();
  for (const [name, l] of linears) {
    const list = parts.get(name) ?? [];
    const total = list.reduce((s, a) => s + a.length, 0);
    const data = new Float32Array(total);
    let off = 0;
    for (const a of list) {
      data.set(a, off);
      off += a.length;
    }
    out.set(name, Tensor.fromStorage(data, [total / l.inFeatures, l.inFeatures], 'f32'));
  }
  return out;
}

/** The built-in model's linear layers with `tokens` calibration inputs each. */
export async function builtinCalibratedLayers(options: TinyDitOptions, tokens: number): Promise<CalibratedLayer[]> {
  const o = resolveTinyDitOptions(options);
  const model = tinyDit(o);
  const inputs = await recordLinearInputs(model, o.dim, tokens);
  const layers: CalibratedLayer[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof Linear) layers.push({ name, weight: m.weight, bias: m.bias ?? undefined, inputs: inputs.get(name)! });
  }
  return layers;
}

/**
 * Writes DIR/model.safetensors and DIR/calib.safetensors; returns their paths. DIR and the two
 * targets are checked before the model is built (IoError), so a bad DIR fails at once.
 */
export async function exportDemoFiles(dir: string, options: TinyDitOptions, tokens: number): Promise<{ model: string; calib: string; layers: number }> {
  const paths = { model: join(dir, 'model.safetensors'), calib: join(dir, 'calib.safetensors') };
  await checkOutputDirectory(dir, { create: true });
  if (existsSync(dir)) for (const file of [paths.model, paths.calib]) await checkOutputFile(file);
  const o = resolveTinyDitOptions(options);
  const model = tinyDit(o);
  const params: SafetensorsTensorInput[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof Linear || m instanceof LayerNorm) {
      if (m.weight !== null) params.push(tensorToSafetensors(`${name}.weight`, m.weight));
      if (m.bias !== null) params.push(tensorToSafetensors(`${name}.bias`, m.bias));
    }
  }
  const inputs = await recordLinearInputs(model, o.dim, tokens);
  const calib = [...inputs].map(([name, t]) => tensorToSafetensors(name, t));
  await makeDirectory(dir);
  const about = { producer: 'svdquant demo --export', model: `tiny-dit ${JSON.stringify(o)}` };
  await writeSafetensors(paths.model, params, about);
  await writeSafetensors(paths.calib, calib, { ...about, calibration_tokens: String(tokens) });
  return { ...paths, layers: inputs.size };
}
