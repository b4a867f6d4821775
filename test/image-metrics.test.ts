import t from 'tap';
import { readFileSync } from 'node:fs';
import { Tensor } from '../lib/tensor.js';
import { createImage, type Image, type ImageChannels } from '../lib/image/image.js';
import { psnr, ssim } from '../lib/image/metrics.js';

interface VectorCase {
  name: string;
  kind: 'image' | 'tensor';
  width?: number;
  height?: number;
  channels?: ImageChannels;
  shape?: number[];
  a: number[];
  b: number[];
  dataRange: number;
  ssim: number;
  psnr: number | null;
}
// SSIM and PSNR by scikit-image 0.19 (test/data/image/ssim_vectors.py).
const vectors = JSON.parse(readFileSync(new URL('./data/image/ssim_vectors.json', import.meta.url), 'utf8')) as { cases: VectorCase[] };

function inputs(c: VectorCase): [Image, Image] | [Tensor, Tensor] {
  if (c.kind === 'image') {
    const image = (values: number[]): Image => ({ width: c.width!, height: c.height!, channels: c.channels!, data: Uint8Array.from(values) });
    return [image(c.a), image(c.b)];
  }
  return [Tensor.fromArray(c.a, c.shape), Tensor.fromArray(c.b, c.shape)];
}

/** Differences from scikit-image come only from float64 summation order (about 1e-15). */
const TOLERANCE = 1e-9;

t.test('SSIM matches scikit-image on every vector', async (t) => {
  t.ok(vectors.cases.length >= 10);
  for (const c of vectors.cases) {
    const [a, b] = inputs(c);
    const value = ssim(a as Image, b as Image);
    t.ok(Math.abs(value - c.ssim) <= TOLERANCE, `${c.name}: ${value} vs scikit-image ${c.ssim} (diff ${Math.abs(value - c.ssim).toExponential(2)})`);
    t.ok(Math.abs(ssim(a as Image, b as Image, { dataRange: c.dataRange }) - c.ssim) <= TOLERANCE, `${c.name}: the default data range is ${c.dataRange}`);
  }
});

t.test('PSNR matches scikit-image on every vector', async (t) => {
  for (const c of vectors.cases) {
    const [a, b] = inputs(c);
    const value = psnr(a as Image, b as Image);
    if (c.psnr === null) t.equal(value, Infinity, `${c.name}: equal inputs`);
    else t.ok(Math.abs(value - c.psnr) <= TOLERANCE, `${c.name}: ${value} vs scikit-image ${c.psnr}`);
  }
});

t.test('PSNR on hand-computed cases', async (t) => {
  // One of four pixels off by 255: MSE = 255^2 / 4, PSNR = 10 log10(4).
  const black = createImage(2, 2, 1);
  const oneWhite = createImage(2, 2, 1);
  oneWhite.data[3] = 255;
  t.ok(Math.abs(psnr(black, oneWhite) - 10 * Math.log10(4)) < 1e-12);
  // Every value off by 2^-6 with range 2: MSE = 2^-12, PSNR = 10 log10(4 * 2^12) = 140 log10(2).
  const zeros = Tensor.zeros([1, 3, 4, 4], 'f32');
  const shifted = Tensor.fromArray(new Array(48).fill(2 ** -6), [1, 3, 4, 4]);
  t.ok(Math.abs(psnr(zeros, shifted) - 140 * Math.log10(2)) < 1e-12);
  // The data range scales the peak: range 1 instead of 2 lowers PSNR by 20 log10(2).
  t.ok(Math.abs(psnr(zeros, shifted, { dataRange: 1 }) - 120 * Math.log10(2)) < 1e-12);
  // RGB: errors 3, 4 and 0 in one pixel of 1x1: MSE = 25 / 3.
  const rgbA: Image = { width: 1, height: 1, channels: 3, data: Uint8Array.from([10, 20, 30]) };
  const rgbB: Image = { width: 1, height: 1, channels: 3, data: Uint8Array.from([13, 16, 30]) };
  t.ok(Math.abs(psnr(rgbA, rgbB) - 10 * Math.log10((255 * 255 * 3) / 25)) < 1e-12);
  t.equal(psnr(rgbA, rgbA), Infinity);
  t.equal(psnr(zeros, zeros.clone()), Infinity);
  t.ok(Number.isNaN(psnr(zeros, Tensor.fromArray([NaN, ...new Array(47).fill(0)], [1, 3, 4, 4]))), 'NaN in, NaN out');
});

