// AVX2 (+FMA, F16C) row quantizers: the kernels of formats.h with 256-bit vectors. Every result is
// bit-identical to quantize_portable.cpp: the per-element operations are the same IEEE operations
// (a true division for int4/int8/nvfp4, a multiplication by the exact power-of-two reciprocal for
// mxfp4, conversion in the current rounding mode where portable calls nearbyint), and the E2M1
// encoder is the comparison ladder of codecs.h.
//
// The block quantizers work on batches of 8 groups: the 8 group abs-maxes land in the lanes of one
// vector (a transposing max reduction), the 8 scales are computed with vector operations that
// repeat the scalar codecs of codecs.h exactly, and each group then takes its scale with one
// permute.
//
// This file is compiled with -mavx2 -mfma -mf16c (no AVX-512 instruction). Everything here has
// internal linkage and no std:: inline function (std::ldexp, std::fabs, ...) is called, so that no
// vague-linkage copy of a function compiled with AVX flags can be picked by the linker for the
// portable path.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "svdquant/formats.h"

namespace svdq {
namespace avx2 {
namespace {

constexpr uint32_t kNanBits = 0x7FC00000u;

// ---- loads, masks, reductions ----------------------------------------------------------------

inline __m256i splat(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }

// Mask of the first n lanes (n clamped to 0..8).
inline __m256i lane_mask(int64_t n) {
  const int c = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 8 floats of row `p` from offset e, zero past the row's end k (nothing past it is read).
inline __m256 load8(const float* p, int64_t e, int64_t k) {
  if (e + 8 <= k) return _mm256_loadu_ps(p + e);
  if (e >= k) return _mm256_setzero_ps();
  return _mm256_maskload_ps(p + e, lane_mask(k - e));
}

inline __m256i abs_bits(__m256 v) { return _mm256_and_si256(_mm256_castps_si256(v), splat(0x7FFFFFFF)); }

// Largest lane (all lanes non-negative int32).
inline uint32_t hmax_u31(__m256i m) {
  __m128i x = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  x = _mm_max_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
  x = _mm_max_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(x));
}

// Lane g = max over the lanes of v[g] (all lanes non-negative int32): a transposing reduction.
inline __m256i reduce8_max(const __m256i* v) {
  __m256i m[4];
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: [A02, B02, A13, B13]
    m[i] = _mm256_max_epi32(_mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  __m256i w[2];
  for (int i = 0; i < 2; ++i)  // per 128-bit lane: [A, B, C, D] partial maxes
    w[i] = _mm256_max_epi32(_mm256_unpacklo_epi64(m[2 * i], m[2 * i + 1]),
                            _mm256_unpackhi_epi64(m[2 * i], m[2 * i + 1]));
  return _mm256_max_epi32(_mm256_permute2x128_si256(w[0], w[1], 0x20),
                          _mm256_permute2x128_si256(w[0], w[1], 0x31));
}

inline __m256 lane_of(__m256 v, int j) { return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j)); }

inline __m256 as_ps(__m256i v) { return _mm256_castsi256_ps(v); }
inline __m256i as_si(__m256 v) { return _mm256_castps_si256(v); }
inline __m256i choose(__m256i mask, __m256i yes, __m256i no) { return _mm256_blendv_epi8(no, yes, mask); }

// The low bytes of the first n (1..8) int32 lanes, stored to p.
inline void store_low_bytes(uint8_t* p, __m256i v, int n) {
  const __m256i idx = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                       0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i b = _mm256_shuffle_epi8(v, idx);
  const __m128i x = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
  if (n >= 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), x);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), x);
    std::memcpy(p, tmp, static_cast<size_t>(n));
  }
}

// ---- vector codecs (exact vector forms of the codecs.h functions) -----------------------------

