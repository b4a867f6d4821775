/**
 * Native inference toggles (DESIGN.md §6, issue 5 item 3).
 *
 * enableNativeInference(model, options) replaces every eligible ErrorCorrectedLinear of the tree by a
 * NativeLinear (a graph Module around a NativeLowbitLayer built from the same canonical data) and
 * reports what was converted and, for every layer that was not, why. disableNativeInference(model)
 * puts the very same ErrorCorrectedLinear objects back (each NativeLinear keeps its `source`) and
 * frees the native memory, so reference outputs are bit-identical before and after a round trip.
 *
 * Backends in this version: 'cpu'; 'auto' resolves to 'cpu' (reported). 'cuda' and 'hip' throw
 * BackendUnavailableError (the GPU backends are not built in this version).
 */
import { ArgumentError, NativeError } from '../errors.js';
import { Module } from '../graph/module.js';
import { Tensor } from '../tensor.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import { parentCounts } from '../quant/quantize-model.js';
import { LOW_RANK_MODES, NativeLowbitLayer, type LowRankMode } from './native-layer.js';

export type NativeBackend = 'cpu' | 'cuda' | 'hip' | 'auto';
export const NATIVE_BACKENDS: readonly NativeBackend[] = ['cpu', 'cuda', 'hip', 'auto'];

export interface NativeInferenceOptions {
  /** Default 'auto' (= 'cpu' in this version). */
  backend?: NativeBackend;
  /** How the low-rank branch runs (default 'fused'). */
  lowRank?: LowRankMode;
  /** Native threads per forward (0, the default: physical cores). */
  threads?: number;
  /** Keep L_down / L_up as bf16 in the kernel format (default false: fp32, as the reference). */
  lowRankBf16?: boolean;
}

export interface NativeInferenceReport {
  /** The backend the layers run on. */
  backend: 'cpu';
  /** The backend asked for, and how the choice was made. */
  requested: NativeBackend;
  reason: string;
  /** Dotted names of the converted layers, in module order. */
  converted: string[];
  /** Every ErrorCorrectedLinear (or already native layer) not converted, with the reason. */
  skipped: { name: string; reason: string }[];
}

/** A requested backend is not available (not built, no device, failed to load). */
export class BackendUnavailableError extends NativeError {
  readonly backend: NativeBackend;
  constructor(backend: NativeBackend, reason: string) {
    super(`native backend '${backend}' is not available: ${reason}`);
    this.backend = backend;
  }
}

/**
 * The native layer in the graph: forward runs the NativeLowbitLayer with the options given at
 * enable time. `source` is the ErrorCorrectedLinear it was built from (restored on disable).
 */
export class NativeLinear extends Module {
  readonly source: ErrorCorrectedLinear;
  readonly backend: 'cpu' = 'cpu';
  lowRank: LowRankMode;
  threads: number;
  /** Whether the low-rank factors are kept as bf16 in the kernel format (as at enable time). */
  readonly lowRankBf16: boolean;
  #layer: NativeLowbitLayer;
  /** Forwards in flight per native layer (a replaced layer is freed when its last one finishes). */
  #inFlight = new Map<NativeLowbitLayer, number>();
  #retired = new Set<NativeLowbitLayer>();
  #disposeRequested = false;

  constructor(source: ErrorCorrectedLinear, layer: NativeLowbitLayer, options: { lowRank: LowRankMode; threads: number; lowRankBf16?: boolean }) {
    super();
    if (!(source instanceof ErrorCorrectedLinear)) throw new ArgumentError('source', 'an ErrorCorrectedLinear', source);
    if (!(layer instanceof NativeLowbitLayer)) throw new ArgumentError('layer', 'a NativeLowbitLayer', layer);
    this.source = source;
    this.#layer = layer;
    this.lowRank = options.lowRank;
    this.threads = options.threads;
    this.lowRankBf16 = options.lowRankBf16 === true;
  }

  /** The native layer new forwards run on. */
  get layer(): NativeLowbitLayer {
    return this.#layer;
  }

  get inFeatures(): number {
    return this.#layer.inFeatures;
  }

  get outFeatures(): number {
    return this.#layer.outFeatures;
  }

