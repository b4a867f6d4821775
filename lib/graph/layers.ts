/**
 * The layers of the tensor graph: Linear (fp32 GEMM with weights packed once in native memory),
 * LayerNorm, RMSNorm, GELU, SiLU, Sequential, a transformer MLP and multi-head self-attention.
 * Every forward runs its arithmetic off the JavaScript thread and resolves to a new f32 tensor.
 */
import { ArgumentError } from '../errors.js';
import { native, type NativePackedF32 } from '../native.js';
import { Tensor } from '../tensor.js';
import { checkOutTensor } from '../tensor-out.js';
import {
  checkApproximate, checkEps, floatInput, gelu, layerNorm, output, rmsNorm, scaledDotProductAttention, silu,
  type GeluApproximate,
} from './functional.js';
import { Module } from './module.js';
import { declareReleaseSafe, releaseIntermediates } from './release.js';

function checkDim(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > 2 ** 30) {
    throw new ArgumentError(argument, 'an integer in [1, 2^30]', value);
  }
  return value;
}

function checkOptions<T extends object>(options: unknown, argument = 'options'): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== 'object') throw new ArgumentError(argument, 'an object', options);
  return options as T;
}

function f32Param(t: unknown, argument: string, shape: readonly number[]): Tensor<'f32'> {
  if (!(t instanceof Tensor) || t.dtype !== 'f32' || t.shape.join() !== shape.join() || t.ndim !== shape.length) {
    throw new ArgumentError(argument, `an f32 tensor of shape [${shape.join(', ')}]`, t instanceof Tensor ? t.toString() : t);
  }
  return t as Tensor<'f32'>;
}

function lastDimInput(x: unknown, argument: string, dim: number): Tensor<'f32'> {
  const xf = floatInput(x, argument);
  if (xf.shape[xf.ndim - 1] !== dim) {
    throw new ArgumentError(argument, `a tensor whose last dimension is ${dim}`, xf.toString());
  }
  return xf;
}

function singleInput(inputs: Tensor[], layer: string): Tensor {
  if (inputs.length !== 1) throw new ArgumentError('inputs', `exactly one input tensor for ${layer}.forward`, `${inputs.length} inputs`);
  return inputs[0];
}

/** A small seeded generator (mulberry32) for reproducible initial weights. */
function uniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface LinearOptions {
  /** Whether the layer has a bias (default true). */
  bias?: boolean;
  /** Seed of the initial weights (uniform in ±1/√inFeatures, as PyTorch); default: random. */
  seed?: number;
}