// E2M1 codes (0..15 in each int32 lane) of 8 values: the ladder of codecs.h on |v| plus the sign
// bit. NaN lanes give 0 (every ordered comparison is false), as the scalar encoder does; a lane
// with a non-zero magnitude is exactly a lane with |v| > 0.25, so "v < -0.25" is its sign.
inline __m256i e2m1_codes(__m256 v) {
  const __m256 a = _mm256_and_ps(v, as_ps(splat(0x7FFFFFFF)));
  const __m256i c1 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(0.25f), _CMP_GT_OQ));
  const __m256i c2 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(0.75f), _CMP_GE_OQ));
  const __m256i c3 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(1.25f), _CMP_GT_OQ));
  const __m256i c4 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(1.75f), _CMP_GE_OQ));
  const __m256i c5 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(2.5f), _CMP_GT_OQ));
  const __m256i c6 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(3.5f), _CMP_GE_OQ));
  const __m256i c7 = as_si(_mm256_cmp_ps(a, _mm256_set1_ps(5.0f), _CMP_GT_OQ));
  const __m256i neg = as_si(_mm256_cmp_ps(v, _mm256_set1_ps(-0.25f), _CMP_LT_OQ));
  const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(c1, c2), _mm256_add_epi32(c3, c4)),
                                       _mm256_add_epi32(_mm256_add_epi32(c5, c6), c7));
  const __m256i mag = _mm256_sub_epi32(_mm256_setzero_si256(), sum);  // each comparison is 0 or -1
  return _mm256_or_si256(mag, _mm256_and_si256(neg, _mm256_set1_epi32(8)));
}

// e8m0_scale_for_amax on the (finite, non-negative) abs-max bits m of 8 groups. With
// amax = 1.f·2^(E-127) (E the biased exponent, 0 for subnormals) the floor byte is E-2; `even`
// adds one when 1.f >= 1.75, `ceil` when 1.f > 1.5 (6·2^s < amax); the result is clamped at 0.
inline __m256i mx_scales(__m256i m, MxScaleRule rule) {
  const __m256i man = _mm256_and_si256(m, splat(0x7FFFFF));
  __m256i s = _mm256_sub_epi32(_mm256_srli_epi32(m, 23), splat(2));
  if (rule == MxScaleRule::Even) s = _mm256_sub_epi32(s, _mm256_cmpgt_epi32(man, splat(0x5FFFFF)));
  else if (rule == MxScaleRule::Ceil) s = _mm256_sub_epi32(s, _mm256_cmpgt_epi32(man, splat(0x400000)));
  return _mm256_max_epi32(s, _mm256_setzero_si256());  // m == 0 gives E-2 < 0 -> 0 as well
}

inline __m256 e8m0_values(__m256i b) {
  __m256i v = _mm256_slli_epi32(b, 23);
  v = choose(_mm256_cmpeq_epi32(b, _mm256_setzero_si256()), splat(0x00400000), v);
  v = choose(_mm256_cmpeq_epi32(b, splat(0xFF)), splat(kNanBits), v);
  return as_ps(v);
}

// e4m3_encode of 8 floats, one code per int32 lane. The subnormal branch rounds like nearbyint
// (current rounding mode) with cvtps; the normal branch is the integer rounding of codecs.h.
inline __m256i e4m3_codes(__m256 x) {
  const __m256i u = as_si(x);
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), splat(0x80));
  const __m256i a = _mm256_and_si256(u, splat(0x7FFFFFFF));
  const __m256i nan = _mm256_cmpgt_epi32(a, splat(kF32InfBits));
  const __m256i sub = _mm256_cmpgt_epi32(splat(0x3C800000), a);  // below 2^-6
  const __m256i msub = _mm256_cvtps_epi32(_mm256_mul_ps(as_ps(a), _mm256_set1_ps(512.0f)));
  // (Only NaN lanes, replaced below, can wrap past 2^31 here.)
  __m256i r = _mm256_add_epi32(a, _mm256_add_epi32(splat(0x7FFFF), _mm256_and_si256(_mm256_srli_epi32(a, 20), splat(1))));
  r = _mm256_and_si256(r, splat(0xFFF00000u));
  const __m256i sat = _mm256_cmpgt_epi32(r, splat(0x43E00000));
  const __m256i exp = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(r, 23), splat(0xFF)), splat(120));
  __m256i c = _mm256_or_si256(_mm256_slli_epi32(exp, 3), _mm256_and_si256(_mm256_srli_epi32(r, 20), splat(7)));
  c = choose(sat, splat(kE4M3MaxCode), c);
  c = choose(sub, msub, c);
  c = _mm256_or_si256(c, sign);
  return choose(nan, splat(kE4M3Nan), c);
}

