/**
 * Seeded Gaussian noise for the sampling pipelines: the same seed gives the same numbers on every
 * machine and in every batch, so an image is reproducible from (seed, label, steps, guidance) alone.
 *
 * Algorithm (stable; changing it changes every generated image):
 * 1. State: xoshiro128** (Blackman & Vigna), four 32-bit words filled by SplitMix32 from the seed,
 *    a non-negative safe integer: the words come from mixing the seed's low 32 bits, then its high
 *    21 bits, through successive SplitMix32 outputs (so 0 and 2^32 differ).
 * 2. Uniforms: two xoshiro outputs make u = (a·2^21 + (b >>> 11) + 1) / 2^53, in (0, 1] (never 0,
 *    so log(u) is finite).
 * 3. Normals: Box–Muller on (u1, u2) gives r·cos(2πu2) then r·sin(2πu2), r = sqrt(−2 ln u1),
 *    computed in float64 (V8's Math.log/cos/sin are its own fdlibm ports, identical on every
 *    platform) and rounded to float32 on storage. Values are consumed in order; an odd count
 *    drops the last sine.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkShape, shapeNumel } from '../tensor.js';

const TWO_POW_32 = 2 ** 32;
const TWO_POW_53 = 2 ** 53;

/** Whether `seed` is a valid seed: an integer in [0, 2^53). */
export function isSeed(seed: unknown): seed is number {
  return typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0;
}

function checkSeed(seed: unknown, argument: string): number {
  if (!isSeed(seed)) throw new ArgumentError(argument, 'an integer seed in [0, 2^53)', seed);
  return seed;
}

/** A stream of standard normal numbers (see the file comment for the exact algorithm). */
export class GaussianRandom {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;
  #spare: number | undefined;

  constructor(seed: number) {
    checkSeed(seed, 'seed');
    let x = 0;
    const splitmix32 = (input: number): number => {
      x = (x + 0x9e3779b9 + input) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    const low = seed % TWO_POW_32;
    const high = Math.floor(seed / TWO_POW_32);
    this.#s0 = splitmix32(low);
    this.#s1 = splitmix32(high);
    this.#s2 = splitmix32(0);
    this.#s3 = splitmix32(0);
    // xoshiro's state must not be all zero; SplitMix32 outputs make that practically impossible, but be sure.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** The next 32-bit output of xoshiro128**, as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.#s1, 5), 7), 9) >>> 0;
    const t = this.#s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** A uniform number in (0, 1] with 53 random bits. */
  nextUniform(): number {
    const a = this.nextUint32() >>> 0;
    const b = this.nextUint32() >>> 11;
    return (a * 2 ** 21 + b + 1) / TWO_POW_53;
  }

  /** The next standard normal number (float64; `fill` rounds to float32). */
  nextGaussian(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(this.nextUniform()));
    const theta = 2 * Math.PI * this.nextUniform();
    this.#spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** Fills `out` with the next `out.length` normal numbers. */
  fill(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.nextGaussian();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Standard normal noise of `shape` from `seed` (f32). */
export function randn(shape: readonly number[], seed: number): Tensor<'f32'> {
  const s = checkShape(shape);
  const data = new GaussianRandom(checkSeed(seed, 'seed')).fill(new Float32Array(shapeNumel(s)));
  return Tensor.fromStorage(data, s, 'f32');
}

/**
 * A batch of noise [seeds.length, ...itemShape] whose item i is `randn(itemShape, seeds[i])`: each
 * image's noise depends on its own seed only, never on the batch around it.
 */
export function randnBatch(itemShape: readonly number[], seeds: readonly number[]): Tensor<'f32'> {
  const s = checkShape(itemShape, 'itemShape');
  if (!Array.isArray(seeds) || seeds.length === 0) throw new ArgumentError('seeds', 'a non-empty array of seeds', seeds);
  seeds.forEach((seed, i) => checkSeed(seed, `seeds[${i}]`));
  const n = shapeNumel(s);
  const data = new Float32Array(n * seeds.length);
  seeds.forEach((seed, i) => new GaussianRandom(seed).fill(data.subarray(i * n, (i + 1) * n)));
  return Tensor.fromStorage(data, [seeds.length, ...s], 'f32');
}
