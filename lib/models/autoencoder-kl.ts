/**
 * AutoencoderKL (diffusers models/autoencoders/autoencoder_kl.py and vae.py): the VAE that turns
 * the latents of DiT-XL/2, PixArt, SD3 and Flux into pixels. `decode(z)` = decoder(post_quant_conv(z));
 * `encode(x)` = the latent distribution's mean and logvar (quant_conv(encoder(x)) split in two,
 * logvar clamped to [-30, 20]). Pipelines scale latents outside, as diffusers' do:
 * decode(latents / scaling_factor + shift_factor) (shift 0 when the config has none).
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { Conv2d, GroupNorm, ModuleList, SiLU } from '../graph/layers.js';
import { output } from '../graph/functional.js';
import { chunk } from '../graph/shape-ops.js';
import { declareReleaseSafe } from '../graph/release.js';
import { Tensor } from '../tensor.js';
import { ConfigReader, type ModelConfig } from './config.js';
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from './layers/unet-blocks.js';

interface CoderOptions {
  blockOutChannels: number[];
  layersPerBlock: number;
  groups: number;
  midAttention: boolean;
}

/** conv_in -> down_blocks -> mid_block -> GroupNorm -> SiLU -> conv_out (2 · latent channels: mean and logvar). */
export class Encoder extends Module {
  constructor(inChannels: number, outChannels: number, o: CoderOptions) {
    super();
    const ch = o.blockOutChannels;
    this.registerModule('conv_in', new Conv2d(inChannels, ch[0], 3, { padding: 1 }));
    this.registerModule('down_blocks', new ModuleList(ch.map((c, i) => new DownEncoderBlock2D(i === 0 ? ch[0] : ch[i - 1], c, {
      layers: o.layersPerBlock, groups: o.groups, eps: 1e-6, addDownsample: i !== ch.length - 1, downsamplePadding: 0,
    }))));
    const last = ch[ch.length - 1];
    this.registerModule('mid_block', new UNetMidBlock2D(last, { groups: o.groups, eps: 1e-6, addAttention: o.midAttention, attentionHeadDim: last }));
    this.registerModule('conv_norm_out', new GroupNorm(o.groups, last, { eps: 1e-6 }));
    this.registerModule('conv_act', new SiLU());
    this.registerModule('conv_out', new Conv2d(last, 2 * outChannels, 3, { padding: 1 }));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    let h = await this.child('conv_in').call(x);
    h = await (this.child('down_blocks') as ModuleList).chain(h, (b, s) => b.call(s));
    h = await this.child('mid_block').call(h);
    h = await this.child('conv_act').call(await this.child('conv_norm_out').call(h));
    return this.child('conv_out').call(h);
  }
}

/** conv_in -> mid_block -> up_blocks (channels reversed, one more resnet per block) -> GroupNorm -> SiLU -> conv_out. */
export class Decoder extends Module {
  constructor(inChannels: number, outChannels: number, o: CoderOptions) {
    super();
    const rev = [...o.blockOutChannels].reverse();
    this.registerModule('conv_in', new Conv2d(inChannels, rev[0], 3, { padding: 1 }));
    this.registerModule('mid_block', new UNetMidBlock2D(rev[0], { groups: o.groups, eps: 1e-6, addAttention: o.midAttention, attentionHeadDim: rev[0] }));
    this.registerModule('up_blocks', new ModuleList(rev.map((c, i) => new UpDecoderBlock2D(i === 0 ? rev[0] : rev[i - 1], c, {
      layers: o.layersPerBlock + 1, groups: o.groups, eps: 1e-6, addUpsample: i !== rev.length - 1,
    }))));
    const first = o.blockOutChannels[0];
    this.registerModule('conv_norm_out', new GroupNorm(o.groups, first, { eps: 1e-6 }));
    this.registerModule('conv_act', new SiLU());
    this.registerModule('conv_out', new Conv2d(first, outChannels, 3, { padding: 1 }));
  }

  override async forward(z: Tensor): Promise<Tensor> {
    let h = await this.child('conv_in').call(z);
    h = await this.child('mid_block').call(h);
    h = await (this.child('up_blocks') as ModuleList).chain(h, (b, s) => b.call(s));
    h = await this.child('conv_act').call(await this.child('conv_norm_out').call(h));
    return this.child('conv_out').call(h);
  }
}