t.test('SSIM hand-checkable properties', async (t) => {
  const c = vectors.cases.find((v) => v.kind === 'image' && v.channels === 3)!;
  const [a, b] = inputs(c) as [Image, Image];
  t.equal(ssim(a, a), 1, 'equal images: exactly 1');
  t.ok(Math.abs(ssim(a, b) - ssim(b, a)) < 1e-15, 'symmetric');
  // Constant images: no variance, so SSIM is the luminance term (2 * 100 * 120 + C1) / (100^2 + 120^2 + C1).
  const c1 = (0.01 * 255) ** 2;
  t.ok(Math.abs(ssim(createImage(11, 11, 1, 100), createImage(11, 11, 1, 120)) - (24000 + c1) / (24400 + c1)) < 1e-15);
  // A larger data range weighs the same difference less.
  t.ok(ssim(a, b, { dataRange: 1000 }) > ssim(a, b));
  // A batch is the mean over its images (and channels).
  const x = Tensor.fromArray(Array.from({ length: 2 * 12 * 12 }, (_, i) => Math.sin(i * 0.37)), [2, 1, 12, 12]);
  const y = Tensor.fromArray(Array.from({ length: 2 * 12 * 12 }, (_, i) => Math.sin(i * 0.37) * 0.8 + Math.cos(i) * 0.1), [2, 1, 12, 12]);
  const first = ssim(Tensor.fromStorage(x.data.slice(0, 144), [12, 12], 'f32'), Tensor.fromStorage(y.data.slice(0, 144), [12, 12], 'f32'));
  const second = ssim(Tensor.fromStorage(x.data.slice(144), [1, 12, 12], 'f32'), Tensor.fromStorage(y.data.slice(144), [1, 12, 12], 'f32'));
  t.ok(Math.abs(ssim(x, y) - (first + second) / 2) < 1e-15);
});

t.test('mismatched or unusable inputs get ArgumentErrors', async (t) => {
  const gray = createImage(12, 12, 1);
  t.throws(() => ssim(gray, createImage(12, 13, 1)), { name: 'ArgumentError', argument: 'b', message: /12x12x1/ });
  t.throws(() => psnr(gray, createImage(12, 12, 3)), { name: 'ArgumentError', argument: 'b', message: /12x12x1.*got "12x12x3"/ });
  t.throws(() => psnr(gray, Tensor.zeros([1, 12, 12], 'f32')), { name: 'ArgumentError', argument: 'b', message: /an image/ });
  t.throws(() => psnr(Tensor.zeros([1, 12, 12], 'f32'), gray as never), { name: 'ArgumentError', argument: 'b', message: /a Tensor/ });
  t.throws(() => psnr({ width: 1 } as never, gray), { name: 'ArgumentError', argument: 'a' });
  t.throws(() => psnr(Tensor.zeros([1, 12, 12], 'f32'), Tensor.zeros([12, 12], 'f32')), { name: 'ArgumentError', argument: 'b', message: /\[1, 12, 12\]/ });
  t.throws(() => psnr(Tensor.zeros([12], 'f32'), Tensor.zeros([12], 'f32')), { name: 'ArgumentError', argument: 'a', message: /2 dimensions/ });
  t.throws(() => psnr(Tensor.zeros([0, 12], 'f32'), Tensor.zeros([0, 12], 'f32')), { name: 'ArgumentError', argument: 'a', message: /non-empty/ });
  t.throws(() => psnr(Tensor.zeros([2, 2], 'i32'), Tensor.zeros([2, 2], 'i32')), { name: 'ArgumentError', argument: 'a', message: /dtype/ });
  t.throws(() => ssim(createImage(10, 12, 1), createImage(10, 12, 1)), { name: 'ArgumentError', argument: 'a', message: /at least 11x11/ });
  t.throws(() => ssim(Tensor.zeros([3, 11, 10], 'f32'), Tensor.zeros([3, 11, 10], 'f32')), { name: 'ArgumentError', message: /at least 11x11/ });
  for (const dataRange of [0, -1, NaN, Infinity, '255']) {
    t.throws(() => psnr(gray, gray, { dataRange } as never), { name: 'ArgumentError', argument: 'options.dataRange' });
  }
  t.throws(() => ssim(gray, gray, { range: 2 } as never), { name: 'ArgumentError', argument: 'options.range' });
  const disposed = Tensor.zeros([12, 12], 'f32');
  disposed.dispose();
  t.throws(() => ssim(disposed, Tensor.zeros([12, 12], 'f32')), { name: 'ArgumentError', argument: 'a', message: /disposed/ });
});

t.test('f16 inputs are compared by their values', async (t) => {
  const c = vectors.cases.find((v) => v.kind === 'tensor')!;
  const [a, b] = inputs(c) as [Tensor, Tensor];
  const [a16, b16] = [a.to('f16'), b.to('f16')];
  t.equal(ssim(a16, b16), ssim(a16.to('f32'), b16.to('f32')));
  t.equal(psnr(a16, b16), psnr(a16.to('f32'), b16.to('f32')));
});
