/**
 * SD3Transformer2DModel (diffusers models/transformers/transformer_sd3.py): the MM-DiT of Stable
 * Diffusion 3. Patch embedding with a position embedding cropped from a saved pos_embed_max_size
 * grid, the text tokens projected by `context_embedder`, a timestep + pooled-text embedding (temb)
 * that modulates every block, JointTransformerBlocks (the last one context_pre_only), a continuous
 * adaLN output norm and unpatchify. SD3.5 options read from the config: `qk_norm` ('rms_norm') and
 * `dual_attention_layers` (blocks with a second, image-only attention).
 *
 * forward({ hidden_states [B, C, H, W], encoder_hidden_states [B, Tc, joint_attention_dim],
 * pooled_projections [B, pooled_projection_dim], timestep (the 0..1000 flow timestep, [B] or one
 * number) }) -> { sample [B, out_channels, H, W] }.
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { Linear, ModuleList } from '../graph/layers.js';
import { declareReleaseSafe } from '../graph/release.js';
import { Tensor } from '../tensor.js';
import { ConfigReader, type ModelConfig } from './config.js';
import { perSampleTimesteps } from './dit.js';
import { CombinedTimestepTextProjEmbeddings, PatchEmbed } from './layers/embeddings.js';
import { JointTransformerBlock } from './layers/joint-transformer-block.js';
import { AdaLayerNormContinuous } from './layers/normalization.js';
import { checkInput, unpatchify } from './transformer-io.js';

export interface SD3Inputs {
  hidden_states: Tensor;
  encoder_hidden_states: Tensor;
  pooled_projections: Tensor;
  timestep: Tensor | number | number[];
}

export class SD3Transformer2DModel extends Module<[SD3Inputs], { sample: Tensor }> {
  readonly config: ModelConfig;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly patchSize: number;
  readonly jointAttentionDim: number;
  readonly pooledProjectionDim: number;

  constructor(config: unknown) {
    super();
    const c = new ConfigReader(config, 'SD3Transformer2DModel');
    const sampleSize = c.int('sample_size', 128, 1);
    this.patchSize = c.int('patch_size', 2, 1);
    this.inChannels = c.int('in_channels', 16, 1);
    const layers = c.int('num_layers', 18, 1);
    const headDim = c.int('attention_head_dim', 64, 1);
    const heads = c.int('num_attention_heads', 18, 1);
    this.jointAttentionDim = c.int('joint_attention_dim', 4096, 1);
    const captionDim = c.int('caption_projection_dim', 1152, 1);
    this.pooledProjectionDim = c.int('pooled_projection_dim', 2048, 1);
    this.outChannels = c.optionalInt('out_channels', 16, 1) ?? this.inChannels;
    const maxSize = c.optionalInt('pos_embed_max_size', 96, 1);
    const dualLayers = c.ints('dual_attention_layers', [], 0, layers - 1);
    const qkNorm = c.optionalOneOf('qk_norm', null, ['rms_norm'] as const);
    this.config = c.resolved();
    const dim = heads * headDim;
    if (captionDim !== dim) throw new ArgumentError('config.caption_projection_dim', `num_attention_heads · attention_head_dim = ${dim} (the joint attention needs equal widths)`, captionDim);
    this.registerModule('pos_embed', new PatchEmbed({
      height: sampleSize, width: sampleSize, patchSize: this.patchSize, inChannels: this.inChannels, embedDim: dim, posEmbedMaxSize: maxSize,
    }));
    this.registerModule('time_text_embed', new CombinedTimestepTextProjEmbeddings(dim, this.pooledProjectionDim));
    this.registerModule('context_embedder', new Linear(this.jointAttentionDim, captionDim));
    this.registerModule('transformer_blocks', new ModuleList(Array.from({ length: layers }, (_, i) => new JointTransformerBlock({
      dim, numAttentionHeads: heads, attentionHeadDim: headDim, contextPreOnly: i === layers - 1, qkNorm, useDualAttention: dualLayers.includes(i),
    }))));
    this.registerModule('norm_out', new AdaLayerNormContinuous(dim, dim, { affine: false, eps: 1e-6 }));
    this.registerModule('proj_out', new Linear(dim, this.patchSize * this.patchSize * this.outChannels));
  }

  override async forward(inputs: SD3Inputs): Promise<{ sample: Tensor }> {
    if (inputs === null || typeof inputs !== 'object') throw new ArgumentError('inputs', 'an object { hidden_states, encoder_hidden_states, pooled_projections, timestep }', inputs);
    const x = checkInput(inputs, 'hidden_states', [-1, this.inChannels, -1, -1]);
    const [b, , height, width] = x.shape;
    const p = this.patchSize;
    if (height % p !== 0 || width % p !== 0) throw new ArgumentError('inputs.hidden_states', `a height and width that are multiples of the patch size ${p}`, x.toString());
    const context = checkInput(inputs, 'encoder_hidden_states', [b, -1, this.jointAttentionDim]);
    const pooled = checkInput(inputs, 'pooled_projections', [b, this.pooledProjectionDim]);
    const timestep = perSampleTimesteps(inputs.timestep, b);

    let h = await this.child('pos_embed').call(x);
    const temb = await this.child('time_text_embed').call(timestep, pooled);
    const c = await this.child('context_embedder').call(context);
    const blocks = this.child('transformer_blocks') as ModuleList<JointTransformerBlock>;
    [, h] = await blocks.chain<[Tensor | null, Tensor]>([c, h], (block, [ctx, img]) => block.call(img, ctx, temb) as Promise<[Tensor | null, Tensor]>);
    h = await this.child('norm_out').call(h, temb);
    h = await this.child('proj_out').call(h);
    return { sample: await unpatchify(h, height / p, width / p, p, this.outChannels) };
  }
}
declareReleaseSafe(SD3Transformer2DModel);
