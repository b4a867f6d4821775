/**
 * The array arithmetic diffusers' schedulers get from torch (float32) and NumPy (float64),
 * reproduced value for value, so that our schedules equal the ones diffusers builds rather than
 * merely approximating them. Each function names the library routine it stands for.
 */

const f32 = Math.fround;

const F32_SCRATCH = new Float32Array(1);
const I32_SCRATCH = new Int32Array(F32_SCRATCH.buffer);

/** The next float32 after `x` (a float32 value) in the direction of `toward`. */
function nextFloat32(x: number, toward: number): number {
  if (x === toward) return x;
  if (x === 0) return toward > 0 ? 1.401298464324817e-45 : -1.401298464324817e-45;
  F32_SCRATCH[0] = x;
  // For IEEE floats, moving away from zero is +1 on the magnitude bits.
  I32_SCRATCH[0] += (toward > x) === (x > 0) ? 1 : -1;
  return F32_SCRATCH[0];
}

/**
 * a·b + c rounded once to float32, for float32 inputs: what a fused multiply-add computes.
 * The product is exact in a double; the sum's rounding error (TwoSum) breaks the one case where
 * rounding the double sum to float32 would round twice: a sum exactly halfway between floats.
 */
export function fmaFloat32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  if (r === s) return r;
  const v = s - p;
  const e = (p - (s - v)) + (c - v);
  if (e === 0) return r;
  const other = nextFloat32(r, s);
  if ((r + other) / 2 !== s) return r;
  // s is a tie between r and `other`: the exact sum lies on the side of e.
  return (e > 0) === (other > r) ? other : r;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) as torch 1.13's CPU kernel computes it: the
 * step is a float32; an element is `start + step*i` (first half) or `end - step*(steps-1-i)`
 * (second half) with a fused multiply-add, except that contiguous output is filled in 8-wide
 * vector blocks, two blocks per iteration, where element k of a block is `block start + step*k`
 * (a separate multiply and add). The tail that fills no pair of blocks takes the scalar path.
 * Checked bit for bit against the betas behind the diffusers fixtures.
 */
export function torchLinspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const a = f32(start);
  const b = f32(end);
  if (steps === 1) {
    out[0] = a;
    return out;
  }
  const step = f32(f32(b - a) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const scalar = (i: number): number => (i < halfway ? fmaFloat32(step, i, a) : fmaFloat32(-step, steps - i - 1, b));
  const width = 8;
  let i = 0;
  for (; i + 2 * width <= steps; i += 2 * width) {
    for (const blockStart of [i, i + width]) {
      const base = scalar(blockStart);
      for (let k = 0; k < width; k++) out[blockStart + k] = f32(base + f32(step * k));
    }
  }
  for (; i < steps; i++) out[i] = scalar(i);
  return out;
}

/** torch.cumprod on a float32 tensor: the CPU kernel accumulates in double, each output rounded to float32. */
export function cumprodFloat32(values: ArrayLike<number>): Float32Array {
  const out = new Float32Array(values.length);
  let product = 1;
  for (let i = 0; i < values.length; i++) {
    product *= values[i];
    out[i] = product;
  }
  return out;
}

/** numpy.linspace(start, stop, num) in float64: `i*step + start`, the last element exactly `stop`. */
export function numpyLinspace(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  if (num === 1) return [start];
  const div = num - 1;
  const delta = stop - start;
  const step = delta / div;
  const out = new Array<number>(num);
  for (let i = 0; i < num; i++) out[i] = (step === 0 ? (i / div) * delta : i * step) + start;
  out[num - 1] = stop;
  return out;
}

/**
 * numpy.arange(start, stop, step) for float64: the length is ceil((stop - start) / step); element 1
 * is `start + step`, and from element 2 on NumPy uses the difference of the first two elements
 * (not `step` itself) as the increment.
 */
export function numpyArange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Array<number>(length);
  if (length === 0) return out;
  out[0] = start;
  if (length === 1) return out;
  out[1] = start + step;
  const delta = out[1] - start;
  for (let i = 2; i < length; i++) out[i] = start + i * delta;
  return out;
}

/** numpy.round / numpy.rint: to the nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +infinity
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * numpy.interp(x, arange(len(fp)), fp) in float64: clamps outside the grid, returns fp[j] exactly
 * on a grid point, and otherwise `slope * (x - j) + fp[j]`.
 */
export function numpyInterpOnIndexGrid(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (!(x > 0)) return fp[0];
  if (x >= last) return fp[last];
  const j = Math.floor(x);
  if (x === j) return fp[j];
  const slope = (fp[j + 1] - fp[j]) / 1;
  return slope * (x - j) + fp[j];
}
