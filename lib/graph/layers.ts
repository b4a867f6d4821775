/**
 * The layers of the tensor graph: Linear (fp32 GEMM with weights packed once in native memory),
 * Conv2d (im2col + the same GEMM), LayerNorm, RMSNorm, GroupNorm, Embedding, GELU, SiLU, Dropout
 * (identity at inference), the containers Sequential and ModuleList, a transformer MLP and
 * multi-head self-attention. Parameter names are PyTorch's (`weight`, `bias`), so a tree of these
 * layers has the state-dict keys of the torch module it mirrors. Every forward runs its arithmetic
 * off the JavaScript thread and resolves to a new f32 tensor.
 */
import { ArgumentError } from '../errors.js';
import { native, type NativePackedF32 } from '../native.js';
import { Tensor } from '../tensor.js';
import { checkOutTensor } from '../tensor-out.js';
import {
  checkApproximate, checkEps, floatInput, gelu, groupNorm, layerNorm, output, rmsNorm, scaledDotProductAttention, silu,
  type GeluApproximate,
} from './functional.js';
import { embedding } from './embeddings.js';
import { Module } from './module.js';
import { declareReleaseSafe } from './release.js';
import { chain } from './scope.js';

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
    this.registerParameter('weight', Tensor.fromStorage(w, [outFeatures, inFeatures], 'f32'));
    let bias: Tensor | null = null;
    if (o.bias !== false) {
      const b = new Float32Array(outFeatures);
      for (let i = 0; i < b.length; i++) b[i] = (next() * 2 - 1) * bound;
      bias = Tensor.fromStorage(b, [outFeatures], 'f32');
    }
    this.registerParameter('bias', bias);
  }

  /** The weight [outFeatures, inFeatures] (f32). Assigning a new tensor repacks on the next forward. */
  get weight(): Tensor<'f32'> {
    return this.slot('weight') as Tensor<'f32'>;
  }

  set weight(t: Tensor<'f32'>) {
    this.setParameter('weight', f32Param(t, 'weight', [this.outFeatures, this.inFeatures]));
  }

  /** The bias [outFeatures] (f32), or null for none. */
  get bias(): Tensor<'f32'> | null {
    return this.slot('bias') as Tensor<'f32'> | null;
  }

  set bias(t: Tensor<'f32'> | null) {
    this.registerParameter('bias', t === null ? null : f32Param(t, 'bias', [this.outFeatures]));
  }

  protected override parameterChanged(name: string): void {
    if (name === 'weight') this.weightChanged();
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
      const promise = native().packF32Weights(this.weight.data, this.outFeatures, this.inFeatures, 0);
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
    const bias = this.bias;
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
    return `Linear(${this.inFeatures}, ${this.outFeatures}, bias=${this.bias !== null})`;
  }
}

export interface LayerNormLayerOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Learnable weight (ones) and bias (zeros) (default true; torch's elementwise_affine). */
  affine?: boolean;
  /** With affine: whether there is a bias (default true; torch's `bias`). */
  bias?: boolean;
}

