/**
 * The built-in model of `svdquant demo` and `svdquant calibrate`: a small stack of pre-norm
 * transformer blocks (self-attention + MLP, named as in diffusers) whose weights and inputs are
 * generated deterministically from a seed, with the statistics that make diffusion transformers hard
 * to quantize (the SVDQuant paper's Fig. 3–4): heavy-tailed weights with a few dominant singular
 * directions, and activation outliers — a few input channels of every linear layer 10–60× larger
 * than the rest. Nothing is downloaded; the same options always give bit-identical weights.
 *
 * Where the outliers come from: the LayerNorm gains of a few channels are large (inputs of to_q,
 * to_k, to_v and fc1), a few rows of to_v are scaled up (inputs of to_out, through the attention),
 * and a few rows of fc1 are scaled up (inputs of fc2, through the GELU).
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { declareReleaseSafe } from '../graph/release.js';
import { LayerNorm, Linear, MLP, SelfAttention, Sequential } from '../graph/layers.js';
import { add } from '../graph/elementwise.js';
import { SeededRandom, syntheticLayer } from '../quant/synthetic.js';
import { Tensor } from '../tensor.js';

export interface TinyDitOptions {
  /** Hidden size (default 768). */
  dim?: number;
  /** Attention heads (default 12; must divide dim). */
  heads?: number;
  /** MLP hidden size = mlpRatio · dim (default 4). */
  mlpRatio?: number;
  /** Transformer blocks (default 2). */
  blocks?: number;
  /** Seed of every weight (default 42). */
  seed?: number;
}

/** One pre-norm block: h = x + attn(norm1(x)); y = h + mlp(norm2(h)). */
export class TinyDitBlock extends Module {
  constructor(dim: number, heads: number, hidden: number) {
    super();
    this.registerModule('norm1', new LayerNorm(dim));
    this.registerModule('attn', new SelfAttention(dim, heads, { seed: 0 }));
    this.registerModule('norm2', new LayerNorm(dim));
    this.registerModule('mlp', new MLP(dim, hidden, { activation: 'gelu_tanh', seed: 0 }));
  }

  override async forward(...inputs: Tensor[]): Promise<Tensor> {
    if (inputs.length !== 1) throw new ArgumentError('inputs', 'exactly one input tensor for TinyDitBlock.forward', `${inputs.length} inputs`);
    const x = inputs[0];
    const h = await add(x, await this.child('attn').call(await this.child('norm1').call(x)));
    return add(h, await this.child('mlp').call(await this.child('norm2').call(h)));
  }
}
declareReleaseSafe(TinyDitBlock);

function positiveInt(v: unknown, name: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new ArgumentError(`options.${name}`, `an integer in [1, ${max}]`, v);
  return v;
}

/** Options with defaults filled in and checked. */
export function resolveTinyDitOptions(options: TinyDitOptions = {}): Required<TinyDitOptions> {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  const dim = positiveInt(options.dim ?? 768, 'dim', 16384);
  const heads = positiveInt(options.heads ?? 12, 'heads', 1024);
  if (dim % heads !== 0) throw new ArgumentError('options.heads', `a divisor of dim (${dim})`, heads);
  const mlpRatio = positiveInt(options.mlpRatio ?? 4, 'mlpRatio', 16);
  const blocks = positiveInt(options.blocks ?? 2, 'blocks', 64);
  const seed = options.seed ?? 42;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ArgumentError('options.seed', 'an integer >= 0', seed);
  return { dim, heads, mlpRatio, blocks, seed };
}

function setWeights(layer: Linear, seed: number, rowScale: { rows: number[]; factor: number } | undefined, gain: number): void {
  const syn = syntheticLayer({ outFeatures: layer.outFeatures, inFeatures: layer.inFeatures, tokens: 0, seed, bias: true });
  const w = syn.weight;
  if (gain !== 1) for (let i = 0; i < w.length; i++) w[i] *= gain;
  if (rowScale) {
    for (const r of rowScale.rows) for (let j = 0; j < layer.inFeatures; j++) w[r * layer.inFeatures + j] *= rowScale.factor;
  }
  layer.weight = Tensor.fromStorage(w, [layer.outFeatures, layer.inFeatures], 'f32');
  layer.bias = Tensor.fromStorage(syn.bias!, [layer.outFeatures], 'f32');
}

