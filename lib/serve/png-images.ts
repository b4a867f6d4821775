/** Generated images ([0, 1] floats, channel-planar) to PNG bytes, as diffusers' numpy_to_pil rounds them. */

import { encodePng } from '../image/png.js';
import type { ImageChannels } from '../image/image.js';

/** One image [C, H, W] with values in [0, 1] to PNG (clamped, x·255 rounded half to even in float32). */
export function pixelsToPng(pixels: Float32Array, channels: number, height: number, width: number): Uint8Array {
  const data = new Uint8Array(width * height * channels);
  const plane = width * height;
  for (let c = 0; c < channels; c++) {
    for (let p = 0; p < plane; p++) data[p * channels + c] = unitToByte(pixels[c * plane + p]);
  }
  return encodePng({ width, height, channels: channels as ImageChannels, data });
}

function unitToByte(x: number): number {
  if (!(x > 0)) return 0; // NaN and negatives
  if (x >= 1) return 255;
  const v = Math.fround(x * 255);
  const floor = Math.floor(v);
  const frac = v - floor;
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
