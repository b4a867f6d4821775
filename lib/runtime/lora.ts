/**
 * LoRA on SVDQuant layers (issue 5 item 5): load LoRA safetensors and append each LoRA to its layer's
 * low-rank branch, without re-quantizing the residual, as Nunchaku does.
 *
 * File namings read by loadLora (P is the module path; every tensor F32, F16 or BF16):
 *   diffusers / PEFT   P.lora_A.weight [r, K]   P.lora_B.weight [N, r]
 *                      (also with an adapter name: P.lora_A.default.weight / P.lora_B.default.weight)
 *   kohya              P.lora_down.weight [r, K]   P.lora_up.weight [N, r]
 *   either             P.alpha (one value, optional): the LoRA is scaled by alpha / r (no alpha: 1)
 * Any other tensor name (DoRA `dora_scale`, LoHa/LoKr, `diff`, ...) and conv-shaped (non 2-D) factors
 * are rejected with a FileFormatError naming them. `options.prefix`, when given, is stripped from
 * every module path that starts with it.
 *
 * Matching a module path to a layer of the model (applyLora), first hit wins:
 *   1. the path is a dotted module name of the model (`blocks.0.fc1`);
 *   2. the path with '.' replaced by '_' equals a module name with '.' replaced by '_'
 *      (kohya: `blocks_0_fc1`); ambiguous matches are errors;
 *   3. 1-2 again after removing one of the usual prefixes: lora_unet_, lora_transformer_, lora_te_,
 *      lora_te1_, lora_te2_, transformer., unet., model., diffusion_model., base_model.model.
 * Only SVDQuant layers (ErrorCorrectedLinear, or a NativeLinear built from one) take LoRAs.
 *
 * The algebra. The branch adds (X̂·L_downᵀ)·L_upᵀ with X̂ = X/λ (per input channel). A LoRA acts on
 * the raw input: ΔY = s·X·Aᵀ·Bᵀ with s = strength·alpha/r. Since X̂·(A·diag(λ))ᵀ = X·Aᵀ, the branch
 * becomes L_down' = [L_down; A·diag(λ)] (rows appended) and L_up' = [L_up, s·B] (columns appended):
 * the rank grows by r and the quantized residual, λ and bias are untouched.
 *
 * applyLora returns a handle whose remove() rebuilds the branch of each layer from its base factors
 * (the very tensors it had before the first LoRA, so removing every LoRA restores bit-identical
 * outputs) plus the LoRAs still applied, in the order they were applied; LoRAs may be removed in any
 * order. With native inference on, the NativeLinear of each affected layer gets a new native layer
 * of the new rank (the old one is freed once its running forwards finish); enabling native
 * inference after applyLora builds the native layers with the LoRAs already in the branch.
 * A checkpoint saved while LoRAs are applied holds the grown branch (the LoRAs baked in).
 *
 * Everything is validated (and, on the native path, the new native layers are built) before the
 * model is changed: a failed applyLora or remove leaves the model exactly as it was. LoRA operations
 * run one at a time; do not toggle native inference while an applyLora/remove is in progress.
 */
import { ArgumentError, FileFormatError } from '../errors.js';
import { Module } from '../graph/module.js';
import { Tensor } from '../tensor.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import { NativeLinear } from './native-inference.js';
import type { NativeKernelLayer } from './native-layer.js';
import { openSafetensors } from '../io/safetensors.js';
import { tensorFromSafetensors } from '../io/tensor-bridge.js';

/** One LoRA pair of a file: ΔW = scale·up·down for the module `path`. */
export interface LoraModule {
  /** The module path in the file (after `prefix` was stripped). */
  readonly path: string;
  /** A [r, K] and B [N, r] as f32. */
  readonly down: Tensor<'f32'>;
  readonly up: Tensor<'f32'>;
  readonly rank: number;
  /** alpha, if the file has one. */
  readonly alpha: number | undefined;
  /** alpha / r (1 without alpha); the strength multiplies it. */
  readonly scale: number;
  /** The file's tensor names (for messages). */
  readonly downTensor: string;
  readonly upTensor: string;
}

export type LoraNaming = 'diffusers' | 'kohya' | 'mixed';

export interface Lora {
  readonly name: string;
  readonly file: string;
  /** Default strength for applyLora. */
  readonly strength: number;
  readonly naming: LoraNaming;
  readonly modules: readonly LoraModule[];
}

