// __host__ __device__ versions of the element and scale codecs of codecs.h (DESIGN.md §3), for the
// GPU quantize and GEMM kernels. They implement the same rules with bit operations and operations
// that round exactly once (no fma contraction: the explicit *_rn intrinsics on the device), so that
// codes and scales are bit-identical to the CPU quantizers. native/gpu/tests/test_gpu.cu checks every
// function here against codecs.h on the host (exhaustively for the byte codecs).
#pragma once

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#include "gpu_compat.h"
#define SVDQ_HD __host__ __device__ __forceinline__
#else
#define SVDQ_HD static inline
#endif

namespace svdq_gpu {

SVDQ_HD uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return static_cast<uint32_t>(__float_as_uint(x));
#else
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
#endif
}

SVDQ_HD float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, 4);
  return x;
#endif
}

// IEEE single operations rounded once (to nearest even), never contracted.
SVDQ_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __fmul_rn(a, b);
#else
  volatile float r = a * b;
  return r;
#endif
}
SVDQ_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __fadd_rn(a, b);
#else
  volatile float r = a + b;
  return r;
#endif
}
SVDQ_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __fdiv_rn(a, b);
#else
  volatile float r = a / b;
  return r;
#endif
}
SVDQ_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __fmaf_rn(a, b, c);
#else
  return fmaf(a, b, c);
#endif
}
// Round to nearest integer, ties to even (the default rounding mode's nearbyintf).
SVDQ_HD float rint_even(float v) { return rintf(v); }

constexpr uint32_t kInfBits = 0x7F800000u;
constexpr uint32_t kNanBits = 0x7FC00000u;
constexpr uint8_t kE8M0Nan = 0xFF;
constexpr uint8_t kE4M3Nan = 0x7F;

// ---- E2M1 ----------------------------------------------------------------------------------------
// 2·E2M1 value of a code, as the int8 the GEMM multiplies: magnitudes {0,1,2,3,4,6,8,12}.
SVDQ_HD int32_t e2m1x2_of_code(uint32_t code) {
  const uint32_t m = code & 7u;
  const int32_t v = m < 4u ? static_cast<int32_t>(m) : static_cast<int32_t>((2u + (m & 1u)) << ((m >> 1) - 1u));
  return (code & 8u) ? -v : v;
}

SVDQ_HD uint32_t e2m1_encode(float v) {
  const float a = float_of(bits_of(v) & 0x7FFFFFFFu);
  const uint32_t mag = static_cast<uint32_t>(a > 0.25f) + static_cast<uint32_t>(a >= 0.75f) +
                       static_cast<uint32_t>(a > 1.25f) + static_cast<uint32_t>(a >= 1.75f) +
                       static_cast<uint32_t>(a > 2.5f) + static_cast<uint32_t>(a >= 3.5f) +
                       static_cast<uint32_t>(a > 5.0f);
  if (mag == 0) return 0;
  return mag | ((bits_of(v) >> 31) ? 8u : 0u);
}

// ---- E8M0 ----------------------------------------------------------------------------------------
// 2^-(b-127) for b in [0, 254].
SVDQ_HD float e8m0_reciprocal(uint32_t b) {
  if (b == 254u) return float_of(0x00400000u);
  return float_of((254u - b) << 23);
}

// Scale byte for a block of finite values with abs-max `amax` (>= 0): codecs.h's
// e8m0_scale_for_amax, from the fp32 bits (floor(log2 amax) is the unbiased exponent; amax's
// mantissa in [1, 2) is >= 1.75 iff its top two fraction bits are set; 6·2^(E-2) < amax iff the
// mantissa is > 1.5). Rule: 0 floor, 1 even, 2 ceil.
SVDQ_HD uint32_t e8m0_scale_for_amax(float amax, int rule) {
  const uint32_t u = bits_of(amax);
  if (!(amax > 0.0f)) return 0;
  const uint32_t ef = (u >> 23) & 0xFFu;
  if (ef == 0) return 0;  // subnormal amax: floor(log2) <= -127, the scale clamps to 2^-127
  const uint32_t frac = u & 0x7FFFFFu;
  int s = static_cast<int>(ef) - 127 - 2;
  if (rule == 1) {
    if (frac >= 0x600000u) s += 1;
  } else if (rule == 2) {
    if (frac > 0x400000u) s += 1;
  }
  if (s < -127) s = -127;
  if (s > 127) s = 127;
  return static_cast<uint32_t>(s + 127);
}

