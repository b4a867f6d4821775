// The diffusers fixtures (test/data/diffusers, computed by the real diffusers v0.30.3 source):
// their tensors by name, the fixtures' tolerance |a − b| <= 1e-4 + 1e-4·|b|, and a capture of the
// input of every Linear of a model (named as diffusers' named_modules(), `#1` for a second call).
import { join } from 'node:path';
import { Linear, Module, openSafetensors, tensorFromSafetensors, Tensor } from '../../lib/index.js';

export const FIXTURES = join('test', 'data', 'diffusers');

/** Every tensor of a fixture file except the F64 ones, by name. */
export async function fixtureTensors(file: string): Promise<Map<string, Tensor>> {
  const st = await openSafetensors(file);
  try {
    const out = new Map<string, Tensor>();
    for (const info of st.tensors) {
      if (info.dtype === 'F64') continue;
      out.set(info.name, tensorFromSafetensors(await st.readTensor(info.name)));
    }
    return out;
  } finally {
    await st.close();
  }
}

/** The inputs named `input/<kwarg>` of a fixture, keyed by the kwarg. */
export function fixtureInputs(tensors: Map<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of tensors) if (name.startsWith('input/')) out[name.slice('input/'.length)] = t;
  return out;
}

export interface Closeness {
  ok: boolean;
  /** Largest |a − b| and where. */
  maxAbs: number;
  index: number;
  /** Largest |a − b| / (atol + rtol·|b|): <= 1 passes. */
  worstRatio: number;
}

/** Whether `actual` matches `expected` elementwise within atol + rtol·|expected| (same element count). */
export function closeTo(actual: Tensor, expected: Tensor, atol = 1e-4, rtol = 1e-4): Closeness {
  const a = actual.toArray(), b = expected.toArray();
  if (a.length !== b.length) return { ok: false, maxAbs: Infinity, index: -1, worstRatio: Infinity };
  let maxAbs = 0, index = -1, worstRatio = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    const ratio = d / (atol + rtol * Math.abs(b[i]));
    if (!(d <= maxAbs) || Number.isNaN(d)) {
      maxAbs = Number.isNaN(d) ? Infinity : d;
      index = i;
    }
    if (!(ratio <= worstRatio)) worstRatio = Number.isNaN(ratio) ? Infinity : ratio;
  }
  return { ok: worstRatio <= 1, maxAbs, index, worstRatio };
}

/** Registers hooks that copy the first input of every Linear, named as diffusers does (`#1` for a second call). */
export function captureLinearInputs(model: Module): { inputs: Map<string, Tensor>; remove(): void } {
  const inputs = new Map<string, Tensor>();
  const handles = [...model.namedModules()].filter(([, m]) => m instanceof Linear).map(([name, m]) => m.registerForwardHook((_m, args) => {
    let key = name;
    for (let i = 1; inputs.has(key); i++) key = `${name}#${i}`;
    inputs.set(key, (args[0] as Tensor).clone());
  }));
  return { inputs, remove: () => handles.forEach((h) => h.remove()) };
}
