// AVX-512 (F, BW, VL, DQ, VNNI) row quantizers: the kernels of formats.h with 512-bit vectors.
// Every result is bit-identical to quantize_portable.cpp: the per-element operations are the same
// IEEE operations (a true division for int4/int8/nvfp4, a multiplication by the exact power-of-two
// reciprocal for mxfp4, conversion in the current rounding mode where portable calls nearbyint),
// and the E2M1 encoder gives the codes of the comparison ladder of codecs.h (as a table lookup).
//
// The block quantizers work on batches of 16 groups: the 16 group abs-maxes land in the lanes of
// one vector (a transposing max reduction), the 16 scales are computed with vector operations that
// repeat the scalar codecs exactly, and each group then takes its scale with one permute.
//
// This file is compiled with -mavx2 -mfma -mf16c -mavx512{f,bw,vl,dq,vnni}. Everything here has
// internal linkage and no std:: inline function (std::ldexp, std::fabs, ...) is called, so that no
// vague-linkage copy of a function compiled with AVX-512 flags can be picked by the linker for the
// portable path.

// GCC 12 flags the deliberately self-initialised _mm512_undefined_*() of its own headers as
// (maybe-)uninitialized once inlined (a known false positive); silence it for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstdint>
#include <cstring>

#include "svdquant/formats.h"