// e4m3_decode of 8 code bytes (one per int32 lane, 0..255).
inline __m256 e4m3_values(__m256i b) {
  const __m256i exp = _mm256_and_si256(_mm256_srli_epi32(b, 3), splat(15));
  const __m256i man = _mm256_and_si256(b, splat(7));
  const __m256i norm = _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi32(exp, splat(120)), 23),
                                       _mm256_slli_epi32(man, 20));
  const __m256i subn = as_si(_mm256_mul_ps(_mm256_cvtepi32_ps(man), _mm256_set1_ps(0.001953125f)));  // exact
  __m256i v = choose(_mm256_cmpeq_epi32(exp, _mm256_setzero_si256()), subn, norm);
  v = _mm256_or_si256(v, _mm256_slli_epi32(_mm256_and_si256(b, splat(0x80)), 24));
  const __m256i nan = _mm256_cmpeq_epi32(_mm256_and_si256(b, splat(0x7F)), splat(0x7F));
  return as_ps(choose(nan, splat(kNanBits), v));
}

// ---- packing ---------------------------------------------------------------------------------

// 32 int8 lanes in element order from four vectors of 8 int32 (values within int8).
inline __m256i pack_i32x32_to_i8(__m256i q0, __m256i q1, __m256i q2, __m256i q3) {
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
  // dword 4L+j holds 4 elements of q_j's 128-bit lane L -> element order.
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 32 nibble codes (int8 lanes, low nibble used) -> 16 packed bytes, element 2i in the low nibble.
inline __m128i pack_nibbles32(__m256i b) {
  const __m256i w = _mm256_maddubs_epi16(_mm256_and_si256(b, _mm256_set1_epi8(0x0F)), _mm256_set1_epi16(0x1001));
  return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

// 16 E2M1 codes (two vectors of int32 in [0, 15]) -> 8 packed bytes (low 64 bits of the result).
inline __m128i pack_nibbles16(__m256i c0, __m256i c1) {
  const __m256i p = _mm256_packs_epi32(c0, c1);  // lanes: c0[0..3] c1[0..3] | c0[4..7] c1[4..7]
  const __m128i b16 = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  // b16 dwords: c0[0..3], c1[0..3], c0[4..7], c1[4..7] -> element order.
  const __m128i b = _mm_shuffle_epi32(b16, _MM_SHUFFLE(3, 1, 2, 0));
  const __m128i w = _mm_maddubs_epi16(b, _mm_set1_epi16(0x1001));
  return _mm_packus_epi16(w, w);
}

// Round (current mode, like nearbyint) and clamp to [lo, hi]; clamping first is equivalent since
// the bounds are integers and rounding is monotone.
inline __m256i round_clamp(__m256 v, __m256 lo, __m256 hi) {
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
}

// ---- int4 ------------------------------------------------------------------------------------

void int4_row(const float* xr, int64_t k, uint8_t* cr, float* sr) {
  const int64_t groups = padded_k(k, kInt4Group) / kInt4Group;
  const __m256 lo = _mm256_set1_ps(-8.0f), hi = _mm256_set1_ps(7.0f);
  for (int64_t g0 = 0; g0 < groups; g0 += 8) {
    const int nb = static_cast<int>(groups - g0 < 8 ? groups - g0 : 8);
    __m256i v[8];
    for (int j = 0; j < 8; ++j) {
      v[j] = _mm256_setzero_si256();
      if (j >= nb) continue;
      const int64_t e = (g0 + j) * kInt4Group;
      for (int h = 0; h < 8; ++h) v[j] = _mm256_max_epi32(v[j], abs_bits(load8(xr, e + 8 * h, k)));
    }
    const __m256i m = reduce8_max(v);
    const __m256i nonfinite = _mm256_cmpgt_epi32(m, splat(0x7F7FFFFF));
    __m256 scale = _mm256_div_ps(as_ps(m), _mm256_set1_ps(7.0f));
    scale = as_ps(choose(nonfinite, splat(kNanBits), as_si(scale)));
    _mm256_maskstore_ps(sr + g0, lane_mask(nb), scale);
    const unsigned skip = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_or_ps(as_ps(nonfinite), _mm256_cmp_ps(scale, _mm256_setzero_ps(), _CMP_EQ_OQ))));
    for (int j = 0; j < nb; ++j) {
      uint8_t* c = cr + (g0 + j) * (kInt4Group / 2);
      if ((skip >> j) & 1u) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), _mm256_setzero_si256());
        continue;
      }
      const __m256 s = lane_of(scale, j);
      const int64_t e = (g0 + j) * kInt4Group;
      __m256i q[8];
      for (int h = 0; h < 8; ++h) q[h] = round_clamp(_mm256_div_ps(load8(xr, e + 8 * h, k), s), lo, hi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c), pack_nibbles32(pack_i32x32_to_i8(q[0], q[1], q[2], q[3])));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 16), pack_nibbles32(pack_i32x32_to_i8(q[4], q[5], q[6], q[7])));
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
  for (int64_t g0 = 0; g0 < groups; g0 += 8) {
    const int nb = static_cast<int>(groups - g0 < 8 ? groups - g0 : 8);
    __m256i v[8];
    for (int j = 0; j < 8; ++j) {
      v[j] = _mm256_setzero_si256();
      if (j >= nb) continue;
      const int64_t e = (g0 + j) * kMxfp4Group;
      for (int h = 0; h < 4; ++h) v[j] = _mm256_max_epi32(v[j], abs_bits(load8(xr, e + 8 * h, k)));
    }
    const __m256i m = reduce8_max(v);
    const __m256i nonfinite = _mm256_cmpgt_epi32(m, splat(0x7F7FFFFF));
    const __m256i s = mx_scales(m, rule);
    store_low_bytes(sr + g0, choose(nonfinite, splat(kE8M0Nan), s), nb);
    // 2^(127-s) (s <= 253: a normal float); NaN for a non-finite group, whose codes are then 0.
    const __m256i invb = _mm256_slli_epi32(_mm256_sub_epi32(splat(254), s), 23);
    const __m256 inv = as_ps(choose(nonfinite, splat(kNanBits), invb));
    for (int j = 0; j < nb; ++j) {
      const __m256 f = lane_of(inv, j);
      const int64_t e = (g0 + j) * kMxfp4Group;
      __m256i q[4];
      for (int h = 0; h < 4; ++h) q[h] = e2m1_codes(_mm256_mul_ps(load8(xr, e + 8 * h, k), f));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cr + (g0 + j) * (kMxfp4Group / 2)),
                       pack_nibbles32(pack_i32x32_to_i8(q[0], q[1], q[2], q[3])));
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
  const __m256 gs = _mm256_set1_ps(global_scale);
  for (int64_t g0 = 0; g0 < groups; g0 += 8) {
    const int nb = static_cast<int>(groups - g0 < 8 ? groups - g0 : 8);
    __m256i v[8];
    for (int j = 0; j < 8; ++j) {
      v[j] = _mm256_setzero_si256();
      if (j >= nb) continue;
      const int64_t e = (g0 + j) * kNvfp4Group;
      v[j] = _mm256_max_epi32(abs_bits(load8(xr, e, k)), abs_bits(load8(xr, e + 8, k)));
    }
    const __m256i m = reduce8_max(v);
    const __m256i nonfinite = _mm256_cmpgt_epi32(m, splat(0x7F7FFFFF));
    // scale = e4m3_encode(G·amax/6), NaN code for a non-finite group.
    __m256i s = e4m3_codes(_mm256_div_ps(_mm256_mul_ps(gs, as_ps(m)), _mm256_set1_ps(6.0f)));
    s = choose(nonfinite, splat(kE4M3Nan), s);
    store_low_bytes(sr + g0, s, nb);
    // Step d = e4m3_decode(scale)/G; NaN where portable writes zero codes (non-finite group or a
    // zero scale), since NaN quotients encode to 0.
    const __m256 d0 = _mm256_div_ps(e4m3_values(s), gs);
    const __m256i skip = _mm256_or_si256(nonfinite, _mm256_cmpeq_epi32(s, _mm256_setzero_si256()));
    const __m256 d = as_ps(choose(skip, splat(kNanBits), as_si(d0)));
    for (int j = 0; j < nb; ++j) {
      const __m256 dj = lane_of(d, j);
      const int64_t e = (g0 + j) * kNvfp4Group;
      const __m256i c0 = e2m1_codes(_mm256_div_ps(load8(xr, e, k), dj));
      const __m256i c1 = e2m1_codes(_mm256_div_ps(load8(xr, e + 8, k), dj));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(cr + (g0 + j) * (kNvfp4Group / 2)), pack_nibbles16(c0, c1));
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
  __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_epi32(m0, abs_bits(_mm256_loadu_ps(x + i)));
    m1 = _mm256_max_epi32(m1, abs_bits(_mm256_loadu_ps(x + i + 8)));
    m2 = _mm256_max_epi32(m2, abs_bits(_mm256_loadu_ps(x + i + 16)));
    m3 = _mm256_max_epi32(m3, abs_bits(_mm256_loadu_ps(x + i + 24)));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_epi32(m0, abs_bits(_mm256_loadu_ps(x + i)));
  if (i < n) m1 = _mm256_max_epi32(m1, abs_bits(_mm256_maskload_ps(x + i, lane_mask(n - i))));
  return hmax_u31(_mm256_max_epi32(_mm256_max_epi32(m0, m1), _mm256_max_epi32(m2, m3)));
}