export interface LoadLoraOptions {
  /** Default strength used by applyLora (default 1). */
  strength?: number;
  /** A name for messages (default: the file name). */
  name?: string;
  /** Stripped from the start of every module path that has it. */
  prefix?: string;
}

export interface ApplyLoraOptions {
  /** Multiplies alpha / r (default: the Lora's strength). 0 is allowed; negative values subtract. */
  strength?: number;
  /** Skip (and report) LoRA modules that match no SVDQuant layer instead of throwing. */
  ignoreMissing?: boolean;
}

export interface LoraHandle {
  readonly lora: Lora;
  readonly strength: number;
  /** Dotted names of the layers the LoRA was added to. */
  readonly layers: readonly string[];
  /** Module paths of the file that matched no SVDQuant layer (only with ignoreMissing). */
  readonly skipped: readonly string[];
  /** False once removed. */
  readonly active: boolean;
  /** Takes the LoRA out again (a no-op when already removed). */
  remove(): Promise<void>;
}

const KNOWN_PREFIXES = [
  'lora_unet_', 'lora_transformer_', 'lora_te_', 'lora_te1_', 'lora_te2_',
  'transformer.', 'unet.', 'model.', 'diffusion_model.', 'base_model.model.',
];

const PATTERNS: { re: RegExp; role: 'down' | 'up' | 'alpha'; naming: 'diffusers' | 'kohya' | null }[] = [
  { re: /^(.+)\.lora_A(?:\.[A-Za-z0-9_-]+)?\.weight$/, role: 'down', naming: 'diffusers' },
  { re: /^(.+)\.lora_B(?:\.[A-Za-z0-9_-]+)?\.weight$/, role: 'up', naming: 'diffusers' },
  { re: /^(.+)\.lora_down\.weight$/, role: 'down', naming: 'kohya' },
  { re: /^(.+)\.lora_up\.weight$/, role: 'up', naming: 'kohya' },
  { re: /^(.+)\.alpha$/, role: 'alpha', naming: null },
];

function checkStrength(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(name, 'a finite number', v);
  return v;
}

function list(names: readonly string[]): string {
  const shown = names.slice(0, 8).map((n) => `'${n}'`).join(', ');
  return names.length > 8 ? `${shown} and ${names.length - 8} more` : shown;
}