namespace svdq {
namespace avx512 {
namespace {

constexpr uint32_t kNanBits = 0x7FC00000u;

// ---- loads and masks -------------------------------------------------------------------------

inline __mmask16 mask16(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return 0xFFFF;
  return static_cast<__mmask16>((1u << n) - 1u);
}

// 16 floats of row `p` from offset e, zero past the row's end k (nothing past it is read).
inline __m512 load16(const float* p, int64_t e, int64_t k) {
  if (e + 16 <= k) return _mm512_loadu_ps(p + e);
  if (e >= k) return _mm512_setzero_ps();
  return _mm512_maskz_loadu_ps(mask16(k - e), p + e);
}

inline __m512i abs_bits(__m512 v) {
  return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
}

// Lane g = max over the lanes of v[g] (all lanes non-negative int32): a transposing reduction.
inline __m512i reduce16_max(const __m512i* v) {
  __m512i m[8];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [A02, B02, A13, B13]
    m[i] = _mm512_max_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  __m512i w[4];
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: [A, B, C, D] partial maxes
    w[i] = _mm512_max_epi32(_mm512_unpacklo_epi64(m[2 * i], m[2 * i + 1]),
                            _mm512_unpackhi_epi64(m[2 * i], m[2 * i + 1]));
  const __m512i x0 = _mm512_max_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x88),
                                      _mm512_shuffle_i32x4(w[0], w[1], 0xDD));
  const __m512i x1 = _mm512_max_epi32(_mm512_shuffle_i32x4(w[2], w[3], 0x88),
                                      _mm512_shuffle_i32x4(w[2], w[3], 0xDD));
  return _mm512_max_epi32(_mm512_shuffle_i32x4(x0, x1, 0x88), _mm512_shuffle_i32x4(x0, x1, 0xDD));
}

inline uint32_t hmax_u31(__m512i m) {
  __m256i y = _mm256_max_epi32(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
  __m128i x = _mm_max_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
  x = _mm_max_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
  x = _mm_max_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(x));
}

inline __m512 lane_of(__m512 v, int j) { return _mm512_permutexvar_ps(_mm512_set1_epi32(j), v); }

// ---- vector codecs (exact vector forms of the codecs.h functions) -----------------------------

// E2M1 codes (0..15 per int32 lane) of 16 values: the ladder of codecs.h, evaluated as a table
// lookup. Every ladder threshold (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5) has only the top two
// mantissa bits possibly set, so with key = |v|bits >> 21 (exponent and top two mantissa bits) the
// count of thresholds passed depends only on the key and, for the strict ones (0.25, 1.25, 2.5, 5),
// on whether any lower bit is set (|v| > T rather than == T). Keys below 499 (|v| < 0.21875) give
// 0, keys from 518 (|v| >= 6, Inf) give 7. The table entry for key 499 + i holds the count for
// "lower bits zero" in bits 0-3 and for "lower bits non-zero" in bits 4-7. NaN lanes give 0, as
// in the scalar encoder (every comparison false); a lane with a non-zero magnitude is exactly one
// with |v| > 0.25, so "v < -0.25" is its sign.
inline __m512i e2m1_codes(__m512 v) {
  const __m512i a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
  // idx = clamp(key - 499, 0, 19); the 16-bit saturating subtract is exact since key < 2^10.
  const __m512i idx = _mm512_min_epu32(_mm512_subs_epu16(_mm512_srli_epi32(a, 21), _mm512_set1_epi32(499)),
                                       _mm512_set1_epi32(19));
  const __m512i t0 = _mm512_setr_epi32(0x00, 0x10, 0x11, 0x11, 0x11, 0x11, 0x11, 0x22,  // keys 499..506
                                       0x22, 0x22, 0x32, 0x33, 0x44, 0x44, 0x54, 0x55);  // keys 507..514
  const __m512i t1 = _mm512_setr_epi32(0x66, 0x66, 0x76, 0x77, 0, 0, 0, 0,             // keys 515..518
                                       0, 0, 0, 0, 0, 0, 0, 0);
  __m512i c = _mm512_permutex2var_epi32(t0, idx, t1);
  const __mmask16 low_bits = _mm512_test_epi32_mask(a, _mm512_set1_epi32(0x1FFFFF));
  c = _mm512_mask_srli_epi32(c, low_bits, c, 4);
  const __mmask16 ordered = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
  c = _mm512_maskz_and_epi32(ordered, c, _mm512_set1_epi32(7));
  return _mm512_mask_or_epi32(c, _mm512_cmp_ps_mask(v, _mm512_set1_ps(-0.25f), _CMP_LT_OQ), c,
                              _mm512_set1_epi32(8));
}

// e8m0_scale_for_amax on the (finite, non-negative) abs-max bits m of 16 groups. With
// amax = 1.f·2^(E-127) (E the biased exponent, 0 for subnormals) the floor byte is E-2; `even`
// adds one when 1.f >= 1.75, `ceil` when 1.f > 1.5 (6·2^s < amax); the result is clamped at 0.
inline __m512i mx_scales(__m512i m, MxScaleRule rule) {
  const __m512i man = _mm512_and_si512(m, _mm512_set1_epi32(0x7FFFFF));
  __m512i s = _mm512_sub_epi32(_mm512_srli_epi32(m, 23), _mm512_set1_epi32(2));
  if (rule == MxScaleRule::Even) {
    const __mmask16 up = _mm512_cmpge_epu32_mask(man, _mm512_set1_epi32(0x600000));
    s = _mm512_mask_add_epi32(s, up, s, _mm512_set1_epi32(1));
  } else if (rule == MxScaleRule::Ceil) {
    const __mmask16 up = _mm512_cmpgt_epu32_mask(man, _mm512_set1_epi32(0x400000));
    s = _mm512_mask_add_epi32(s, up, s, _mm512_set1_epi32(1));
  }
  return _mm512_max_epi32(s, _mm512_setzero_si512());  // m == 0 gives E-2 < 0 -> 0 as well
}

inline __m512 e8m0_values(__m512i b) {
  __m512i v = _mm512_slli_epi32(b, 23);
  v = _mm512_mask_mov_epi32(v, _mm512_cmpeq_epi32_mask(b, _mm512_setzero_si512()),
                            _mm512_set1_epi32(0x00400000));
  v = _mm512_mask_mov_epi32(v, _mm512_cmpeq_epi32_mask(b, _mm512_set1_epi32(0xFF)),
                            _mm512_set1_epi32(static_cast<int>(kNanBits)));
  return _mm512_castsi512_ps(v);
}

// e4m3_encode of 16 floats, one code per int32 lane. The subnormal branch rounds like nearbyint
// (current rounding mode) with cvtps; the normal branch is the integer rounding of codecs.h.
inline __m512i e4m3_codes(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(static_cast<int>(kF32InfBits)));
  const __mmask16 sub = _mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(0x3C800000));  // < 2^-6
  const __m512i msub =
      _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(512.0f)));
  __m512i r = _mm512_add_epi32(a, _mm512_add_epi32(_mm512_set1_epi32(0x7FFFF),
                                                   _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1))));
  r = _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFF00000u)));
  const __mmask16 sat = _mm512_cmpgt_epu32_mask(r, _mm512_set1_epi32(0x43E00000));
  const __m512i exp = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(r, 23), _mm512_set1_epi32(0xFF)),
                                       _mm512_set1_epi32(120));
  __m512i c = _mm512_or_si512(_mm512_slli_epi32(exp, 3),
                              _mm512_and_si512(_mm512_srli_epi32(r, 20), _mm512_set1_epi32(7)));
  c = _mm512_mask_mov_epi32(c, sat, _mm512_set1_epi32(kE4M3MaxCode));
  c = _mm512_mask_mov_epi32(c, sub, msub);
  c = _mm512_or_si512(c, sign);
  return _mm512_mask_mov_epi32(c, nan, _mm512_set1_epi32(kE4M3Nan));
}

