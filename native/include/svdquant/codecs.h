// Scalar element and scale codecs of DESIGN.md §3: E2M1, E8M0, E4M3, INT4, INT8.
//
// Everything here is `static inline` on purpose: this header is compiled into translation units
// built with different instruction-set flags (portable, AVX2, AVX-512). Internal linkage keeps the
// linker from picking an AVX-compiled copy of a helper for the portable path. For the same reason
// the helpers use bit operations and the C library's functions (::nearbyintf, ::frexp), never the
// C++ <cmath> float overloads: those are inline functions with vague linkage, which an unoptimized
// build emits as weak symbols that an AVX-512 object could supply to the portable path.
#pragma once

#include <math.h>
#include <cstdint>
#include <cstring>

namespace svdq {

static inline uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

static inline float f32_from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// Abs-value bits at or above this are Inf or NaN.
constexpr uint32_t kF32InfBits = 0x7F800000u;

// ---- E2M1 (FP4) ------------------------------------------------------------------------------
// Code: sign in bit 3, magnitude index 0..7 in bits 0-2 for {0, .5, 1, 1.5, 2, 3, 4, 6}.

static inline float f32_abs(float x) { return f32_from_bits(f32_bits(x) & 0x7FFFFFFFu); }

static inline float e2m1_decode(uint8_t code) {
  static const float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float m = kMag[code & 7];
  return (code & 8) ? -m : m;
}

// Round-to-nearest-even with saturation to ±6. The ladder: a tie rounds to the neighbour whose
// magnitude index is even (0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4). A result of
// magnitude zero is always code 0 (+0), also for negative inputs, so that zero blocks pack to 0x00.
// Precondition: v is not NaN (quantizers send NaN blocks down the NaN-scale path instead).
static inline uint8_t e2m1_encode(float v) {
  const float a = f32_abs(v);
  const uint8_t mag = static_cast<uint8_t>((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) +
                                           (a > 2.5f) + (a >= 3.5f) + (a > 5.0f));
  if (mag == 0) return 0;
  return static_cast<uint8_t>(mag | ((f32_bits(v) >> 31) ? 8 : 0));
}

// ---- E8M0 (MX block scale) -------------------------------------------------------------------
constexpr uint8_t kE8M0Nan = 0xFF;

static inline float e8m0_decode(uint8_t b) {
  if (b == kE8M0Nan) return f32_from_bits(0x7FC00000u);
  if (b == 0) return f32_from_bits(0x00400000u);  // 2^-127 is an fp32 subnormal
  return f32_from_bits(static_cast<uint32_t>(b) << 23);
}

// 2^-(b-127) for b in [0, 254]: the exact reciprocal of a finite E8M0 scale (representable in
// fp32: 2^-127, for b = 254, is the subnormal 0x00400000).
static inline float e8m0_reciprocal(uint8_t b) {
  if (b == 254) return f32_from_bits(0x00400000u);
  return f32_from_bits(static_cast<uint32_t>(254 - b) << 23);
}

enum class MxScaleRule : int { Floor = 0, Even = 1, Ceil = 2 };

// Scale byte for a block of finite values with abs-max `amax` (>= 0). All-zero block -> 0x00.
// floor: 2^(floor(log2 amax) - 2); even: one step up when amax's mantissa is >= 1.75 (where the
// floor scale would clip by rounding to 8); ceil: smallest 2^s with 6·2^s >= amax (never clips).
// Computed in double, where every quantity involved is exact.
static inline uint8_t e8m0_scale_for_amax(float amax, MxScaleRule rule) {
  if (!(amax > 0.0f)) return 0;
  int e2 = 0;
  const double m = ::frexp(static_cast<double>(amax), &e2);  // amax = m·2^e2, m in [0.5, 1)
  int s = (e2 - 1) - 2;                                         // floor(log2 amax) - 2
  if (rule == MxScaleRule::Even) {
    if (2.0 * m >= 1.75) s += 1;
  } else if (rule == MxScaleRule::Ceil) {
    if (::ldexp(6.0, s) < static_cast<double>(amax)) s += 1;
  }
  if (s < -127) s = -127;
  if (s > 127) s = 127;
  return static_cast<uint8_t>(s + 127);
}

// ---- E4M3 (OCP e4m3fn: bias 7, max 448, no Inf, NaN = 0x7F / 0xFF) ----------------------------
constexpr uint8_t kE4M3Nan = 0x7F;
constexpr uint8_t kE4M3MaxCode = 0x7E;  // 448

static inline float e4m3_decode(uint8_t b) {
  const uint32_t exp = (b >> 3) & 0xF;
  const uint32_t man = b & 7;
  if (exp == 15 && man == 7) return f32_from_bits(0x7FC00000u);
  const uint32_t sign = static_cast<uint32_t>(b & 0x80) << 24;
  if (exp == 0) return f32_from_bits(f32_bits(static_cast<float>(man) * 0.001953125f) | sign);  // man·2^-9
  return f32_from_bits(sign | ((exp - 7 + 127) << 23) | (man << 20));
}

// Round-to-nearest-even, saturating to ±448 (satfinite), NaN -> 0x7F. ±Inf saturates to ±448.
static inline uint8_t e4m3_encode(float x) {
  const uint32_t u = f32_bits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > kF32InfBits) return kE4M3Nan;
  const float ax = f32_from_bits(a);
  if (ax < 0.015625f) {  // below 2^-6: E4M3 subnormals are multiples of 2^-9
    const float m = ::nearbyintf(ax * 512.0f);  // exact scaling, then RNE
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(m));  // m == 8 is the code of 2^-6
  }
  // Normal: round the fp32 mantissa to 3 bits, ties to even.
  uint32_t r = a + 0x7FFFFu + ((a >> 20) & 1u);
  r &= 0xFFF00000u;
  if (r > 0x43E00000u) return static_cast<uint8_t>(sign | kE4M3MaxCode);  // above 448 (or Inf)
  const uint32_t exp = ((r >> 23) & 0xFF) - 127 + 7;
  const uint32_t man = (r >> 20) & 7;
  return static_cast<uint8_t>(sign | (exp << 3) | man);
}

// ---- INT4 / INT8 -----------------------------------------------------------------------------
static inline int8_t int_round_clamp(float v, float lo, float hi) {
  float r = ::nearbyintf(v);  // default rounding mode: to nearest, ties to even
  if (r < lo) r = lo;
  if (r > hi) r = hi;
  return static_cast<int8_t>(r);
}

// Two codes in one byte: element 2i in the low nibble, 2i+1 in the high nibble.
static inline uint8_t pack_nibbles(uint8_t lo, uint8_t hi) {
  return static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
}

static inline int8_t int4_from_nibble(uint8_t n) {
  return static_cast<int8_t>(static_cast<int8_t>(n << 4) >> 4);
}

// ---- NVFP4 tensor scale ----------------------------------------------------------------------
// G = 448·6 / amax_tensor. A tensor without a non-zero finite value (or one so tiny that G would
// overflow) gets G = 1: its blocks then quantize to zero codes, which is what they hold.
static inline float nvfp4_global_scale(float amax_tensor) {
  if (!(amax_tensor > 0.0f) || f32_bits(amax_tensor) >= kF32InfBits) return 1.0f;
  const float g = 2688.0f / amax_tensor;
  return f32_bits(g) >= kF32InfBits ? 1.0f : g;
}

}  // namespace svdq
