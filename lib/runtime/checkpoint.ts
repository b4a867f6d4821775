/**
 * SVDQuant checkpoints (DESIGN.md §7): a whole model in one safetensors file, quantized layers in
 * their canonical form.
 *
 * Tensors, with P the module's dotted name (`name` alone for the root):
 *   ErrorCorrectedLinear  P.qweight   codes [N, Kp] (int4/fp4: U8 [N, Kp/2], two codes per byte, element
 *                                     2i in the low nibble; w8a8: I8 [N, K])
 *                         P.wscales   group scales [N, groups] (F32 for int4/int8, U8 = E8M0 for mxfp4,
 *                                     F8_E4M3 for nvfp4)
 *                         P.smooth    λ F32 [K]            (only with smoothing)
 *                         P.lora_down L_down F32 [r, K]    (only with rank > 0; Nunchaku's naming)
 *                         P.lora_up   L_up F32 [N, r]
 *                         P.bias      F32 [N]              (only with a bias)
 *   every other module    its parameters and persistent buffers under their own names, F32
 *                         (`P.weight`, `P.bias`, `P.scale_shift_table`: diffusers' keys for diffusers models)
 *
 * `__metadata__` (string values): `format` = "svdquant.checkpoint", `format_version` = "2" (files of
 * version 1, which held quantized layers, Linear and norm parameters, still load), per quantized
 * layer a key `layer:P` holding a JSON object (kind 'svdquant', scheme, weight_format, group, rank,
 * in_features, out_features, global_scale, act_scale_rule, weight_scale_rule or null, smooth, bias),
 * `contents` = "model" when the file holds every parameter of the model (saveCheckpoint; loading it
 * then requires every parameter), and `model_config` = the model's config (diffusers' config.json,
 * with `_class_name`) when the model has one, so that the file alone rebuilds the model
 * (loadModel in lib/models). Files written by `svdquant quantize` hold the quantized layers and list
 * the other tensors they carried over under `passthrough_tensors`.
 *
 * Saving reads the reference layers (a NativeLinear's `source`), so it works with native inference
 * on or off. Loading validates the whole file against the model before changing anything; a failed
 * load throws a typed error and leaves the model as it was.
 */
import { ArgumentError, FileFormatError, SvdquantError } from '../errors.js';
import { Module } from '../graph/module.js';
import { Linear } from '../graph/layers.js';
import { Tensor } from '../tensor.js';
import { FORMATS, MX_SCALE_RULES, SCHEMES, SCHEME_NAMES, groupsPerRow, paddedK } from '../formats/schemes.js';
import type { MxScaleRule, SchemeName } from '../formats/schemes.js';
import type { QuantizedTensor } from '../formats/quantize.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import { parentCounts } from '../quant/quantize-model.js';
import { NativeLinear } from './native-inference.js';
import { openSafetensors, writeSafetensors, type SafetensorsTensorInput, type SafetensorsTensorData } from '../io/safetensors.js';
import type { SafetensorsDtype } from '../io/safetensors-format.js';
import { tensorFromSafetensors, tensorToSafetensors } from '../io/tensor-bridge.js';

export const CHECKPOINT_FORMAT = 'svdquant.checkpoint';
export const CHECKPOINT_FORMAT_VERSION = '2';
const READABLE_VERSIONS = ['1', '2'];

/** A model that knows its configuration (the models of lib/models: diffusers' config.json with `_class_name`). */
export interface ConfiguredModel {
  readonly config: Readonly<Record<string, unknown>> & { readonly _class_name: string };
}

/** The model's config if it has one (see ConfiguredModel), else undefined. */
export function modelConfigOf(model: Module): ConfiguredModel['config'] | undefined {
  const c = (model as Partial<ConfiguredModel>).config;
  return c !== null && typeof c === 'object' && typeof c._class_name === 'string' ? c : undefined;
}

export interface SvdquantLayerMeta {
  kind: 'svdquant';
  scheme: SchemeName;
  weight_format: string;
  group: number;
  rank: number;
  in_features: number;
  out_features: number;
  global_scale: number;
  act_scale_rule: MxScaleRule;
  weight_scale_rule: MxScaleRule | null;
  smooth: boolean;
  bias: boolean;
}
export interface LinearMeta { kind: 'linear'; in_features: number; out_features: number; bias: boolean }
export interface NormMeta { kind: 'layernorm' | 'rmsnorm'; dim: number; affine: boolean }
export type CheckpointLayerMeta = SvdquantLayerMeta | LinearMeta | NormMeta;

