/**
 * quantize(model, config, calibration): SVDQuant of every eligible Linear layer of a module tree
 * (issue 5 item 2). Eligible: a `Linear` reachable under exactly one parent, not the root, not
 * matched by `config.exclude`, with min(N, K) >= `config.minDim`, and that received calibration
 * inputs. Every other Linear is reported in `skipped` with its reason (nothing is skipped silently).
 *
 * Flow: forward hooks feed one LayerStatsCollector per eligible layer while the calibration inputs
 * run through `model.call(...)`; the hooks are removed afterwards (also on failure); then every layer
 * is quantized with quantizeLinear, and only when all of them succeeded is each Linear replaced by
 * its ErrorCorrectedLinear (setSubmodule). A failure anywhere leaves the model as it was.
 */
import { ArgumentError } from '../errors.js';
import { Module, type HookHandle } from '../graph/module.js';
import { Linear } from '../graph/layers.js';
import { Tensor } from '../tensor.js';
import { layerDecision, resolveConfig } from './config.js';
import type { ProgressCallback, SVDQuantConfig, SVDQuantConfigInput } from './config.js';
import { LayerStatsCollector } from './calibration.js';
import { ErrorCorrectedLinear } from './error-corrected-linear.js';
import { quantizeLinear, type LayerReport } from './quantize-layer.js';
import { presetExclusion, resolvePreset } from './presets.js';

export interface SkippedLayer {
  /** Dotted name of the module. */
  name: string;
  reason: string;
}

export interface QuantizeReport {
  /** One report per quantized (replaced) layer, in module order. */
  layers: LayerReport[];
  /** Every Linear (or already quantized layer) that was not quantized, with the reason. */
  skipped: SkippedLayer[];
  /** The architecture preset applied (presets.ts), or null. */
  preset: string | null;
  /** Calibration batches run through the model. */
  calibrationBatches: number;
  seconds: number;
}

export interface QuantizeModelOptions {
  /** Progress per layer (overrides config.onProgress when both are given). */
  onProgress?: ProgressCallback;
}

/**
 * One calibration batch: the arguments of one `model.call` — an array (positional: `[x]` for a
 * module of one input) or an object of named inputs (a diffusers model's keyword arguments, as
 * Quark's `model(**data)`: `{ hidden_states, timestep, class_labels }`).
 */
export type CalibrationBatch = unknown[] | Record<string, unknown>;
export type CalibrationData = AsyncIterable<CalibrationBatch> | Iterable<CalibrationBatch>;

/**
 * How many parents reference each module (a module under several parents cannot be replaced at one
 * dotted path without changing the others).
 */
export function parentCounts(model: Module): Map<Module, number> {
  const counts = new Map<Module, number>();
  const seen = new Set<Module>();
  const walk = (m: Module): void => {
    if (seen.has(m)) return;
    seen.add(m);
    for (const [, c] of m.namedChildren()) {
      counts.set(c, (counts.get(c) ?? 0) + 1);
      walk(c);
    }
  };
  walk(model);
  return counts;
}

