/**
 * The convolutional blocks of diffusers' VAE (models/resnet.py, upsampling.py, downsampling.py,
 * unets/unet_2d_blocks.py), with their parameter names: ResnetBlock2D, Upsample2D, Downsample2D,
 * UNetMidBlock2D (resnet, self-attention over the pixels, resnet), DownEncoderBlock2D and
 * UpDecoderBlock2D. No time embedding: the VAE's blocks have none.
 */
import { Module } from '../../graph/module.js';
import { Conv2d, GroupNorm, ModuleList, SiLU, Dropout } from '../../graph/layers.js';
import { add, div } from '../../graph/elementwise.js';
import { pad2d, upsampleNearest2d } from '../../graph/shape-ops.js';
import { declareReleaseSafe } from '../../graph/release.js';
import type { Tensor } from '../../tensor.js';
import { Attention } from './attention.js';

export interface ResnetBlock2DOptions {
  inChannels: number;
  outChannels?: number;
  groups: number;
  eps: number;
  outputScaleFactor?: number;
}

/** GroupNorm -> SiLU -> conv1 -> GroupNorm -> SiLU -> conv2, plus the input (through a 1×1 conv_shortcut when the channels change). */
export class ResnetBlock2D extends Module {
  readonly outputScaleFactor: number;

  constructor(o: ResnetBlock2DOptions) {
    super();
    const out = o.outChannels ?? o.inChannels;
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
    this.registerModule('norm1', new GroupNorm(o.groups, o.inChannels, { eps: o.eps }));
    this.registerModule('conv1', new Conv2d(o.inChannels, out, 3, { padding: 1 }));
    this.registerModule('norm2', new GroupNorm(o.groups, out, { eps: o.eps }));
    this.registerModule('dropout', new Dropout());
    this.registerModule('conv2', new Conv2d(out, out, 3, { padding: 1 }));
    this.registerModule('nonlinearity', new SiLU());
    if (o.inChannels !== out) this.registerModule('conv_shortcut', new Conv2d(o.inChannels, out, 1));
  }

  override async forward(input: Tensor): Promise<Tensor> {
    const act = this.child('nonlinearity');
    let h = await act.call(await this.child('norm1').call(input));
    h = await this.child('conv1').call(h);
    h = await act.call(await this.child('norm2').call(h));
    h = await this.child('conv2').call(h);
    const shortcut = this.hasChild('conv_shortcut') ? await this.child('conv_shortcut').call(input) : input;
    const out = await add(shortcut, h);
    return this.outputScaleFactor === 1 ? out : div(out, this.outputScaleFactor);
  }
}

/** Nearest 2× upsampling, then a 3×3 conv (`conv`). */
export class Upsample2D extends Module {
  constructor(channels: number, outChannels = channels) {
    super();
    this.registerModule('conv', new Conv2d(channels, outChannels, 3, { padding: 1 }));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    return this.child('conv').call(await upsampleNearest2d(x, 2));
  }
}

/** A 3×3 conv of stride 2 (`conv`); with padding 0, diffusers first pads one column right and one row below. */
export class Downsample2D extends Module {
  constructor(channels: number, outChannels: number, readonly padding: number) {
    super();
    this.registerModule('conv', new Conv2d(channels, outChannels, 3, { stride: 2, padding }));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    return this.child('conv').call(this.padding === 0 ? await pad2d(x, [0, 1, 0, 1]) : x);
  }
}

/** resnets.0 -> (attentions.i -> resnets.i+1)* over the pixels (the VAE's middle block). */
export class UNetMidBlock2D extends Module {
  constructor(channels: number, o: { groups: number; eps: number; addAttention: boolean; attentionHeadDim: number }) {
    super();
    const resnet = (): ResnetBlock2D => new ResnetBlock2D({ inChannels: channels, groups: o.groups, eps: o.eps });
    if (o.addAttention) {
      this.registerModule('attentions', new ModuleList([new Attention({
        queryDim: channels, heads: channels / o.attentionHeadDim, dimHead: o.attentionHeadDim, eps: o.eps,
        normNumGroups: o.groups, residualConnection: true, bias: true,
      })]));
    }
    this.registerModule('resnets', new ModuleList([resnet(), resnet()]));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    const resnets = this.child('resnets') as ModuleList;
    let h = await resnets.at(0).call(x);
    const attentions = this.hasChild('attentions') ? this.child('attentions') as ModuleList : null;
    if (attentions !== null) h = await attentions.at(0).call(h);
    return resnets.at(1).call(h);
  }
}

/** `layers` ResnetBlock2Ds, then (except in the last block) a Downsample2D. */
export class DownEncoderBlock2D extends Module {
  constructor(inChannels: number, outChannels: number, o: { layers: number; groups: number; eps: number; addDownsample: boolean; downsamplePadding: number }) {
    super();
    this.registerModule('resnets', new ModuleList(Array.from({ length: o.layers }, (_, i) => new ResnetBlock2D({
      inChannels: i === 0 ? inChannels : outChannels, outChannels, groups: o.groups, eps: o.eps,
    }))));
    if (o.addDownsample) this.registerModule('downsamplers', new ModuleList([new Downsample2D(outChannels, outChannels, o.downsamplePadding)]));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    const h = await (this.child('resnets') as ModuleList).chain(x, (r, s) => r.call(s));
    return this.hasChild('downsamplers') ? (this.child('downsamplers') as ModuleList).at(0).call(h) : h;
  }
}

/** `layers` ResnetBlock2Ds, then (except in the last block) an Upsample2D. */
export class UpDecoderBlock2D extends Module {
  constructor(inChannels: number, outChannels: number, o: { layers: number; groups: number; eps: number; addUpsample: boolean }) {
    super();
    this.registerModule('resnets', new ModuleList(Array.from({ length: o.layers }, (_, i) => new ResnetBlock2D({
      inChannels: i === 0 ? inChannels : outChannels, outChannels, groups: o.groups, eps: o.eps,
    }))));
    if (o.addUpsample) this.registerModule('upsamplers', new ModuleList([new Upsample2D(outChannels)]));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    const h = await (this.child('resnets') as ModuleList).chain(x, (r, s) => r.call(s));
    return this.hasChild('upsamplers') ? (this.child('upsamplers') as ModuleList).at(0).call(h) : h;
  }
}

for (const cls of [ResnetBlock2D, Upsample2D, Downsample2D, UNetMidBlock2D, DownEncoderBlock2D, UpDecoderBlock2D]) declareReleaseSafe(cls);
