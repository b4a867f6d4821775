import t from 'tap';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, inflateSync } from 'node:zlib';
import pngjs from 'pngjs';
import { ArgumentError, IoError } from '../lib/errors.js';
import { createImage, type Image, type ImageChannels } from '../lib/image/image.js';
import { encodePng, writePng } from '../lib/image/png.js';

/** A deterministic image with texture, so the encoder's row filters (sub, up, average, paeth) all get used. */
function testImage(width: number, height: number, channels: ImageChannels, seed = 1): Image {
  const image = createImage(width, height, channels);
  let s = seed;
  for (let i = 0; i < image.data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const x = Math.floor(i / channels) % width;
    image.data[i] = (i % 3 === 0 ? (x * 7) & 255 : s >>> 24) & 255;
  }
  return image;
}

/**
 * A PNG decoder written from the PNG specification, independent of the encoder: checks the
 * signature and every chunk's CRC, reads IHDR, inflates the IDAT stream and undoes the row filters.
 */
function decodeIndependently(png: Uint8Array): { width: number; height: number; colorType: number; bitDepth: number; interlace: number; pixels: Uint8Array; chunks: string[]; filters: Set<number> } {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((byte, i) => png[i] === byte)) throw new Error('bad signature');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks: string[] = [];
  const idat: Uint8Array[] = [];
  let ihdr: Uint8Array | undefined;
  for (let at = 8; at < png.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const body = png.subarray(at + 8, at + 8 + length);
    if (crc32(png.subarray(at + 4, at + 8 + length)) !== view.getUint32(at + 8 + length)) throw new Error(`bad CRC in ${type}`);
    chunks.push(type);
    if (type === 'IHDR') ihdr = body;
    if (type === 'IDAT') idat.push(body);
    at += 12 + length;
  }
  if (!ihdr) throw new Error('no IHDR');
  const h = new DataView(ihdr.buffer, ihdr.byteOffset, ihdr.byteLength);
  const [width, height, bitDepth, colorType, interlace] = [h.getUint32(0), h.getUint32(4), ihdr[8], ihdr[9], ihdr[12]];
  const bpp = ({ 0: 1, 2: 3, 6: 4 } as Record<number, number>)[colorType];
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  if (raw.length !== height * (stride + 1)) throw new Error(`inflated ${raw.length} bytes, expected ${height * (stride + 1)}`);
  const pixels = new Uint8Array(height * stride);
  const filters = new Set<number>();
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    filters.add(filter);
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i];
      const a = i >= bpp ? pixels[y * stride + i - bpp] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      const c = i >= bpp && y > 0 ? pixels[(y - 1) * stride + i - bpp] : 0;
      let predictor: number;
      if (filter === 0) predictor = 0;
      else if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = Math.floor((a + b) / 2);
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else throw new Error(`bad filter ${filter}`);
      pixels[y * stride + i] = (x + predictor) & 255;
    }
  }
  return { width, height, colorType, bitDepth, interlace, pixels, chunks, filters };
}

t.test('gray, RGB and RGBA images decode back to the same pixels (independent decoder)', async (t) => {
  for (const [channels, colorType] of [[1, 0], [3, 2], [4, 6]] as const) {
    const image = testImage(37, 23, channels, channels);
    const decoded = decodeIndependently(encodePng(image));
    t.same(
      [decoded.width, decoded.height, decoded.colorType, decoded.bitDepth, decoded.interlace],
      [37, 23, colorType, 8, 0],
      `${channels} channel(s): IHDR says ${37}x${23}, color type ${colorType}, 8 bits, not interlaced`,
    );
    t.same(decoded.chunks[0], 'IHDR');
    t.same(decoded.chunks.at(-1), 'IEND');
    t.ok(Buffer.from(decoded.pixels).equals(Buffer.from(image.data)), `${channels} channel(s): every byte round-trips`);
  }
});

