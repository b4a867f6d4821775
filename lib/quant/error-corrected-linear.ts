/**
 * ErrorCorrectedLinear: the reference SVDQuant layer of DESIGN.md §2, computed in plain fp32 with
 * dequantized operands ("fake quant"):
 *
 *   X̂ = X / λ                                 (fp32 division per element; no λ: X̂ = X)
 *   Y = deq(Q_a(X̂)) · deq(Q_w(R))ᵀ + (X̂ · L_downᵀ) · L_upᵀ + b
 *
 * Q_a quantizes each token row in the scheme's activation format with the same quantizers as the
 * native kernel (nvfp4: a per-token tensor scale G = nvfp4GlobalScale(amax of the token's row of X̂),
 * see native/include/svdquant/lowbit.h). toNative() builds the NativeLowbitLayer from the same data.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import { SCHEMES, FORMATS, MX_SCALE_RULES, groupsPerRow, paddedK } from '../formats/schemes.js';
import type { MxScaleRule, SchemeName } from '../formats/schemes.js';
import { dequantize, quantize, quantizeSync, dequantizeSync, nvfp4GlobalScale } from '../formats/quantize.js';
import type { QuantizedTensor } from '../formats/quantize.js';
import { NativeLowbitLayer } from '../runtime/native-layer.js';
import { Module } from '../graph/module.js';
import { declareReleaseSafe } from '../graph/release.js';
import { trackTensor } from '../graph/scope.js';
import type { LowbitLayerData } from '../runtime/native-layer.js';
import { matmulNT, matmulNTAccumulate } from './ops.js';

function checkF32(t: Tensor | undefined, name: string, shape: readonly number[]): Tensor<'f32'> | undefined {
  if (t === undefined) return undefined;
  if (!(t instanceof Tensor) || t.dtype !== 'f32' || t.shape.join() !== shape.join()) {
    throw new ArgumentError(name, `an f32 tensor of shape [${shape.join(', ')}]`, t instanceof Tensor ? t.toString() : t);
  }
  return t as Tensor<'f32'>;
}

/** A graph Module (one input tensor): `call(x)` runs the reference forward and the forward hooks. */
export class ErrorCorrectedLinear extends Module {
  readonly scheme: SchemeName;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Q_w(R), [N, K]. */
  readonly weight: QuantizedTensor;
  /** λ [K], or undefined (no smoothing). */
  readonly smooth: Tensor<'f32'> | undefined;
  #lDown: Tensor<'f32'> | undefined;
  #lUp: Tensor<'f32'> | undefined;
  readonly bias: Tensor<'f32'> | undefined;
  readonly actScaleRule: MxScaleRule;
  private wDeq: Float32Array | undefined;

  constructor(data: LowbitLayerData) {
    super();
    if (data === null || typeof data !== 'object') throw new ArgumentError('data', 'an object', data);
    const spec = SCHEMES[data.scheme];
    if (spec === undefined) throw new ArgumentError('data.scheme', `one of ${Object.keys(SCHEMES).join(', ')}`, data.scheme);
    const w = data.weight;
    if (w === null || typeof w !== 'object' || w.format !== spec.weights || w.shape.length !== 2) {
      throw new ArgumentError('data.weight', `a 2-D ${spec.weights} QuantizedTensor for scheme '${data.scheme}'`, w?.format);
    }
    const [n, k] = w.shape;
    const f = FORMATS[w.format];
    if (!(w.codes instanceof Tensor) || w.codes.dtype !== f.codeDType || w.codes.shape.join() !== [n, paddedK(w.format, k)].join()) {
      throw new ArgumentError('data.weight.codes', `${f.codeDType} codes of shape [${n}, ${paddedK(w.format, k)}]`, w.codes instanceof Tensor ? w.codes.toString() : w.codes);
    }
    if (!(w.scales instanceof Tensor) || w.scales.dtype !== f.scaleDType || w.scales.shape.join() !== [n, groupsPerRow(w.format, k)].join()) {
      throw new ArgumentError('data.weight.scales', `${f.scaleDType} scales of shape [${n}, ${groupsPerRow(w.format, k)}]`, w.scales instanceof Tensor ? w.scales.toString() : w.scales);
    }
    if ((data.lDown === undefined) !== (data.lUp === undefined)) throw new ArgumentError('data.lDown/data.lUp', 'both low-rank factors or neither');
    const rank = data.lDown instanceof Tensor ? data.lDown.shape[0] : 0;
    const rule = data.actScaleRule ?? 'even';
    if (!MX_SCALE_RULES.includes(rule)) throw new ArgumentError('data.actScaleRule', `one of ${MX_SCALE_RULES.join(', ')}`, rule);
    this.scheme = data.scheme;
    this.inFeatures = k;
    this.outFeatures = n;
    this.weight = w;
    this.smooth = checkF32(data.smooth, 'data.smooth', [k]);
    this.#lDown = checkF32(data.lDown, 'data.lDown', [rank, k]);
    this.#lUp = checkF32(data.lUp, 'data.lUp', [n, rank]);
    this.bias = checkF32(data.bias, 'data.bias', [n]);
    this.actScaleRule = rule;
    if (this.smooth !== undefined) {
      for (const v of this.smooth.data) if (!(v !== 0 && Number.isFinite(v))) throw new ArgumentError('data.smooth', 'finite non-zero λ values', v);
    }
  }

  /** Rank r of the low-rank branch (0: none); grows while LoRAs are applied (see runtime/lora.ts). */
  get rank(): number {
    return this.#lDown === undefined ? 0 : this.#lDown.shape[0];
  }

