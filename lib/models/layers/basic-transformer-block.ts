/**
 * diffusers' BasicTransformerBlock (models/attention.py) for the adaLN transformers: DiT's
 * 'ada_norm_zero' (self-attention and feed-forward gated by the block's own adaLN-Zero) and
 * PixArt's 'ada_norm_single' (one shared timestep embedding plus the block's scale_shift_table,
 * cross-attention to the caption tokens between the two).
 */
import { ArgumentError } from '../../errors.js';
import { Module } from '../../graph/module.js';
import { LayerNorm } from '../../graph/layers.js';
import { add, gatedAdd, layerNormModulate } from '../../graph/elementwise.js';
import { chunk, unsqueeze } from '../../graph/shape-ops.js';
import { declareReleaseSafe } from '../../graph/release.js';
import { Tensor } from '../../tensor.js';
import { Attention } from './attention.js';
import { FeedForward, type FeedForwardActivation } from './feed-forward.js';
import { AdaLayerNormZero } from './normalization.js';

export type BlockNormType = 'ada_norm_zero' | 'ada_norm_single';

export interface BasicTransformerBlockOptions {
  dim: number;
  numAttentionHeads: number;
  attentionHeadDim: number;
  crossAttentionDim?: number | null;
  activationFn: FeedForwardActivation;
  numEmbedsAdaNorm?: number | null;
  attentionBias: boolean;
  normType: BlockNormType;
  normElementwiseAffine: boolean;
  normEps: number;
}

export interface BlockInputs {
  /** ada_norm_zero: the timestep ids of the block's own embedder. ada_norm_single: the shared embedding [B, 6·dim]. */
  timestep: unknown;
  class_labels?: unknown;
  encoder_hidden_states?: Tensor | null;
  /** Key bias of the cross-attention, [B, Tk]. */
  encoder_attention_mask?: Tensor | null;
}

export class BasicTransformerBlock extends Module {
  readonly normType: BlockNormType;
  readonly dim: number;

  constructor(o: BasicTransformerBlockOptions) {
    super();
    this.normType = o.normType;
    this.dim = o.dim;
    const affine = { affine: o.normElementwiseAffine, eps: o.normEps };
    if (o.normType === 'ada_norm_zero') {
      if (o.numEmbedsAdaNorm == null) throw new ArgumentError('config.num_embeds_ada_norm', 'the number of classes for ada_norm_zero');
      this.registerModule('norm1', new AdaLayerNormZero(o.dim, o.numEmbedsAdaNorm));
    } else {
      this.registerModule('norm1', new LayerNorm(o.dim, affine));
    }
    this.registerModule('attn1', new Attention({ queryDim: o.dim, heads: o.numAttentionHeads, dimHead: o.attentionHeadDim, bias: o.attentionBias }));
    if (o.crossAttentionDim != null) {
      // PixArt applies no norm before its cross-attention, but diffusers still creates norm2 here
      // and uses it before the feed-forward.
      this.registerModule('norm2', new LayerNorm(o.dim, affine));
      this.registerModule('attn2', new Attention({
        queryDim: o.dim, crossAttentionDim: o.crossAttentionDim, heads: o.numAttentionHeads, dimHead: o.attentionHeadDim, bias: o.attentionBias,
      }));
    } else if (o.normType === 'ada_norm_single') {
      this.registerModule('norm2', new LayerNorm(o.dim, affine));
    }
    if (o.normType === 'ada_norm_zero') this.registerModule('norm3', new LayerNorm(o.dim, affine));
    this.registerModule('ff', new FeedForward(o.dim, { activationFn: o.activationFn }));
    if (o.normType === 'ada_norm_single') this.registerParameter('scale_shift_table', Tensor.zeros([6, o.dim], 'f32'));
  }

  override async forward(hiddenStates: Tensor, inputs: BlockInputs): Promise<Tensor> {
    let h = hiddenStates;
    if (this.normType === 'ada_norm_zero') {
      const [normed, gateMsa, shiftMlp, scaleMlp, gateMlp] = await this.child('norm1').call(h, inputs) as Tensor[];
      h = await gatedAdd(h, unsqueeze(gateMsa, 1), await this.child('attn1').call(normed));
      const norm3 = this.child('norm3') as LayerNorm;
      const ffIn = await layerNormModulate(h, scaleMlp, shiftMlp, { eps: norm3.eps, weight: norm3.weight, bias: norm3.bias });
      return gatedAdd(h, unsqueeze(gateMlp, 1), await this.child('ff').call(ffIn));
    }
    // ada_norm_single: (scale_shift_table[None] + timestep.reshape(B, 6, -1)).chunk(6, dim=1)
    const b = h.shape[0];
    const t = inputs.timestep;
    if (!(t instanceof Tensor) || t.numel !== b * 6 * this.dim) throw new ArgumentError('timestep', `the shared adaLN embedding [${b}, ${6 * this.dim}]`, t);
    const table = this.optionalSlot('scale_shift_table')!;
    const mod = await add(table.reshape([1, 6, this.dim]), t.reshape([b, 6, this.dim]));
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = await chunk(mod, 6, 1);
    const norm1 = this.child('norm1') as LayerNorm;
    const normed = await layerNormModulate(h, scaleMsa, shiftMsa, { eps: norm1.eps, weight: norm1.weight, bias: norm1.bias });
    h = await gatedAdd(h, gateMsa, await this.child('attn1').call(normed));
    if (this.hasChild('attn2')) {
      h = await add(await this.child('attn2').call(h, {
        encoder_hidden_states: inputs.encoder_hidden_states ?? null, attention_mask: inputs.encoder_attention_mask ?? null,
      }), h);
    }
    const norm2 = this.child('norm2') as LayerNorm;
    const ffIn = await layerNormModulate(h, scaleMlp, shiftMlp, { eps: norm2.eps, weight: norm2.weight, bias: norm2.bias });
    return gatedAdd(h, gateMlp, await this.child('ff').call(ffIn));
  }
}
declareReleaseSafe(BasicTransformerBlock);