// 32 values / s -> 32 int8 codes.
inline __m256i int8_codes32(const float* p, __m256 s) {
  const __m256 lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
  const __m256i q0 = round_clamp(_mm256_div_ps(_mm256_loadu_ps(p), s), lo, hi);
  const __m256i q1 = round_clamp(_mm256_div_ps(_mm256_loadu_ps(p + 8), s), lo, hi);
  const __m256i q2 = round_clamp(_mm256_div_ps(_mm256_loadu_ps(p + 16), s), lo, hi);
  const __m256i q3 = round_clamp(_mm256_div_ps(_mm256_loadu_ps(p + 24), s), lo, hi);
  return pack_i32x32_to_i8(q0, q1, q2, q3);
}

void quantize_int8(const float* x, int64_t rows, int64_t k, int8_t* codes, float* scales) {
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
    const __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 32 <= k; i += 32)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(cr + i), int8_codes32(xr + i, s));
    if (i < k) {
      alignas(32) float buf[32] = {};
      alignas(32) int8_t out[32];
      const size_t n = static_cast<size_t>(k - i);
      std::memcpy(buf, xr + i, n * 4);
      _mm256_store_si256(reinterpret_cast<__m256i*>(out), int8_codes32(buf, s));
      std::memcpy(cr + i, out, n);
    }
  }
}