  /** L_down [r, K], or undefined (rank 0). */
  get lDown(): Tensor<'f32'> | undefined {
    return this.#lDown;
  }

  /** L_up [N, r], or undefined (rank 0). */
  get lUp(): Tensor<'f32'> | undefined {
    return this.#lUp;
  }

  /**
   * Replaces the low-rank factors (both or neither; the quantized residual, λ and bias stay). Used by
   * applyLora to grow the branch and to put the previous factors back (the very same tensors).
   * Forwards already running keep the factors they started with.
   */
  setLowRank(lDown: Tensor<'f32'> | undefined, lUp: Tensor<'f32'> | undefined): void {
    if ((lDown === undefined) !== (lUp === undefined)) throw new ArgumentError('lDown/lUp', 'both low-rank factors or neither');
    const r = lDown instanceof Tensor ? lDown.shape[0] : 0;
    const d = checkF32(lDown, 'lDown', [r, this.inFeatures]);
    const u = checkF32(lUp, 'lUp', [this.outFeatures, r]);
    this.#lDown = d;
    this.#lUp = u;
  }

  /** The canonical data (what a checkpoint holds and what the native layer is built from). */
  data(): LowbitLayerData {
    return {
      scheme: this.scheme, weight: this.weight,
      ...(this.smooth ? { smooth: this.smooth } : {}),
      ...(this.#lDown && this.#lUp ? { lDown: this.#lDown, lUp: this.#lUp } : {}),
      ...(this.bias ? { bias: this.bias } : {}),
      actScaleRule: this.actScaleRule,
    };
  }

  /** deq(Q_w(R)) [N, K] (computed once and kept). */
  async dequantizedWeight(): Promise<Float32Array> {
    if (this.wDeq === undefined) this.wDeq = (await dequantize(this.weight)).data;
    return this.wDeq;
  }

  /** X̂ = X / λ (fp32), [M, K]. */
  smoothInput(x: Float32Array): Float32Array {
    if (this.smooth === undefined) return x;
    const k = this.inFeatures;
    const lam = this.smooth.data;
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] / lam[i % k];
    return out;
  }

  /** deq(Q_a(X̂)) [M, K]: X̂ itself for w4a16. */
  async quantizeActivations(xhat: Float32Array, m: number): Promise<Float32Array> {
    const k = this.inFeatures;
    const act = SCHEMES[this.scheme].activations;
    if (act === null || m === 0) return xhat;
    const t = Tensor.fromStorage(xhat, [m, k], 'f32');
    if (act !== 'nvfp4') {
      return (await dequantize(await quantize(t, act, { role: 'activation', scaleRule: this.actScaleRule }))).data;
    }
    // nvfp4: one tensor scale per token row (as the native kernel does).
    const out = new Float32Array(m * k);
    for (let i = 0; i < m; i++) {
      const row = xhat.subarray(i * k, (i + 1) * k);
      let amax = 0;
      for (const v of row) {
        const a = Math.abs(v);
        if (a > amax && a !== Infinity) amax = a;
      }
      const rt = Tensor.fromStorage(row.slice(), [1, k], 'f32');
      const q = quantizeSync(rt, 'nvfp4', { role: 'activation', globalScale: nvfp4GlobalScale(amax) });
      out.set(dequantizeSync(q).data, i * k);
    }
    return out;
  }

  /** Y [..., N] for X [..., K], DESIGN.md §2 in fp32 (reference path). */
  override async forward(x: Tensor, options: { threads?: number } | Tensor = {}): Promise<Tensor<'f32'>> {
    // As a graph Module it takes exactly one input; a second argument is only the options object.
    if (options instanceof Tensor) throw new ArgumentError('inputs', 'exactly one input tensor for ErrorCorrectedLinear.forward', 'more than one tensor');
    if (!(x instanceof Tensor) || x.ndim < 1 || x.shape[x.ndim - 1] !== this.inFeatures) {
      throw new ArgumentError('x', `a tensor whose last dimension is ${this.inFeatures}`, x instanceof Tensor ? x.toString() : x);
    }
    checkNotDisposed(x, 'x');
    const threads = (options as { threads?: number }).threads ?? 0;
    const k = this.inFeatures, n = this.outFeatures;
    // The factors this forward uses, read once (applyLora may swap them while it awaits).
    const lDown = this.#lDown, lUp = this.#lUp;
    const r = lDown === undefined ? 0 : lDown.shape[0];
    const xf = x.dtype === 'f32' ? (x.data as Float32Array) : (x.to('f32').data as Float32Array);
    const m = xf.length / k;
    const xhat = this.smoothInput(xf);
    const xq = await this.quantizeActivations(xhat, m);
    const y = await matmulNT(xq, m, k, await this.dequantizedWeight(), n, this.bias?.data, threads);
    if (r > 0 && m > 0) {
      const d = await matmulNT(xhat, m, k, lDown!.data, r, undefined, threads);
      await matmulNTAccumulate(y, d, m, r, lUp!.data, n, threads);
    }
    return trackTensor(Tensor.fromStorage(y, [...x.shape.slice(0, -1), n], 'f32'));
  }

  override toString(): string {
    return `ErrorCorrectedLinear(${this.inFeatures}, ${this.outFeatures}, scheme=${this.scheme}, rank=${this.rank})`;
  }

  /** The native CPU layer with the same data. */
  async toNative(options: { lowRankBf16?: boolean } = {}): Promise<NativeLowbitLayer> {
    return NativeLowbitLayer.create({ ...this.data(), lowRankBf16: options.lowRankBf16 === true });
  }
}
declareReleaseSafe(ErrorCorrectedLinear);
