/**
 * Model outputs to images, as diffusers' VaeImageProcessor.postprocess (output_type 'pil') does:
 * x / 2 + 0.5 and clamp to [0, 1] in float32 (torch), then (x * 255).round() in float32 (numpy,
 * round half to even) and a cast to uint8. Each step here is rounded to float32 the same way, so
 * the bytes match diffusers' for every input.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkNotDisposed, isTensor } from '../tensor.js';
import { MAX_IMAGE_SIDE, type Image, type ImageChannels } from './image.js';

const f32 = Math.fround;

/** A [-1, 1] value to a byte, bit for bit as diffusers' postprocess. NaN gives 0 (numpy's cast of NaN to uint8 on x86). */
export function unitToByte(x: number): number {
  const v = f32(f32(x / 2) + 0.5);
  if (!(v > 0)) return 0; // NaN, and everything clamped to 0
  if (v >= 1) return 255;
  return roundHalfEven(f32(v * 255));
}

/**
 * Images from a [B, C, H, W] (or [C, H, W]) float tensor with values in [-1, 1]; C is 1, 3 or 4.
 * f16 and bf16 tensors are widened to f32 first (exactly).
 */
export function tensorToImages(tensor: Tensor): Image[] {
  if (!isTensor(tensor)) throw new ArgumentError('tensor', 'a Tensor', tensor);
  checkNotDisposed(tensor, 'tensor');
  if (tensor.dtype !== 'f32' && tensor.dtype !== 'f16' && tensor.dtype !== 'bf16') {
    throw new ArgumentError('tensor', "a tensor of dtype 'f32', 'f16' or 'bf16'", tensor.dtype);
  }
  const shape = tensor.shape.length === 3 ? [1, ...tensor.shape] : tensor.shape;
  if (shape.length !== 4) throw new ArgumentError('tensor', 'a tensor of shape [B, C, H, W] or [C, H, W]', tensor.shape);
  const [batch, channels, height, width] = shape;
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new ArgumentError('tensor', 'C (dimension 1 of [B, C, H, W], 0 of [C, H, W]) of 1, 3 or 4', tensor.shape);
  }
  if (height < 1 || width < 1 || height > MAX_IMAGE_SIDE || width > MAX_IMAGE_SIDE) {
    throw new ArgumentError('tensor', `H and W in [1, ${MAX_IMAGE_SIDE}]`, tensor.shape);
  }
  const values = tensor.to('f32').data;
  const plane = height * width;
  const images: Image[] = [];
  for (let b = 0; b < batch; b++) {
    const data = new Uint8Array(plane * channels);
    const base = b * channels * plane;
    // Planar CHW in, interleaved HWC out.
    for (let c = 0; c < channels; c++) {
      const src = base + c * plane;
      for (let i = 0; i < plane; i++) data[i * channels + c] = unitToByte(values[src + i]);
    }
    images.push({ width, height, channels: channels as ImageChannels, data });
  }
  return images;
}

/** Round to nearest, ties to even (numpy's round). */
function roundHalfEven(v: number): number {
  const floor = Math.floor(v);
  const diff = v - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