// ---- dequantization --------------------------------------------------------------------------

// 4 code bytes -> 8 int32 lanes, lane j holding nibble j in its low 4 bits (element order);
// lanes of even j also hold the rest of the byte above bit 3, odd lanes hold only the nibble.
inline __m256i spread_nibbles8(const uint8_t* c) {
  int32_t w;
  std::memcpy(&w, c, 4);
  const __m256i q = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(w));
  return _mm256_or_si256(q, _mm256_slli_epi64(q, 28));
}

inline void store_tail(float* out, __m256 v, int64_t n) {
  if (n >= 8) _mm256_storeu_ps(out, v);
  else _mm256_maskstore_ps(out, lane_mask(n), v);
}

// E2M1 values of 8 nibble lanes (low 4 bits of each int32 lane).
inline __m256 e2m1_values(__m256i t) {
  const __m256 mag = _mm256_permutevar8x32_ps(_mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f), t);
  const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(t, 28), _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  return _mm256_or_ps(mag, _mm256_castsi256_ps(sign));
}

// Scale bytes p[0..nb) (nb 1..8), one per int32 lane.
inline __m256i load_scale_bytes(const uint8_t* p, int nb) {
  uint64_t w = 0;
  if (nb >= 8) std::memcpy(&w, p, 8);
  else std::memcpy(&w, p, static_cast<size_t>(nb));
  return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(w)));
}