export interface SaveCheckpointReport {
  /** Dotted names of the quantized layers, in module order. */
  layers: string[];
  /** Names of the other tensors saved (parameters and persistent buffers). */
  parameters: string[];
  tensors: number;
}

export interface SaveCheckpointOptions {
  /** Extra `__metadata__` entries (string values; may not replace the format's own keys). */
  metadata?: Record<string, string>;
}

export interface LoadCheckpointReport {
  /** Dotted names of the quantized layers put into the model. */
  loaded: string[];
  /** Of those, the ones now holding an ErrorCorrectedLinear that were plain Linear before. */
  replaced: string[];
  /** Names of the parameters and buffers assigned from the file. */
  parameters: string[];
  formatVersion: string;
}

const key = (p: string, name: string): string => (p === '' ? name : `${p}.${name}`);

/** The metadata and canonical tensors of one quantized layer at dotted path `p` (see the file comment). */
export function quantizedLayerEntry(p: string, m: ErrorCorrectedLinear): { meta: SvdquantLayerMeta; tensors: SafetensorsTensorInput[] } {
  const w = m.weight;
  const meta: SvdquantLayerMeta = {
    kind: 'svdquant', scheme: m.scheme, weight_format: w.format, group: w.group, rank: m.rank,
    in_features: m.inFeatures, out_features: m.outFeatures, global_scale: w.globalScale,
    act_scale_rule: m.actScaleRule, weight_scale_rule: w.scaleRule ?? null,
    smooth: m.smooth !== undefined, bias: m.bias !== undefined,
  };
  const tensors = [tensorToSafetensors(key(p, 'qweight'), w.codes), tensorToSafetensors(key(p, 'wscales'), w.scales)];
  if (m.smooth) tensors.push(tensorToSafetensors(key(p, 'smooth'), m.smooth));
  if (m.lDown && m.lUp) tensors.push(tensorToSafetensors(key(p, 'lora_down'), m.lDown), tensorToSafetensors(key(p, 'lora_up'), m.lUp));
  if (m.bias) tensors.push(tensorToSafetensors(key(p, 'bias'), m.bias));
  return { meta, tensors };
}

/**
 * Metadata key listing (as a JSON array) tensors carried over unchanged from a source model file
 * (`svdquant quantize` keeps embeddings, norms and excluded layers this way). loadCheckpoint assigns
 * those that name a parameter of the model and ignores the others.
 */
export const PASSTHROUGH_KEY = 'passthrough_tensors';

const RESERVED_KEYS = new Set(['format', 'format_version', 'contents', 'model_config', PASSTHROUGH_KEY]);

/** Writes the whole model's checkpoint to `file` (atomically): quantized layers canonical, every other parameter as it is. */
export async function saveCheckpoint(model: Module, file: string, options: SaveCheckpointOptions = {}): Promise<SaveCheckpointReport> {
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a non-empty file path string', file);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { metadata }', options);
  const extra = options.metadata ?? {};
  for (const [k, v] of Object.entries(extra)) {
    if (typeof v !== 'string' || RESERVED_KEYS.has(k) || k.startsWith('layer:')) throw new ArgumentError(`options.metadata.${k}`, 'a string value under a key the format does not use itself', v);
  }
  const tensors: SafetensorsTensorInput[] = [];
  const metadata: Record<string, string> = { ...extra, format: CHECKPOINT_FORMAT, format_version: CHECKPOINT_FORMAT_VERSION, contents: 'model' };
  const config = modelConfigOf(model);
  if (config !== undefined) metadata.model_config = JSON.stringify(config);
  const layers: string[] = [];
  const parameters: string[] = [];
  for (const [p, m0] of model.namedModules()) {
    const m = m0 instanceof NativeLinear ? m0.source : m0;
    if (m instanceof ErrorCorrectedLinear) {
      const entry = quantizedLayerEntry(p, m);
      metadata[`layer:${p}`] = JSON.stringify(entry.meta);
      tensors.push(...entry.tensors);
      layers.push(p);
      continue;
    }
    for (const [name, t] of m.ownTensors()) {
      tensors.push(tensorToSafetensors(key(p, name), t.to('f32')));
      parameters.push(key(p, name));
    }
  }
  await writeSafetensors(file, tensors, metadata);
  return { layers, parameters, tensors: tensors.length };
}