export interface LatentDistribution {
  mean: Tensor;
  logvar: Tensor;
}

export class AutoencoderKL extends Module<[{ sample: Tensor }], { sample: Tensor }> {
  readonly config: ModelConfig;
  readonly latentChannels: number;
  readonly scalingFactor: number;
  readonly shiftFactor: number;
  /** Pixels per latent along each side (2^(number of blocks − 1); 8 for the usual four blocks). */
  readonly spatialFactor: number;

  constructor(config: unknown) {
    super();
    const c = new ConfigReader(config, 'AutoencoderKL');
    const inChannels = c.int('in_channels', 3, 1);
    const outChannels = c.int('out_channels', 3, 1);
    const blockOutChannels = c.ints('block_out_channels', [64], 1);
    if (blockOutChannels.length === 0) throw new ArgumentError('config.block_out_channels', 'at least one block (AutoencoderKL)', blockOutChannels);
    c.strings('down_block_types', ['DownEncoderBlock2D'], ['DownEncoderBlock2D'], blockOutChannels.length);
    c.strings('up_block_types', ['UpDecoderBlock2D'], ['UpDecoderBlock2D'], blockOutChannels.length);
    const layersPerBlock = c.int('layers_per_block', 1, 1);
    c.oneOf('act_fn', 'silu', ['silu']);
    this.latentChannels = c.int('latent_channels', 4, 1);
    const groups = c.int('norm_num_groups', 32, 1);
    c.int('sample_size', 32, 1);
    this.scalingFactor = c.number('scaling_factor', 0.18215);
    this.shiftFactor = c.optionalNumber('shift_factor', null) ?? 0;
    const useQuantConv = c.bool('use_quant_conv', true);
    const usePostQuantConv = c.bool('use_post_quant_conv', true);
    const midAttention = c.bool('mid_block_add_attention', true);
    c.bool('force_upcast', true);
    this.config = c.resolved();
    this.spatialFactor = 2 ** (blockOutChannels.length - 1);
    for (const ch of blockOutChannels) if (ch % groups !== 0) throw new ArgumentError('config.norm_num_groups', `a divisor of every block_out_channels entry (${ch})`, groups);
    const o = { blockOutChannels, layersPerBlock, groups, midAttention };
    this.registerModule('encoder', new Encoder(inChannels, this.latentChannels, o));
    this.registerModule('decoder', new Decoder(this.latentChannels, outChannels, o));
    if (useQuantConv) this.registerModule('quant_conv', new Conv2d(2 * this.latentChannels, 2 * this.latentChannels, 1));
    if (usePostQuantConv) this.registerModule('post_quant_conv', new Conv2d(this.latentChannels, this.latentChannels, 1));
  }

  /** The latent distribution of images x [B, in_channels, H, W] in [-1, 1]. */
  async encode(x: Tensor): Promise<LatentDistribution> {
    let moments = await this.child('encoder').call(x);
    if (this.hasChild('quant_conv')) moments = await this.child('quant_conv').call(moments);
    const [mean, raw] = await chunk(moments, 2, 1);
    const d = raw.data as Float32Array;
    const logvar = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) logvar[i] = Math.min(20, Math.max(-30, d[i]));
    return { mean, logvar: output(logvar, raw.shape) };
  }

  /** Images [B, out_channels, f·h, f·w] from latents z [B, latent_channels, h, w] (already unscaled). */
  async decode(z: Tensor): Promise<Tensor> {
    if (!(z instanceof Tensor) || z.ndim !== 4 || z.shape[1] !== this.latentChannels) {
      throw new ArgumentError('z', `latents of shape [B, ${this.latentChannels}, h, w]`, z instanceof Tensor ? z.toString() : z);
    }
    const h = this.hasChild('post_quant_conv') ? await this.child('post_quant_conv').call(z) : z;
    return this.child('decoder').call(h);
  }

  /** diffusers' forward: decode the mode (mean) of the encoding. */
  override async forward(inputs: { sample: Tensor }): Promise<{ sample: Tensor }> {
    const { mean } = await this.encode(inputs.sample);
    return { sample: await this.decode(mean) };
  }
}

for (const cls of [Encoder, Decoder, AutoencoderKL]) declareReleaseSafe(cls);