void dequantize_int4(const uint8_t* codes, const float* scales, int64_t rows, int64_t k, float* out) {
  if (k % kInt4Group == 0 && rows > 1) {  // rows are contiguous groups: one long row
    dequantize_int4(codes, scales, 1, rows * k, out);
    return;
  }
  const int64_t kp = padded_k(k, kInt4Group);
  const int64_t groups = kp / kInt4Group;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* cr = codes + r * (kp / 2);
    float* orow = out + r * k;
    for (int64_t g = 0; g < groups; ++g) {
      const __m256 s = _mm256_set1_ps(scales[r * groups + g]);
      const int64_t k0 = g * kInt4Group;
      const int64_t k1 = (k0 + kInt4Group < k) ? k0 + kInt4Group : k;
      for (int64_t i = k0; i < k1; i += 8) {
        const __m256i q = _mm256_srai_epi32(_mm256_slli_epi32(spread_nibbles8(cr + i / 2), 28), 28);
        store_tail(orow + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), s), k1 - i);
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
    for (int64_t g0 = 0; g0 < groups; g0 += 8) {
      const int nb = static_cast<int>(groups - g0 < 8 ? groups - g0 : 8);
      const __m256 sv = e8m0_values(load_scale_bytes(sr + g0, nb));
      for (int j = 0; j < nb; ++j) {
        const __m256 s = lane_of(sv, j);
        const int64_t k0 = (g0 + j) * kMxfp4Group;
        const int64_t k1 = (k0 + kMxfp4Group < k) ? k0 + kMxfp4Group : k;
        for (int64_t i = k0; i < k1; i += 8)
          store_tail(orow + i, _mm256_mul_ps(e2m1_values(spread_nibbles8(cr + i / 2)), s), k1 - i);
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
  const __m256 gs = _mm256_set1_ps(global_scale);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* cr = codes + r * (kp / 2);
    const uint8_t* sr = scales + r * groups;
    float* orow = out + r * k;
    for (int64_t g0 = 0; g0 < groups; g0 += 8) {
      const int nb = static_cast<int>(groups - g0 < 8 ? groups - g0 : 8);
      const __m256 sv = e4m3_values(load_scale_bytes(sr + g0, nb));
      for (int j = 0; j < nb; ++j) {
        const __m256 s = lane_of(sv, j);
        const int64_t k0 = (g0 + j) * kNvfp4Group;
        const int64_t k1 = (k0 + kNvfp4Group < k) ? k0 + kNvfp4Group : k;
        for (int64_t i = k0; i < k1; i += 8) {
          // q·scale is exact; the division by G rounds once, as in portable.
          const __m256 v = _mm256_mul_ps(e2m1_values(spread_nibbles8(cr + i / 2)), s);
          store_tail(orow + i, _mm256_div_ps(v, gs), k1 - i);
        }
      }
    }
  }
}

void dequantize_int8(const int8_t* codes, const float* scales, int64_t rows, int64_t k, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* cr = codes + r * k;
    float* orow = out + r * k;
    const __m256 s = _mm256_set1_ps(scales[r]);
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cr + i));
      const __m256 v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
      const __m256 v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
      _mm256_storeu_ps(orow + i, _mm256_mul_ps(v0, s));
      _mm256_storeu_ps(orow + i + 8, _mm256_mul_ps(v1, s));
    }
    if (i < k) {
      alignas(16) int8_t buf[16] = {};
      std::memcpy(buf, cr + i, static_cast<size_t>(k - i));
      const __m128i b = _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
      const __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), s);
      const __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))), s);
      store_tail(orow + i, v0, k - i);
      if (k - i > 8) store_tail(orow + i + 8, v1, k - i - 8);
    }
  }
}