/** Reads a LoRA safetensors file (see the file comment for the namings). */
export async function loadLora(file: string, options: LoadLoraOptions = {}): Promise<Lora> {
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a non-empty file path string', file);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { strength, name, prefix }', options);
  for (const k of Object.keys(options)) {
    if (!['strength', 'name', 'prefix'].includes(k)) throw new ArgumentError(`options.${k}`, 'no such option (known: strength, name, prefix)', (options as Record<string, unknown>)[k]);
  }
  const strength = options.strength === undefined ? 1 : checkStrength(options.strength, 'options.strength');
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name.length === 0)) throw new ArgumentError('options.name', 'a non-empty string', options.name);
  if (options.prefix !== undefined && typeof options.prefix !== 'string') throw new ArgumentError('options.prefix', 'a string', options.prefix);
  const prefix = options.prefix ?? '';
  const name = options.name ?? (file.split(/[\\/]/).pop() ?? file);

  const st = await openSafetensors(file);
  try {
    const groups = new Map<string, { down?: string; up?: string; alpha?: string }>();
    const unsupported: string[] = [];
    const namings = new Set<string>();
    for (const info of st.tensors) {
      const hit = PATTERNS.map((p) => ({ p, m: p.re.exec(info.name) })).find((h) => h.m !== null);
      if (hit === undefined) {
        unsupported.push(info.name);
        continue;
      }
      let path = hit.m![1];
      if (prefix !== '' && path.startsWith(prefix) && path.length > prefix.length) path = path.slice(prefix.length);
      const g = groups.get(path) ?? {};
      if (g[hit.p.role] !== undefined) throw new FileFormatError(file, `tensors '${g[hit.p.role]}' and '${info.name}' are both the ${hit.p.role} of module '${path}': expected one per module`);
      g[hit.p.role] = info.name;
      groups.set(path, g);
      if (hit.p.naming !== null) namings.add(hit.p.naming);
    }
    if (unsupported.length > 0) {
      throw new FileFormatError(file, `unsupported LoRA tensors ${list(unsupported)}: expected only P.lora_A.weight / P.lora_B.weight (diffusers, PEFT), P.lora_down.weight / P.lora_up.weight (kohya) and P.alpha`);
    }
    if (groups.size === 0) throw new FileFormatError(file, 'no LoRA tensors: expected P.lora_A.weight / P.lora_B.weight or P.lora_down.weight / P.lora_up.weight pairs');

    const readF32 = async (tname: string, dims: number): Promise<Tensor<'f32'>> => {
      const info = st.info(tname);
      if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw new FileFormatError(file, `tensor '${tname}' is ${info.dtype}: expected F32, F16 or BF16`);
      if (info.shape.length !== dims || info.shape.some((d) => d === 0)) {
        throw new FileFormatError(file, `tensor '${tname}' is [${info.shape.join(', ')}]: expected a non-empty ${dims}-D tensor${dims === 2 ? ' (conv LoRAs are not supported)' : ''}`);
      }
      const t = tensorFromSafetensors(await st.readTensor(tname));
      const f = t.dtype === 'f32' ? new Float32Array(t.data as Float32Array) : (t.to('f32').data as Float32Array);
      for (let i = 0; i < f.length; i++) {
        if (!Number.isFinite(f[i])) throw new FileFormatError(file, `tensor '${tname}' holds a non-finite value (${f[i]}) at flat index ${i}: expected finite values`);
      }
      return Tensor.fromStorage(f, [...info.shape], 'f32');
    };

    const modules: LoraModule[] = [];
    for (const [path, g] of groups) {
      if (g.down === undefined || g.up === undefined) {
        throw new FileFormatError(file, `module '${path}' has ${g.down ? `'${g.down}'` : g.up ? `'${g.up}'` : `only '${g.alpha}'`} but no ${g.down ? 'up (lora_B / lora_up)' : 'down (lora_A / lora_down)'} factor: expected both`);
      }
      const down = await readF32(g.down, 2);
      const up = await readF32(g.up, 2);
      const r = down.shape[0];
      if (up.shape[1] !== r) {
        throw new FileFormatError(file, `tensor '${g.up}' is [${up.shape.join(', ')}] but '${g.down}' is [${down.shape.join(', ')}]: expected up [N, ${r}] for a rank-${r} down factor`);
      }
      let alpha: number | undefined;
      if (g.alpha !== undefined) {
        const info = st.info(g.alpha);
        const numel = info.shape.reduce((a, b) => a * b, 1);
        if (numel !== 1 || info.shape.length > 1) throw new FileFormatError(file, `tensor '${g.alpha}' is [${info.shape.join(', ')}]: expected one value (shape [] or [1])`);
        if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw new FileFormatError(file, `tensor '${g.alpha}' is ${info.dtype}: expected F32, F16 or BF16`);
        const t = tensorFromSafetensors(await st.readTensor(g.alpha));
        alpha = (t.dtype === 'f32' ? t.data as Float32Array : t.to('f32').data as Float32Array)[0];
        if (!Number.isFinite(alpha)) throw new FileFormatError(file, `tensor '${g.alpha}' holds a non-finite value (${alpha}): expected a finite alpha`);
      }
      modules.push({ path, down, up, rank: r, alpha, scale: alpha === undefined ? 1 : alpha / r, downTensor: g.down, upTensor: g.up });
    }
    const naming: LoraNaming = namings.size === 1 ? (namings.has('kohya') ? 'kohya' : 'diffusers') : 'mixed';
    return { name, file, strength, naming, modules };
  } finally {
    await st.close();
  }
}

// ---- applying ----

interface Entry {
  readonly id: symbol;
  /** A·diag(λ) [r, K] and s·B [N, r]. */
  readonly down: Float32Array;
  readonly up: Float32Array;
  readonly rank: number;
}

interface LayerState {
  /** The factors before the first LoRA (restored as the same tensors when the last one goes). */
  readonly baseDown: Tensor<'f32'> | undefined;
  readonly baseUp: Tensor<'f32'> | undefined;
  entries: Entry[];
}

const states = new WeakMap<ErrorCorrectedLinear, LayerState>();

/** LoRA operations run one at a time (each awaits native layer builds before committing). */
let queue: Promise<unknown> = Promise.resolve();
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