function bad(file: string, problem: string): FileFormatError {
  return new FileFormatError(file, problem);
}

/** The names listed under PASSTHROUGH_KEY (absent: none). */
export function parsePassthrough(file: string, text: string | undefined): Set<string> {
  if (text === undefined) return new Set();
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad(file, `metadata '${PASSTHROUGH_KEY}' is not JSON: expected an array of tensor names`);
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(file, `metadata '${PASSTHROUGH_KEY}' must be a JSON array of tensor names`);
  return new Set(v as string[]);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function posInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= 2 ** 30;
}

function parseMeta(file: string, p: string, text: string): CheckpointLayerMeta {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad(file, `metadata 'layer:${p}' is not valid JSON: expected a JSON object describing the layer`);
  }
  if (!isObj(v)) throw bad(file, `metadata 'layer:${p}' is not a JSON object`);
  const fail = (field: string, expected: string): never => {
    throw bad(file, `metadata 'layer:${p}' field '${field}' is ${JSON.stringify(v[field])}: expected ${expected}`);
  };
  if (v.kind === 'svdquant') {
    if (!SCHEME_NAMES.includes(v.scheme as SchemeName)) fail('scheme', `one of ${SCHEME_NAMES.join(', ')}`);
    const scheme = v.scheme as SchemeName;
    const fmt = SCHEMES[scheme].weights;
    if (v.weight_format !== fmt) fail('weight_format', `'${fmt}' for scheme '${scheme}'`);
    if (!posInt(v.in_features)) fail('in_features', 'a positive integer');
    if (!posInt(v.out_features)) fail('out_features', 'a positive integer');
    const k = v.in_features as number;
    const group = FORMATS[fmt].group === 0 ? k : FORMATS[fmt].group;
    if (v.group !== group) fail('group', `${group}`);
    if (typeof v.rank !== 'number' || !Number.isSafeInteger(v.rank) || v.rank < 0 || v.rank > Math.min(k, v.out_features as number)) fail('rank', 'an integer in [0, min(N, K)]');
    if (typeof v.global_scale !== 'number' || !Number.isFinite(v.global_scale) || !(v.global_scale > 0)) fail('global_scale', 'a finite positive number');
    if (fmt !== 'nvfp4' && v.global_scale !== 1) fail('global_scale', `1 for format '${fmt}'`);
    if (!MX_SCALE_RULES.includes(v.act_scale_rule as MxScaleRule)) fail('act_scale_rule', `one of ${MX_SCALE_RULES.join(', ')}`);
    if (v.weight_scale_rule !== null && !MX_SCALE_RULES.includes(v.weight_scale_rule as MxScaleRule)) fail('weight_scale_rule', `null or one of ${MX_SCALE_RULES.join(', ')}`);
    if (typeof v.smooth !== 'boolean') fail('smooth', 'a boolean');
    if (typeof v.bias !== 'boolean') fail('bias', 'a boolean');
    return v as unknown as SvdquantLayerMeta;
  }
  if (v.kind === 'linear') {
    if (!posInt(v.in_features)) fail('in_features', 'a positive integer');
    if (!posInt(v.out_features)) fail('out_features', 'a positive integer');
    if (typeof v.bias !== 'boolean') fail('bias', 'a boolean');
    return v as unknown as LinearMeta;
  }
  if (v.kind === 'layernorm' || v.kind === 'rmsnorm') {
    if (!posInt(v.dim)) fail('dim', 'a positive integer');
    if (typeof v.affine !== 'boolean' || (v.kind === 'rmsnorm' && v.affine !== true)) fail('affine', v.kind === 'rmsnorm' ? 'true' : 'a boolean');
    return v as unknown as NormMeta;
  }
  return fail('kind', "'svdquant', 'linear', 'layernorm' or 'rmsnorm'");
}

