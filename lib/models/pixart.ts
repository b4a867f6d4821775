/**
 * PixArtTransformer2DModel (diffusers models/transformers/pixart_transformer_2d.py): PixArt-α/Σ.
 * Patch embedding with a 2-D sin-cos position embedding, one adaLN-single timestep embedding for the
 * whole model (each block adds its own scale_shift_table), the caption projected by
 * `caption_projection` and attended to by every block's cross-attention under a key padding mask,
 * an output head modulated by the model's scale_shift_table, and unpatchify. With
 * `use_additional_conditions` (PixArt-α at 1024 px) the resolution and aspect ratio are embedded too.
 *
 * forward({ hidden_states [B, C, H, W], encoder_hidden_states [B, Tc, caption_channels], timestep
 * ([B] or one number), encoder_attention_mask? ([B, Tc] of 1 keep / 0 drop, or a bias [B, 1, Tc]),
 * added_cond_kwargs? { resolution [B, 2], aspect_ratio [B, 1] } }) -> { sample }.
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { LayerNorm, Linear, ModuleList } from '../graph/layers.js';
import { add, layerNormModulate } from '../graph/elementwise.js';
import { chunk } from '../graph/shape-ops.js';
import { declareReleaseSafe } from '../graph/release.js';
import { Tensor } from '../tensor.js';
import { ConfigReader, type ModelConfig } from './config.js';
import { perSampleTimesteps } from './dit.js';
import { BasicTransformerBlock } from './layers/basic-transformer-block.js';
import { PatchEmbed, PixArtAlphaTextProjection, type SizeConditions } from './layers/embeddings.js';
import { FEED_FORWARD_ACTIVATIONS } from './layers/feed-forward.js';
import { AdaLayerNormSingle } from './layers/normalization.js';
import { checkInput, unpatchify } from './transformer-io.js';

export interface PixArtInputs {
  hidden_states: Tensor;
  encoder_hidden_states: Tensor;
  timestep: Tensor | number | number[];
  encoder_attention_mask?: Tensor | null;
  added_cond_kwargs?: SizeConditions | null;
}

/** A keep/drop mask [B, Tk] as the additive key bias diffusers makes of it, (1 − m)·−10000; a bias [B, 1, Tk] as it is. */
export function maskToKeyBias(mask: Tensor, batch: number, keys: number): Tensor {
  if (!(mask instanceof Tensor) || mask.numel !== batch * keys || (mask.ndim !== 2 && mask.ndim !== 3)) {
    throw new ArgumentError('inputs.encoder_attention_mask', `a mask [${batch}, ${keys}] (1 keep, 0 drop) or a bias [${batch}, 1, ${keys}]`, mask);
  }
  if (mask.ndim === 3) return mask.reshape([batch, keys]);
  const values = mask.toArray();
  return Tensor.fromStorage(Float32Array.from(values, (m) => Math.fround(1 - m) * -10000), [batch, keys], 'f32');
}

export class PixArtTransformer2DModel extends Module<[PixArtInputs], { sample: Tensor }> {
  readonly config: ModelConfig;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly patchSize: number;
  readonly captionChannels: number | null;
  readonly useAdditionalConditions: boolean;