/**
 * Y [..., N] = X [..., K] · Wᵀ + b with weight [N, K] and optional bias [N] (f32). The weights are
 * packed for the native GEMM on the first forward and repacked after `weight` is assigned; after
 * changing `weight.data` in place, call `weightChanged()`.
 */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  #weight: Tensor<'f32'>;
  #bias: Tensor<'f32'> | null;
  #weightVersion = 0;
  #packed: { version: number; promise: Promise<NativePackedF32> } | undefined;

  constructor(inFeatures: number, outFeatures: number, options: LinearOptions = {}) {
    super();
    this.inFeatures = checkDim(inFeatures, 'inFeatures');
    this.outFeatures = checkDim(outFeatures, 'outFeatures');
    const o = checkOptions<LinearOptions>(options);
    if (o.bias !== undefined && typeof o.bias !== 'boolean') throw new ArgumentError('options.bias', 'a boolean', o.bias);
    if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new ArgumentError('options.seed', 'an integer', o.seed);
    const next = uniform(o.seed ?? Math.floor(Math.random() * 2 ** 32));
    const bound = 1 / Math.sqrt(inFeatures);
    const w = new Float32Array(outFeatures * inFeatures);
    for (let i = 0; i < w.length; i++) w[i] = (next() * 2 - 1) * bound;
    this.#weight = Tensor.fromStorage(w, [outFeatures, inFeatures], 'f32');
    this.#bias = null;
    if (o.bias !== false) {
      const b = new Float32Array(outFeatures);
      for (let i = 0; i < b.length; i++) b[i] = (next() * 2 - 1) * bound;
      this.#bias = Tensor.fromStorage(b, [outFeatures], 'f32');
    }
  }

  /** The weight [outFeatures, inFeatures] (f32). Assigning a new tensor repacks on the next forward. */
  get weight(): Tensor<'f32'> {
    return this.#weight;
  }

  set weight(t: Tensor<'f32'>) {
    this.#weight = f32Param(t, 'weight', [this.outFeatures, this.inFeatures]);
    this.weightChanged();
  }

  /** The bias [outFeatures] (f32), or null for none. */
  get bias(): Tensor<'f32'> | null {
    return this.#bias;
  }

  set bias(t: Tensor<'f32'> | null) {
    this.#bias = t === null ? null : f32Param(t, 'bias', [this.outFeatures]);
  }

  /** Increases on every weight change; the packed copy belongs to one version. */
  get weightVersion(): number {
    return this.#weightVersion;
  }

  /** Declares the weight's values changed (after in-place edits of `weight.data`): the next forward repacks. */
  weightChanged(): void {
    this.#weightVersion++;
    this.#packed = undefined;
  }

  /** The packed weights of the current version (packed once; concurrent forwards share the packing). */
  #packedWeights(): Promise<NativePackedF32> {
    const version = this.#weightVersion;
    if (this.#packed === undefined || this.#packed.version !== version) {
      const promise = native().packF32Weights(this.#weight.data, this.outFeatures, this.inFeatures, 0);
      const entry = { version, promise };
      this.#packed = entry;
      promise.catch(() => {
        if (this.#packed === entry) this.#packed = undefined;
      });
    }
    return this.#packed.promise;
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    return this.forwardInto(singleInput(inputs, 'Linear'));
  }

  /**
   * forward(x) written into `out` (an f32 tensor of the output's shape, sharing no storage with x)
   * and resolving to it, for callers that reuse their buffers; without `out`, forward(x). Forward
   * hooks do not run (as when calling forward directly).
   */
  async forwardInto(input: Tensor, out?: Tensor<'f32'>): Promise<Tensor<'f32'>> {
    const x = lastDimInput(input, 'x', this.inFeatures);
    const shape = [...x.shape.slice(0, -1), this.outFeatures];
    const dst = out === undefined ? null : checkOutTensor(out, shape, [input], 'out');
    const bias = this.#bias;
    const packed = await this.#packedWeights();
    const m = x.numel / this.inFeatures;
    if (dst !== null) {
      await native().linearF32(packed, x.data, m, bias === null ? null : bias.data, dst.data, 0);
      return dst;
    }
    const y = await native().linearF32(packed, x.data, m, bias === null ? null : bias.data, null, 0);
    return output(y, shape);
  }

  override toString(): string {
    return `Linear(${this.inFeatures}, ${this.outFeatures}, bias=${this.#bias !== null})`;
  }
}

export interface LayerNormLayerOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Learnable weight (ones) and bias (zeros) (default true). */
  affine?: boolean;
}

