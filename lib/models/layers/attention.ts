/**
 * diffusers' Attention module (models/attention_processor.py) with its parameter names: to_q, to_k,
 * to_v, to_out.0 (+ the optional norm_q/norm_k, group_norm, add_{q,k,v}_proj, to_add_out,
 * norm_added_{q,k} of the joint-attention models), and the default processor (AttnProcessor2_0):
 * self- or cross-attention over [B, T, C] tokens or [B, C, H, W] feature maps, with a key padding
 * bias, the residual connection and the output rescale of the VAE's attention.
 */
import { ArgumentError } from '../../errors.js';
import { Module } from '../../graph/module.js';
import { Dropout, GroupNorm, LayerNorm, Linear, ModuleList, RMSNorm } from '../../graph/layers.js';
import { scaledDotProductAttention } from '../../graph/functional.js';
import { add, div } from '../../graph/elementwise.js';
import { transpose } from '../../graph/shape-ops.js';
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
    const [q, k] = await Promise.all([this.normHeads(q0, 'norm_q'), this.normHeads(k0, 'norm_k')]);
    let out = await this.attend(q, k, v, options.attention_mask);
    out = await (this.child('to_out') as ModuleList).at(0).call(out);
    if (spatial !== null) out = (await transpose(out, 1, 2)).reshape(spatial);
    if (this.residualConnection) out = await add(out, residual);
    if (this.rescaleOutputFactor !== 1) out = await div(out, this.rescaleOutputFactor);
    return out;
  }
}
declareReleaseSafe(Attention);
