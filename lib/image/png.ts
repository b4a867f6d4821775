/**
 * PNG output: 8-bit gray (color type 0), RGB (2) or RGBA (6), the image's own channels, encoded by
 * pngjs (node:zlib deflate) and written atomically.
 */
import pngjs from 'pngjs';
import { writeFileAtomic } from '../io/atomic-write.js';
import { ArgumentError } from '../errors.js';
import { checkImage, type Image, type ImageChannels } from './image.js';

/** PNG color types (PNG spec, IHDR) for our channel counts. */
const COLOR_TYPE: Record<ImageChannels, 0 | 2 | 6> = { 1: 0, 3: 2, 4: 6 };

/** The PNG file bytes of an image (non-interlaced, 8 bits per channel). */
export function encodePng(image: Image): Uint8Array {
  checkImage(image, 'image');
  const colorType = COLOR_TYPE[image.channels];
  const bytes = pngjs.PNG.sync.write(
    // pngjs reads only width, height and data here; the PNG object type wants more fields.
    { width: image.width, height: image.height, data: Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength) } as pngjs.PNG,
    { colorType, inputColorType: colorType, inputHasAlpha: image.channels === 4, bitDepth: 8 },
  );
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Writes `image` as a PNG file at `path`, atomically: readers see the old file or the whole new one. */
export async function writePng(path: string, image: Image): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a non-empty file path string', path);
  const bytes = encodePng(image);
  await writeFileAtomic(path, async (file) => {
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await file.write(bytes, offset, bytes.length - offset, offset);
      offset += bytesWritten;
    }
  });
}