/** LayerNorm over the last dimension `dim` (torch.nn.LayerNorm). */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;

  constructor(dim: number, options: LayerNormLayerOptions = {}) {
    super();
    this.dim = checkDim(dim, 'dim');
    const o = checkOptions<LayerNormLayerOptions>(options);
    this.eps = checkEps(o.eps ?? 1e-5, 'options.eps');
    if (o.affine !== undefined && typeof o.affine !== 'boolean') throw new ArgumentError('options.affine', 'a boolean', o.affine);
    if (o.bias !== undefined && typeof o.bias !== 'boolean') throw new ArgumentError('options.bias', 'a boolean', o.bias);
    if (o.affine !== false) {
      this.registerParameter('weight', Tensor.fromStorage(new Float32Array(dim).fill(1), [dim], 'f32'));
      if (o.bias !== false) this.registerParameter('bias', Tensor.zeros([dim], 'f32'));
    }
  }

  get weight(): Tensor<'f32'> | null {
    return this.optionalSlot('weight') as Tensor<'f32'> | null;
  }

  set weight(t: Tensor<'f32'> | null) {
    this.registerParameter('weight', t === null ? null : f32Param(t, 'weight', [this.dim]));
  }

  get bias(): Tensor<'f32'> | null {
    return this.optionalSlot('bias') as Tensor<'f32'> | null;
  }

  set bias(t: Tensor<'f32'> | null) {
    this.registerParameter('bias', t === null ? null : f32Param(t, 'bias', [this.dim]));
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    const x = lastDimInput(singleInput(inputs, 'LayerNorm'), 'x', this.dim);
    return layerNorm(x, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

/** RMSNorm over the last dimension `dim`, with a learnable weight (ones) unless `affine: false`. */
export class RMSNorm extends Module {
  readonly dim: number;
  readonly eps: number;

  constructor(dim: number, options: { eps?: number; affine?: boolean } = {}) {
    super();
    this.dim = checkDim(dim, 'dim');
    const o = checkOptions<{ eps?: number; affine?: boolean }>(options);
    this.eps = checkEps(o.eps ?? 1e-6, 'options.eps');
    if (o.affine !== undefined && typeof o.affine !== 'boolean') throw new ArgumentError('options.affine', 'a boolean', o.affine);
    if (o.affine !== false) this.registerParameter('weight', Tensor.fromStorage(new Float32Array(dim).fill(1), [dim], 'f32'));
  }

  /** The weight [dim], or null without affine. */
  get weight(): Tensor<'f32'> | null {
    return this.optionalSlot('weight') as Tensor<'f32'> | null;
  }

  set weight(t: Tensor<'f32'> | null) {
    this.registerParameter('weight', t === null ? null : f32Param(t, 'weight', [this.dim]));
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor<'f32'>> {
    const x = lastDimInput(singleInput(inputs, 'RMSNorm'), 'x', this.dim);
    return rmsNorm(x, { weight: this.weight, eps: this.eps });
  }
}

/** GroupNorm over x [N, C, ...] (torch.nn.GroupNorm) with a learnable weight and bias per channel unless `affine: false`. */
export class GroupNorm extends Module {
  readonly groups: number;
  readonly channels: number;
  readonly eps: number;

  constructor(groups: number, channels: number, options: { eps?: number; affine?: boolean } = {}) {
    super();
    this.groups = checkDim(groups, 'groups');
    this.channels = checkDim(channels, 'channels');
    if (channels % groups !== 0) throw new ArgumentError('groups', `a divisor of channels (${channels})`, groups);
    const o = checkOptions<{ eps?: number; affine?: boolean }>(options);
    this.eps = checkEps(o.eps ?? 1e-5, 'options.eps');
    if (o.affine !== false) {
      this.registerParameter('weight', Tensor.fromStorage(new Float32Array(channels).fill(1), [channels], 'f32'));
      this.registerParameter('bias', Tensor.zeros([channels], 'f32'));
    }
  }

  override async forward(x: Tensor): Promise<Tensor<'f32'>> {
    const xf = floatInput(x, 'x', 2);
    if (xf.shape[1] !== this.channels) throw new ArgumentError('x', `a tensor of shape [N, ${this.channels}, ...]`, xf.toString());
    return groupNorm(xf, this.groups, { weight: this.optionalSlot('weight'), bias: this.optionalSlot('bias'), eps: this.eps });
  }
}

export interface Conv2dOptions {
  /** Stride (default 1): a number or [h, w]. */
  stride?: number | readonly [number, number];
  /** Zero padding (default 0): a number or [h, w]. */
  padding?: number | readonly [number, number];
  /** Whether there is a bias (default true). */
  bias?: boolean;
}

function pair(v: unknown, argument: string, min: number): [number, number] {
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= min && x <= 1024;
  if (ok(v)) return [v, v];
  if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) return [v[0], v[1]];
  throw new ArgumentError(argument, `an integer in [${min}, 1024] or a pair of them`, v);
}

/**
 * 2-D convolution (torch.nn.Conv2d, dilation 1, groups 1): weight [cout, cin, kh, kw], bias [cout];
 * x [N, cin, H, W] -> [N, cout, Ho, Wo]. The weight is packed once for the fp32 GEMM (as Linear's)
 * and the input unrolled (im2col) in bounded chunks natively; a patch embedding (stride = kernel)
 * is the same GEMM over the patches.
 */
export class Conv2d extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  #packed: { version: number; promise: Promise<NativePackedF32> } | undefined;
  #version = 0;

  constructor(inChannels: number, outChannels: number, kernelSize: number | readonly [number, number], options: Conv2dOptions = {}) {
    super();
    this.inChannels = checkDim(inChannels, 'inChannels');
    this.outChannels = checkDim(outChannels, 'outChannels');
    this.kernelSize = pair(kernelSize, 'kernelSize', 1);
    const o = checkOptions<Conv2dOptions>(options);
    this.stride = pair(o.stride ?? 1, 'options.stride', 1);
    this.padding = pair(o.padding ?? 0, 'options.padding', 0);
    if (o.bias !== undefined && typeof o.bias !== 'boolean') throw new ArgumentError('options.bias', 'a boolean', o.bias);
    this.registerParameter('weight', Tensor.zeros([outChannels, inChannels, ...this.kernelSize], 'f32'));
    this.registerParameter('bias', o.bias === false ? null : Tensor.zeros([outChannels], 'f32'));
  }

  get weight(): Tensor<'f32'> {
    return this.slot('weight') as Tensor<'f32'>;
  }

  get bias(): Tensor<'f32'> | null {
    return this.slot('bias') as Tensor<'f32'> | null;
  }

  protected override parameterChanged(name: string): void {
    if (name === 'weight') {
      this.#version++;
      this.#packed = undefined;
    }
  }

  #packedWeights(): Promise<NativePackedF32> {
    if (this.#packed === undefined || this.#packed.version !== this.#version) {
      const [kh, kw] = this.kernelSize;
      const promise = native().packF32Weights(this.weight.data, this.outChannels, this.inChannels * kh * kw, 0);
      const entry = { version: this.#version, promise };
      this.#packed = entry;
      promise.catch(() => {
        if (this.#packed === entry) this.#packed = undefined;
      });
    }
    return this.#packed.promise;
  }

  override async forward(x: Tensor): Promise<Tensor<'f32'>> {
    const xf = floatInput(x, 'x', 4);
    if (xf.ndim !== 4 || xf.shape[1] !== this.inChannels) throw new ArgumentError('x', `a tensor of shape [N, ${this.inChannels}, H, W]`, xf.toString());
    const [n, , h, w] = xf.shape;
    const [kh, kw] = this.kernelSize;
    const [sh, sw] = this.stride;
    const [ph, pw] = this.padding;
    if (h + 2 * ph < kh || w + 2 * pw < kw) throw new ArgumentError('x', `an image of at least ${kh - 2 * ph}×${kw - 2 * pw} pixels for this kernel`, xf.toString());
    const ho = Math.floor((h + 2 * ph - kh) / sh) + 1, wo = Math.floor((w + 2 * pw - kw) / sw) + 1;
    const bias = this.bias;
    const y = await native().conv2d(await this.#packedWeights(), xf.data, n, this.inChannels, h, w, kh, kw, sh, sw, ph, pw, bias === null ? null : bias.data, null, 0);
    return output(y, [n, this.outChannels, ho, wo]);
  }

  override toString(): string {
    return `Conv2d(${this.inChannels}, ${this.outChannels}, kernel=${this.kernelSize.join('x')}, stride=${this.stride.join('x')}, padding=${this.padding.join('x')})`;
  }
}

/** A lookup table (torch.nn.Embedding): weight [count, dim]; forward(ids) -> [...ids.shape, dim]. */
export class Embedding extends Module {
  readonly count: number;
  readonly dim: number;

  constructor(count: number, dim: number) {
    super();
    this.count = checkDim(count, 'count');
    this.dim = checkDim(dim, 'dim');
    this.registerParameter('weight', Tensor.zeros([count, dim], 'f32'));
  }

  override async forward(ids: unknown): Promise<Tensor<'f32'>> {
    return embedding(this.slot('weight') as Tensor, ids);
  }
}

/** Dropout at inference: the identity (kept so that module indices match PyTorch's, e.g. `ff.net.2`). */
export class Dropout extends Module {
  override async forward(x: Tensor): Promise<Tensor> {
    return x;
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
    return chain(this.children(), singleInput(inputs, 'Sequential'), (m, x) => m.call(x));
  }
}

/**
 * Children named '0', '1', ... with no forward of their own (torch.nn.ModuleList): the model that
 * owns the list calls them, typically through `chain`, which frees each block's input once the next
 * block has consumed it.
 */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(modules: Iterable<M> = []) {
    super();
    let i = 0;
    for (const m of modules) {
      if (!(m instanceof Module)) throw new ArgumentError(`modules[${i}]`, 'a Module', m);
      this.registerModule(String(i++), m);
    }
  }

  get length(): number {
    return [...this.namedChildren()].length;
  }

  /** The child at index i (the module at that path now, after any setSubmodule). */
  at(i: number): M {
    return this.getSubmodule(String(i)) as M;
  }

  [Symbol.iterator](): IterableIterator<M> {
    return this.children() as IterableIterator<M>;
  }

  /** Runs `step` for each child on a running state (see scope.ts `chain`): `state = await step(child, state)`. */
  chain<S>(state: S, step: (module: M, state: S) => Promise<S>): Promise<S> {
    return chain(this, state, step);
  }

  override async forward(): Promise<never> {
    throw new ArgumentError('module', 'a module with a forward (a ModuleList only holds modules; call its children)', 'ModuleList');
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
    return this.child('fc2').call(a);
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
    return this.child('to_out').call(o);
  }
}

for (const cls of [Linear, Conv2d, LayerNorm, RMSNorm, GroupNorm, Embedding, Dropout, GELU, SiLU, Sequential, ModuleList, MLP, SelfAttention]) declareReleaseSafe(cls);
