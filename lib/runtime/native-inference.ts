/**
 * Native inference toggles (DESIGN.md §6, issue 5 item 3).
 *
 * enableNativeInference(model, options) replaces every eligible ErrorCorrectedLinear of the tree by a
 * NativeLinear (a graph Module around a NativeLowbitLayer built from the same canonical data) and
 * reports what was converted and, for every layer that was not, why. disableNativeInference(model)
 * puts the very same ErrorCorrectedLinear objects back (each NativeLinear keeps its `source`) and
 * frees the native memory, so reference outputs are bit-identical before and after a round trip.
 *
 * Backends: 'cpu' (the native CPU engine), 'cuda' and 'hip' (GPU backend libraries loaded at run
 * time, lib/runtime/gpu-backend.ts), and 'auto': cuda, then hip, then cpu, with the reason each GPU
 * backend was not chosen in the report. A GPU backend that was asked for but cannot be used throws
 * BackendUnavailableError (naming the reason) before the model is touched.
 */
import { ArgumentError, BackendUnavailableError, GpuError, GpuUnsupportedError } from '../errors.js';
import { Module } from '../graph/module.js';
import { declareReleaseSafe } from '../graph/release.js';
import { trackTensor } from '../graph/scope.js';
import { Tensor } from '../tensor.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import { parentCounts } from '../quant/quantize-model.js';
import { LOW_RANK_MODES, NativeLowbitLayer, type LowbitLayerData, type LowRankMode, type NativeKernelLayer, type NativeLayerBackend } from './native-layer.js';
import { GpuLowbitLayer } from './gpu-layer.js';
import { checkDevice, deviceProblem, probeGpuBackend, type GpuPlatform } from './gpu-backend.js';

export { BackendUnavailableError };

export type NativeBackend = 'cpu' | 'cuda' | 'hip' | 'auto';
export const NATIVE_BACKENDS: readonly NativeBackend[] = ['cpu', 'cuda', 'hip', 'auto'];

export interface NativeInferenceOptions {
  /** Default 'auto': cuda, then hip, then cpu. */
  backend?: NativeBackend;
  /** GPU device index for 'cuda', 'hip' and 'auto' (default 0; ignored by 'cpu'). */
  device?: number;
  /** How the low-rank branch runs (default 'fused'). */
  lowRank?: LowRankMode;
  /** Native threads per forward of the CPU backend (0, the default: physical cores). */
  threads?: number;
  /** Keep L_down / L_up as bf16 in the kernel format (default false: fp32, as the reference). */
  lowRankBf16?: boolean;
}

export interface NativeInferenceReport {
  /** The backend the layers run on. */
  backend: NativeLayerBackend;
  /** The GPU device index (GPU backends only). */
  device?: number;
  /** The backend asked for, and how the choice was made. */
  requested: NativeBackend;
  reason: string;
  /** Dotted names of the converted layers, in module order. */
  converted: string[];
  /** Every ErrorCorrectedLinear (or already native layer) not converted, with the reason. */
  skipped: { name: string; reason: string }[];
}

function isKernelLayer(layer: unknown): layer is NativeKernelLayer {
  return layer instanceof NativeLowbitLayer || layer instanceof GpuLowbitLayer;
}

/**
 * The native layer in the graph: forward runs the native layer (CPU NativeLowbitLayer or
 * GpuLowbitLayer) with the options given at enable time. `source` is the ErrorCorrectedLinear it was
 * built from (restored on disable).
 */
export class NativeLinear extends Module {
  readonly source: ErrorCorrectedLinear;
  /** The backend the native layer runs on. */
  readonly backend: NativeLayerBackend;
  /** The GPU device index (GPU backends), else undefined. */
  readonly device: number | undefined;
  lowRank: LowRankMode;
  threads: number;
  /** Whether the low-rank factors are kept as bf16 in the kernel format (as at enable time). */
  readonly lowRankBf16: boolean;
  #layer: NativeKernelLayer;
  /** Forwards in flight per native layer (a replaced layer is freed when its last one finishes). */
  #inFlight = new Map<NativeKernelLayer, number>();
  #retired = new Set<NativeKernelLayer>();
  #disposeRequested = false;

  constructor(source: ErrorCorrectedLinear, layer: NativeKernelLayer, options: { lowRank: LowRankMode; threads: number; lowRankBf16?: boolean }) {
    super();
    if (!(source instanceof ErrorCorrectedLinear)) throw new ArgumentError('source', 'an ErrorCorrectedLinear', source);
    if (!isKernelLayer(layer)) throw new ArgumentError('layer', 'a NativeLowbitLayer or GpuLowbitLayer', layer);
    this.source = source;
    this.#layer = layer;
    this.backend = layer.backend;
    this.device = layer instanceof GpuLowbitLayer ? layer.device : undefined;
    this.lowRank = options.lowRank;
    this.threads = options.threads;
    this.lowRankBf16 = options.lowRankBf16 === true;
  }

  /** The native layer new forwards run on. */
  get layer(): NativeKernelLayer {
    return this.#layer;
  }

