/**
 * DiTTransformer2DModel (diffusers models/transformers/dit_transformer_2d.py): the class-conditional
 * Diffusion Transformer of Peebles & Xie. Patch embedding with a 2-D sin-cos position embedding,
 * adaLN-Zero blocks each with its own timestep + label embedder, an output head modulated by
 * block 0's embedder, and unpatchify to [B, out_channels, H, W] (out_channels = 2·in_channels for
 * the learned-sigma DiT-XL/2 checkpoints).
 *
 * forward({ hidden_states [B, C, H, W], timestep (ids [B] or one number), class_labels [B] }) ->
 * { sample }.
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { LayerNorm, Linear, ModuleList } from '../graph/layers.js';
import { silu } from '../graph/functional.js';
import { layerNormModulate } from '../graph/elementwise.js';
import { chunk, permute } from '../graph/shape-ops.js';
import { numericValues } from '../graph/embeddings.js';
import { declareReleaseSafe } from '../graph/release.js';
import { Tensor } from '../tensor.js';
import { ConfigReader, type ModelConfig } from './config.js';
import { BasicTransformerBlock } from './layers/basic-transformer-block.js';
import { PatchEmbed } from './layers/embeddings.js';
import { FEED_FORWARD_ACTIVATIONS } from './layers/feed-forward.js';

export interface DiTInputs {
  hidden_states: Tensor;
  /** Diffusion timesteps: a tensor [B] (any numeric dtype), an array, or one number for the whole batch. */
  timestep: Tensor | number | number[];
  /** Class ids [B]; the null class (classifier-free guidance) is num_embeds_ada_norm. */
  class_labels: Tensor | number[];
}

/** The timesteps as a tensor of one value per sample (a single number is repeated). */
export function perSampleTimesteps(timestep: unknown, batch: number): Tensor {
  const { values } = numericValues(timestep, 'timestep');
  if (values.length === 1 && batch > 1) return Tensor.fromArray(new Array(batch).fill(values[0]));
  if (values.length !== batch) throw new ArgumentError('timestep', `one timestep or ${batch} (one per sample)`, `${values.length} values`);
  return timestep instanceof Tensor ? timestep : Tensor.fromArray(values);
}

export class DiTTransformer2DModel extends Module<[DiTInputs], { sample: Tensor }> {
  readonly config: ModelConfig;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly patchSize: number;
  readonly numClasses: number;

  constructor(config: unknown) {
    super();
    const c = new ConfigReader(config, 'DiTTransformer2DModel');
    const heads = c.int('num_attention_heads', 16, 1);
    const headDim = c.int('attention_head_dim', 72, 1);
    this.inChannels = c.int('in_channels', 4, 1);
    this.outChannels = c.optionalInt('out_channels', null, 1) ?? this.inChannels;
    const layers = c.int('num_layers', 28, 1);
    c.number('dropout', 0);
    c.int('norm_num_groups', 32, 1);
    const attentionBias = c.bool('attention_bias', true);
    const sampleSize = c.int('sample_size', 32, 1);
    this.patchSize = c.int('patch_size', 2, 1);
    const activationFn = c.oneOf('activation_fn', 'gelu-approximate', FEED_FORWARD_ACTIVATIONS);
    this.numClasses = c.int('num_embeds_ada_norm', 1000, 1);
    c.bool('upcast_attention', false); // only changes fp16 arithmetic; this engine computes in fp32
    c.oneOf('norm_type', 'ada_norm_zero', ['ada_norm_zero']);
    const affine = c.bool('norm_elementwise_affine', false);
    const eps = c.number('norm_eps', 1e-5);
    this.config = c.resolved();
    const dim = heads * headDim;
    this.registerModule('pos_embed', new PatchEmbed({ height: sampleSize, width: sampleSize, patchSize: this.patchSize, inChannels: this.inChannels, embedDim: dim }));
    this.registerModule('transformer_blocks', new ModuleList(Array.from({ length: layers }, () => new BasicTransformerBlock({
      dim, numAttentionHeads: heads, attentionHeadDim: headDim, activationFn, numEmbedsAdaNorm: this.numClasses,
      attentionBias, normType: 'ada_norm_zero', normElementwiseAffine: affine, normEps: eps,
    }))));
    this.registerModule('norm_out', new LayerNorm(dim, { affine: false, eps: 1e-6 }));
    this.registerModule('proj_out_1', new Linear(dim, 2 * dim));
    this.registerModule('proj_out_2', new Linear(dim, this.patchSize * this.patchSize * this.outChannels));
  }

  override async forward(inputs: DiTInputs): Promise<{ sample: Tensor }> {
    if (inputs === null || typeof inputs !== 'object') throw new ArgumentError('inputs', 'an object { hidden_states, timestep, class_labels }', inputs);
    const x = inputs.hidden_states;
    if (!(x instanceof Tensor) || x.ndim !== 4 || x.shape[1] !== this.inChannels) {
      throw new ArgumentError('inputs.hidden_states', `a tensor of shape [B, ${this.inChannels}, H, W]`, x instanceof Tensor ? x.toString() : x);
    }
    const [b, , hIn, wIn] = x.shape;
    const p = this.patchSize;
    if (hIn % p !== 0 || wIn % p !== 0 || hIn !== wIn) throw new ArgumentError('inputs.hidden_states', `a square image whose side is a multiple of the patch size ${p}`, x.toString());
    const timestep = perSampleTimesteps(inputs.timestep, b);
    const conditioning = { timestep, class_labels: inputs.class_labels };
    const blocks = this.child('transformer_blocks') as ModuleList<BasicTransformerBlock>;

    let h = await this.child('pos_embed').call(x);
    h = await blocks.chain(h, (block, state) => block.call(state, conditioning));

    const emb = await blocks.at(0).getSubmodule('norm1.emb').call(timestep, inputs.class_labels);
    const [shift, scale] = await chunk(await this.child('proj_out_1').call(await silu(emb)), 2, 1);
    const normOut = this.child('norm_out') as LayerNorm;
    h = await layerNormModulate(h, scale, shift, { eps: normOut.eps });
    h = await this.child('proj_out_2').call(h);

    // unpatchify: [B, h·w, p·p·C] -> [B, h, w, p, p, C] -> [B, C, h, p, w, p] -> [B, C, H, W]
    const g = Math.round(Math.sqrt(h.shape[1]));
    const c = this.outChannels;
    const sample = await permute(h.reshape([b, g, g, p, p, c]), [0, 5, 1, 3, 2, 4]);
    return { sample: sample.reshape([b, c, g * p, g * p]) };
  }
}
declareReleaseSafe(DiTTransformer2DModel);
