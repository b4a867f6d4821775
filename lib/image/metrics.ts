/**
 * Image metrics between two images (8-bit, data range 255) or two float tensors (model outputs in
 * [-1, 1], data range 2) of the same shape, computed in float64:
 * - PSNR = 10 log10(R^2 / MSE) over every value (Infinity for equal inputs; NaN inputs give NaN).
 * - SSIM as Wang et al. 2004 and scikit-image's structural_similarity(gaussian_weights=True,
 *   sigma=1.5, use_sample_covariance=False): 11x11 Gaussian window (sigma 1.5, truncated at 3.5
 *   sigma), K1 = 0.01, K2 = 0.03, averaged over the valid region (windows fully inside the image,
 *   5 pixels cropped per side), then over channels. Images and planes must be at least 11x11.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkNotDisposed, isTensor } from '../tensor.js';
import { checkImage, describeImageSize, isImage, type Image } from './image.js';

export interface MetricOptions {
  /** Distance between the smallest and largest possible value: default 255 for images, 2 for tensors. */
  readonly dataRange?: number;
}

/** What can be compared: two images, or two tensors ([B, C, H, W], [C, H, W] or [H, W] for SSIM). */
export type MetricInput = Image | Tensor;

const SSIM_SIGMA = 1.5;
const SSIM_RADIUS = 5; // int(3.5 * sigma + 0.5), scipy's truncation
const SSIM_WINDOW = 2 * SSIM_RADIUS + 1;
const SSIM_K1 = 0.01;
const SSIM_K2 = 0.03;

/** Peak signal-to-noise ratio in dB. */
export function psnr(a: MetricInput, b: MetricInput, options: MetricOptions = {}): number {
  const pair = checkPair(a, b);
  const range = dataRange(options, pair.defaultRange);
  let sum = 0;
  for (let i = 0; i < pair.a.length; i++) {
    const d = pair.a[i] - pair.b[i];
    sum += d * d;
  }
  const mse = sum / pair.a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((range * range) / mse);
}

/** Mean structural similarity in [-1, 1] (1 for equal inputs). */
export function ssim(a: MetricInput, b: MetricInput, options: MetricOptions = {}): number {
  const pair = checkPair(a, b);
  const range = dataRange(options, pair.defaultRange);
  if (pair.height < SSIM_WINDOW || pair.width < SSIM_WINDOW) {
    throw new ArgumentError('a', `inputs at least ${SSIM_WINDOW}x${SSIM_WINDOW} (the SSIM window)`, `${pair.width}x${pair.height}`);
  }
  const weights = gaussianWeights();
  const c1 = (SSIM_K1 * range) ** 2;
  const c2 = (SSIM_K2 * range) ** 2;
  let total = 0;
  for (let p = 0; p < pair.planes; p++) {
    total += planeSsim(pair.plane(pair.a, p), pair.plane(pair.b, p), pair.width, pair.height, weights, c1, c2);
  }
  return total / pair.planes;
}

/** SSIM of one H x W plane: the mean of the SSIM map over the valid region. */
function planeSsim(x: Float64Array, y: Float64Array, width: number, height: number, w: Float64Array, c1: number, c2: number): number {
  const xx = new Float64Array(x.length);
  const yy = new Float64Array(x.length);
  const xy = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const [ux, uy, uxx, uyy, uxy] = [x, y, xx, yy, xy].map((m) => gaussianFilterValid(m, width, height, w));
  let sum = 0;
  for (let i = 0; i < ux.length; i++) {
    const vx = uxx[i] - ux[i] * ux[i];
    const vy = uyy[i] - uy[i] * uy[i];
    const vxy = uxy[i] - ux[i] * uy[i];
    sum += ((2 * ux[i] * uy[i] + c1) * (2 * vxy + c2)) / ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2));
  }
  return sum / ux.length;
}

/**
 * The separable Gaussian filter at the positions whose whole window lies inside the plane:
 * (height - 10) x (width - 10) outputs. Columns first, then rows (scipy's axis order).
 */
