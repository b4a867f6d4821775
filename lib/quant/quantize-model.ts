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
 * With config.sensitivity, the layers that add most to the model's output error on the first
 * calibration batches are kept at w8a8 or unquantized within a byte budget (sensitivity.ts).
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
import { chooseSensitiveLayers, outputVector, type SensitivityReport } from './sensitivity.js';

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
  /** Every layer's warnings (GPTQ at risk of overfitting or fallen back to RTN, choices scored in-sample). */
  warnings: string[];
  /** What config.sensitivity kept at higher precision and why, or null when off. */
  sensitivity: SensitivityReport | null;
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
  // The part of `skipped` the configuration (exclude, minDim, preset) decided.
  const configSkipped: SkippedLayer[] = [];
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
      configSkipped.push(skipped[skipped.length - 1]);
      continue;
    }
    const rule = preset === undefined ? undefined : presetExclusion(preset.preset, name);
    if (rule !== undefined) {
      skipped.push({ name, reason: `preset '${preset!.name}' (${rule.pattern}): ${rule.reason}` });
      configSkipped.push(skipped[skipped.length - 1]);
      continue;
    }
    // A rank above min(N, K) cannot be represented; clipping it silently hid layers larger than bf16.
    const maxRank = Math.min(m.outFeatures, m.inFeatures);
    if (cfg.rank > maxRank) {
      throw new ArgumentError('config.rank', `at most min(N, K) = ${maxRank} for layer '${name}' (${m.outFeatures}x${m.inFeatures}); exclude the layer or raise minDim to skip small layers`, cfg.rank);
    }
    const stats = LayerStatsCollector.forConfig(m.inFeatures, cfg, name);
    targets.push({ name, layer: m, stats });
  }

  // Linears exist but the configuration (exclude, minDim, preset) skipped every one: almost surely
  // a mistake, and the call would succeed without changing anything. A model without Linears (or
  // with all of them quantized already) has nothing to do by design and returns an empty report.
  if (targets.length === 0 && configSkipped.length > 0) {
    const first = configSkipped.slice(0, 3).map((s) => `'${s.name}' (${s.reason})`).join(', ');
    throw new ArgumentError('config', `a configuration that leaves at least one Linear to quantize: all ${configSkipped.length} of the model's Linear layers are skipped: ${first}${configSkipped.length > 3 ? ', ...' : ''}`);
  }

  // 2. Calibrate (hooks removed whatever happens).
  const handles: HookHandle[] = [];
  let batches = 0;
  const run = (batch: unknown) => (Array.isArray(batch) ? model.call(...batch) : model.call(batch));
  // config.sensitivity: the first batches and the unquantized model's outputs on them.
  const kept: { batches: unknown[]; refs: Float32Array[] } = { batches: [], refs: [] };
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
        const out = await run(batch);
        if (cfg.sensitivity !== false && kept.batches.length < cfg.sensitivity.batches) {
          kept.batches.push(batch);
          kept.refs.push(outputVector(out));
        }
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
  // Every scheme needs calibration here: smoothing uses the inputs' ranges, and the report scores
  // each layer on them. Without it every layer would be skipped and the call would look successful.
  if (batches === 0) {
    throw new ArgumentError('calibration', 'at least one batch of calibration inputs (an argument array or an object of named inputs per model.call): SVDQuant measures each layer\'s inputs to smooth it and to score it', calibration);
  }

  // Batches that reach none of the chosen layers (inputs for another model, another code path)
  // would otherwise leave every layer skipped behind a successful-looking report.
  if (targets.length > 0 && targets.every((t) => t.stats.tokenCount === 0)) {
    const names = targets.slice(0, 3).map((t) => `'${t.name}'`).join(', ') + (targets.length > 3 ? `, ... (${targets.length} in all)` : '');
    throw new ArgumentError('calibration', `batches that reach the layers chosen for quantization: ${batches} batch(es) ran through the model, ` +
      `but none of ${names} was called (calibration inputs for a different model, or a path of the model that skips them?)`);
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

  // 3b. Optionally keep the most sensitive layers at higher precision (sensitivity.ts).
  let sensitivity: SensitivityReport | null = null;
  if (cfg.sensitivity !== false && results.length > 0) {
    const keepW8 = cfg.sensitivity.keep === 'w8a8';
    const candidates = [];
    const w8: { layer: ErrorCorrectedLinear; report: LayerReport }[] = [];
    for (const [i, r] of results.entries()) {
      const t = ready[i];
      if (keepW8) w8.push(await quantizeLinear(t.layer.weight, t.layer.bias ?? undefined, t.stats, { ...cfg, scheme: 'w8a8', onProgress: undefined }, t.name));
      candidates.push({ name: r.name, original: t.layer, quantized: r.layer, higher: keepW8 ? w8[i].layer : t.layer });
    }
    sensitivity = await chooseSensitiveLayers(model, candidates, run, kept.batches, kept.refs, cfg.sensitivity);
    const keptNames = new Set(sensitivity.layers.filter((l) => l.kept).map((l) => l.name));
    for (let i = results.length - 1; i >= 0; i--) {
      if (!keptNames.has(results[i].name)) continue;
      const reason = sensitivity.layers.find((l) => l.name === results[i].name)!.reason;
      if (keepW8) {
        results[i] = { name: results[i].name, layer: w8[i].layer, report: w8[i].report };
      } else {
        skipped.push({ name: results[i].name, reason: `sensitivity: ${reason}` });
        results.splice(i, 1);
      }
    }
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
  const layers = results.map((r) => r.report);
  return {
    layers, skipped, preset: preset?.name ?? null, calibrationBatches: batches, warnings: layers.flatMap((l) => l.warnings), sensitivity, seconds: (performance.now() - t0) / 1000,
  };
}