t.test('rows encoded with each of the five PNG filters decode back', async (t) => {
  // Bands of different texture, so the encoder picks none, sub, up, average and paeth rows.
  const image = createImage(37, 23, 1);
  for (let y = 0; y < 23; y++) {
    for (let x = 0; x < 37; x++) {
      const v = y < 4 ? 0 : y < 8 ? x * 9 : y < 12 ? y * 13 : y < 16 ? x * 5 + y * 7 + ((x * y) % 3) : x * 37 + y * 91 + x * x;
      image.data[y * 37 + x] = v & 255;
    }
  }
  const decoded = decodeIndependently(encodePng(image));
  t.same([...decoded.filters].sort(), [0, 1, 2, 3, 4], 'all five filter types occur');
  t.ok(Buffer.from(decoded.pixels).equals(Buffer.from(image.data)));
});

t.test("pngjs's decoder reads the files too (RGBA out, gray repeated into R, G and B)", async (t) => {
  const gray = testImage(5, 4, 1);
  const read = pngjs.PNG.sync.read(Buffer.from(encodePng(gray)));
  t.same([read.width, read.height], [5, 4]);
  const expected = Array.from(gray.data).flatMap((v) => [v, v, v, 255]);
  t.same(Array.from(read.data), expected);
  const rgba = testImage(3, 7, 4);
  t.same(Array.from(pngjs.PNG.sync.read(Buffer.from(encodePng(rgba))).data), Array.from(rgba.data));
});

t.test('a 1x1 image and an image over a subarray view encode correctly', async (t) => {
  t.same(Array.from(decodeIndependently(encodePng({ width: 1, height: 1, channels: 3, data: Uint8Array.from([9, 8, 7]) })).pixels), [9, 8, 7]);
  const backing = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const view = { width: 2, height: 2, channels: 1 as const, data: backing.subarray(2, 6) };
  t.same(Array.from(decodeIndependently(encodePng(view)).pixels), [3, 4, 5, 6], 'only the view is encoded');
});

t.test('malformed images get an ArgumentError naming the image', async (t) => {
  const bad: unknown[] = [
    null,
    { width: 2, height: 2, channels: 1, data: new Uint8Array(3) },
    { width: 2, height: 2, channels: 2, data: new Uint8Array(8) },
    { width: 0, height: 2, channels: 1, data: new Uint8Array(0) },
    { width: 1.5, height: 2, channels: 1, data: new Uint8Array(3) },
    { width: 2, height: 2, channels: 1, data: [0, 0, 0, 0] },
    { width: 2, height: 2, channels: 1, data: new Uint16Array(4) },
  ];
  for (const image of bad) {
    t.throws(() => encodePng(image as Image), { name: 'ArgumentError', argument: 'image', message: /width \* height \* channels/ });
  }
});

t.test('writePng writes the encoded bytes atomically and replaces an existing file', async (t) => {
  const dir = t.testdir({ 'old.png': 'old content' });
  const image = testImage(12, 9, 3);
  await writePng(join(dir, 'new.png'), image);
  t.ok((await readFile(join(dir, 'new.png'))).equals(Buffer.from(encodePng(image))));
  await writePng(join(dir, 'old.png'), image);
  t.same(Array.from(decodeIndependently(await readFile(join(dir, 'old.png'))).pixels), Array.from(image.data));
  t.same((await readdir(dir)).sort(), ['new.png', 'old.png'], 'no temporary file left behind');
});

t.test('writePng errors leave existing files as they were', async (t) => {
  const dir = t.testdir({ 'keep.png': 'keep me' });
  await t.rejects(writePng(join(dir, 'keep.png'), { width: 1, height: 1, channels: 1, data: new Uint8Array(2) }), { name: 'ArgumentError', argument: 'image' });
  t.equal(await readFile(join(dir, 'keep.png'), 'utf8'), 'keep me');
  await t.rejects(writePng('', testImage(1, 1, 1)), { name: 'ArgumentError', argument: 'path' });
  await t.rejects(writePng(join(dir, 'no-such-dir', 'x.png'), testImage(1, 1, 1)), IoError);
  await writeFile(join(dir, 'file'), 'x');
  await t.rejects(writePng(join(dir, 'file', 'x.png'), testImage(1, 1, 1)), IoError, 'a file where a directory should be');
  t.same((await readdir(dir)).sort(), ['file', 'keep.png']);
});