function isIterable(v: unknown): v is Iterable<unknown> | AsyncIterable<unknown> {
  return v !== null && typeof v === 'object'
    && (typeof (v as Iterable<unknown>)[Symbol.iterator] === 'function' || typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function');
}

/**
 * Quantizes the model's eligible Linear layers in place; see the file comment. Also reachable as
 * quantize(model, ...) (lib/quant/quantize.ts).
 */
export async function quantizeModel(model: Module, config: SVDQuantConfigInput | SVDQuantConfig = {}, calibration: CalibrationData = [],
  options: QuantizeModelOptions = {}): Promise<QuantizeReport> {
  const t0 = performance.now();
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { onProgress }', options);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new ArgumentError('options.onProgress', 'a function or undefined', options.onProgress);
  const cfg = resolveConfig(config);
  if (options.onProgress !== undefined) cfg.onProgress = options.onProgress;
  if (!isIterable(calibration) || typeof calibration === 'string') {
    throw new ArgumentError('calibration', 'an iterable or async iterable of batches (an argument array or an object of named inputs per model.call)', calibration);
  }
  const preset = resolvePreset(cfg.preset, model);

  // 1. Select.
  const parents = parentCounts(model);
  const skipped: SkippedLayer[] = [];
  const targets: { name: string; layer: Linear; stats: LayerStatsCollector }[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof ErrorCorrectedLinear) {
      skipped.push({ name, reason: 'already an ErrorCorrectedLinear' });
      continue;
    }
    if (!(m instanceof Linear)) continue;
    if (name === '') {
      skipped.push({ name, reason: 'the root module cannot be replaced (wrap it in a container)' });
      continue;
    }
    if ((parents.get(m) ?? 0) > 1) {
      skipped.push({ name, reason: `shared: the same Linear is a child of ${parents.get(m)} parents` });
      continue;
    }
    const d = layerDecision(name, m.outFeatures, m.inFeatures, cfg);
    if (!d.quantize) {
      skipped.push({ name, reason: d.reason });
      continue;
    }
    const rule = preset === undefined ? undefined : presetExclusion(preset.preset, name);
    if (rule !== undefined) {
      skipped.push({ name, reason: `preset '${preset!.name}' (${rule.pattern}): ${rule.reason}` });
      continue;
    }
    const stats = new LayerStatsCollector(m.inFeatures, {
      hessian: cfg.gptq !== false, maxSamples: cfg.alphaSearchMaxSamples, seed: cfg.seed, name, threads: cfg.threads,
    });
    targets.push({ name, layer: m, stats });
  }

  // 2. Calibrate (hooks removed whatever happens).
  const handles: HookHandle[] = [];
  let batches = 0;
  try {
    for (const t of targets) {
      // The statistics are copied out of the inputs: the hook keeps no tensor, so the model's
      // intermediates are still freed early while calibrating.
      handles.push(t.layer.registerForwardHook((_m, inputs) => t.stats.observeAsync(inputs[0]), { retainsTensors: false }));
    }
    for await (const batch of calibration as AsyncIterable<unknown>) {
      const isNamed = batch !== null && typeof batch === 'object' && !Array.isArray(batch) && !(batch instanceof Tensor);
      if (!Array.isArray(batch) && !isNamed) {
        throw new ArgumentError(`calibration[${batches}]`, 'an array of arguments or an object of named inputs (one model.call)', batch);
      }
      try {
        await (Array.isArray(batch) ? model.call(...batch) : model.call(batch));
      } catch (e) {
        // Name the batch: the model only knows its own argument names.
        if (e instanceof ArgumentError) throw new ArgumentError(`calibration[${batches}]`, `inputs the model accepts (${e.message})`);
        throw e;
      }
      batches++;
    }
    for (const t of targets) await t.stats.flush();
  } finally {
    for (const h of handles) h.remove();
  }

  // 3. Quantize every layer (nothing replaced yet).
  const ready = targets.filter((t) => {
    if (t.stats.tokenCount > 0) return true;
    skipped.push({ name: t.name, reason: 'received no calibration inputs (not called while calibrating)' });
    return false;
  });
  const results: { name: string; layer: ErrorCorrectedLinear; report: LayerReport }[] = [];
  for (let i = 0; i < ready.length; i++) {
    const t = ready[i];
    const r = await quantizeLinear(t.layer.weight, t.layer.bias ?? undefined, t.stats, cfg, t.name, { index: i, total: ready.length });
    results.push({ name: t.name, layer: r.layer, report: r.report });
  }

  // 4. Replace (all or nothing).
  const done: { name: string; previous: Module }[] = [];
  try {
    for (const r of results) {
      const previous = model.setSubmodule(r.name, r.layer);
      if (previous !== undefined) done.push({ name: r.name, previous });
    }
  } catch (e) {
    for (const d of done.reverse()) model.setSubmodule(d.name, d.previous);
    throw e;
  }
  return {
    layers: results.map((r) => r.report), skipped, preset: preset?.name ?? null, calibrationBatches: batches, seconds: (performance.now() - t0) / 1000,
  };
}