/**
 * Reads `file` and puts it into `model`: a Linear (or ErrorCorrectedLinear) at a path the checkpoint
 * holds a quantized layer for is replaced by a new ErrorCorrectedLinear; every other tensor is
 * assigned to the parameter or buffer of the same dotted name (converted to f32). A tensor that
 * names no parameter is an error (unless listed under `passthrough_tensors`); so is a missing
 * parameter when the file says it holds the whole model. Everything is read and checked first
 * (names, dtypes, shapes, finite values, metadata, module types and sizes); only then is the model
 * changed. Native layers must be disabled before loading.
 */
export async function loadCheckpoint(file: string, model: Module): Promise<LoadCheckpointReport> {
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a non-empty file path string', file);
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  const st = await openSafetensors(file);
  const mutations: (() => void)[] = [];
  const loaded: string[] = [];
  const replaced: string[] = [];
  const assigned: string[] = [];
  let version = '';
  try {
    const md = st.metadata;
    if (md.format !== CHECKPOINT_FORMAT) throw bad(file, `metadata 'format' is ${JSON.stringify(md.format)}: expected '${CHECKPOINT_FORMAT}'`);
    version = md.format_version;
    if (!READABLE_VERSIONS.includes(version)) throw bad(file, `metadata 'format_version' is ${JSON.stringify(version)}: expected one of ${READABLE_VERSIONS.map((v) => `'${v}'`).join(', ')}`);
    for (const m of model.modules()) {
      if (m instanceof NativeLinear) throw new ArgumentError('model', 'no native layers while loading (call disableNativeInference first)');
    }
    const expected = new Set<string>();
    const parents = parentCounts(model);
    const read = async (name: string, dtype: SafetensorsDtype, shape: readonly number[]): Promise<SafetensorsTensorData> => {
      expected.add(name);
      if (!st.has(name)) throw bad(file, `tensor '${name}' is missing`);
      const info = st.info(name);
      if (info.dtype !== dtype || info.shape.join() !== shape.join() || info.shape.length !== shape.length) {
        throw bad(file, `tensor '${name}' is ${info.dtype} [${info.shape.join(', ')}]: expected ${dtype} [${shape.join(', ')}]`);
      }
      return st.readTensor(name);
    };
    const finite = (name: string, t: Tensor<'f32'>): Tensor<'f32'> => {
      const d = t.data;
      for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) throw bad(file, `tensor '${name}' holds a non-finite value (${d[i]}) at flat index ${i}: expected finite values`);
      return t;
    };
    const readF32 = async (name: string, shape: readonly number[]): Promise<Tensor<'f32'>> =>
      finite(name, tensorFromSafetensors(await read(name, 'F32', shape)) as Tensor<'f32'>);
    const target = (p: string): Module => {
      try {
        return model.getSubmodule(p);
      } catch {
        throw new ArgumentError('model', `a module at '${p}' (the checkpoint '${file}' holds a layer there)`);
      }
    };
    // 1. Quantized layers (and, in version-1 files, the descriptions of Linear and norm layers).
    const quantizedPrefixes: string[] = [];
    for (const mdKey of Object.keys(md)) {
      if (!mdKey.startsWith('layer:')) continue;
      const p = mdKey.slice('layer:'.length);
      const meta = parseMeta(file, p, md[mdKey]);
      if (meta.kind !== 'svdquant') continue;
      const m = target(p);
      const n = meta.out_features, k = meta.in_features, r = meta.rank;
      const fmt = SCHEMES[meta.scheme].weights;
      if (!(m instanceof Linear || m instanceof ErrorCorrectedLinear) || m.inFeatures !== k || m.outFeatures !== n) {
        throw new ArgumentError('model', `a Linear or ErrorCorrectedLinear (${k} → ${n}) at '${p}' for the checkpoint's quantized layer, found ${m.toString()}`);
      }
      if (p === '') throw new ArgumentError('model', 'a container: the checkpoint holds a quantized layer at the root, which cannot be replaced');
      if ((parents.get(m) ?? 0) > 1) throw new ArgumentError('model', `a module at '${p}' with one parent (it is shared; replacing it at one path would split it)`);
      const f = FORMATS[fmt];
      const kp = paddedK(fmt, k);
      const packed = f.codeDType !== 'i8';
      const codesEntry = await read(key(p, 'qweight'), packed ? 'U8' : 'I8', [n, packed ? kp / 2 : kp]);
      const codes = (packed ? tensorFromSafetensors(codesEntry, f.codeDType as 'int4' | 'fp4_e2m1') : tensorFromSafetensors(codesEntry)) as QuantizedTensor['codes'];
      const scaleDt: SafetensorsDtype = f.scaleDType === 'f32' ? 'F32' : f.scaleDType === 'e8m0' ? 'U8' : 'F8_E4M3';
      const scalesEntry = await read(key(p, 'wscales'), scaleDt, [n, groupsPerRow(fmt, k)]);
      const scales = (f.scaleDType === 'e8m0' ? tensorFromSafetensors(scalesEntry, 'e8m0') : tensorFromSafetensors(scalesEntry)) as QuantizedTensor['scales'];
      if (scales.dtype === 'f32') {
        for (const v of scales.data as Float32Array) if (!Number.isFinite(v)) throw bad(file, `tensor '${key(p, 'wscales')}' holds a non-finite scale: expected finite values`);
      }
      const weight: QuantizedTensor = {
        format: fmt, shape: [n, k], group: meta.group, codes, scales, globalScale: meta.global_scale,
        ...(meta.weight_scale_rule !== null ? { scaleRule: meta.weight_scale_rule } : {}),
      };
      const smooth = meta.smooth ? await readF32(key(p, 'smooth'), [k]) : undefined;
      const lDown = r > 0 ? await readF32(key(p, 'lora_down'), [r, k]) : undefined;
      const lUp = r > 0 ? await readF32(key(p, 'lora_up'), [n, r]) : undefined;
      const bias = meta.bias ? await readF32(key(p, 'bias'), [n]) : undefined;
      let layer: ErrorCorrectedLinear;
      try {
        layer = new ErrorCorrectedLinear({
          scheme: meta.scheme, weight, actScaleRule: meta.act_scale_rule,
          ...(smooth ? { smooth } : {}), ...(lDown && lUp ? { lDown, lUp } : {}), ...(bias ? { bias } : {}),
        });
      } catch (e) {
        throw bad(file, `layer '${p}' is not a valid SVDQuant layer: ${e instanceof Error ? e.message : String(e)}`);
      }
      mutations.push(() => void model.setSubmodule(p, layer));
      if (m instanceof Linear) replaced.push(p);
      loaded.push(p);
      quantizedPrefixes.push(p === '' ? '' : `${p}.`);
    }
    // 2. Every other tensor: a parameter or buffer of the model (those of replaced layers excepted).
    const underQuantized = (name: string): boolean => quantizedPrefixes.some((q) => name.startsWith(q));
    const params = new Map<string, Tensor>();
    for (const [name, t] of model.namedParameters()) if (!underQuantized(name)) params.set(name, t);
    const passthrough = parsePassthrough(file, md[PASSTHROUGH_KEY]);
    for (const info of st.tensors) {
      if (expected.has(info.name)) continue;
      const current = params.get(info.name);
      if (current === undefined) {
        if (passthrough.has(info.name)) continue;
        throw bad(file, `tensor '${info.name}' belongs to no parameter of the model and no quantized layer described in the metadata`);
      }
      if (!(info.dtype === 'F32' || info.dtype === 'F16' || info.dtype === 'BF16') || info.shape.join() !== current.shape.join() || info.shape.length !== current.ndim) {
        throw bad(file, `tensor '${info.name}' is ${info.dtype} [${info.shape.join(', ')}]: expected F32, F16 or BF16 [${current.shape.join(', ')}] for the model's parameter`);
      }
      expected.add(info.name);
      const t = finite(info.name, tensorFromSafetensors(await st.readTensor(info.name)).to('f32'));
      mutations.push(() => model.setParameterByPath(info.name, t));
      assigned.push(info.name);
    }
    if (md.contents === 'model') {
      const missing = [...params.keys()].filter((name) => !expected.has(name));
      if (missing.length > 0) {
        throw bad(file, `the file holds a whole model but lacks ${missing.length} of this model's parameters: ${missing.slice(0, 8).map((n) => `'${n}'`).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
      }
    }
  } catch (e) {
    if (e instanceof SvdquantError) throw e;
    throw bad(file, e instanceof Error ? e.message : String(e));
  } finally {
    await st.close();
  }
  for (const apply of mutations) apply();
  return { loaded, replaced, parameters: assigned, formatVersion: version };
}
