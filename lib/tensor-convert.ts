/**
 * Bit-exact f32 <-> f16 / bf16 conversions (round-to-nearest-even), on raw 16-bit patterns.
 */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToBf16Bits(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i];
    if ((u & 0x7fffffff) > 0x7f800000) {
      dst[i] = ((u >>> 16) | 0x0040) & 0xffff; // NaN stays NaN (quiet bit set)
    } else {
      dst[i] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
}

export function bf16BitsToF32(src: Uint16Array, dst: Float32Array): void {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
}

export function f32ToF16Bits(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToF16Bits(bits[i]);
}

/** One fp32 bit pattern to the nearest fp16 (ties to even), Inf on overflow, NaN kept. */
export function f32BitsToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff); // NaN (quiet)
  if (a >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds to Inf (and Inf itself)
  if (a >= 0x38800000) {
    // Normal f16: rebias the exponent, round 13 mantissa bits away, ties to even.
    const r = a + 0x0fff + ((a >>> 13) & 1);
    return sign | (((r - 0x38000000) >>> 13) & 0x7fff);
  }
  if (a < 0x33000000) return sign; // below half the smallest subnormal (2^-25): zero
  // Subnormal f16: value = m · 2^-24 with m rounded to nearest even.
  const exp = a >>> 23;
  const mant = (a & 0x7fffff) | 0x800000;
  const shift = 126 - exp; // 14..24 for exp in [102, 112]
  const halfway = 1 << (shift - 1);
  let m = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  if (rem > halfway || (rem === halfway && (m & 1) === 1)) m += 1;
  return sign | m;
}

export function f16BitsToF32(src: Uint16Array, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = f16BitsToNumber(src[i]);
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man === 0 ? sign * Infinity : NaN;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** fp32 bits of a number (after rounding it to fp32). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}