/** The branch of `layer` for base factors + entries. */
function buildFactors(layer: ErrorCorrectedLinear, base: LayerState, entries: readonly Entry[]): { lDown: Tensor<'f32'> | undefined; lUp: Tensor<'f32'> | undefined } {
  if (entries.length === 0) return { lDown: base.baseDown, lUp: base.baseUp };
  const k = layer.inFeatures, n = layer.outFeatures;
  const r0 = base.baseDown === undefined ? 0 : base.baseDown.shape[0];
  const total = entries.reduce((a, e) => a + e.rank, r0);
  const down = new Float32Array(total * k);
  const up = new Float32Array(n * total);
  if (r0 > 0) down.set(base.baseDown!.data);
  let off = r0;
  for (const e of entries) {
    down.set(e.down, off * k);
    off += e.rank;
  }
  for (let o = 0; o < n; o++) {
    const row = o * total;
    if (r0 > 0) up.set(base.baseUp!.data.subarray(o * r0, (o + 1) * r0), row);
    let c = r0;
    for (const e of entries) {
      up.set(e.up.subarray(o * e.rank, (o + 1) * e.rank), row + c);
      c += e.rank;
    }
  }
  return { lDown: Tensor.fromStorage(down, [total, k], 'f32'), lUp: Tensor.fromStorage(up, [n, total], 'f32') };
}

interface Change {
  layer: ErrorCorrectedLinear;
  entries: Entry[];
  lDown: Tensor<'f32'> | undefined;
  lUp: Tensor<'f32'> | undefined;
  natives: { module: NativeLinear; built?: NativeKernelLayer }[];
}

/** NativeLinears of `model` built from `layer`. */
function nativesOf(model: Module, layer: ErrorCorrectedLinear): NativeLinear[] {
  const out: NativeLinear[] = [];
  for (const [, m] of model.namedModules()) if (m instanceof NativeLinear && m.source === layer && !out.includes(m)) out.push(m);
  return out;
}

/** Builds the native layers of every change, then commits all of them (or none). */
async function commit(changes: Change[]): Promise<void> {
  try {
    for (const c of changes) {
      for (const nat of c.natives) {
        nat.built = await nat.module.buildLayer({
          ...c.layer.data(),
          ...(c.lDown && c.lUp ? { lDown: c.lDown, lUp: c.lUp } : { lDown: undefined, lUp: undefined }),
        });
      }
    }
  } catch (e) {
    for (const c of changes) for (const nat of c.natives) nat.built?.dispose();
    throw e;
  }
  // Synchronous from here on: nothing below can fail for validated data.
  for (const c of changes) {
    let state = states.get(c.layer);
    if (state === undefined) {
      state = { baseDown: c.layer.lDown, baseUp: c.layer.lUp, entries: [] };
      states.set(c.layer, state);
    }
    state.entries = c.entries;
    c.layer.setLowRank(c.lDown, c.lUp);
    if (c.entries.length === 0) states.delete(c.layer);
    for (const nat of c.natives) nat.module.replaceLayer(nat.built!);
  }
}

function resolveTargets(model: Module): { byName: Map<string, ErrorCorrectedLinear>; byUnderscore: Map<string, string[]> } {
  const byName = new Map<string, ErrorCorrectedLinear>();
  const byUnderscore = new Map<string, string[]>();
  for (const [name, m] of model.namedModules()) {
    const layer = m instanceof NativeLinear ? m.source : m instanceof ErrorCorrectedLinear ? m : undefined;
    if (layer === undefined) continue;
    byName.set(name, layer);
    const u = name.replace(/\./g, '_');
    byUnderscore.set(u, [...(byUnderscore.get(u) ?? []), name]);
  }
  return { byName, byUnderscore };
}

function match(path: string, t: ReturnType<typeof resolveTargets>): string | undefined {
  const candidates = [path, ...KNOWN_PREFIXES.filter((p) => path.startsWith(p) && path.length > p.length).map((p) => path.slice(p.length))];
  for (const c of candidates) {
    if (t.byName.has(c)) return c;
    const hits = t.byUnderscore.get(c.replace(/\./g, '_'));
    if (hits !== undefined && hits.length > 1) throw new ArgumentError('lora', `LoRA module '${path}' to match one layer, but it matches ${list(hits)}`);
    if (hits !== undefined) return hits[0];
  }
  return undefined;
}

/**
 * Adds `lora` to the low-rank branch of each layer it names (see the file comment). Throws
 * ArgumentError (and changes nothing) for bad arguments, module paths that match no SVDQuant layer
 * (all listed; `ignoreMissing` skips them instead), shape mismatches, and two paths naming one layer.
 */