function pick(rng: SeededRandom, count: number, range: number): number[] {
  const out: number[] = [];
  while (out.length < count) {
    const j = Math.floor(rng.uniform() * range);
    if (!out.includes(j)) out.push(j);
  }
  return out.sort((a, b) => a - b);
}

/** Builds the model: a Sequential of TinyDitBlock named '0', '1', ... (layers e.g. '0.attn.to_q'). */
export function tinyDit(options: TinyDitOptions = {}): Sequential {
  const o = resolveTinyDitOptions(options);
  const hidden = o.dim * o.mlpRatio;
  const rng = new SeededRandom(o.seed);
  const blocks: TinyDitBlock[] = [];
  let layerSeed = o.seed * 1000 + 1;
  for (let b = 0; b < o.blocks; b++) {
    const block = new TinyDitBlock(o.dim, o.heads, hidden);
    for (const normName of ['norm1', 'norm2']) {
      const norm = block.getSubmodule(normName) as LayerNorm;
      const g = new Float32Array(o.dim);
      for (let j = 0; j < o.dim; j++) g[j] = 0.8 + 0.4 * rng.uniform();
      for (const j of pick(rng, Math.max(2, o.dim >> 7), o.dim)) g[j] = (rng.uniform() < 0.5 ? -1 : 1) * (20 + 40 * rng.uniform());
      norm.weight = Tensor.fromStorage(g, [o.dim], 'f32');
    }
    const vRows = { rows: pick(rng, Math.max(2, o.dim >> 7), o.dim), factor: 12 };
    const fc1Rows = { rows: pick(rng, Math.max(2, hidden >> 8), hidden), factor: 10 };
    const qkScale = 0.1;
    for (const name of ['attn.to_q', 'attn.to_k', 'attn.to_v', 'attn.to_out', 'mlp.fc1', 'mlp.fc2']) {
      const scale = name === 'attn.to_v' ? vRows : name === 'mlp.fc1' ? fc1Rows : undefined;
      // q and k scaled down: with the outlier gains of norm1 the logits would otherwise saturate the
      // softmax (real DiTs keep them in range with a QK-norm), and any error would flip attention.
      const qk = name === 'attn.to_q' || name === 'attn.to_k' ? qkScale : 1;
      setWeights(block.getSubmodule(name) as Linear, layerSeed++, scale, qk);
    }
    blocks.push(block);
  }
  return new Sequential(...blocks);
}

/** Deterministic inputs [tokens, dim]: normal values with fixed per-channel scales in [0.5, 2]. */
export function tinyDitInputs(tokens: number, dim: number, seed: number): Tensor<'f32'> {
  positiveInt(tokens, 'tokens', 1 << 20);
  positiveInt(dim, 'dim', 16384);
  // The channel scales are a property of the "embedding" (same for every seed); the tokens vary.
  const scaleRng = new SeededRandom(7919 + dim);
  const scale = new Float32Array(dim);
  for (let j = 0; j < dim; j++) scale[j] = 0.5 + 1.5 * scaleRng.uniform();
  const rng = new SeededRandom(seed);
  const x = new Float32Array(tokens * dim);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal() * scale[i % dim];
  return Tensor.fromStorage(x, [tokens, dim], 'f32');
}

/** Calibration batches for the built-in model: `tokens` tokens in batches of at most 256 (seeds 1, 2, ...). */
export function tinyDitCalibration(tokens: number, dim: number): Tensor<'f32'>[] {
  positiveInt(tokens, 'tokens', 1 << 24);
  const batches: Tensor<'f32'>[] = [];
  for (let done = 0, b = 0; done < tokens; b++) {
    const n = Math.min(256, tokens - done);
    batches.push(tinyDitInputs(n, dim, 1 + b));
    done += n;
  }
  return batches;
}
