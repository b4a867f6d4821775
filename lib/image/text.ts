/**
 * Text for image labels: the "Seven plus" pixel font of js-pixel-fonts (ASCII 32-126; capitals 7
 * pixels high, lower case with 2-pixel descenders), drawn into images at an integer scale.
 */
import pixelFonts from 'js-pixel-fonts';
import { ArgumentError } from '../errors.js';
import { checkImage, type Image } from './image.js';

const FONT = pixelFonts.fonts.sevenPlus;

/** Height of one line of text in font pixels: 7 above the baseline, 2 for descenders. */
export const TEXT_LINE_HEIGHT = 9;

/** What replaces a character the font has no glyph for. */
const REPLACEMENT = '?';

export interface TextBitmap {
  readonly width: number;
  readonly height: number;
  /** 1 where the text has ink, row-major, width * height entries. */
  readonly ink: Uint8Array;
}

/**
 * The text as a one-line bitmap at `scale` (each font pixel becomes scale x scale). Line breaks and
 * characters outside ASCII 32-126 become '?'; the height is always TEXT_LINE_HEIGHT * scale.
 */
export function renderText(text: string, scale = 1): TextBitmap {
  checkScale(scale);
  const rows = fontRows(text);
  const width = rowsWidth(rows) * scale;
  const height = TEXT_LINE_HEIGHT * scale;
  const ink = new Uint8Array(width * height);
  rows.forEach((row, y) => {
    row.forEach((pixel, x) => {
      if (pixel !== 1) return;
      for (let dy = 0; dy < scale; dy++) ink.fill(1, (y * scale + dy) * width + x * scale, (y * scale + dy) * width + (x + 1) * scale);
    });
  });
  return { width, height, ink };
}

/** Width in image pixels of `text` drawn at `scale`. */
export function textWidth(text: string, scale = 1): number {
  checkScale(scale);
  return rowsWidth(fontRows(text)) * scale;
}

/** The font's rows of 0/1 pixels for one line of text. */
function fontRows(text: string): number[][] {
  if (typeof text !== 'string') throw new ArgumentError('text', 'a string', text);
  return text.length === 0 ? [] : pixelFonts.renderPixels(toFontCharacters(text), FONT);
}

/** renderPixels pads rows only to the glyphs present, so rows may be ragged and fewer than 9. */
function rowsWidth(rows: readonly (readonly number[])[]): number {
  return rows.reduce((widest, row) => Math.max(widest, row.length), 0);
}

function checkScale(scale: unknown): void {
  if (!Number.isInteger(scale) || (scale as number) < 1 || (scale as number) > 64) throw new ArgumentError('scale', 'an integer in [1, 64]', scale);
}

/**
 * Draws `text` into `image` with its top-left corner at (x, y), in `color` (one byte per channel of
 * the image; alpha, if any, is set too). Ink outside the image is clipped.
 */
export function drawText(image: Image, text: string, x: number, y: number, options: { scale?: number; color?: readonly number[] } = {}): void {
  checkImage(image, 'image');
  if (!Number.isInteger(x)) throw new ArgumentError('x', 'an integer', x);
  if (!Number.isInteger(y)) throw new ArgumentError('y', 'an integer', y);
  const color = options.color ?? new Array<number>(image.channels).fill(0);
  if (!Array.isArray(color) || color.length !== image.channels || !color.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
    throw new ArgumentError('options.color', `${image.channels} integers in [0, 255] (one per channel)`, color);
  }
  const bitmap = renderText(text, options.scale ?? 1);
  const c = image.channels;
  for (let ty = 0; ty < bitmap.height; ty++) {
    const iy = y + ty;
    if (iy < 0 || iy >= image.height) continue;
    for (let tx = 0; tx < bitmap.width; tx++) {
      const ix = x + tx;
      if (ix < 0 || ix >= image.width || bitmap.ink[ty * bitmap.width + tx] === 0) continue;
      const at = (iy * image.width + ix) * c;
      for (let k = 0; k < c; k++) image.data[at + k] = color[k];
    }
  }
}

/** The text with every character the font lacks replaced, so the library never logs a warning. */
function toFontCharacters(text: string): string {
  let out = '';
  for (const ch of text) out += ch.length === 1 && ch >= ' ' && ch <= '~' && FONT.glyphs[ch] !== undefined ? ch : REPLACEMENT;
  return out;
}