export function applyLora(model: Module, lora: Lora, options: ApplyLoraOptions = {}): Promise<LoraHandle> {
  if (!(model instanceof Module)) return Promise.reject(new ArgumentError('model', 'a Module', model));
  if (lora === null || typeof lora !== 'object' || !Array.isArray(lora.modules)) return Promise.reject(new ArgumentError('lora', 'a Lora from loadLora', lora));
  return exclusive(async () => {
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { strength, ignoreMissing }', options);
    for (const k of Object.keys(options)) {
      if (!['strength', 'ignoreMissing'].includes(k)) throw new ArgumentError(`options.${k}`, 'no such option (known: strength, ignoreMissing)', (options as Record<string, unknown>)[k]);
    }
    const strength = options.strength === undefined ? checkStrength(lora.strength, 'lora.strength') : checkStrength(options.strength, 'options.strength');
    if (options.ignoreMissing !== undefined && typeof options.ignoreMissing !== 'boolean') throw new ArgumentError('options.ignoreMissing', 'a boolean', options.ignoreMissing);
    const targets = resolveTargets(model);
    const missing: string[] = [];
    const planned: { name: string; layer: ErrorCorrectedLinear; mod: LoraModule }[] = [];
    for (const mod of lora.modules) {
      const name = match(mod.path, targets);
      if (name === undefined) {
        missing.push(mod.path);
        continue;
      }
      const layer = targets.byName.get(name)!;
      const prior = planned.find((p) => p.layer === layer);
      if (prior !== undefined) throw new ArgumentError('lora', `one LoRA module per layer, but '${prior.mod.path}' and '${mod.path}' both name layer '${name}'`);
      if (!(mod.down instanceof Tensor) || mod.down.dtype !== 'f32' || mod.down.ndim !== 2 || !(mod.up instanceof Tensor) || mod.up.dtype !== 'f32' || mod.up.ndim !== 2) {
        throw new ArgumentError(`lora '${lora.name}' module '${mod.path}'`, 'f32 2-D down and up tensors');
      }
      if (mod.down.shape[1] !== layer.inFeatures || mod.up.shape[0] !== layer.outFeatures || mod.up.shape[1] !== mod.down.shape[0]) {
        throw new ArgumentError(`lora '${lora.name}' tensors '${mod.downTensor}' / '${mod.upTensor}'`,
          `down [r, ${layer.inFeatures}] and up [${layer.outFeatures}, r] for layer '${name}' (${layer.inFeatures} -> ${layer.outFeatures})`,
          `down [${mod.down.shape.join(', ')}], up [${mod.up.shape.join(', ')}]`);
      }
      if (!Number.isFinite(mod.scale)) throw new ArgumentError(`lora '${lora.name}' module '${mod.path}' scale`, 'a finite number', mod.scale);
      planned.push({ name, layer, mod });
    }
    if (missing.length > 0 && options.ignoreMissing !== true) {
      throw new ArgumentError('lora', `every LoRA module to match an SVDQuant layer of the model (or options.ignoreMissing: true), but ${missing.length} match none: ${list(missing)}`);
    }

    const id = Symbol(lora.name);
    const changes: Change[] = planned.map(({ layer, mod }) => {
      const k = layer.inFeatures, r = mod.rank, s = strength * mod.scale;
      const down = new Float32Array(mod.down.data);
      const lam = layer.smooth?.data;
      if (lam !== undefined) for (let i = 0; i < down.length; i++) down[i] = down[i] * lam[i % k];
      const up = new Float32Array(mod.up.data.length);
      for (let i = 0; i < up.length; i++) up[i] = s * mod.up.data[i];
      for (const v of [down, up]) {
        for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) throw new ArgumentError(`lora '${lora.name}' module '${mod.path}'`, 'finite values after scaling by the strength and λ', v[i]);
      }
      const state = states.get(layer) ?? { baseDown: layer.lDown, baseUp: layer.lUp, entries: [] };
      const entries = [...state.entries, { id, down, up, rank: r }];
      return { layer, entries, ...buildFactors(layer, state, entries), natives: nativesOf(model, layer).map((module) => ({ module })) };
    });
    await commit(changes);

    const layers = planned.map((p) => p.layer);
    let active = true;
    const handle: LoraHandle = {
      lora, strength,
      layers: planned.map((p) => p.name),
      skipped: missing,
      get active() {
        return active;
      },
      remove: () => exclusive(async () => {
        if (!active) return;
        const removal: Change[] = [];
        for (const layer of layers) {
          const state = states.get(layer);
          if (state === undefined || !state.entries.some((e) => e.id === id)) continue;
          const entries = state.entries.filter((e) => e.id !== id);
          removal.push({ layer, entries, ...buildFactors(layer, state, entries), natives: nativesOf(model, layer).map((module) => ({ module })) });
        }
        await commit(removal);
        active = false;
      }),
    };
    return handle;
  });
}