// ---- E4M3 (OCP e4m3fn) ---------------------------------------------------------------------------
SVDQ_HD float e4m3_decode(uint32_t b) {
  const uint32_t exp = (b >> 3) & 0xFu;
  const uint32_t man = b & 7u;
  if (exp == 15u && man == 7u) return float_of(kNanBits);
  const uint32_t sign = (b & 0x80u) << 24;
  if (exp == 0) return float_of(bits_of(mul_rn(static_cast<float>(man), 0.001953125f)) | sign);
  return float_of(sign | ((exp - 7u + 127u) << 23) | (man << 20));
}

SVDQ_HD uint32_t e4m3_encode(float x) {
  const uint32_t u = bits_of(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > kInfBits) return kE4M3Nan;
  const float ax = float_of(a);
  if (ax < 0.015625f) {
    const float m = rint_even(mul_rn(ax, 512.0f));
    return sign | static_cast<uint32_t>(m);
  }
  uint32_t r = a + 0x7FFFFu + ((a >> 20) & 1u);
  r &= 0xFFF00000u;
  if (r > 0x43E00000u) return sign | 0x7Eu;
  const uint32_t exp = ((r >> 23) & 0xFFu) - 127u + 7u;
  const uint32_t man = (r >> 20) & 7u;
  return sign | (exp << 3) | man;
}

// ---- INT ---------------------------------------------------------------------------------------
SVDQ_HD int32_t int_round_clamp(float v, float lo, float hi) {
  float r = rint_even(v);
  if (r < lo) r = lo;
  if (r > hi) r = hi;
  return static_cast<int32_t>(r);
}

SVDQ_HD int32_t int4_of_nibble(uint32_t n) { return static_cast<int32_t>((n & 0xFu) ^ 8u) - 8; }

// ---- NVFP4 tensor scale --------------------------------------------------------------------------
SVDQ_HD float nvfp4_global_scale(float amax) {
  if (!(amax > 0.0f) || bits_of(amax) >= kInfBits) return 1.0f;
  const float g = div_rn(2688.0f, amax);
  return bits_of(g) >= kInfBits ? 1.0f : g;
}

// fl(I · 2^e) rounded once, for an integer |I| < 2^24 and an integer-valued e in [-300, 300]
// (the mxfp4 group term; e = e_x + e_w - 256); NaN when e is NaN. The first product is exact
// (a normal result or an overflow that the exact value shares), the second rounds once.
SVDQ_HD float scale_pow2(int32_t I, float e) {
  if (e != e) return float_of(kNanBits);
  const int ei = static_cast<int>(e);
  int e1 = ei < -126 ? -126 : (ei > 127 ? 127 : ei);
  int e2 = ei - e1;
  if (e2 < -149) e2 = -149;  // I·2^e underflows to zero either way (|I|·2^-126·2^-149 < 2^-150)
  if (e2 > 127) e2 = 127;    // overflows to ±Inf either way
  const float p1 = float_of(static_cast<uint32_t>(e1 + 127) << 23);
  const float p2 = e2 >= -126 ? float_of(static_cast<uint32_t>(e2 + 127) << 23)
                              : float_of(1u << (e2 + 149));  // subnormal power of two
  return mul_rn(mul_rn(static_cast<float>(I), p1), p2);
}

}  // namespace svdq_gpu
