/**
 * Importer for AMD Quark's export naming (DESIGN.md §7; /work/shared/reference/quark.md §5):
 *
 *   P.layer.weight              packed residual codes
 *   P.layer.weight_scale        its scales
 *   P.layer.weight_zero_point   (optional, INT4 only; must be all zero: symmetric only)
 *   P.layer.bias                (optional) bias [N]
 *   P.correction.l1.weight      L1 = L_down [r, K]   (F32 / F16 / BF16)
 *   P.correction.l2.weight      L2 = L_up   [N, r]
 *   P.smooth_factor             (optional; Quark normally absorbs it) λ [K], divides x at run time
 *
 * Formats, detected from the weight's dtype:
 *   MXFP4: weight U8 [N, K/2], two E2M1 codes per byte, element 2i in the low nibble (Quark's
 *          Pack_mxfp4 "little endian"; the same packing as ours); weight_scale U8 E8M0 [N, K/32].
 *          → scheme 'mxfp4' (K must be even; the codes are padded with zeros to a multiple of 32).
 *   INT4:  weight I32, eight signed 4-bit codes per int32 in Quark's `Pack_4_bits` "reorder" order:
 *          nibble i (bits 4i..4i+3) holds element 8c + [0, 2, 4, 6, 1, 3, 5, 7][i] of the packed axis.
 *          per_group: the weight is transposed before packing, so weight is [K, ceil(N/8)] and
 *          weight_scale is [K/G, N] (transposed scale, Quark >= 1.0); per_channel: weight is
 *          [N, ceil(K/8)] and weight_scale is [N] or [N, 1]. Scales F32/F16/BF16. The group G must
 *          be a multiple of 64 (Quark's w4a16/w4a4 use 64) or per channel: each scale is repeated
 *          over our 64-element groups, which is exact. → scheme 'w4a16' (default) or 'w4a4'.
 *          ASSUMPTIONS (not verified against a real Quark file): the reorder order and transposes
 *          above as read from Quark's pack.py; K for per_channel from l1 (or 8·ceil(K/8) when rank 0,
 *          which needs options.inFeatures when K is not a multiple of 8).
 * NVFP4 (weight_scale_2) is not supported: a FileFormatError names the layer.
 */
import { ArgumentError, FileFormatError, SvdquantError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { FORMATS, groupsPerRow, paddedK } from '../formats/schemes.js';
import type { SchemeName } from '../formats/schemes.js';
import type { QuantizedTensor } from '../formats/quantize.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import type { LowbitLayerData } from './native-layer.js';
import { openSafetensors, type SafetensorsFile } from '../io/safetensors.js';
import { tensorFromSafetensors } from '../io/tensor-bridge.js';

export interface QuarkImportOptions {
  /** Scheme for INT4 residuals: 'w4a16' (default) or 'w4a4'. */
  int4Scheme?: 'w4a16' | 'w4a4';
  /** K per layer name, needed only for a per-channel INT4 layer with rank 0 and K % 8 != 0. */
  inFeatures?: Record<string, number>;
}

export interface QuarkLayer {
  /** Dotted module name P. */
  name: string;
  /** 'mxfp4' or 'int4' (as found in the file). */
  source: 'mxfp4' | 'int4';
  data: LowbitLayerData;
  layer: ErrorCorrectedLinear;
}

const REORDER = [0, 2, 4, 6, 1, 3, 5, 7];

async function readFloat(st: SafetensorsFile, file: string, name: string): Promise<Tensor<'f32'>> {
  const e = await st.readTensor(name);
  if (e.dtype !== 'F32' && e.dtype !== 'F16' && e.dtype !== 'BF16') throw new FileFormatError(file, `tensor '${name}' is ${e.dtype}: expected F32, F16 or BF16`);
  const t = tensorFromSafetensors(e).to('f32');
  const d = t.data;
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) throw new FileFormatError(file, `tensor '${name}' holds a non-finite value at flat index ${i}: expected finite values`);
  return t;
}

function shapeIs(e: { shape: readonly number[] }, shape: number[]): boolean {
  return e.shape.length === shape.length && e.shape.every((d, i) => d === shape[i]);
}