// e4m3_decode of 16 code bytes (one per int32 lane, 0..255).
inline __m512 e4m3_values(__m512i b) {
  const __m512i exp = _mm512_and_si512(_mm512_srli_epi32(b, 3), _mm512_set1_epi32(15));
  const __m512i man = _mm512_and_si512(b, _mm512_set1_epi32(7));
  const __m512i norm = _mm512_or_si512(_mm512_slli_epi32(_mm512_add_epi32(exp, _mm512_set1_epi32(120)), 23),
                                       _mm512_slli_epi32(man, 20));
  const __m512i subn = _mm512_castps_si512(
      _mm512_mul_ps(_mm512_cvtepi32_ps(man), _mm512_set1_ps(0.001953125f)));  // man·2^-9, exact
  __m512i v = _mm512_mask_mov_epi32(norm, _mm512_cmpeq_epi32_mask(exp, _mm512_setzero_si512()), subn);
  v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24));
  const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7F)),
                                                _mm512_set1_epi32(0x7F));
  return _mm512_castsi512_ps(_mm512_mask_mov_epi32(v, nan, _mm512_set1_epi32(static_cast<int>(kNanBits))));
}

// ---- packing ---------------------------------------------------------------------------------

// 64 int4 codes (four vectors of int32 in [-8, 7]) -> 32 bytes, element 2i in the low nibble.
inline __m256i pack_int4x64(__m512i q0, __m512i q1, __m512i q2, __m512i q3) {
  __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
  // dword 4L+j holds 4 elements of q_j's 128-bit lane L -> element order.
  b = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
  const __m512i w = _mm512_maddubs_epi16(_mm512_and_si512(b, _mm512_set1_epi8(0x0F)), _mm512_set1_epi16(0x1001));
  return _mm512_cvtepi16_epi8(w);
}

// 32 E2M1 codes (two vectors of int32 in [0, 15]) -> 16 bytes.
inline __m128i pack_fp4x32(__m512i c0, __m512i c1) {
  const __m512i p = _mm512_packs_epi32(c0, c1);  // 128-bit lane L: c0[4L..4L+3], c1[4L..4L+3]
  const __m512i d = _mm512_or_si512(p, _mm512_srli_epi32(p, 12));  // low byte: lo | hi << 4
  const __m512i o = _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15), d);
  return _mm512_cvtepi32_epi8(o);
}

// 16 E2M1 codes (int32 in [0, 15]) -> 8 bytes (low half of the result).
inline __m128i pack_fp4x16(__m512i c) {
  return _mm512_cvtepi64_epi8(_mm512_or_si512(c, _mm512_srli_epi64(c, 28)));
}

// ---- int4 ------------------------------------------------------------------------------------

