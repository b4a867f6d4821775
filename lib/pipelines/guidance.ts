/**
 * Classifier-free guidance as diffusers' class- and text-conditioned pipelines apply it: the model
 * runs on a doubled batch, [conditional..., unconditional...] in DiTPipeline and
 * [unconditional..., conditional...] in the text pipelines (PixArt, SD3); the guided noise is
 * uncond + scale·(cond − uncond) in float32 (diffusers' order of operations), on the first
 * `guidedChannels` channels only (the eps channels; a learned-sigma model's variance channels are
 * not guided and are dropped by `epsChannels`).
 */
import { ArgumentError } from '../errors.js';
import { Tensor } from '../tensor.js';

const f32 = Math.fround;

/** [x; x] along the batch axis (the doubled model input). */
export function doubleBatch(x: Tensor): Tensor<'f32'> {
  const src = x.to('f32').data;
  const out = new Float32Array(src.length * 2);
  out.set(src, 0);
  out.set(src, src.length);
  return Tensor.fromStorage(out, [x.shape[0] * 2, ...x.shape.slice(1)], 'f32');
}

/** Which half of the doubled batch holds the conditional predictions. */
export type GuidanceOrder = 'cond-first' | 'uncond-first';

/**
 * The guided prediction [B, guidedChannels, ...] from a doubled-batch prediction
 * [2B, C, ...] (C >= guidedChannels), its halves in `order` (DiTPipeline's 'cond-first' by default).
 */
export function guide(prediction: Tensor, scale: number, guidedChannels: number, order: GuidanceOrder = 'cond-first'): Tensor<'f32'> {
  const [b2, c, ...rest] = prediction.shape;
  if (b2 % 2 !== 0 || c < guidedChannels) {
    throw new ArgumentError('prediction', `a doubled batch [2B, >=${guidedChannels}, ...]`, prediction.toString());
  }
  const b = b2 / 2;
  const plane = rest.reduce((a, d) => a * d, 1);
  const src = prediction.to('f32').data;
  const g = f32(scale);
  const out = new Float32Array(b * guidedChannels * plane);
  for (let i = 0; i < b; i++) {
    for (let ch = 0; ch < guidedChannels; ch++) {
      const first = (i * c + ch) * plane;
      const second = ((i + b) * c + ch) * plane;
      const [cond, uncond] = order === 'cond-first' ? [first, second] : [second, first];
      const dst = (i * guidedChannels + ch) * plane;
      for (let p = 0; p < plane; p++) {
        const u = src[uncond + p];
        out[dst + p] = f32(u + f32(g * f32(src[cond + p] - u)));
      }
    }
  }
  return Tensor.fromStorage(out, [b, guidedChannels, ...rest], 'f32');
}

/** The first `channels` channels of [B, C, ...] (the eps of a learned-sigma prediction); `x` itself when C == channels. */
export function epsChannels(x: Tensor, channels: number): Tensor {
  const [b, c, ...rest] = x.shape;
  if (c === channels) return x;
  const plane = rest.reduce((a, d) => a * d, 1);
  const src = x.to('f32').data;
  const out = new Float32Array(b * channels * plane);
  for (let i = 0; i < b; i++) out.set(src.subarray(i * c * plane, (i * c + channels) * plane), i * channels * plane);
  return Tensor.fromStorage(out, [b, channels, ...rest], 'f32');
}
