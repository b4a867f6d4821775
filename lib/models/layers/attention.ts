/**
 * diffusers' Attention module (models/attention_processor.py) with its parameter names: to_q, to_k,
 * to_v, to_out.0 (+ the optional norm_q/norm_k, group_norm, add_{q,k,v}_proj, to_add_out,
 * norm_added_{q,k} of the joint-attention models), and the processors: the default one
 * (AttnProcessor2_0: self- or cross-attention over [B, T, C] tokens or [B, C, H, W] feature maps,
 * with a key padding bias, the residual connection and the output rescale of the VAE's attention;
 * with a rotary table and without to_out it is also Flux's single-stream processor) and the joint
 * one (`joint`: SD3's JointAttnProcessor2_0 and Flux's FluxAttnProcessor2_0, one attention over the
 * image and context tokens, each stream with its own projections).
 */
import { ArgumentError } from '../../errors.js';
import { Module } from '../../graph/module.js';
import { Dropout, GroupNorm, LayerNorm, Linear, ModuleList, RMSNorm } from '../../graph/layers.js';
import { scaledDotProductAttention } from '../../graph/functional.js';
import { add, div } from '../../graph/elementwise.js';
import { concat, split, transpose } from '../../graph/shape-ops.js';
import { applyRotaryEmbedding, type RotaryTable } from '../../graph/rotary.js';
import { declareReleaseSafe } from '../../graph/release.js';
import { Tensor } from '../../tensor.js';

export interface AttentionOptions {
  queryDim: number;
  /** Dimension of encoder_hidden_states for cross-attention (default: queryDim, self-attention). */
  crossAttentionDim?: number | null;
  heads?: number;
  dimHead?: number;
  /** Biases of to_q, to_k, to_v (default false, as diffusers). */
  bias?: boolean;
  /** Bias of to_out.0 (default true). */
  outBias?: boolean;
  /** Output dimension (default queryDim); also sets heads = outDim / dimHead as diffusers. */
  outDim?: number | null;
  /** Per-head normalization of queries and keys. */
  qkNorm?: 'rms_norm' | 'layer_norm' | null;
  eps?: number;
  /** GroupNorm of the input (the VAE's attention). */
  normNumGroups?: number | null;
  residualConnection?: boolean;
  rescaleOutputFactor?: number;
  /** Joint attention: projections of a second (context) stream. */
  addedKvProjDim?: number | null;
  addedProjBias?: boolean;
  /** Joint attention: null (no context query/output), false (context output too), true (the last block: no context output). */
  contextPreOnly?: boolean | null;
  /** No output projection (Flux's single blocks). */
  preOnly?: boolean;
}

export interface AttentionCallOptions {
  /** Keys and values from these tokens [B, Tk, crossAttentionDim] (cross-attention); default the input. */
  encoder_hidden_states?: Tensor | null;
  /** Added to the scores per key: [B, Tk] or [B, 1, Tk] (diffusers' bias form of a mask, (1 − m)·−10000). */
  attention_mask?: Tensor | null;
  /** Rotary table of the tokens (Flux), applied to the queries and keys after their norms. */
  image_rotary_emb?: RotaryTable | null;
}

export interface JointAttentionOptions {
  /** Context tokens before the image tokens in the joint sequence (Flux); default after them (SD3). */
  contextFirst?: boolean;
  /** Rotary table of the joint sequence (Flux). */
  rotary?: RotaryTable | null;
}

export class Attention extends Module {
  readonly heads: number;
  readonly dimHead: number;
  readonly innerDim: number;
  readonly queryDim: number;
  readonly crossAttentionDim: number;
  readonly residualConnection: boolean;
  readonly rescaleOutputFactor: number;
  readonly scale: number;

