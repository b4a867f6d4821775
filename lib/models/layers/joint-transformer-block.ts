/**
 * diffusers' JointTransformerBlock (models/attention.py): the MM-DiT block of SD3. Image and context
 * streams each have an adaLN-Zero norm and a feed-forward; one joint attention runs over both. The
 * last block is `context_pre_only`: its context stream only feeds the attention (continuous adaLN,
 * no output, no feed-forward). SD3.5 options: RMS norms on the query/key heads (`qkNorm`) and a
 * second, image-only self-attention (`attn2`, modulated by the 9-chunk SD35AdaLayerNormZeroX).
 */
import { Module } from '../../graph/module.js';
import { LayerNorm } from '../../graph/layers.js';
import { gatedAdd, layerNormModulate } from '../../graph/elementwise.js';
import { unsqueeze } from '../../graph/shape-ops.js';
import { declareReleaseSafe } from '../../graph/release.js';
import type { Tensor } from '../../tensor.js';
import { Attention } from './attention.js';
import { FeedForward } from './feed-forward.js';
import { AdaLayerNormContinuous, AdaLayerNormZero, SD35AdaLayerNormZeroX } from './normalization.js';

export interface JointTransformerBlockOptions {
  dim: number;
  numAttentionHeads: number;
  attentionHeadDim: number;
  contextPreOnly: boolean;
  qkNorm?: 'rms_norm' | null;
  useDualAttention?: boolean;
}

/** Norm + feed-forward + gated residual of one stream: x + gate·ff(norm(x)·(1 + scale) + shift). */
export async function gatedFeedForward(x: Tensor, norm: LayerNorm, ff: Module, shift: Tensor, scale: Tensor, gate: Tensor): Promise<Tensor> {
  const normed = await layerNormModulate(x, scale, shift, { eps: norm.eps });
  return gatedAdd(x, unsqueeze(gate, 1), await ff.call(normed));
}

export class JointTransformerBlock extends Module {
  readonly contextPreOnly: boolean;
  readonly useDualAttention: boolean;

  constructor(o: JointTransformerBlockOptions) {
    super();
    this.contextPreOnly = o.contextPreOnly;
    this.useDualAttention = o.useDualAttention ?? false;
    const { dim } = o;
    this.registerModule('norm1', this.useDualAttention ? new SD35AdaLayerNormZeroX(dim) : new AdaLayerNormZero(dim));
    this.registerModule('norm1_context', o.contextPreOnly ? new AdaLayerNormContinuous(dim, dim, { affine: false, eps: 1e-6 }) : new AdaLayerNormZero(dim));
    const heads = { queryDim: dim, dimHead: o.attentionHeadDim, heads: o.numAttentionHeads, outDim: dim, bias: true, qkNorm: o.qkNorm ?? null, eps: 1e-6 };
    this.registerModule('attn', new Attention({ ...heads, addedKvProjDim: dim, contextPreOnly: o.contextPreOnly }));
    if (this.useDualAttention) this.registerModule('attn2', new Attention(heads));
    this.registerModule('norm2', new LayerNorm(dim, { affine: false, eps: 1e-6 }));
    this.registerModule('ff', new FeedForward(dim, { dimOut: dim, activationFn: 'gelu-approximate' }));
    if (!o.contextPreOnly) {
      this.registerModule('norm2_context', new LayerNorm(dim, { affine: false, eps: 1e-6 }));
      this.registerModule('ff_context', new FeedForward(dim, { dimOut: dim, activationFn: 'gelu-approximate' }));
    }
  }

  /** Returns [context (null after the context_pre_only block), image tokens]. */
  override async forward(hiddenStates: Tensor, context: Tensor, temb: Tensor): Promise<[Tensor | null, Tensor]> {
    const [normed, gateMsa, shiftMlp, scaleMlp, gateMlp, normed2, gateMsa2] = await this.child('norm1').call(hiddenStates, { emb: temb }) as Tensor[];
    let normedContext: Tensor;
    let contextMod: Tensor[] = [];
    if (this.contextPreOnly) {
      normedContext = await this.child('norm1_context').call(context, temb) as Tensor;
    } else {
      [normedContext, ...contextMod] = await this.child('norm1_context').call(context, { emb: temb }) as Tensor[];
    }
    const [attnOut, contextAttnOut] = await (this.child('attn') as Attention).joint(normed, normedContext);
    let h: Tensor = await gatedAdd(hiddenStates, unsqueeze(gateMsa, 1), attnOut);
    if (this.useDualAttention) h = await gatedAdd(h, unsqueeze(gateMsa2, 1), await this.child('attn2').call(normed2));
    h = await gatedFeedForward(h, this.child('norm2') as LayerNorm, this.child('ff'), shiftMlp, scaleMlp, gateMlp);
    if (this.contextPreOnly) return [null, h];
    const [cGateMsa, cShiftMlp, cScaleMlp, cGateMlp] = contextMod;
    const c = await gatedAdd(context, unsqueeze(cGateMsa, 1), contextAttnOut!);
    return [await gatedFeedForward(c, this.child('norm2_context') as LayerNorm, this.child('ff_context'), cShiftMlp, cScaleMlp, cGateMlp), h];
  }
}
declareReleaseSafe(JointTransformerBlock);