// ---- whole-array scans -----------------------------------------------------------------------

// Abs bits of the finite lanes, 0 for NaN/Inf.
inline __m256i finite_abs(__m256 v) {
  const __m256i a = abs_bits(v);
  return _mm256_and_si256(a, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(kF32InfBits)), a));
}

float amax_finite(const float* x, int64_t n) {
  __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_epi32(m0, finite_abs(_mm256_loadu_ps(x + i)));
    m1 = _mm256_max_epi32(m1, finite_abs(_mm256_loadu_ps(x + i + 8)));
    m2 = _mm256_max_epi32(m2, finite_abs(_mm256_loadu_ps(x + i + 16)));
    m3 = _mm256_max_epi32(m3, finite_abs(_mm256_loadu_ps(x + i + 24)));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_epi32(m0, finite_abs(_mm256_loadu_ps(x + i)));
  if (i < n) m1 = _mm256_max_epi32(m1, finite_abs(_mm256_maskload_ps(x + i, lane_mask(n - i))));
  return f32_from_bits(hmax_u31(_mm256_max_epi32(_mm256_max_epi32(m0, m1), _mm256_max_epi32(m2, m3))));
}

// Lanes whose abs bits are Inf or NaN.
inline __m256i nonfinite_lanes(__m256 v) {
  return _mm256_cmpgt_epi32(abs_bits(v), _mm256_set1_epi32(0x7F7FFFFF));
}

inline int first_lane(__m256i m) {
  return __builtin_ctz(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(m))));
}

int64_t find_nonfinite(const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a0 = nonfinite_lanes(_mm256_loadu_ps(x + i));
    const __m256i a1 = nonfinite_lanes(_mm256_loadu_ps(x + i + 8));
    const __m256i a2 = nonfinite_lanes(_mm256_loadu_ps(x + i + 16));
    const __m256i a3 = nonfinite_lanes(_mm256_loadu_ps(x + i + 24));
    const __m256i any = _mm256_or_si256(_mm256_or_si256(a0, a1), _mm256_or_si256(a2, a3));
    if (!_mm256_testz_si256(any, any)) {
      if (!_mm256_testz_si256(a0, a0)) return i + first_lane(a0);
      if (!_mm256_testz_si256(a1, a1)) return i + 8 + first_lane(a1);
      if (!_mm256_testz_si256(a2, a2)) return i + 16 + first_lane(a2);
      return i + 24 + first_lane(a3);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256i a = nonfinite_lanes(_mm256_loadu_ps(x + i));
    if (!_mm256_testz_si256(a, a)) return i + first_lane(a);
  }
  if (i < n) {
    // Masked-off lanes read as +0 (finite).
    const __m256i a = nonfinite_lanes(_mm256_maskload_ps(x + i, lane_mask(n - i)));
    if (!_mm256_testz_si256(a, a)) return i + first_lane(a);
  }
  return -1;
}

}  // namespace

const FormatKernels kFormatKernels = {
    quantize_int4,   quantize_mxfp4,   quantize_nvfp4,   quantize_int8,
    dequantize_int4, dequantize_mxfp4, dequantize_nvfp4, dequantize_int8,
    amax_finite,     find_nonfinite,
};

}  // namespace avx2
}  // namespace svdq