  /**
   * Builds a native layer from canonical data on this module's backend and device, with its
   * lowRankBf16 setting (e.g. the source's data after applyLora changed the low-rank branch); hand
   * it to replaceLayer().
   */
  async buildLayer(data: LowbitLayerData): Promise<NativeKernelLayer> {
    const d = { ...data, lowRankBf16: this.lowRankBf16 };
    if (this.backend === 'cpu') return NativeLowbitLayer.create(d);
    return GpuLowbitLayer.create(d, { backend: this.backend, device: this.device ?? 0 });
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
      // Tracked like every op output, so the enclosing module frees it when done with it (left to
      // V8, the 4-bit model's outputs alone triggered a major GC every few layers).
      return trackTensor(await layer.forward(inputs[0], { lowRank: this.lowRank, threads: this.threads }));
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
  replaceLayer(layer: NativeKernelLayer): void {
    if (!isKernelLayer(layer)) throw new ArgumentError('layer', 'a NativeLowbitLayer or GpuLowbitLayer', layer);
    const device = layer instanceof GpuLowbitLayer ? layer.device : undefined;
    if (layer.backend !== this.backend || device !== this.device) {
      throw new ArgumentError('layer', `a native layer on ${this.placement()}`, `a layer on ${layer.backend}${device === undefined ? '' : ':' + device}`);
    }
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

  /** 'cpu', or 'cuda:0' / 'hip:1' for a GPU layer. */
  placement(): string {
    return this.device === undefined ? this.backend : `${this.backend}:${this.device}`;
  }

  override toString(): string {
    return `NativeLinear(${this.inFeatures}, ${this.outFeatures}, scheme=${this.layer.scheme}, rank=${this.layer.rank}, lowRank=${this.lowRank}, backend=${this.placement()})`;
  }
}
declareReleaseSafe(NativeLinear);

const OPTION_KEYS = new Set(['backend', 'device', 'lowRank', 'threads', 'lowRankBf16']);

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
  const device = checkDevice(o.device ?? 0, 'options.device');
  return { backend: backend as NativeBackend, device, lowRank: lowRank as LowRankMode, threads, lowRankBf16 };
}

/**
 * Picks the backend: 'cpu' as is; 'cuda' / 'hip' must be available with the device, else
 * BackendUnavailableError; 'auto' tries cuda, then hip, then cpu and says why each was not chosen.
 */
async function chooseBackend(requested: NativeBackend, device: number): Promise<{ backend: NativeLayerBackend; reason: string }> {
  if (requested === 'cpu') return { backend: 'cpu', reason: "'cpu' requested" };
  const platforms: GpuPlatform[] = requested === 'auto' ? ['cuda', 'hip'] : [requested];
  const why: string[] = [];
  for (const platform of platforms) {
    const report = await probeGpuBackend(platform);
    const problem = report.available ? deviceProblem(report, device) : report.reason;
    if (problem === '') {
      const dev = report.devices.find((d) => d.index === device)!;
      const skippedNote = why.length > 0 ? ` (${why.join('; ')})` : '';
      return {
        backend: platform,
        reason: `${requested === 'auto' ? `'auto' chose '${platform}'` : `'${platform}' requested`}: device ${device} ${dev.name} (${dev.arch})${skippedNote}`,
      };
    }
    if (requested !== 'auto') throw new BackendUnavailableError(platform, problem);
    why.push(`${platform}: ${problem}`);
  }
  return { backend: 'cpu', reason: `'auto' chose 'cpu': ${why.join('; ')}` };
}

/**
 * Replaces every eligible ErrorCorrectedLinear by a NativeLinear on the chosen backend. The native
 * layers are all built first. A layer the backend cannot build (bad data, or a scheme a GPU build
 * does not support) is reported in `skipped` with the reason and stays on the reference path. A GPU
 * failure that is not about one layer (out of memory, device lost, driver, runtime error) frees every
 * layer built so far and is thrown as its typed GpuError: the model is left as it was. Throws
 * (before touching the model) for bad arguments and for a GPU backend that is not available.
 */
export async function enableNativeInference(model: Module, options: NativeInferenceOptions = {}): Promise<NativeInferenceReport> {
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  const o = resolveOptions(options);
  const { backend, reason } = await chooseBackend(o.backend, o.device);
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
      const data = { ...t.source.data(), lowRankBf16: o.lowRankBf16 };
      let layer: NativeKernelLayer;
      try {
        layer = backend === 'cpu' ? await NativeLowbitLayer.create(data) : await GpuLowbitLayer.create(data, { backend, device: o.device });
      } catch (e) {
        // Failures of the device itself abort the whole conversion (below); the rest are per layer.
        if (e instanceof GpuError && !(e instanceof GpuUnsupportedError)) throw e;
        if (e instanceof BackendUnavailableError) throw e;
        skipped.push({ name: t.name, reason: `the ${backend} layer could not be built: ${e instanceof Error ? e.message : String(e)}` });
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
  const report: NativeInferenceReport = { backend, requested: o.backend, reason, converted: built.map((b) => b.name), skipped };
  if (backend !== 'cpu') report.device = o.device;
  return report;
}

export interface DisableNativeInferenceReport {
  /** Dotted names of the layers restored to their ErrorCorrectedLinear. */
  restored: string[];
}

/**
 * Puts back the ErrorCorrectedLinear each NativeLinear was built from and frees the native memory
 * (after forwards in flight have finished).
 *
 * A forward already running when this is called is not interrupted and stays memory-safe, but it
 * mixes the paths: the layers it already ran were native, the ones it reaches afterwards run the
 * reference path, so its output matches neither path exactly (within the quantization error of
 * both). Await forwards in flight first when outputs must be bit-identical to one path.
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