void int4_row(const float* xr, int64_t k, uint8_t* cr, float* sr) {
  const int64_t groups = padded_k(k, kInt4Group) / kInt4Group;
  const __m512 lo = _mm512_set1_ps(-8.0f), hi = _mm512_set1_ps(7.0f);
  for (int64_t g0 = 0; g0 < groups; g0 += 16) {
    const int nb = static_cast<int>(groups - g0 < 16 ? groups - g0 : 16);
    __m512i v[16];
    for (int j = 0; j < 16; ++j) {
      v[j] = _mm512_setzero_si512();
      if (j >= nb) continue;
      const int64_t e = (g0 + j) * kInt4Group;
      for (int h = 0; h < 4; ++h) v[j] = _mm512_max_epi32(v[j], abs_bits(load16(xr, e + 16 * h, k)));
    }
    const __m512i m = reduce16_max(v);
    const __mmask16 nonfinite = _mm512_cmpge_epu32_mask(m, _mm512_set1_epi32(static_cast<int>(kF32InfBits)));
    __m512 scale = _mm512_div_ps(_mm512_castsi512_ps(m), _mm512_set1_ps(7.0f));
    scale = _mm512_mask_mov_ps(scale, nonfinite, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kNanBits))));
    _mm512_mask_storeu_ps(sr + g0, mask16(nb), scale);
    const unsigned skip = nonfinite | _mm512_cmpeq_ps_mask(scale, _mm512_setzero_ps());
    for (int j = 0; j < nb; ++j) {
      uint8_t* c = cr + (g0 + j) * (kInt4Group / 2);
      if ((skip >> j) & 1u) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), _mm256_setzero_si256());
        continue;
      }
      const __m512 s = lane_of(scale, j);
      const int64_t e = (g0 + j) * kInt4Group;
      __m512i q[4];
      for (int h = 0; h < 4; ++h) {
        const __m512 y = _mm512_div_ps(load16(xr, e + 16 * h, k), s);
        q[h] = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(y, lo), hi));  // clamp, then round
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), pack_int4x64(q[0], q[1], q[2], q[3]));
    }
  }
}

void quantize_int4(const float* x, int64_t rows, int64_t k, uint8_t* codes, float* scales) {
  if (k % kInt4Group == 0) {  // rows are contiguous groups: one long row
    int4_row(x, rows * k, codes, scales);
    return;
  }
  const int64_t kp = padded_k(k, kInt4Group);
  for (int64_t r = 0; r < rows; ++r) int4_row(x + r * k, k, codes + r * (kp / 2), scales + r * (kp / kInt4Group));
}

// ---- mxfp4 -----------------------------------------------------------------------------------

void mxfp4_row(const float* xr, int64_t k, uint8_t* cr, uint8_t* sr, MxScaleRule rule) {
  const int64_t groups = padded_k(k, kMxfp4Group) / kMxfp4Group;
  for (int64_t g0 = 0; g0 < groups; g0 += 16) {
    const int nb = static_cast<int>(groups - g0 < 16 ? groups - g0 : 16);
    __m512i v[16];
    for (int j = 0; j < 16; ++j) {
      v[j] = _mm512_setzero_si512();
      if (j >= nb) continue;
      const int64_t e = (g0 + j) * kMxfp4Group;
      v[j] = _mm512_max_epi32(abs_bits(load16(xr, e, k)), abs_bits(load16(xr, e + 16, k)));
    }
    const __m512i m = reduce16_max(v);
    const __mmask16 nonfinite = _mm512_cmpge_epu32_mask(m, _mm512_set1_epi32(static_cast<int>(kF32InfBits)));
    const __m512i s = mx_scales(m, rule);
    _mm512_mask_cvtepi32_storeu_epi8(sr + g0, mask16(nb),
                                     _mm512_mask_mov_epi32(s, nonfinite, _mm512_set1_epi32(kE8M0Nan)));
    // 2^(127-s) (s <= 253: a normal float); NaN for a non-finite group, whose codes are then 0.
    __m512i invb = _mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(254), s), 23);
    invb = _mm512_mask_mov_epi32(invb, nonfinite, _mm512_set1_epi32(static_cast<int>(kNanBits)));
    const __m512 inv = _mm512_castsi512_ps(invb);
    for (int j = 0; j < nb; ++j) {
      const __m512 f = lane_of(inv, j);
      const int64_t e = (g0 + j) * kMxfp4Group;
      const __m512i c0 = e2m1_codes(_mm512_mul_ps(load16(xr, e, k), f));
      const __m512i c1 = e2m1_codes(_mm512_mul_ps(load16(xr, e + 16, k), f));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cr + (g0 + j) * (kMxfp4Group / 2)), pack_fp4x32(c0, c1));
    }
  }
}