  constructor(config: unknown) {
    super();
    const c = new ConfigReader(config, 'PixArtTransformer2DModel');
    const heads = c.int('num_attention_heads', 16, 1);
    const headDim = c.int('attention_head_dim', 72, 1);
    this.inChannels = c.int('in_channels', 4, 1);
    this.outChannels = c.optionalInt('out_channels', 8, 1) ?? this.inChannels;
    const layers = c.int('num_layers', 28, 1);
    c.number('dropout', 0);
    c.int('norm_num_groups', 32, 1);
    const crossAttentionDim = c.optionalInt('cross_attention_dim', 1152, 1);
    const attentionBias = c.bool('attention_bias', true);
    const sampleSize = c.int('sample_size', 128, 1);
    this.patchSize = c.int('patch_size', 2, 1);
    const activationFn = c.oneOf('activation_fn', 'gelu-approximate', FEED_FORWARD_ACTIVATIONS);
    c.int('num_embeds_ada_norm', 1000, 1);
    c.bool('upcast_attention', false); // only changes fp16 arithmetic; this engine computes in fp32
    c.oneOf('norm_type', 'ada_norm_single', ['ada_norm_single']);
    const affine = c.bool('norm_elementwise_affine', false);
    const eps = c.number('norm_eps', 1e-6);
    const interpolationScale = c.optionalNumber('interpolation_scale', null) ?? Math.max(Math.floor(sampleSize / 64), 1);
    // diffusers' default (null): on for the 1024-px PixArt-α (sample_size 128) only.
    this.useAdditionalConditions = c.optionalBool('use_additional_conditions', null) ?? sampleSize === 128;
    this.captionChannels = c.optionalInt('caption_channels', null, 1);
    c.oneOf('attention_type', 'default', ['default']);
    this.config = c.resolved();
    const dim = heads * headDim;
    if (this.useAdditionalConditions && dim % 3 !== 0) {
      throw new ArgumentError('config.use_additional_conditions', `a model width divisible by 3 (resolution and aspect ratio get dim/3 each per value; the width is ${dim})`, true);
    }
    this.registerModule('pos_embed', new PatchEmbed({
      height: sampleSize, width: sampleSize, patchSize: this.patchSize, inChannels: this.inChannels, embedDim: dim, interpolationScale,
    }));
    this.registerModule('transformer_blocks', new ModuleList(Array.from({ length: layers }, () => new BasicTransformerBlock({
      dim, numAttentionHeads: heads, attentionHeadDim: headDim, crossAttentionDim, activationFn, attentionBias,
      normType: 'ada_norm_single', normElementwiseAffine: affine, normEps: eps,
    }))));
    this.registerModule('norm_out', new LayerNorm(dim, { affine: false, eps: 1e-6 }));
    this.registerParameter('scale_shift_table', Tensor.zeros([2, dim], 'f32'));
    this.registerModule('proj_out', new Linear(dim, this.patchSize * this.patchSize * this.outChannels));
    this.registerModule('adaln_single', new AdaLayerNormSingle(dim, this.useAdditionalConditions));
    if (this.captionChannels !== null) this.registerModule('caption_projection', new PixArtAlphaTextProjection(this.captionChannels, dim));
  }

  override async forward(inputs: PixArtInputs): Promise<{ sample: Tensor }> {
    if (inputs === null || typeof inputs !== 'object') throw new ArgumentError('inputs', 'an object { hidden_states, encoder_hidden_states, timestep, encoder_attention_mask? }', inputs);
    const x = checkInput(inputs, 'hidden_states', [-1, this.inChannels, -1, -1]);
    const [b, , height, width] = x.shape;
    const p = this.patchSize;
    if (height % p !== 0 || width % p !== 0) throw new ArgumentError('inputs.hidden_states', `a height and width that are multiples of the patch size ${p}`, x.toString());
    const caption = checkInput(inputs, 'encoder_hidden_states', [b, -1, this.captionChannels ?? -1]);
    const keyBias = inputs.encoder_attention_mask == null ? null : maskToKeyBias(inputs.encoder_attention_mask, b, caption.shape[1]);
    const sizes = inputs.added_cond_kwargs ?? {};
    if (this.useAdditionalConditions && inputs.added_cond_kwargs == null) {
      throw new ArgumentError('inputs.added_cond_kwargs', '{ resolution, aspect_ratio } (the config sets use_additional_conditions)', inputs.added_cond_kwargs);
    }
    const timestep = perSampleTimesteps(inputs.timestep, b);

    let h = await this.child('pos_embed').call(x);
    const [t6, embeddedTimestep] = await this.child('adaln_single').call(timestep, sizes) as Tensor[];
    const context = this.hasChild('caption_projection') ? await this.child('caption_projection').call(caption) : caption;
    const conditioning = { timestep: t6, encoder_hidden_states: context, encoder_attention_mask: keyBias };
    const blocks = this.child('transformer_blocks') as ModuleList<BasicTransformerBlock>;
    h = await blocks.chain(h, (block, state) => block.call(state, conditioning));

    const dim = h.shape[2];
    const table = this.optionalSlot('scale_shift_table')!.reshape([1, 2, dim]);
    const [shift, scale] = await chunk(await add(table, embeddedTimestep.reshape([b, 1, dim])), 2, 1);
    h = await layerNormModulate(h, scale, shift, { eps: (this.child('norm_out') as LayerNorm).eps });
    h = await this.child('proj_out').call(h);
    return { sample: await unpatchify(h, height / p, width / p, p, this.outChannels) };
  }
}
declareReleaseSafe(PixArtTransformer2DModel);
