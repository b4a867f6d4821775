// A small seeded model for the runtime and checkpoint tests: Sequential(norm, MLP(96→160→96), head 96→40).
import { Tensor, Sequential, MLP, Linear, LayerNorm, type Module } from '../../lib/index.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export function randomTensor(shape: number[], scale: number, r: () => number): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(Array.from({ length: n }, () => r() * 2 * scale), shape);
}

export function buildModel(seed = 11): Module {
  return new Sequential(new LayerNorm(96), new MLP(96, 160, { seed }), new Linear(96, 40, { seed: seed + 7 }));
}

/** Calibration batches [tokens, 96] with an outlier channel. */
export function calibration(count = 4, seed = 3): Tensor[][] {
  const r = rng(seed);
  const out: Tensor[][] = [];
  for (let i = 0; i < count; i++) {
    const x = randomTensor([8, 96], 1, r);
    for (let t = 0; t < 8; t++) x.data[t * 96 + 5] *= 20;
    out.push([x]);
  }
  return out;
}

export function input(seed = 99, rows = 5): Tensor<'f32'> {
  const x = randomTensor([rows, 96], 1, rng(seed));
  for (let t = 0; t < rows; t++) x.data[t * 96 + 5] *= 20;
  return x;
}

export function bitsEqual(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength), ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** [name, module] pairs, to check that a model's tree is exactly as before. */
export function snapshot(model: Module): [string, Module][] {
  return [...model.namedModules()];
}