void quantize_mxfp4(const float* x, int64_t rows, int64_t k, uint8_t* codes, uint8_t* scales,
                    MxScaleRule rule) {
  if (k % kMxfp4Group == 0) {
    mxfp4_row(x, rows * k, codes, scales, rule);
    return;
  }
  const int64_t kp = padded_k(k, kMxfp4Group);
  for (int64_t r = 0; r < rows; ++r)
    mxfp4_row(x + r * k, k, codes + r * (kp / 2), scales + r * (kp / kMxfp4Group), rule);
}

// ---- nvfp4 -----------------------------------------------------------------------------------

void nvfp4_row(const float* xr, int64_t k, float global_scale, uint8_t* cr, uint8_t* sr) {
  const int64_t groups = padded_k(k, kNvfp4Group) / kNvfp4Group;
  const __m512 gs = _mm512_set1_ps(global_scale);
  for (int64_t g0 = 0; g0 < groups; g0 += 16) {
    const int nb = static_cast<int>(groups - g0 < 16 ? groups - g0 : 16);
    __m512i v[16];
    for (int j = 0; j < 16; ++j)
      v[j] = j < nb ? abs_bits(load16(xr, (g0 + j) * kNvfp4Group, k)) : _mm512_setzero_si512();
    const __m512i m = reduce16_max(v);
    const __mmask16 nonfinite = _mm512_cmpge_epu32_mask(m, _mm512_set1_epi32(static_cast<int>(kF32InfBits)));
    // scale = e4m3_encode(G·amax/6), NaN code for a non-finite group.
    __m512i s = e4m3_codes(_mm512_div_ps(_mm512_mul_ps(gs, _mm512_castsi512_ps(m)), _mm512_set1_ps(6.0f)));
    s = _mm512_mask_mov_epi32(s, nonfinite, _mm512_set1_epi32(kE4M3Nan));
    _mm512_mask_cvtepi32_storeu_epi8(sr + g0, mask16(nb), s);
    // Step d = e4m3_decode(scale)/G; NaN where portable writes zero codes (non-finite group or a
    // zero scale), since NaN quotients encode to 0.
    __m512 d = _mm512_div_ps(e4m3_values(s), gs);
    const __mmask16 skip = nonfinite | _mm512_cmpeq_epi32_mask(s, _mm512_setzero_si512());
    d = _mm512_mask_mov_ps(d, skip, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kNanBits))));
    for (int j = 0; j < nb; ++j) {
      const __m512i c = e2m1_codes(_mm512_div_ps(load16(xr, (g0 + j) * kNvfp4Group, k), lane_of(d, j)));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(cr + (g0 + j) * (kNvfp4Group / 2)), pack_fp4x16(c));
    }
  }
}

void quantize_nvfp4(const float* x, int64_t rows, int64_t k, float global_scale, uint8_t* codes,
                    uint8_t* scales) {
  if (k % kNvfp4Group == 0) {
    nvfp4_row(x, rows * k, global_scale, codes, scales);
    return;
  }
  const int64_t kp = padded_k(k, kNvfp4Group);
  for (int64_t r = 0; r < rows; ++r)
    nvfp4_row(x + r * k, k, global_scale, codes + r * (kp / 2), scales + r * (kp / kNvfp4Group));
}

// ---- int8 ------------------------------------------------------------------------------------

// Integer max of the abs bits of x[0..n) (any n).
uint32_t row_max_bits(const float* x, int64_t n) {
  __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    m0 = _mm512_max_epi32(m0, abs_bits(_mm512_loadu_ps(x + i)));
    m1 = _mm512_max_epi32(m1, abs_bits(_mm512_loadu_ps(x + i + 16)));
    m2 = _mm512_max_epi32(m2, abs_bits(_mm512_loadu_ps(x + i + 32)));
    m3 = _mm512_max_epi32(m3, abs_bits(_mm512_loadu_ps(x + i + 48)));
  }
  for (; i < n; i += 16) m0 = _mm512_max_epi32(m0, abs_bits(load16(x, i, n)));
  return hmax_u31(_mm512_max_epi32(_mm512_max_epi32(m0, m1), _mm512_max_epi32(m2, m3)));
}