/** LayerNorm over the last dimension `dim`. */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  #weight: Tensor<'f32'> | null = null;
  #bias: Tensor<'f32'> | null = null;

  constructor(dim: number, options: LayerNormLayerOptions = {}) {
    super();
    this.dim = checkDim(dim, 'dim');
    const o = checkOptions<LayerNormLayerOptions>(options);
    this.eps = checkEps(o.eps ?? 1e-5, 'options.eps');
    if (o.affine !== undefined && typeof o.affine !== 'boolean') throw new ArgumentError('options.affine', 'a boolean', o.affine);
    if (o.affine !== false) {
      this.#weight = Tensor.fromStorage(new Float32Array(dim).fill(1), [dim], 'f32');
      this.#bias = Tensor.zeros([dim], 'f32');
    }
  }

  get weight(): Tensor<'f32'> | null {
    return this.#weight;
  }

  set weight(t: Tensor<'f32'> | null) {
    this.#weight = t === null ? null : f32Param(t, 'weight', [this.dim]);
  }

  get bias(): Tensor<'f32'> | null {
    return this.#bias;
  }

  set bias(t: Tensor<'f32'> | null) {
    this.#bias = t === null ? null : f32Param(t, 'bias', [this.dim]);
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    const x = lastDimInput(singleInput(inputs, 'LayerNorm'), 'x', this.dim);
    return layerNorm(x, { weight: this.#weight, bias: this.#bias, eps: this.eps });
  }
}

/** RMSNorm over the last dimension `dim`, with a learnable weight (ones). */
export class RMSNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  #weight: Tensor<'f32'>;

  constructor(dim: number, options: { eps?: number } = {}) {
    super();
    this.dim = checkDim(dim, 'dim');
    const o = checkOptions<{ eps?: number }>(options);
    this.eps = checkEps(o.eps ?? 1e-6, 'options.eps');
    this.#weight = Tensor.fromStorage(new Float32Array(dim).fill(1), [dim], 'f32');
  }

  get weight(): Tensor<'f32'> {
    return this.#weight;
  }

  set weight(t: Tensor<'f32'>) {
    this.#weight = f32Param(t, 'weight', [this.dim]);
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    const x = lastDimInput(singleInput(inputs, 'RMSNorm'), 'x', this.dim);
    return rmsNorm(x, { weight: this.#weight, eps: this.eps });
  }
}

/** GELU, exact (`approximate: 'none'`, the default) or the tanh form. */
export class GELU extends Module {
  readonly approximate: GeluApproximate;

  constructor(options: { approximate?: GeluApproximate } = {}) {
    super();
    const o = checkOptions<{ approximate?: GeluApproximate }>(options);
    this.approximate = checkApproximate(o.approximate ?? 'none', 'options.approximate');
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    return gelu(singleInput(inputs, 'GELU'), { approximate: this.approximate });
  }
}

/** SiLU: x · sigmoid(x). */
export class SiLU extends Module {
  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    return silu(singleInput(inputs, 'SiLU'));
  }
}

/** Children named '0', '1', ... called in order, each on the previous one's output. */
export class Sequential extends Module {
  constructor(...modules: Module[]) {
    super();
    modules.forEach((m, i) => {
      if (!(m instanceof Module)) throw new ArgumentError(`modules[${i}]`, 'a Module', m);
      this.registerModule(String(i), m);
    });
  }

  /** Appends a module as the next numbered child. */
  append(module: Module): this {
    let i = 0;
    for (const _ of this.namedChildren()) i++;
    this.registerModule(String(i), module);
    return this;
  }

  get length(): number {
    return [...this.namedChildren()].length;
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor> {
    const input = singleInput(inputs, 'Sequential');
    let x = input;
    for (const [, m] of this.namedChildren()) {
      const y = await m.call(x);
      if (x !== input) releaseIntermediates(this, [x], [input, y]);
      x = y;
    }
    return x;
  }
}

export type MlpActivation = 'gelu' | 'gelu_tanh' | 'silu';
const MLP_ACTIVATIONS: readonly MlpActivation[] = ['gelu', 'gelu_tanh', 'silu'];

export interface MLPOptions {
  /** The activation between the projections (default 'gelu', the exact form). */
  activation?: MlpActivation;
  /** Biases on both projections (default true). */
  bias?: boolean;
  /** Seed of the initial weights (fc1 uses seed, fc2 seed + 1); default random. */
  seed?: number;
}

/** The transformer feed-forward block: children fc1 (Linear dim→hidden), act, fc2 (Linear hidden→dim). */
export class MLP extends Module {
  readonly dim: number;
  readonly hidden: number;

  constructor(dim: number, hidden: number, options: MLPOptions = {}) {
    super();
    this.dim = checkDim(dim, 'dim');
    this.hidden = checkDim(hidden, 'hidden');
    const o = checkOptions<MLPOptions>(options);
    const activation = o.activation ?? 'gelu';
    if (!MLP_ACTIVATIONS.includes(activation)) {
      throw new ArgumentError('options.activation', `one of ${MLP_ACTIVATIONS.map((a) => `'${a}'`).join(', ')}`, activation);
    }
    if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new ArgumentError('options.seed', 'an integer', o.seed);
    const seed = (i: number) => (o.seed === undefined ? undefined : o.seed + i);
    this.registerModule('fc1', new Linear(dim, hidden, { bias: o.bias, seed: seed(0) }));
    this.registerModule('act', activation === 'silu' ? new SiLU() : new GELU({ approximate: activation === 'gelu_tanh' ? 'tanh' : 'none' }));
    this.registerModule('fc2', new Linear(hidden, dim, { bias: o.bias, seed: seed(1) }));
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor> {
    const x = singleInput(inputs, 'MLP');
    const h = await this.child('fc1').call(x);
    const a = await this.child('act').call(h);
    releaseIntermediates(this, [h], [x, a]);
    const y = await this.child('fc2').call(a);
    releaseIntermediates(this, [a], [x, y]);
    return y;
  }
}

export interface SelfAttentionOptions {
  /** Biases on the four projections (default true). */
  bias?: boolean;
  /** Seed of the initial weights (to_q, to_k, to_v, to_out use seed + 0..3); default random. */
  seed?: number;
}

/**
 * Multi-head self-attention over x [T, dim] or [B, T, dim], with the projections named as in
 * diffusers: children to_q, to_k, to_v (Linear dim→dim) and to_out (Linear dim→dim).
 * out = to_out(concat_h softmax(q_h·k_hᵀ/√headDim)·v_h).
 */
export class SelfAttention extends Module {
  readonly dim: number;
  readonly heads: number;
  readonly headDim: number;

  constructor(dim: number, heads: number, options: SelfAttentionOptions = {}) {
    super();
    this.dim = checkDim(dim, 'dim');
    this.heads = checkDim(heads, 'heads');
    if (dim % heads !== 0) throw new ArgumentError('heads', `a divisor of dim (${dim})`, heads);
    this.headDim = dim / heads;
    const o = checkOptions<SelfAttentionOptions>(options);
    if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw new ArgumentError('options.seed', 'an integer', o.seed);
    const seed = (i: number) => (o.seed === undefined ? undefined : o.seed + i);
    ['to_q', 'to_k', 'to_v', 'to_out'].forEach((name, i) => this.registerModule(name, new Linear(dim, dim, { bias: o.bias, seed: seed(i) })));
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor> {
    const x = lastDimInput(singleInput(inputs, 'SelfAttention'), 'x', this.dim);
    if (x.ndim !== 2 && x.ndim !== 3) throw new ArgumentError('x', `a tensor of shape [T, ${this.dim}] or [B, T, ${this.dim}]`, x.toString());
    const [q, k, v] = await Promise.all([this.child('to_q').call(x), this.child('to_k').call(x), this.child('to_v').call(x)]);
    for (const [name, t] of [['to_q', q], ['to_k', k], ['to_v', v]] as const) {
      if (t.shape.join() !== x.shape.join()) {
        throw new ArgumentError(name, `a projection that maps [${x.shape.join(', ')}] to the same shape`, t.toString());
      }
    }
    const o = await scaledDotProductAttention(q, k, v, this.heads);
    releaseIntermediates(this, [q, k, v], [x, o]);
    const y = await this.child('to_out').call(o);
    releaseIntermediates(this, [o], [x, y]);
    return y;
  }
}

for (const cls of [Linear, LayerNorm, RMSNorm, GELU, SiLU, Sequential, MLP, SelfAttention]) declareReleaseSafe(cls);