function gaussianFilterValid(m: Float64Array, width: number, height: number, w: Float64Array): Float64Array {
  const outH = height - 2 * SSIM_RADIUS;
  const outW = width - 2 * SSIM_RADIUS;
  const vertical = new Float64Array(outH * width);
  for (let oy = 0; oy < outH; oy++) {
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let k = 0; k < SSIM_WINDOW; k++) s += w[k] * m[(oy + k) * width + x];
      vertical[oy * width + x] = s;
    }
  }
  const out = new Float64Array(outH * outW);
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      let s = 0;
      for (let k = 0; k < SSIM_WINDOW; k++) s += w[k] * vertical[oy * width + ox + k];
      out[oy * outW + ox] = s;
    }
  }
  return out;
}

/** exp(-x^2 / (2 sigma^2)) for x in [-radius, radius], normalised to sum 1. */
function gaussianWeights(): Float64Array {
  const w = new Float64Array(SSIM_WINDOW);
  let sum = 0;
  for (let k = 0; k < SSIM_WINDOW; k++) {
    const x = k - SSIM_RADIUS;
    w[k] = Math.exp((-0.5 / (SSIM_SIGMA * SSIM_SIGMA)) * x * x);
    sum += w[k];
  }
  for (let k = 0; k < SSIM_WINDOW; k++) w[k] /= sum;
  return w;
}

/** Two inputs of one shape, as flat values plus a way to cut out each H x W plane. */
interface Pair {
  a: ArrayLike<number>;
  b: ArrayLike<number>;
  width: number;
  height: number;
  planes: number;
  plane(values: ArrayLike<number>, index: number): Float64Array;
  defaultRange: number;
}

function checkPair(a: MetricInput, b: MetricInput): Pair {
  if (isTensor(a)) {
    if (!isTensor(b)) throw new ArgumentError('b', 'a Tensor (a is a Tensor)', b);
    return tensorPair(a, b);
  }
  if (!isImage(a)) checkImage(a, 'a'); // throws, naming what an image must be
  if (isTensor(b)) throw new ArgumentError('b', 'an image (a is an image)', b.toString());
  const image = checkImage(b, 'b');
  if (image.width !== a.width || image.height !== a.height || image.channels !== a.channels) {
    throw new ArgumentError('b', `an image of a's size ${describeImageSize(a)} (width x height x channels)`, describeImageSize(image));
  }
  const c = a.channels;
  return {
    a: a.data,
    b: image.data,
    width: a.width,
    height: a.height,
    planes: c,
    plane: (values, index) => {
      const out = new Float64Array(a.width * a.height);
      for (let i = 0; i < out.length; i++) out[i] = values[i * c + index];
      return out;
    },
    defaultRange: 255,
  };
}

function tensorPair(a: Tensor, b: Tensor): Pair {
  for (const [t, name] of [[a, 'a'], [b, 'b']] as const) {
    checkNotDisposed(t, name);
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') throw new ArgumentError(name, "a tensor of dtype 'f32', 'f16' or 'bf16'", t.dtype);
    if (t.shape.length < 2 || t.numel === 0) throw new ArgumentError(name, 'a non-empty tensor with at least 2 dimensions ([..., H, W])', t.shape);
  }
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ArgumentError('b', `a tensor of a's shape [${a.shape.join(', ')}]`, b.shape);
  }
  const height = a.shape[a.shape.length - 2];
  const width = a.shape[a.shape.length - 1];
  const size = height * width;
  return {
    a: a.to('f32').data,
    b: b.to('f32').data,
    width,
    height,
    planes: a.numel / size,
    plane: (values, index) => Float64Array.from({ length: size }, (_, i) => values[index * size + i]),
    defaultRange: 2,
  };
}

function dataRange(options: MetricOptions, fallback: number): number {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object', options);
  for (const key of Object.keys(options)) {
    if (key !== 'dataRange') throw new ArgumentError(`options.${key}`, 'no such option (known: dataRange)', (options as Record<string, unknown>)[key]);
  }
  const range = options.dataRange ?? fallback;
  if (typeof range !== 'number' || !Number.isFinite(range) || range <= 0) {
    throw new ArgumentError('options.dataRange', 'a finite number > 0', options.dataRange);
  }
  return range;
}