void quantize_int8(const float* x, int64_t rows, int64_t k, int8_t* codes, float* scales) {
  const __m512 lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    int8_t* cr = codes + r * k;
    const uint32_t mb = row_max_bits(xr, k);
    if (mb >= kF32InfBits) {
      scales[r] = f32_from_bits(kNanBits);
      std::memset(cr, 0, static_cast<size_t>(k));
      continue;
    }
    const float scale = f32_from_bits(mb) / 127.0f;
    scales[r] = scale;
    if (scale == 0.0f) {
      std::memset(cr, 0, static_cast<size_t>(k));
      continue;
    }
    const __m512 s = _mm512_set1_ps(scale);
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
      __m512i q[4];
      for (int h = 0; h < 4; ++h) {
        const __m512 y = _mm512_div_ps(_mm512_loadu_ps(xr + i + 16 * h), s);
        q[h] = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(y, lo), hi));
      }
      __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
      b = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
      _mm512_storeu_si512(cr + i, b);
    }
    for (; i < k; i += 16) {
      const __m512 y = _mm512_div_ps(load16(xr, i, k), s);
      const __m512i q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(y, lo), hi));
      _mm512_mask_cvtepi32_storeu_epi8(cr + i, mask16(k - i), q);
    }
  }
}

// ---- dequantization --------------------------------------------------------------------------

// 8 code bytes -> 16 int32 lanes, lane j holding nibble j in its low 4 bits (element order); even
// lanes also hold the rest of their byte above bit 3, odd lanes hold only the nibble.
inline __m512i spread_nibbles16(const uint8_t* c) {
  const __m512i q = _mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
  return _mm512_or_si512(q, _mm512_slli_epi64(q, 28));
}

inline void store16(float* out, int64_t e, int64_t k, __m512 v) {
  if (e + 16 <= k) _mm512_storeu_ps(out + e, v);
  else _mm512_mask_storeu_ps(out + e, mask16(k - e), v);
}

inline __m512 e2m1_values(__m512i t) {
  const __m512 lut = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,  //
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
  return _mm512_permutexvar_ps(t, lut);  // uses the low 4 bits of each index
}

void dequantize_int4(const uint8_t* codes, const float* scales, int64_t rows, int64_t k, float* out) {
  if (k % kInt4Group == 0 && rows > 1) {
    dequantize_int4(codes, scales, 1, rows * k, out);
    return;
  }
  const int64_t kp = padded_k(k, kInt4Group);
  const int64_t groups = kp / kInt4Group;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* cr = codes + r * (kp / 2);
    float* orow = out + r * k;
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 s = _mm512_set1_ps(scales[r * groups + g]);
      for (int64_t e = g * kInt4Group; e < (g + 1) * kInt4Group && e < k; e += 16) {
        const __m512i q = _mm512_srai_epi32(_mm512_slli_epi32(spread_nibbles16(cr + e / 2), 28), 28);
        store16(orow, e, k, _mm512_mul_ps(_mm512_cvtepi32_ps(q), s));
      }
    }
  }
}

void dequantize_mxfp4(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k, float* out) {
  if (k % kMxfp4Group == 0 && rows > 1) {
    dequantize_mxfp4(codes, scales, 1, rows * k, out);
    return;
  }
  const int64_t kp = padded_k(k, kMxfp4Group);
  const int64_t groups = kp / kMxfp4Group;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* cr = codes + r * (kp / 2);
    const uint8_t* sr = scales + r * groups;
    float* orow = out + r * k;
    for (int64_t g0 = 0; g0 < groups; g0 += 16) {
      const int nb = static_cast<int>(groups - g0 < 16 ? groups - g0 : 16);
      const __m512 sv = e8m0_values(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask16(nb), sr + g0)));
      for (int j = 0; j < nb; ++j) {
        const __m512 s = lane_of(sv, j);
        const int64_t e = (g0 + j) * kMxfp4Group;
        store16(orow, e, k, _mm512_mul_ps(e2m1_values(spread_nibbles16(cr + e / 2)), s));
        if (e + 16 < k) store16(orow, e + 16, k, _mm512_mul_ps(e2m1_values(spread_nibbles16(cr + e / 2 + 8)), s));
      }
    }
  }
}

