/**
 * SVDQuant checkpoints (DESIGN.md §7): canonical tensors in one safetensors file.
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
 *   Linear                P.weight F32 [N, K], P.bias F32 [N] (if any)
 *   LayerNorm / RMSNorm   P.weight F32 [D], P.bias F32 [D] (LayerNorm with affine only)
 *
 * Other tensors (embeddings, norms, excluded layers carried over by `svdquant quantize`) may be
 * present when the metadata key `passthrough_tensors` lists them (a JSON array of names).
 *
 * `__metadata__` (string values): `format` = "svdquant.checkpoint", `format_version` = "1", and per
 * layer a key `layer:P` holding a JSON object: kind ('svdquant' | 'linear' | 'layernorm' | 'rmsnorm'),
 * and for 'svdquant' scheme, weight_format, group, rank, in_features, out_features, global_scale,
 * act_scale_rule, weight_scale_rule (or null), smooth, bias.
 *
 * Saving reads the reference layers (a NativeLinear's `source`), so it works with native inference
 * on or off. Loading validates the whole file against the model before changing anything; a failed
 * load throws a typed error and leaves the model as it was.
 */
import { ArgumentError, FileFormatError, SvdquantError } from '../errors.js';
import { Module } from '../graph/module.js';
import { LayerNorm, Linear, RMSNorm } from '../graph/layers.js';
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
export const CHECKPOINT_FORMAT_VERSION = '1';

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
  /** Dotted names of the saved modules, in module order. */
  layers: string[];
  tensors: number;
}

