/**
 * Sensitivity-aware precision (issue 20 item 4; quantizeModel with config.sensitivity). Every
 * quantized layer's own contribution to the model's output error is measured on the first
 * calibration batches: the relative error ‖Y − Y_ref‖/‖Y_ref‖ (all output tensors, all batches
 * together) of the model with only that layer quantized, and the same with that layer at the
 * higher-precision choice (w8a8, or the original layer: 0). Layers are then kept at the higher
 * precision greedily by error removed per extra byte, while the extra bytes fit the budget; a layer
 * whose higher precision does not lower the error is never kept. One-layer-at-a-time errors ignore
 * interactions between layers, so the report also gives the model's error with everything
 * quantized and with the kept layers, both measured.
 */
import { Tensor } from '../tensor.js';
import type { Module } from '../graph/module.js';
import type { SensitivityConfig } from './config.js';
import { ErrorCorrectedLinear } from './error-corrected-linear.js';

export interface SensitivityLayer {
  name: string;
  /** Model output error with only this layer quantized (4-bit, as configured). */
  errorQuantized: number;
  /** The same with only this layer at the higher-precision choice (0 for 'none'). */
  errorKept: number;
  /** Bytes the higher-precision layer adds over the quantized one. */
  extraBytes: number;
  kept: boolean;
  /** Why it was kept or not. */
  reason: string;
}

export interface SensitivityReport {
  budgetBytes: number;
  usedBytes: number;
  keep: SensitivityConfig['keep'];
  /** Calibration batches the errors were measured on. */
  batches: number;
  /** The model's output error with every chosen layer quantized, and with the kept layers kept. */
  errorAllQuantized: number;
  errorWithKept: number;
  /** Every quantized layer, most error removed per byte first. */
  layers: SensitivityLayer[];
}

export interface SensitivityCandidate {
  name: string;
  original: Module;
  quantized: Module;
  /** The w8a8 layer ('w8a8'), or the original ('none'). */
  higher: Module;
}

/** Every tensor of a model output (a tensor, or arrays / objects of them) as one f32 vector. */
export function outputVector(out: unknown): Float32Array {
  const parts: Float32Array[] = [];
  const walk = (v: unknown): void => {
    if (v instanceof Tensor) parts.push(v.dtype === 'f32' ? (v.data as Float32Array) : (v.to('f32').data as Float32Array));
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === 'object') for (const key of Object.keys(v).sort()) walk((v as Record<string, unknown>)[key]);
  };
  walk(out);
  const total = parts.reduce((s, p) => s + p.length, 0);
  const vec = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    vec.set(p, off);
    off += p.length;
  }
  return vec;
}

/**
 * Bytes a layer stores: an ErrorCorrectedLinear's codes, scales, λ, low-rank factors and bias (it
 * registers no parameters), else the module's parameters and persistent buffers as held.
 */
export function moduleBytes(m: Module): number {
  if (m instanceof ErrorCorrectedLinear) {
    return [m.weight.codes, m.weight.scales, m.smooth, m.lDown, m.lUp, m.bias].reduce((s, t) => s + (t?.byteLength ?? 0), 0);
  }
  let bytes = 0;
  for (const [, t] of m.namedParameters()) bytes += t.byteLength;
  return bytes;
}

export type MeasuredLayer = Omit<SensitivityLayer, 'kept' | 'reason'>;

/**
 * The greedy choice: most error removed per extra byte first (a free upgrade first of all), while
 * the extra bytes fit the budget; a layer whose higher precision removes no error is never kept.
 * Returns every layer in that order with the decision and its reason.
 */
export function chooseWithinBudget(measured: readonly MeasuredLayer[], config: Pick<SensitivityConfig, 'budgetBytes' | 'keep'>): { layers: SensitivityLayer[]; usedBytes: number } {
  const gain = (l: MeasuredLayer) => l.errorQuantized - l.errorKept;
  const perByte = (l: MeasuredLayer) => gain(l) / Math.max(l.extraBytes, 1);
  const order = measured.map((_, i) => i).sort((a, b) => perByte(measured[b]) - perByte(measured[a]) || a - b);
  let used = 0;
  const layers: SensitivityLayer[] = [];
  for (const i of order) {
    const l = measured[i];
    const g = gain(l);
    let kept = false, reason: string;
    const what = `error alone ${l.errorQuantized.toPrecision(3)} -> ${l.errorKept.toPrecision(3)} kept, ${l.extraBytes} extra bytes`;
    if (!(g > 0)) reason = `not kept: higher precision removes no error (${what})`;
    else if (used + l.extraBytes > config.budgetBytes) reason = `not kept: over the budget (${used} of ${config.budgetBytes} bytes used; ${what})`;
    else {
      kept = true;
      used += l.extraBytes;
      reason = `kept at ${config.keep === 'none' ? 'the original precision' : 'w8a8'}: ${what}`;
    }
    layers.push({ ...l, kept, reason });
  }
  return { layers, usedBytes: used };
}

export type RunBatch = (batch: unknown) => Promise<unknown>;

/** ‖Y − Y_ref‖/‖Y_ref‖ over the batches, Y from the model as it is now. */
async function modelError(run: RunBatch, batches: readonly unknown[], refs: readonly Float32Array[]): Promise<number> {
  let num = 0, den = 0;
  for (let b = 0; b < batches.length; b++) {
    const y = outputVector(await run(batches[b])), ref = refs[b];
    for (let i = 0; i < ref.length; i++) {
      const d = y[i] - ref[i];
      num += d * d;
      den += ref[i] * ref[i];
    }
  }
  return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}

/**
 * Chooses the layers to keep at higher precision (see the file comment). The model must hold the
 * original layers when called; it holds them again when this returns (or throws).
 */
export async function chooseSensitiveLayers(model: Module, candidates: readonly SensitivityCandidate[], run: RunBatch,
  batches: readonly unknown[], refs: readonly Float32Array[], config: SensitivityConfig): Promise<SensitivityReport> {
  const swap = (c: SensitivityCandidate, m: Module) => model.setSubmodule(c.name, m);
  const measured: MeasuredLayer[] = [];
  try {
    for (const c of candidates) {
      swap(c, c.quantized);
      const errorQuantized = await modelError(run, batches, refs);
      let errorKept = 0;
      if (c.higher !== c.original) {
        swap(c, c.higher);
        errorKept = await modelError(run, batches, refs);
      }
      swap(c, c.original);
      measured.push({ name: c.name, errorQuantized, errorKept, extraBytes: moduleBytes(c.higher) - moduleBytes(c.quantized) });
    }
    const { layers, usedBytes: used } = chooseWithinBudget(measured, config);
    for (const c of candidates) swap(c, c.quantized);
    const errorAllQuantized = await modelError(run, batches, refs);
    const keptNames = new Set(layers.filter((l) => l.kept).map((l) => l.name));
    for (const c of candidates) if (keptNames.has(c.name)) swap(c, c.higher);
    const errorWithKept = await modelError(run, batches, refs);
    return { budgetBytes: config.budgetBytes, usedBytes: used, keep: config.keep, batches: batches.length, errorAllQuantized, errorWithKept, layers };
  } finally {
    for (const c of candidates) swap(c, c.original);
  }
}
