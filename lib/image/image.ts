/**
 * Image: 8-bit pixels, row-major, channels interleaved (gray, RGB or RGBA), the form PNG stores and
 * the one every function of lib/image takes and returns.
 */
import { ArgumentError, describeValue } from '../errors.js';

export type ImageChannels = 1 | 3 | 4;

export interface Image {
  readonly width: number;
  readonly height: number;
  /** 1: gray, 3: RGB, 4: RGBA. */
  readonly channels: ImageChannels;
  /** `width * height * channels` bytes; pixel (x, y), channel c at `(y * width + x) * channels + c`. */
  readonly data: Uint8Array;
}

/** The largest side accepted: PNG allows 2^31 - 1, but a larger image would not fit in memory here. */
export const MAX_IMAGE_SIDE = 1 << 16;

/** A new image filled with one byte value per channel (default 0). */
export function createImage(width: number, height: number, channels: ImageChannels, fill = 0): Image {
  checkSide(width, 'width');
  checkSide(height, 'height');
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new ArgumentError('channels', '1, 3 or 4', channels);
  if (!Number.isInteger(fill) || fill < 0 || fill > 255) throw new ArgumentError('fill', 'an integer in [0, 255]', fill);
  return { width, height, channels, data: new Uint8Array(width * height * channels).fill(fill) };
}

export function isImage(value: unknown): value is Image {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Partial<Image>;
  return (
    isSide(v.width) && isSide(v.height) && (v.channels === 1 || v.channels === 3 || v.channels === 4) &&
    v.data instanceof Uint8Array && v.data.length === v.width * v.height * v.channels
  );
}

/** Throws an ArgumentError naming `argument` unless `value` is a well-formed Image. */
export function checkImage(value: unknown, argument: string): Image {
  if (isImage(value)) return value;
  const v = value as Partial<Image> | null;
  const detail = v !== null && typeof v === 'object'
    ? `{ width: ${describeValue(v.width)}, height: ${describeValue(v.height)}, channels: ${describeValue(v.channels)}, data: ${describeValue(v.data)} }`
    : describeValue(value);
  throw new ArgumentError(
    argument,
    `an image { width, height (integers in [1, ${MAX_IMAGE_SIDE}]), channels (1, 3 or 4), data (a Uint8Array of width * height * channels bytes) }`,
    detail,
  );
}

/** `width`x`height`x`channels`, for messages. */
export function describeImageSize(image: Image): string {
  return `${image.width}x${image.height}x${image.channels}`;
}

/** The image enlarged `factor` times in each direction, each pixel repeated (nearest neighbour). */
export function scaleImage(image: Image, factor: number): Image {
  checkImage(image, 'image');
  if (!Number.isInteger(factor) || factor < 1) throw new ArgumentError('factor', 'an integer >= 1', factor);
  if (factor === 1) return { width: image.width, height: image.height, channels: image.channels, data: image.data.slice() };
  const width = image.width * factor;
  const height = image.height * factor;
  checkSide(width, 'factor (the scaled width)');
  checkSide(height, 'factor (the scaled height)');
  const c = image.channels;
  const data = new Uint8Array(width * height * c);
  const rowBytes = width * c;
  for (let y = 0; y < image.height; y++) {
    const outRow = y * factor * rowBytes;
    for (let x = 0; x < image.width; x++) {
      const src = (y * image.width + x) * c;
      for (let r = 0; r < factor; r++) {
        const dst = outRow + x * factor * c + r * c;
        for (let k = 0; k < c; k++) data[dst + k] = image.data[src + k];
      }
    }
    // The other factor - 1 output rows of this source row are copies of the first.
    for (let r = 1; r < factor; r++) data.copyWithin(outRow + r * rowBytes, outRow, outRow + rowBytes);
  }
  return { width, height, channels: c, data };
}

function isSide(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_IMAGE_SIDE;
}

function checkSide(value: unknown, argument: string): void {
  if (!isSide(value)) throw new ArgumentError(argument, `an integer in [1, ${MAX_IMAGE_SIDE}]`, value);
}