export interface LoadCheckpointReport {
  /** Dotted names of the modules that received data from the file. */
  loaded: string[];
  /** Of those, the ones now holding an ErrorCorrectedLinear that were plain Linear before. */
  replaced: string[];
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
 * (`svdquant quantize` keeps embeddings, norms and excluded layers this way). loadCheckpoint ignores
 * them: they belong to no module it restores.
 */
export const PASSTHROUGH_KEY = 'passthrough_tensors';

/** Writes the model's checkpoint to `file` (atomically). */
export async function saveCheckpoint(model: Module, file: string): Promise<SaveCheckpointReport> {
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a non-empty file path string', file);
  const tensors: SafetensorsTensorInput[] = [];
  const metadata: Record<string, string> = { format: CHECKPOINT_FORMAT, format_version: CHECKPOINT_FORMAT_VERSION };
  const layers: string[] = [];
  for (const [p, m0] of model.namedModules()) {
    const m = m0 instanceof NativeLinear ? m0.source : m0;
    let meta: CheckpointLayerMeta;
    if (m instanceof ErrorCorrectedLinear) {
      const entry = quantizedLayerEntry(p, m);
      meta = entry.meta;
      tensors.push(...entry.tensors);
    } else if (m instanceof Linear) {
      meta = { kind: 'linear', in_features: m.inFeatures, out_features: m.outFeatures, bias: m.bias !== null };
      tensors.push(tensorToSafetensors(key(p, 'weight'), m.weight));
      if (m.bias !== null) tensors.push(tensorToSafetensors(key(p, 'bias'), m.bias));
    } else if (m instanceof LayerNorm) {
      meta = { kind: 'layernorm', dim: m.dim, affine: m.weight !== null };
      if (m.weight !== null) tensors.push(tensorToSafetensors(key(p, 'weight'), m.weight));
      if (m.bias !== null) tensors.push(tensorToSafetensors(key(p, 'bias'), m.bias));
    } else if (m instanceof RMSNorm) {
      meta = { kind: 'rmsnorm', dim: m.dim, affine: true };
      tensors.push(tensorToSafetensors(key(p, 'weight'), m.weight));
    } else continue;
    metadata[`layer:${p}`] = JSON.stringify(meta);
    layers.push(p);
  }
  await writeSafetensors(file, tensors, metadata);
  return { layers, tensors: tensors.length };
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
 * Reads `file` and puts its layers into `model`: a Linear (or ErrorCorrectedLinear) at a path the
 * checkpoint holds a quantized layer for is replaced by a new ErrorCorrectedLinear; plain Linear and
 * norm parameters are assigned. Modules the checkpoint does not mention are left alone. Everything is
 * read and checked first (tensor names, dtypes, shapes, finite values, metadata, module types and
 * sizes); only then is the model changed. Native layers must be disabled before loading.
 */
export async function loadCheckpoint(file: string, model: Module): Promise<LoadCheckpointReport> {
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a non-empty file path string', file);
  if (!(model instanceof Module)) throw new ArgumentError('model', 'a Module', model);
  const st = await openSafetensors(file);
  const mutations: (() => void)[] = [];
  const loaded: string[] = [];
  const replaced: string[] = [];
  try {
    const md = st.metadata;
    if (md.format !== CHECKPOINT_FORMAT) throw bad(file, `metadata 'format' is ${JSON.stringify(md.format)}: expected '${CHECKPOINT_FORMAT}'`);
    if (md.format_version !== CHECKPOINT_FORMAT_VERSION) throw bad(file, `metadata 'format_version' is ${JSON.stringify(md.format_version)}: expected '${CHECKPOINT_FORMAT_VERSION}'`);
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
    const readF32 = async (name: string, shape: readonly number[]): Promise<Tensor<'f32'>> => {
      const t = tensorFromSafetensors(await read(name, 'F32', shape)) as Tensor<'f32'>;
      const d = t.data;
      for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) throw bad(file, `tensor '${name}' holds a non-finite value (${d[i]}) at flat index ${i}: expected finite values`);
      return t;
    };
    const target = (p: string): Module => {
      try {
        return model.getSubmodule(p);
      } catch {
        throw new ArgumentError('model', `a module at '${p}' (the checkpoint '${file}' holds a layer there)`);
      }
    };
    for (const mdKey of Object.keys(md)) {
      if (!mdKey.startsWith('layer:')) continue;
      const p = mdKey.slice('layer:'.length);
      const meta = parseMeta(file, p, md[mdKey]);
      const m = target(p);
      if (m instanceof NativeLinear) throw new ArgumentError('model', `no native layers while loading (call disableNativeInference first; '${p}' is native)`);
      if (meta.kind === 'svdquant') {
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
        const codes = packed ? tensorFromSafetensors(codesEntry, f.codeDType as 'int4' | 'fp4_e2m1') : tensorFromSafetensors(codesEntry);
        const scaleDt: SafetensorsDtype = f.scaleDType === 'f32' ? 'F32' : f.scaleDType === 'e8m0' ? 'U8' : 'F8_E4M3';
        const scalesEntry = await read(key(p, 'wscales'), scaleDt, [n, groupsPerRow(fmt, k)]);
        const scales = f.scaleDType === 'e8m0' ? tensorFromSafetensors(scalesEntry, 'e8m0') : tensorFromSafetensors(scalesEntry);
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
      } else if (meta.kind === 'linear') {
        const n = meta.out_features, k = meta.in_features;
        if (!(m instanceof Linear) || m.inFeatures !== k || m.outFeatures !== n) {
          throw new ArgumentError('model', `a Linear (${k} → ${n}) at '${p}' for the checkpoint's linear layer, found ${m.toString()}`);
        }
        const w = await readF32(key(p, 'weight'), [n, k]);
        const b = meta.bias ? await readF32(key(p, 'bias'), [n]) : null;
        mutations.push(() => {
          m.weight = w;
          m.bias = b;
        });
      } else if (meta.kind === 'layernorm') {
        if (!(m instanceof LayerNorm) || m.dim !== meta.dim || (m.weight !== null) !== meta.affine) {
          throw new ArgumentError('model', `a LayerNorm(${meta.dim}, affine=${meta.affine}) at '${p}', found ${m.toString()}`);
        }
        if (meta.affine) {
          const w = await readF32(key(p, 'weight'), [meta.dim]);
          const b = await readF32(key(p, 'bias'), [meta.dim]);
          mutations.push(() => {
            m.weight = w;
            m.bias = b;
          });
        }
      } else {
        if (!(m instanceof RMSNorm) || m.dim !== meta.dim) throw new ArgumentError('model', `an RMSNorm(${meta.dim}) at '${p}', found ${m.toString()}`);
        const w = await readF32(key(p, 'weight'), [meta.dim]);
        mutations.push(() => {
          m.weight = w;
        });
      }
      loaded.push(p);
    }
    const passthrough = parsePassthrough(file, md[PASSTHROUGH_KEY]);
    for (const t of st.tensors) {
      if (!expected.has(t.name) && !passthrough.has(t.name)) throw bad(file, `tensor '${t.name}' belongs to no layer described in the metadata`);
    }
  } catch (e) {
    if (e instanceof SvdquantError) throw e;
    throw bad(file, e instanceof Error ? e.message : String(e));
  } finally {
    await st.close();
  }
  for (const apply of mutations) apply();
  return { loaded, replaced, formatVersion: CHECKPOINT_FORMAT_VERSION };
}