  constructor(o: AttentionOptions) {
    super();
    const dimHead = o.dimHead ?? 64;
    this.queryDim = o.queryDim;
    this.innerDim = o.outDim ?? dimHead * (o.heads ?? 8);
    this.heads = o.outDim != null ? o.outDim / dimHead : (o.heads ?? 8);
    this.dimHead = dimHead;
    this.crossAttentionDim = o.crossAttentionDim ?? o.queryDim;
    this.residualConnection = o.residualConnection ?? false;
    this.rescaleOutputFactor = o.rescaleOutputFactor ?? 1;
    this.scale = dimHead ** -0.5;
    const eps = o.eps ?? 1e-5;
    const bias = o.bias ?? false;
    const outDim = o.outDim ?? o.queryDim;
    if (o.normNumGroups != null) this.registerModule('group_norm', new GroupNorm(o.normNumGroups, o.queryDim, { eps }));
    const qkNorm = (): Module => (o.qkNorm === 'rms_norm' ? new RMSNorm(dimHead, { eps }) : new LayerNorm(dimHead, { eps }));
    if (o.qkNorm != null) {
      this.registerModule('norm_q', qkNorm());
      this.registerModule('norm_k', qkNorm());
    }
    this.registerModule('to_q', new Linear(o.queryDim, this.innerDim, { bias }));
    this.registerModule('to_k', new Linear(this.crossAttentionDim, this.innerDim, { bias }));
    this.registerModule('to_v', new Linear(this.crossAttentionDim, this.innerDim, { bias }));
    if (o.addedKvProjDim != null) {
      const addedBias = o.addedProjBias ?? true;
      this.registerModule('add_k_proj', new Linear(o.addedKvProjDim, this.innerDim, { bias: addedBias }));
      this.registerModule('add_v_proj', new Linear(o.addedKvProjDim, this.innerDim, { bias: addedBias }));
      if (o.contextPreOnly != null) this.registerModule('add_q_proj', new Linear(o.addedKvProjDim, this.innerDim, { bias: addedBias }));
    }
    if (!o.preOnly) this.registerModule('to_out', new ModuleList([new Linear(this.innerDim, outDim, { bias: o.outBias ?? true }), new Dropout()]));
    if (o.contextPreOnly === false) this.registerModule('to_add_out', new Linear(this.innerDim, outDim, { bias: o.outBias ?? true }));
    if (o.qkNorm != null && o.addedKvProjDim != null) {
      this.registerModule('norm_added_q', qkNorm());
      this.registerModule('norm_added_k', qkNorm());
    }
  }

  /** A projection's heads normalized with `norm` (norm_q, norm_k, ...) over each head's dimHead values, if the module has it. */
  async normHeads(x: Tensor, norm: string): Promise<Tensor> {
    if (!this.hasChild(norm)) return x;
    const y = await this.child(norm).call(x.reshape([...x.shape.slice(0, -1), this.heads, this.dimHead]));
    return y.reshape(x.shape);
  }

  /** softmax(q·kᵀ·scale + bias)·v over the heads of [B, T, inner] projections. */
  attend(q: Tensor, k: Tensor, v: Tensor, keyBias?: Tensor | null): Promise<Tensor> {
    return scaledDotProductAttention(q, k, v, this.heads, { scale: this.scale, keyBias: keyBias ?? null });
  }