void dequantize_nvfp4(const uint8_t* codes, const uint8_t* scales, float global_scale, int64_t rows,
                      int64_t k, float* out) {
  if (k % kNvfp4Group == 0 && rows > 1) {
    dequantize_nvfp4(codes, scales, global_scale, 1, rows * k, out);
    return;
  }
  const int64_t kp = padded_k(k, kNvfp4Group);
  const int64_t groups = kp / kNvfp4Group;
  const __m512 gs = _mm512_set1_ps(global_scale);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* cr = codes + r * (kp / 2);
    const uint8_t* sr = scales + r * groups;
    float* orow = out + r * k;
    for (int64_t g0 = 0; g0 < groups; g0 += 16) {
      const int nb = static_cast<int>(groups - g0 < 16 ? groups - g0 : 16);
      const __m512 sv = e4m3_values(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask16(nb), sr + g0)));
      for (int j = 0; j < nb; ++j) {
        const int64_t e = (g0 + j) * kNvfp4Group;
        // q·scale is exact; the division by G rounds once, as in portable.
        const __m512 v = _mm512_mul_ps(e2m1_values(spread_nibbles16(cr + e / 2)), lane_of(sv, j));
        store16(orow, e, k, _mm512_div_ps(v, gs));
      }
    }
  }
}

void dequantize_int8(const int8_t* codes, const float* scales, int64_t rows, int64_t k, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* cr = codes + r * k;
    float* orow = out + r * k;
    const __m512 s = _mm512_set1_ps(scales[r]);
    for (int64_t i = 0; i < k; i += 16) {
      const __m128i b = _mm_maskz_loadu_epi8(mask16(k - i), cr + i);
      store16(orow, i, k, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), s));
    }
  }
}

// ---- whole-array scans -----------------------------------------------------------------------

// Abs bits of the finite lanes, 0 for NaN/Inf.
inline __m512i finite_abs(__m512 v) {
  const __m512i a = abs_bits(v);
  return _mm512_maskz_mov_epi32(_mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(static_cast<int>(kF32InfBits))), a);
}

float amax_finite(const float* x, int64_t n) {
  __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    m0 = _mm512_max_epi32(m0, finite_abs(_mm512_loadu_ps(x + i)));
    m1 = _mm512_max_epi32(m1, finite_abs(_mm512_loadu_ps(x + i + 16)));
    m2 = _mm512_max_epi32(m2, finite_abs(_mm512_loadu_ps(x + i + 32)));
    m3 = _mm512_max_epi32(m3, finite_abs(_mm512_loadu_ps(x + i + 48)));
  }
  for (; i < n; i += 16) m0 = _mm512_max_epi32(m0, finite_abs(load16(x, i, n)));
  return f32_from_bits(hmax_u31(_mm512_max_epi32(_mm512_max_epi32(m0, m1), _mm512_max_epi32(m2, m3))));
}

inline __mmask16 nonfinite_lanes(__m512 v) {
  return _mm512_cmpgt_epu32_mask(abs_bits(v), _mm512_set1_epi32(0x7F7FFFFF));
}

int64_t find_nonfinite(const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __mmask16 a0 = nonfinite_lanes(_mm512_loadu_ps(x + i));
    const __mmask16 a1 = nonfinite_lanes(_mm512_loadu_ps(x + i + 16));
    const __mmask16 a2 = nonfinite_lanes(_mm512_loadu_ps(x + i + 32));
    const __mmask16 a3 = nonfinite_lanes(_mm512_loadu_ps(x + i + 48));
    if ((a0 | a1 | a2 | a3) != 0) {
      const uint64_t all = static_cast<uint64_t>(a0) | (static_cast<uint64_t>(a1) << 16) |
                           (static_cast<uint64_t>(a2) << 32) | (static_cast<uint64_t>(a3) << 48);
      return i + __builtin_ctzll(all);
    }
  }
  for (; i < n; i += 16) {  // masked-off lanes read as +0 (finite)
    const __mmask16 a = nonfinite_lanes(load16(x, i, n));
    if (a != 0) return i + __builtin_ctz(a);
  }
  return -1;
}

}  // namespace

const FormatKernels kFormatKernels = {
    quantize_int4,   quantize_mxfp4,   quantize_nvfp4,   quantize_int8,
    dequantize_int4, dequantize_mxfp4, dequantize_nvfp4, dequantize_int8,
    amax_finite,     find_nonfinite,
};

}  // namespace avx512
}  // namespace svdq