  get disposed(): boolean {
    return this.#layer.disposed;
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    if (inputs.length !== 1) throw new ArgumentError('inputs', 'exactly one input tensor for NativeLinear.forward', `${inputs.length} inputs`);
    // After disable: a forward already running through the model may still reach this layer; it
    // runs on the reference path (its source) instead of failing.
    if (this.#disposeRequested) return this.source.forward(inputs[0]);
    const layer = this.#layer;
    this.#inFlight.set(layer, (this.#inFlight.get(layer) ?? 0) + 1);
    try {
      return await layer.forward(inputs[0], { lowRank: this.lowRank, threads: this.threads });
    } finally {
      const left = this.#inFlight.get(layer)! - 1;
      if (left > 0) this.#inFlight.set(layer, left);
      else {
        this.#inFlight.delete(layer);
        if (this.#retired.delete(layer) || (this.#disposeRequested && layer === this.#layer)) layer.dispose();
      }
    }
  }

  /**
   * Makes new forwards run on `layer` (rebuilt from the source, e.g. after applyLora changed its
   * low-rank branch) and frees the previous native layer once the forwards running on it finish.
   */
  replaceLayer(layer: NativeLowbitLayer): void {
    if (!(layer instanceof NativeLowbitLayer)) throw new ArgumentError('layer', 'a NativeLowbitLayer', layer);
    if (layer.inFeatures !== this.inFeatures || layer.outFeatures !== this.outFeatures) {
      throw new ArgumentError('layer', `a native layer of ${this.inFeatures} -> ${this.outFeatures} features`, `${layer.inFeatures} -> ${layer.outFeatures}`);
    }
    const old = this.#layer;
    if (old === layer) return;
    this.#layer = layer;
    if (this.#disposeRequested) {
      layer.dispose();
      return;
    }
    if ((this.#inFlight.get(old) ?? 0) === 0) old.dispose();
    else this.#retired.add(old);
  }

  /**
   * Frees the native memory (deferred until forwards in flight have finished); later forwards run
   * the source ErrorCorrectedLinear.
   */
  dispose(): void {
    this.#disposeRequested = true;
    if ((this.#inFlight.get(this.#layer) ?? 0) === 0) this.#layer.dispose();
  }

  override toString(): string {
    return `NativeLinear(${this.inFeatures}, ${this.outFeatures}, scheme=${this.layer.scheme}, rank=${this.layer.rank}, lowRank=${this.lowRank})`;
  }
}

const OPTION_KEYS = new Set(['backend', 'lowRank', 'threads', 'lowRankBf16']);

function resolveOptions(options: unknown): Required<NativeInferenceOptions> {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { backend, lowRank, threads }', options);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!OPTION_KEYS.has(key)) throw new ArgumentError(`options.${key}`, `no such option (known: ${[...OPTION_KEYS].join(', ')})`, o[key]);
  }
  const backend = o.backend ?? 'auto';
  if (!NATIVE_BACKENDS.includes(backend as NativeBackend)) throw new ArgumentError('options.backend', `one of ${NATIVE_BACKENDS.join(', ')}`, backend);
  const lowRank = o.lowRank ?? 'fused';
  if (!LOW_RANK_MODES.includes(lowRank as LowRankMode)) throw new ArgumentError('options.lowRank', `one of ${LOW_RANK_MODES.join(', ')}`, lowRank);
  const threads = o.threads ?? 0;
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 0 || threads > 1024) {
    throw new ArgumentError('options.threads', 'an integer in [0, 1024] (0: physical cores)', threads);
  }
  const lowRankBf16 = o.lowRankBf16 ?? false;
  if (typeof lowRankBf16 !== 'boolean') throw new ArgumentError('options.lowRankBf16', 'a boolean', lowRankBf16);
  return { backend: backend as NativeBackend, lowRank: lowRank as LowRankMode, threads, lowRankBf16 };
}

/**
 * Replaces every eligible ErrorCorrectedLinear by a NativeLinear. The native layers are all built
 * first; if building throws for a layer, that layer is reported in `skipped` with the error's
 * message and stays on the reference path. Throws (before touching the model) for bad arguments and
 * for the GPU backends.
 */
export async function enableNativeInference(model: Module, options: NativeInferenceOptions = {}): Promise<NativeInferenceReport> {
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  const o = resolveOptions(options);
  if (o.backend === 'cuda' || o.backend === 'hip') {
    throw new BackendUnavailableError(o.backend, `the ${o.backend === 'cuda' ? 'CUDA (NVIDIA)' : 'HIP (AMD ROCm)'} backend is not built in this version of svdquant; use backend 'cpu' or 'auto'`);
  }
  const reason = o.backend === 'auto' ? "'auto' chose 'cpu': the only backend built in this version" : "'cpu' requested";
  const parents = parentCounts(model);
  const skipped: { name: string; reason: string }[] = [];
  const todo: { name: string; source: ErrorCorrectedLinear }[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof NativeLinear) {
      skipped.push({ name, reason: 'already running natively' });
    } else if (m instanceof ErrorCorrectedLinear) {
      if (name === '') skipped.push({ name, reason: 'the root module cannot be replaced (wrap it in a container)' });
      else if ((parents.get(m) ?? 0) > 1) skipped.push({ name, reason: `shared: the same layer is a child of ${parents.get(m)} parents` });
      else todo.push({ name, source: m });
    }
  }
  const built: { name: string; native: NativeLinear }[] = [];
  try {
    for (const t of todo) {
      let layer: NativeLowbitLayer;
      try {
        layer = await NativeLowbitLayer.create({ ...t.source.data(), lowRankBf16: o.lowRankBf16 });
      } catch (e) {
        skipped.push({ name: t.name, reason: `the native layer could not be built: ${e instanceof Error ? e.message : String(e)}` });
        continue;
      }
      built.push({ name: t.name, native: new NativeLinear(t.source, layer, o) });
    }
    for (const b of built) model.setSubmodule(b.name, b.native);
  } catch (e) {
    for (const b of built) {
      if (model.getSubmodule(b.name) === b.native) model.setSubmodule(b.name, b.native.source);
      b.native.dispose();
    }
    throw e;
  }
  return { backend: 'cpu', requested: o.backend, reason, converted: built.map((b) => b.name), skipped };
}

export interface DisableNativeInferenceReport {
  /** Dotted names of the layers restored to their ErrorCorrectedLinear. */
  restored: string[];
}

/**
 * Puts back the ErrorCorrectedLinear each NativeLinear was built from and frees the native memory
 * (after forwards in flight have finished).
 */
export function disableNativeInference(model: Module): DisableNativeInferenceReport {
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  const found: { name: string; native: NativeLinear }[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof NativeLinear && name !== '') found.push({ name, native: m });
  }
  for (const f of found) {
    model.setSubmodule(f.name, f.native.source);
    f.native.dispose();
  }
  return { restored: found.map((f) => f.name) };
}