/** Reads every Quark SVDQuant layer of `file` into canonical ErrorCorrectedLinear data. */
export async function importQuarkCheckpoint(file: string, options: QuarkImportOptions = {}): Promise<QuarkLayer[]> {
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError('file', 'a non-empty file path string', file);
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  const int4Scheme = options.int4Scheme ?? 'w4a16';
  if (int4Scheme !== 'w4a16' && int4Scheme !== 'w4a4') throw new ArgumentError('options.int4Scheme', "'w4a16' or 'w4a4'", int4Scheme);
  const st = await openSafetensors(file);
  try {
    const out: QuarkLayer[] = [];
    const suffix = '.layer.weight_scale';
    const prefixes = st.tensors.map((t) => t.name).filter((n) => n.endsWith(suffix)).map((n) => n.slice(0, -suffix.length));
    if (prefixes.length === 0) throw new FileFormatError(file, `no tensor named 'P${suffix}': expected Quark's export naming`);
    for (const p of prefixes) {
      const need = (n: string): string => {
        if (!st.has(n)) throw new FileFormatError(file, `tensor '${n}' is missing (layer '${p}')`);
        return n;
      };
      if (st.has(`${p}.layer.weight_scale_2`)) throw new FileFormatError(file, `layer '${p}' is NVFP4 (weight_scale_2): expected MXFP4 or INT4`);
      const wInfo = st.info(need(`${p}.layer.weight`));
      const sInfo = st.info(`${p}.layer.weight_scale`);
      const hasL = st.has(`${p}.correction.l1.weight`) || st.has(`${p}.correction.l2.weight`);
      const l1 = hasL ? await readFloat(st, file, need(`${p}.correction.l1.weight`)) : undefined;
      const l2 = hasL ? await readFloat(st, file, need(`${p}.correction.l2.weight`)) : undefined;
      let scheme: SchemeName;
      let weight: QuantizedTensor;
      let n: number, k: number;
      let source: 'mxfp4' | 'int4';
      if (wInfo.dtype === 'U8') {
        source = 'mxfp4';
        scheme = 'mxfp4';
        if (wInfo.shape.length !== 2 || sInfo.dtype !== 'U8' || sInfo.shape.length !== 2) {
          throw new FileFormatError(file, `layer '${p}': MXFP4 expects weight U8 [N, K/2] and weight_scale U8 [N, K/32], got ${wInfo.dtype} [${wInfo.shape.join(', ')}] and ${sInfo.dtype} [${sInfo.shape.join(', ')}]`);
        }
        [n] = wInfo.shape;
        k = wInfo.shape[1] * 2;
        if (!shapeIs(sInfo, [n, Math.ceil(k / 32)])) throw new FileFormatError(file, `tensor '${p}.layer.weight_scale' is [${sInfo.shape.join(', ')}]: expected [${n}, ${Math.ceil(k / 32)}] (E8M0, group 32)`);
        const raw = (await st.readTensor(`${p}.layer.weight`)).data;
        const kp = paddedK('mxfp4', k);
        const codes = Tensor.zeros([n, kp], 'fp4_e2m1');
        for (let i = 0; i < n; i++) codes.data.set(raw.subarray(i * (k / 2), (i + 1) * (k / 2)), i * (kp / 2));
        const scales = Tensor.fromBytes((await st.readTensor(`${p}.layer.weight_scale`)).data.slice(), [n, groupsPerRow('mxfp4', k)], 'e8m0');
        for (const e of scales.data) if (e === 0xff) throw new FileFormatError(file, `tensor '${p}.layer.weight_scale' holds an E8M0 NaN (0xFF): expected finite scales`);
        weight = { format: 'mxfp4', shape: [n, k], group: 32, codes, scales, globalScale: 1, scaleRule: 'even' };
      } else if (wInfo.dtype === 'I32') {
        source = 'int4';
        scheme = int4Scheme;
        const sc = await readFloat(st, file, `${p}.layer.weight_scale`);
        const words = new Int32Array(tensorFromSafetensors(await st.readTensor(`${p}.layer.weight`)).data as Int32Array);
        const perGroup = sc.ndim === 2 && !(sc.shape[1] === 1);
        let codesAt: (row: number, col: number) => number; // signed code of W[row, col]
        let scaleAt: (row: number, col: number) => number;
        if (perGroup) {
          // weight [K, ceil(N/8)], packed along N; scale [K/G, N].
          if (wInfo.shape.length !== 2) throw new FileFormatError(file, `tensor '${p}.layer.weight' is not 2-D`);
          k = wInfo.shape[0];
          n = sc.shape[1];
          const words8 = wInfo.shape[1];
          if (words8 !== Math.ceil(n / 8)) throw new FileFormatError(file, `tensor '${p}.layer.weight' is [${wInfo.shape.join(', ')}]: expected [K, ${Math.ceil(n / 8)}] for N = ${n} (per-group INT4, transposed)`);
          const groups = sc.shape[0];
          const g = k / groups;
          if (!Number.isInteger(g) || g % 64 !== 0) throw new FileFormatError(file, `layer '${p}': INT4 group size K/${groups} = ${k / groups}: expected a multiple of 64`);
          codesAt = (row, col) => {
            const c = Math.floor(row / 8), j = row % 8; // element `row` of the packed (N) axis
            const nib = REORDER.indexOf(j);
            return ((words[col * words8 + c] >>> (4 * nib)) << 28) >> 28;
          };
          scaleAt = (row, col) => sc.data[Math.floor(col / g) * n + row];
        } else {
          if (wInfo.shape.length !== 2) throw new FileFormatError(file, `tensor '${p}.layer.weight' is not 2-D`);
          n = wInfo.shape[0];
          k = l1 !== undefined ? l1.shape[1] : (options.inFeatures?.[p] ?? wInfo.shape[1] * 8);
          const words8 = wInfo.shape[1];
          if (words8 !== Math.ceil(k / 8) || sc.numel !== n) throw new FileFormatError(file, `layer '${p}': per-channel INT4 expects weight I32 [N, ceil(K/8)] and weight_scale [N], got [${wInfo.shape.join(', ')}] and [${sc.shape.join(', ')}]`);
          codesAt = (row, col) => {
            const c = Math.floor(col / 8), j = col % 8;
            return ((words[row * words8 + c] >>> (4 * REORDER.indexOf(j))) << 28) >> 28;
          };
          scaleAt = (row) => sc.data[row];
        }
        if (st.has(`${p}.layer.weight_zero_point`)) {
          const zp = (await st.readTensor(`${p}.layer.weight_zero_point`)).data;
          if (zp.some((b) => b !== 0)) throw new FileFormatError(file, `tensor '${p}.layer.weight_zero_point' is not all zero: expected symmetric INT4`);
        }
        const kp = paddedK('int4', k), groups = groupsPerRow('int4', k);
        const codes = Tensor.zeros([n, kp], 'int4');
        const scales = Tensor.zeros([n, groups], 'f32');
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < k; j++) {
            const q = codesAt(i, j) & 0x0f;
            const b = i * (kp / 2) + (j >> 1);
            codes.data[b] |= (j & 1) === 0 ? q : q << 4;
          }
          for (let gi = 0; gi < groups; gi++) scales.data[i * groups + gi] = scaleAt(i, gi * 64);
        }
        weight = { format: 'int4', shape: [n, k], group: FORMATS.int4.group, codes, scales, globalScale: 1 };
      } else {
        throw new FileFormatError(file, `tensor '${p}.layer.weight' is ${wInfo.dtype}: expected U8 (MXFP4, packed E2M1) or I32 (INT4, Quark's reorder packing)`);
      }
      if (l1 !== undefined && l2 !== undefined) {
        const r = l1.shape[0];
        if (l1.ndim !== 2 || !shapeIs(l1, [r, k]) || !shapeIs(l2, [n, r])) {
          throw new FileFormatError(file, `layer '${p}': correction l1 [${l1.shape.join(', ')}] / l2 [${l2.shape.join(', ')}]: expected [r, ${k}] and [${n}, r]`);
        }
      }
      const bias = st.has(`${p}.layer.bias`) ? await readFloat(st, file, `${p}.layer.bias`) : undefined;
      if (bias !== undefined && !shapeIs(bias, [n])) throw new FileFormatError(file, `tensor '${p}.layer.bias' is [${bias.shape.join(', ')}]: expected [${n}]`);
      const smooth = st.has(`${p}.smooth_factor`) ? await readFloat(st, file, `${p}.smooth_factor`) : undefined;
      if (smooth !== undefined && !shapeIs(smooth, [k])) throw new FileFormatError(file, `tensor '${p}.smooth_factor' is [${smooth.shape.join(', ')}]: expected [${k}]`);
      const data: LowbitLayerData = {
        scheme, weight, actScaleRule: 'even',
        ...(smooth ? { smooth } : {}),
        ...(l1 && l2 && l1.shape[0] > 0 ? { lDown: l1, lUp: l2 } : {}),
        ...(bias ? { bias } : {}),
      };
      let layer: ErrorCorrectedLinear;
      try {
        layer = new ErrorCorrectedLinear(data);
      } catch (e) {
        throw new FileFormatError(file, `layer '${p}' is not a valid SVDQuant layer: ${e instanceof Error ? e.message : String(e)}`);
      }
      out.push({ name: p, source, data, layer });
    }
    return out;
  } catch (e) {
    if (e instanceof SvdquantError) throw e;
    throw new FileFormatError(file, e instanceof Error ? e.message : String(e));
  } finally {
    await st.close();
  }
}