  /** The default processor (AttnProcessor2_0). */
  override async forward(hiddenStates: Tensor, options: AttentionCallOptions = {}): Promise<Tensor> {
    if (!(hiddenStates instanceof Tensor) || (hiddenStates.ndim !== 3 && hiddenStates.ndim !== 4)) {
      throw new ArgumentError('hidden_states', 'a tensor of shape [B, T, C] or [B, C, H, W]', hiddenStates);
    }
    const residual = hiddenStates;
    let h = hiddenStates;
    if (this.hasChild('group_norm')) h = await this.child('group_norm').call(h);
    const spatial = h.ndim === 4 ? h.shape : null;
    if (spatial !== null) h = await transpose(h.reshape([spatial[0], spatial[1], spatial[2] * spatial[3]]), 1, 2);
    const context = options.encoder_hidden_states ?? h;
    const [q0, k0, v] = await Promise.all([this.child('to_q').call(h), this.child('to_k').call(context), this.child('to_v').call(context)]);
    let [q, k]: Tensor[] = await Promise.all([this.normHeads(q0, 'norm_q'), this.normHeads(k0, 'norm_k')]);
    if (options.image_rotary_emb != null) [q, k] = await this.rotate(q, k, options.image_rotary_emb);
    let out = await this.attend(q, k, v, options.attention_mask);
    if (!this.hasChild('to_out')) return out; // pre_only (Flux's single blocks): the block projects it
    out = await (this.child('to_out') as ModuleList).at(0).call(out);
    if (spatial !== null) out = (await transpose(out, 1, 2)).reshape(spatial);
    if (this.residualConnection) out = await add(out, residual);
    if (this.rescaleOutputFactor !== 1) out = await div(out, this.rescaleOutputFactor);
    return out;
  }

  /** Queries and keys rotated by a rotary table. */
  private rotate(q: Tensor, k: Tensor, table: RotaryTable): Promise<[Tensor, Tensor]> {
    return Promise.all([applyRotaryEmbedding(q, table, this.heads), applyRotaryEmbedding(k, table, this.heads)]);
  }

  /**
   * Joint attention over image tokens [B, T, C] and context tokens [B, Tc, C]: each stream has its
   * projections (to_q/k/v and add_q/k/v_proj) and head norms (norm_q/k, norm_added_q/k), one
   * attention runs over the concatenated sequence, and the result is split back: [image output
   * (to_out.0), context output (to_add_out; null for SD3's last block, context_pre_only)].
   */
  async joint(hiddenStates: Tensor, context: Tensor, options: JointAttentionOptions = {}): Promise<[Tensor, Tensor | null]> {
    if (!(hiddenStates instanceof Tensor) || hiddenStates.ndim !== 3) throw new ArgumentError('hidden_states', 'a tensor of shape [B, T, C]', hiddenStates);
    if (!(context instanceof Tensor) || context.ndim !== 3 || context.shape[0] !== hiddenStates.shape[0]) {
      throw new ArgumentError('encoder_hidden_states', `a tensor of shape [${hiddenStates.shape[0]}, Tc, C]`, context);
    }
    if (!this.hasChild('add_q_proj')) throw new ArgumentError('attention', 'an Attention with added_kv_proj_dim and context_pre_only set (a joint attention)', this.toString());
    const stream = async (x: Tensor, names: readonly string[], norms: readonly string[]): Promise<Tensor[]> => {
      const [q, k, v] = await Promise.all(names.map((n) => this.child(n).call(x)));
      return [await this.normHeads(q, norms[0]), await this.normHeads(k, norms[1]), v];
    };
    const image = await stream(hiddenStates, ['to_q', 'to_k', 'to_v'], ['norm_q', 'norm_k']);
    const text = await stream(context, ['add_q_proj', 'add_k_proj', 'add_v_proj'], ['norm_added_q', 'norm_added_k']);
    const first = options.contextFirst ? text : image;
    const second = options.contextFirst ? image : text;
    let [q, k, v]: Tensor[] = await Promise.all([0, 1, 2].map((i) => concat([first[i], second[i]], 1)));
    if (options.rotary != null) [q, k] = await this.rotate(q, k, options.rotary);
    const out = await this.attend(q, k, v);
    const t = hiddenStates.shape[1], tc = context.shape[1];
    const parts = await split(out, options.contextFirst ? [tc, t] : [t, tc], 1);
    const [imageOut, textOut] = options.contextFirst ? [parts[1], parts[0]] : parts;
    const projected = await (this.child('to_out') as ModuleList).at(0).call(imageOut);
    return [projected, this.hasChild('to_add_out') ? await this.child('to_add_out').call(textOut) : null];
  }
}
declareReleaseSafe(Attention);
