// AVX-512 (F, BW, VL, DQ, VNNI) low-bit layer kernels (lowbit.h). Bit-identical to
// lowbit_portable.cpp: the same integer block sums (vpdpbusd on u8 weights = code + offset and s8
// activation codes, the offset removed by starting each group's sum at −offset·Σq_x), and the same
// fp32 operations in the same order (cvt, mul, fma per group; vscalefps + add for mxfp4, which
// rounds I·2^e once exactly like the portable double-precision product).
//
// GEMM tiles: kLowbitMr (6) token rows × kLowbitNv (2) panels of 16 columns, with the 12 int32 sums
// and the 12 fp32 accumulators in registers (assembly). Output columns are lanes, so an
// activation's 4 codes are broadcast (one dword) and each weight vector holds 16 columns × 4 k.
//
// This file is compiled with -mavx2 -mfma -mf16c -mavx512{f,bw,vl,dq,vnni}; everything has internal
// linkage and no vague-linkage inline function is used (codecs.h explains why).
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

#include "svdquant/amx.h"
#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/lowbit.h"

namespace svdq {
namespace avx512 {
namespace {

constexpr int kMr = kLowbitMr;
// Up to this many token rows the GEMM streams the packed weights (expanded in registers) in
// passes of 8 rows instead of expanding them into the scratch buffer.
constexpr int64_t kGemvRows = 16;

inline __mmask16 mask16(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return 0xFFFF;
  return static_cast<__mmask16>((1u << n) - 1u);
}

inline __m512i bcast_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// 2·E2M1 value + 12 of a code (the u8 weight operand), and 2·E2M1 as s8 (activations).
inline __m512i lut_e2m1x2_plus12() {
  return _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
}
inline __m512i lut_e2m1x2() {
  return _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
}

// 16 L values of row `row` (fp32 or bf16 storage) starting at element `col`.
inline __m512 load_l(const AlignedBytes& b, bool bf16, int64_t idx) {
  if (bf16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.as<uint16_t>() + idx));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  return _mm512_loadu_ps(b.as<float>() + idx);
}

// E4M3 bytes (16, zero-extended to dwords) -> fp32 values (finite codes only).
inline __m512 e4m3_to_f32(__m512i b) {
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
  const __m512i mag = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7F)), 20);
  // exponent field e-7+127 = e+120: scale the bit pattern read with bias 127 by 2^120 (exact, also
  // for E4M3 subnormals, which land on fp32 subnormals).
  return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(sign, mag)), _mm512_set1_ps(1.329227995784916e36f));
}

// ---- quantize_act ------------------------------------------------------------------------------

void xhat_row(const LowbitLayer& L, const float* x, float* out) {
  const int64_t K = L.k;
  int64_t i = 0;
  if (L.has_smooth) {
    const float* lam = L.smooth.as<float>();
    for (; i + 16 <= K; i += 16) _mm512_store_ps(out + i, _mm512_div_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(lam + i)));
    if (i < K) {
      const __mmask16 mk = mask16(K - i);
      // Lanes past K divide 0 by 1 (masked loads) and are overwritten by the padding below.
      const __m512 a = _mm512_maskz_loadu_ps(mk, x + i);
      const __m512 b = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), mk, lam + i);
      _mm512_storeu_ps(out + i, _mm512_maskz_div_ps(mk, a, b));
      i += 16;
    }
  } else {
    for (; i + 16 <= K; i += 16) _mm512_store_ps(out + i, _mm512_loadu_ps(x + i));
    if (i < K) {
      _mm512_storeu_ps(out + i, _mm512_maskz_loadu_ps(mask16(K - i), x + i));
      i += 16;
    }
  }
  for (; i < L.kp; i += 16) _mm512_storeu_ps(out + i, _mm512_setzero_ps());
}

// D rows: per (row, r) one fma chain in k order. ROWS rows, RV vectors of 16 r values.
template <int ROWS, int RV>
void down_tile(const LowbitLayer& L, const float* xh, int64_t r0, float* D) {
  const int64_t K = L.k, kp = L.kp, R = L.rank;
  __m512 acc[ROWS][RV];
  for (int i = 0; i < ROWS; ++i)
    for (int v = 0; v < RV; ++v) acc[i][v] = _mm512_setzero_ps();
  const bool bf16 = L.lowrank_bf16;
  for (int64_t k = 0; k < K; ++k) {
    __m512 l[RV];
    for (int v = 0; v < RV; ++v) l[v] = load_l(L.l_down_t, bf16, ((r0 / 16 + v) * kp + k) * 16);  // [RP/16][kp][16]
    for (int i = 0; i < ROWS; ++i) {
      const __m512 xb = _mm512_set1_ps(xh[i * kp + k]);
      for (int v = 0; v < RV; ++v) acc[i][v] = _mm512_fmadd_ps(xb, l[v], acc[i][v]);
    }
  }
  for (int i = 0; i < ROWS; ++i)
    for (int v = 0; v < RV; ++v) {
      const int64_t r = r0 + 16 * v;
      _mm512_mask_storeu_ps(D + i * R + r, mask16(R - r), acc[i][v]);
    }
}

template <int ROWS>
void down_rows_n(const LowbitLayer& L, const float* xh, float* D, int64_t rb, int64_t re) {
  int64_t r0 = rb;
  for (; r0 + 32 <= re; r0 += 32) down_tile<ROWS, 2>(L, xh, r0, D);
  if (r0 < re) down_tile<ROWS, 1>(L, xh, r0, D);
}

// D columns [rb, re) (multiples of 16, re <= rank_pad) of `rows` X̂ rows.
void down_block(const LowbitLayer& L, const float* xh, int64_t rows, float* D, int64_t rb, int64_t re) {
  switch (rows) {
    case 1: down_rows_n<1>(L, xh, D, rb, re); break;
    case 2: down_rows_n<2>(L, xh, D, rb, re); break;
    case 3: down_rows_n<3>(L, xh, D, rb, re); break;
    case 4: down_rows_n<4>(L, xh, D, rb, re); break;
    case 5: down_rows_n<5>(L, xh, D, rb, re); break;
    case 6: down_rows_n<6>(L, xh, D, rb, re); break;
    case 7: down_rows_n<7>(L, xh, D, rb, re); break;
    default: down_rows_n<8>(L, xh, D, rb, re); break;
  }
}

// Sum of each group's int8 codes (group a multiple of 16).
void group_sums(const int8_t* codes, int64_t kp, int64_t group, int32_t offset, int32_t* corr) {
  const __m512i ones = _mm512_set1_epi8(1);
  if (group >= 64) {
    for (int64_t g0 = 0; g0 < kp; g0 += group) {
      __m512i s = _mm512_setzero_si512();
      for (int64_t i = g0; i < g0 + group; i += 64)
        s = _mm512_dpbusd_epi32(s, ones, _mm512_loadu_si512(codes + i));
      corr[g0 / group] = -offset * _mm512_reduce_add_epi32(s);
    }
    return;
  }
  // group 32 or 16: one vector holds 64/group groups; lanes 4·j .. per group.
  const int per = static_cast<int>(64 / group);
  const int lanes = static_cast<int>(group / 4);
  for (int64_t i = 0; i < kp; i += 64) {
    const int64_t left = kp - i;
    const __m512i c = left >= 64 ? _mm512_loadu_si512(codes + i)
                                 : _mm512_maskz_loadu_epi8((left >= 64 ? ~0ull : ((1ull << left) - 1)), codes + i);
    const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, c);
    alignas(64) int32_t t[16];
    _mm512_store_si512(t, s);
    for (int q = 0; q < per && i + q * group < kp; ++q) {
      int32_t sum = 0;
      for (int l = 0; l < lanes; ++l) sum += t[q * lanes + l];
      corr[(i + q * group) / group] = -offset * sum;
    }
  }
}

void quantize_row(const LowbitLayer& L, const float* xr, int64_t m, LowbitActs& A, uint8_t* tmp) {
  const FormatKernels& fk = kFormatKernels;
  const int64_t K = L.k, kp = L.kp, G = L.groups;
  // Group-major [G][M]: element g of row m at g·M + m (gs = M).
  float* scale = A.scale.as<float>() + m;
  int32_t* corr = A.corr.as<int32_t>() + m;
  const int64_t gs = A.m;
  alignas(64) int32_t corr_row[4096];
  int32_t* crow = G <= 4096 ? corr_row : nullptr;
  if (L.scheme == LowbitScheme::W4A16) {
    std::memcpy(A.xhat.as<float>() + m * kp, xr, static_cast<size_t>(kp) * 4);
    return;
  }
  int8_t* codes = A.codes.as<int8_t>() + m * kp;
  if (L.scheme == LowbitScheme::W8A8) {
    float s = 0.0f;
    fk.quantize_int8(xr, 1, K, codes, &s);
    std::memset(codes + K, 0, static_cast<size_t>(kp - K));
    scale[0] = s;
    group_sums(codes, kp, kp, L.offset, corr);
    (void)crow;
    return;
  }
  uint8_t* packed = tmp;
  uint8_t* sb = tmp + kp / 2;
  if (L.scheme == LowbitScheme::W4A4) {
    fk.quantize_int4(xr, 1, K, packed, reinterpret_cast<float*>(sb));
    for (int64_t g = 0; g < G; ++g) std::memcpy(scale + g * gs, sb + 4 * g, 4);
  } else if (L.scheme == LowbitScheme::Mxfp4) {
    fk.quantize_mxfp4(xr, 1, K, packed, sb, L.act_mx_rule);
    for (int64_t g = 0; g < G; ++g)
      scale[g * gs] = sb[g] == kE8M0Nan ? f32_from_bits(0x7FC00000u) : static_cast<float>(static_cast<int>(sb[g]) - 256);
  } else {  // Nvfp4
    const float gx = nvfp4_global_scale(fk.amax_finite(xr, K));
    fk.quantize_nvfp4(xr, 1, K, gx, packed, sb);
    for (int64_t g = 0; g < G; ++g) scale[g * gs] = e4m3_decode(sb[g]);
    A.row_scale.as<float>()[m] =
        static_cast<float>(1.0 / (4.0 * static_cast<double>(gx) * static_cast<double>(L.w_global_scale)));
  }
  // Packed nibbles -> int8 codes: each byte b becomes the word (b & 0xF) | (b >> 4) << 8.
  const bool int4 = L.scheme == LowbitScheme::W4A4;
  const __m512i lut = lut_e2m1x2();
  for (int64_t i = 0; i < kp; i += 64) {
    const int64_t nb = (kp - i) / 2 >= 32 ? 32 : (kp - i) / 2;
    const __m256i b = _mm256_maskz_loadu_epi8(nb >= 32 ? 0xFFFFFFFFu : ((1u << nb) - 1u), packed + i / 2);
    const __m512i w = _mm512_cvtepu8_epi16(b);
    const __m512i lo = _mm512_and_si512(w, _mm512_set1_epi16(0x000F));
    const __m512i hi = _mm512_and_si512(_mm512_slli_epi16(w, 4), _mm512_set1_epi16(0x0F00));
    __m512i nib = _mm512_or_si512(lo, hi);
    __m512i q;
    if (int4) q = _mm512_sub_epi8(_mm512_xor_si512(nib, _mm512_set1_epi8(8)), _mm512_set1_epi8(8));
    else q = _mm512_shuffle_epi8(lut, nib);
    const int64_t left = kp - i;
    _mm512_mask_storeu_epi8(codes + i, left >= 64 ? ~0ull : ((1ull << left) - 1), q);
  }
  if (crow != nullptr) {
    group_sums(codes, kp, L.group, L.offset, crow);
    for (int64_t g = 0; g < G; ++g) corr[g * gs] = crow[g];
  } else {
    for (int64_t g = 0; g < G; ++g) {
      int32_t sum = 0;
      for (int64_t i = g * L.group; i < (g + 1) * L.group; ++i) sum += codes[i];
      corr[g * gs] = -L.offset * sum;
    }
  }
}

// ---- fused single-pass quantizers (w4a4, mxfp4) -------------------------------------------------
// One pass over a row of X per group: X̂ = X/λ (kept in the row buffer for D), the group's abs-max,
// its scale, and the int8 codes and their sum — the arithmetic of formats.h's quantize_int4 /
// quantize_mxfp4 (the same IEEE divisions and products, RNE conversions under the default MXCSR,
// the E2M1 comparison ladder), so the codes and scales are bit-identical to them.

// 16 lanes of X̂ at element e of the row (zero past k).
inline __m512 xhat16(const LowbitLayer& L, const float* x, int64_t e) {
  const int64_t K = L.k;
  if (e + 16 <= K) {
    const __m512 v = _mm512_loadu_ps(x + e);
    return L.has_smooth ? _mm512_div_ps(v, _mm512_loadu_ps(L.smooth.as<float>() + e)) : v;
  }
  if (e >= K) return _mm512_setzero_ps();
  const __mmask16 mk = mask16(K - e);
  const __m512 v = _mm512_maskz_loadu_ps(mk, x + e);
  if (!L.has_smooth) return v;
  return _mm512_maskz_div_ps(mk, v, _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), mk, L.smooth.as<float>() + e));
}

// E8M0 scale byte of e8m0_scale_for_amax, from the bits of a finite amax (>= 0).
inline uint8_t e8m0_byte(uint32_t abits, MxScaleRule rule) {
  const uint32_t E = abits >> 23;
  if (E == 0) return e8m0_scale_for_amax(f32_from_bits(abits), rule);  // zero or subnormal: the codec
  const uint32_t man = abits & 0x7FFFFFu;
  int s = static_cast<int>(E) - 127 - 2;
  if (rule == MxScaleRule::Even) s += man >= 0x600000u ? 1 : 0;
  else if (rule == MxScaleRule::Ceil) s += man > 0x400000u ? 1 : 0;
  if (s < -127) s = -127;
  if (s > 127) s = 127;
  return static_cast<uint8_t>(s + 127);
}

// 2·E2M1 value (as int32 lanes, with the sign) of e2m1_encode(v) for non-NaN v: the magnitude index
// by round-to-nearest-even on the fp32 bits (formats.md §1.3): below 1, fl(|v| + 2^22) rounds |v|
// to a multiple of 0.5 (ties to even), so its bits minus those of 2^22 are the index 0..2; from 1 up,
// the exponent is rebased to 1 and the mantissa rounded to one bit (ties to even), which leaves the
// index in bits 22 and up; saturated to 7 (6.0). This is the comparison ladder of codecs.h.
inline __m512i e2m1x2_i32(__m512 v) {
  const __m512 a = _mm512_abs_ps(v);
  const __m512i u = _mm512_castps_si512(a);
  const __m512i sub = _mm512_sub_epi32(_mm512_castps_si512(_mm512_add_ps(a, _mm512_set1_ps(4194304.0f))),
                                       _mm512_set1_epi32(149 << 23));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 22), _mm512_set1_epi32(1));
  const __m512i nrm = _mm512_srli_epi32(
      _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(static_cast<int32_t>((1u - 127u) << 23) + (1 << 21) - 1)), odd), 22);
  const __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_LT_OQ);
  const __m512i mag = _mm512_mask_blend_epi32(small, _mm512_min_epi32(nrm, _mm512_set1_epi32(7)), sub);
  const __m512i val = _mm512_permutexvar_epi32(mag, _mm512_setr_epi32(0, 1, 2, 3, 4, 6, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0));
  const __mmask16 neg = _mm512_movepi32_mask(_mm512_castps_si512(v));
  return _mm512_mask_sub_epi32(val, neg, _mm512_setzero_si512(), val);
}

void quantize_row_int4_fused(const LowbitLayer& L, const float* x, float* xr, int64_t m, LowbitActs& A) {
  const int64_t G = L.groups, gs = A.m;
  int8_t* codes = A.codes.as<int8_t>() + m * L.kp;
  float* scale = A.scale.as<float>() + m;
  int32_t* corr = A.corr.as<int32_t>() + m;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t e = g * 64;
    for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(x + e + 512 + 16 * j), _MM_HINT_T0);
    __m512 v[4];
    for (int j = 0; j < 4; ++j) {
      v[j] = xhat16(L, x, e + 16 * j);
      _mm512_store_ps(xr + e + 16 * j, v[j]);
    }
    const __m512i ab = _mm512_max_epu32(
        _mm512_max_epu32(_mm512_castps_si512(_mm512_abs_ps(v[0])), _mm512_castps_si512(_mm512_abs_ps(v[1]))),
        _mm512_max_epu32(_mm512_castps_si512(_mm512_abs_ps(v[2])), _mm512_castps_si512(_mm512_abs_ps(v[3]))));
    const uint32_t abits = static_cast<uint32_t>(_mm512_reduce_max_epu32(ab));
    int8_t* cg = codes + e;
    if (abits >= kF32InfBits) {  // NaN or Inf in the group: NaN scale, zero codes
      scale[g * gs] = f32_from_bits(0x7FC00000u);
      corr[g * gs] = 0;
      _mm512_storeu_si512(cg, _mm512_setzero_si512());
      continue;
    }
    const float sc = f32_from_bits(abits) / 7.0f;
    scale[g * gs] = sc;
    if (sc == 0.0f) {
      corr[g * gs] = 0;
      _mm512_storeu_si512(cg, _mm512_setzero_si512());
      continue;
    }
    const __m512 sv = _mm512_set1_ps(sc);
    __m512i sum = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      __m512i q = _mm512_cvtps_epi32(_mm512_div_ps(v[j], sv));
      q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-8)), _mm512_set1_epi32(7));
      sum = _mm512_add_epi32(sum, q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cg + 16 * j), _mm512_cvtepi32_epi8(q));
    }
    corr[g * gs] = -8 * _mm512_reduce_add_epi32(sum);
  }
}

void quantize_row_mxfp4_fused(const LowbitLayer& L, const float* x, float* xr, int64_t m, LowbitActs& A) {
  const int64_t G = L.groups, gs = A.m;
  int8_t* codes = A.codes.as<int8_t>() + m * L.kp;
  float* scale = A.scale.as<float>() + m;
  int32_t* corr = A.corr.as<int32_t>() + m;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t e = g * 32;
    _mm_prefetch(reinterpret_cast<const char*>(x + e + 512), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(x + e + 528), _MM_HINT_T0);
    const __m512 v0 = xhat16(L, x, e), v1 = xhat16(L, x, e + 16);
    _mm512_store_ps(xr + e, v0);
    _mm512_store_ps(xr + e + 16, v1);
    const uint32_t abits = static_cast<uint32_t>(_mm512_reduce_max_epu32(
        _mm512_max_epu32(_mm512_castps_si512(_mm512_abs_ps(v0)), _mm512_castps_si512(_mm512_abs_ps(v1)))));
    int8_t* cg = codes + e;
    if (abits >= kF32InfBits) {
      scale[g * gs] = f32_from_bits(0x7FC00000u);
      corr[g * gs] = 0;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(cg), _mm256_setzero_si256());
      continue;
    }
    const uint8_t byte = e8m0_byte(abits, L.act_mx_rule);
    scale[g * gs] = static_cast<float>(static_cast<int>(byte) - 256);
    const __m512 inv = _mm512_set1_ps(e8m0_reciprocal(byte));
    const __m512i q0 = e2m1x2_i32(_mm512_mul_ps(v0, inv));
    const __m512i q1 = e2m1x2_i32(_mm512_mul_ps(v1, inv));
    corr[g * gs] = -12 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cg), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cg + 16), _mm512_cvtepi32_epi8(q1));
  }
}

void quantize_rows(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1, LowbitActs& A,
                   bool with_down, LowbitScratch& s) {
  float* rows = s.rows.as<float>();
  for (int64_t m = m0; m < m1; ++m) {
    float* xr = rows + (m - m0) * L.kp;
    if (L.scheme == LowbitScheme::W4A4) {
      quantize_row_int4_fused(L, X + m * L.k, xr, m, A);
    } else if (L.scheme == LowbitScheme::Mxfp4) {
      quantize_row_mxfp4_fused(L, X + m * L.k, xr, m, A);
    } else {
      xhat_row(L, X + m * L.k, xr);
      quantize_row(L, xr, m, A, s.codes.as<uint8_t>());
    }
  }
  if (with_down && L.rank > 0) down_block(L, rows, m1 - m0, A.down.as<float>() + m0 * L.rank, 0, L.rank_pad);
}

void down_rows(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1, int64_t r0, int64_t r1, float* D,
               LowbitScratch& s) {
  float* rows = s.rows.as<float>();
  for (int64_t m = m0; m < m1; ++m) xhat_row(L, X + m * L.k, rows + (m - m0) * L.kp);
  down_block(L, rows, m1 - m0, D + m0 * L.rank, r0, r1 < L.rank_pad ? r1 : L.rank_pad);
}

// ---- GEMM --------------------------------------------------------------------------------------
//
// For more than 4 token rows the weights of two panels (32 columns) are expanded once into the
// thread's buffer — u8 operands interleaved per 4-deep step, [kp/4][nv][64], and fp32 scales
// [G][nv][16] — and reused by every 6-row tile of the token range. The 6 × 32 tile keeps its 12
// int32 sums and its 12 fp32 accumulators in registers for the whole K loop (assembly below).

enum class Sc { Fp, Exp };

struct Gemm {
  const LowbitLayer* L;
  const LowbitActs* A;
  int64_t kp, G, group, spg;  // spg: 4-deep steps per group
  const uint8_t* w;           // expanded weights of the current panels, [kp/4][nv][64]
  const float* sw;            // their fp32 scales (Exp: e_w as float), [G][nv][16]
  float* Y;
  int64_t ldy;
  bool epilogue;
};

// The tile epilogue: C (·α) (+ U) (+ b) -> Y, columns masked to n. C is [MR][NV][16].
template <int MR, int NV>
inline void store_tile(const Gemm& a, const float* C, int64_t mb, int64_t pg) {
  const LowbitLayer& L = *a.L;
  const bool nv4 = L.scheme == LowbitScheme::Nvfp4;
  __m512 y[MR][NV];
  for (int i = 0; i < MR; ++i) {
    const __m512 alpha = nv4 ? _mm512_set1_ps(a.A->row_scale.as<float>()[mb + i]) : _mm512_set1_ps(1.0f);
    for (int v = 0; v < NV; ++v) {
      y[i][v] = _mm512_load_ps(C + (i * NV + v) * 16);
      if (nv4) y[i][v] = _mm512_mul_ps(y[i][v], alpha);
    }
  }
  if (a.epilogue) {
    if (L.rank > 0) {
      __m512 u[MR][NV];
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) u[i][v] = _mm512_setzero_ps();
      const float* D = a.A->down.as<float>() + mb * L.rank;
      const bool bf16 = L.lowrank_bf16;
      for (int64_t r = 0; r < L.rank; ++r) {
        __m512 lu[NV];
        for (int v = 0; v < NV; ++v) lu[v] = load_l(L.l_up, bf16, ((pg + v) * L.rank + r) * 16);
        for (int i = 0; i < MR; ++i) {
          const __m512 d = _mm512_set1_ps(D[i * L.rank + r]);
          for (int v = 0; v < NV; ++v) u[i][v] = _mm512_fmadd_ps(d, lu[v], u[i][v]);
        }
      }
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) y[i][v] = _mm512_add_ps(y[i][v], u[i][v]);
    }
    if (L.has_bias) {
      for (int v = 0; v < NV; ++v) {
        const __m512 b = _mm512_load_ps(L.bias.as<float>() + (pg + v) * 16);
        for (int i = 0; i < MR; ++i) y[i][v] = _mm512_add_ps(y[i][v], b);
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    const int64_t n0 = (pg + v) * 16;
    const __mmask16 mk = mask16(L.n - n0);
    for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(a.Y + (mb + i) * a.ldy + n0, mk, y[i][v]);
  }
}

// ---- the 6 × 32 tile in assembly ---------------------------------------------------------------
// GCC does not keep 24 accumulator vectors in registers across the loops, so the tile is written
// out. Registers: zmm0-11 the int32 sums I[row][panel] (2·row + panel), zmm12-23 the fp32
// accumulators C[row][panel], zmm24/25 the two weight vectors of a step, zmm26/27 the broadcast
// activation dwords, zmm28/29 the group's weight scales, zmm30 s_x (or e_x).
// Per group: the sums start at the row's correction; spg steps (two per iteration) of vpdpbusd;
// then per row  Fp:  t = float(I)·s_w;  C = fma(t, s_x, C)
//               Exp: t = scalef(float(I), e_x + e_w);  C = C + t
// — the operations of the portable kernel, in its order. Finally C is stored to memory.

#define LB_S(x) #x
#define LB_DP2(addr, b, i0, i1)                                      \
  "vpbroadcastd " addr ", %%zmm" LB_S(b) "\n\t"                      \
  "vpdpbusd %%zmm" LB_S(b) ", %%zmm24, %%zmm" LB_S(i0) "\n\t"        \
  "vpdpbusd %%zmm" LB_S(b) ", %%zmm25, %%zmm" LB_S(i1) "\n\t"
// Row r of a step; xo is the byte offset of the step within the iteration (0 or 4).
#define LB_R0(xo) LB_DP2(xo "(%[x])", 26, 0, 1)
#define LB_R1(xo) LB_DP2(xo "(%[x],%[s],1)", 27, 2, 3)
#define LB_R2(xo) LB_DP2(xo "(%[x],%[s],2)", 26, 4, 5)
#define LB_R3(xo) LB_DP2(xo "(%[x],%[s3],1)", 27, 6, 7)
#define LB_R4(xo) LB_DP2(xo "(%%r8)", 26, 8, 9)
#define LB_R5(xo) LB_DP2(xo "(%%r8,%[s],1)", 27, 10, 11)
#define LB_ROWS1(F, a) F##0(a)
#define LB_ROWS2(F, a) LB_ROWS1(F, a) F##1(a)
#define LB_ROWS3(F, a) LB_ROWS2(F, a) F##2(a)
#define LB_ROWS4(F, a) LB_ROWS3(F, a) F##3(a)
#define LB_ROWS5(F, a) LB_ROWS4(F, a) F##4(a)
#define LB_ROWS6(F, a) LB_ROWS5(F, a) F##5(a)
#define LB_Z(r) "vpxord %%zmm" LB_S(r) ", %%zmm" LB_S(r) ", %%zmm" LB_S(r) "\n\t"
// A group's sums start at the row's correction (a broadcast load, no ALU work).
#define LB_B(o, r) "vpbroadcastd " LB_S(o) "(%[cr]), %%zmm" LB_S(r) "\n\t"
#define LB_ZI0(u) LB_B(0, 0) LB_B(0, 1)
#define LB_ZI1(u) LB_B(4, 2) LB_B(4, 3)
#define LB_ZI2(u) LB_B(8, 4) LB_B(8, 5)
#define LB_ZI3(u) LB_B(12, 6) LB_B(12, 7)
#define LB_ZI4(u) LB_B(16, 8) LB_B(16, 9)
#define LB_ZI5(u) LB_B(20, 10) LB_B(20, 11)
#define LB_ZC0(u) LB_Z(12) LB_Z(13)
#define LB_ZC1(u) LB_Z(14) LB_Z(15)
#define LB_ZC2(u) LB_Z(16) LB_Z(17)
#define LB_ZC3(u) LB_Z(18) LB_Z(19)
#define LB_ZC4(u) LB_Z(20) LB_Z(21)
#define LB_ZC5(u) LB_Z(22) LB_Z(23)
// Scale phase of one row: sums (correction included) in i0/i1, accumulators c0/c1, o = 4·row (byte
// offset in sx).
#define LB_FIX(o, i0, i1)                                                \
  "vbroadcastss " LB_S(o) "(%[sx]), %%zmm30\n\t"                         \
  "vcvtdq2ps %%zmm" LB_S(i0) ", %%zmm" LB_S(i0) "\n\t"                   \
  "vcvtdq2ps %%zmm" LB_S(i1) ", %%zmm" LB_S(i1) "\n\t"
#define LB_FP(o, i0, i1, c0, c1)                                         \
  LB_FIX(o, i0, i1)                                                      \
  "vmulps %%zmm28, %%zmm" LB_S(i0) ", %%zmm" LB_S(i0) "\n\t"             \
  "vmulps %%zmm29, %%zmm" LB_S(i1) ", %%zmm" LB_S(i1) "\n\t"             \
  "vfmadd231ps %%zmm30, %%zmm" LB_S(i0) ", %%zmm" LB_S(c0) "\n\t"        \
  "vfmadd231ps %%zmm30, %%zmm" LB_S(i1) ", %%zmm" LB_S(c1) "\n\t"
#define LB_EXP(o, i0, i1, c0, c1)                                        \
  LB_FIX(o, i0, i1)                                                      \
  "vaddps %%zmm28, %%zmm30, %%zmm24\n\t"                                 \
  "vaddps %%zmm29, %%zmm30, %%zmm25\n\t"                                 \
  "vscalefps %%zmm24, %%zmm" LB_S(i0) ", %%zmm" LB_S(i0) "\n\t"          \
  "vscalefps %%zmm25, %%zmm" LB_S(i1) ", %%zmm" LB_S(i1) "\n\t"          \
  "vaddps %%zmm" LB_S(i0) ", %%zmm" LB_S(c0) ", %%zmm" LB_S(c0) "\n\t"   \
  "vaddps %%zmm" LB_S(i1) ", %%zmm" LB_S(c1) ", %%zmm" LB_S(c1) "\n\t"
#define LB_SFP0(u) LB_FP(0, 0, 1, 12, 13)
#define LB_SFP1(u) LB_FP(4, 2, 3, 14, 15)
#define LB_SFP2(u) LB_FP(8, 4, 5, 16, 17)
#define LB_SFP3(u) LB_FP(12, 6, 7, 18, 19)
#define LB_SFP4(u) LB_FP(16, 8, 9, 20, 21)
#define LB_SFP5(u) LB_FP(20, 10, 11, 22, 23)
#define LB_SEXP0(u) LB_EXP(0, 0, 1, 12, 13)
#define LB_SEXP1(u) LB_EXP(4, 2, 3, 14, 15)
#define LB_SEXP2(u) LB_EXP(8, 4, 5, 16, 17)
#define LB_SEXP3(u) LB_EXP(12, 6, 7, 18, 19)
#define LB_SEXP4(u) LB_EXP(16, 8, 9, 20, 21)
#define LB_SEXP5(u) LB_EXP(20, 10, 11, 22, 23)
#define LB_ST(o, c0, c1) \
  "vmovaps %%zmm" LB_S(c0) ", " LB_S(o) "(%[C])\n\t" "vmovaps %%zmm" LB_S(c1) ", " LB_S(o) "+64(%[C])\n\t"
#define LB_ST0(u) LB_ST(0, 12, 13)
#define LB_ST1(u) LB_ST(128, 14, 15)
#define LB_ST2(u) LB_ST(256, 16, 17)
#define LB_ST3(u) LB_ST(384, 18, 19)
#define LB_ST4(u) LB_ST(512, 20, 21)
#define LB_ST5(u) LB_ST(640, 22, 23)
#define LB_TILE_BODY(MR, SC)              \
  "lea (%[x],%[s],4), %%r8\n\t"           \
  LB_ROWS##MR(LB_ZC, _)                   \
  ".p2align 4\n\t"                        \
  "2:\n\t"                                \
  LB_ROWS##MR(LB_ZI, _)                   \
  "mov %[spg], %%r9\n\t"                  \
  ".p2align 5\n\t"                        \
  "1:\n\t"                                \
  "vmovdqa64 (%[w]), %%zmm24\n\t"         \
  "vmovdqa64 64(%[w]), %%zmm25\n\t"       \
  LB_ROWS##MR(LB_R, "0")                  \
  "vmovdqa64 128(%[w]), %%zmm24\n\t"      \
  "vmovdqa64 192(%[w]), %%zmm25\n\t"      \
  LB_ROWS##MR(LB_R, "4")                  \
  "add $256, %[w]\n\t"                    \
  "add $8, %[x]\n\t"                      \
  "add $8, %%r8\n\t"                      \
  "sub $2, %%r9\n\t"                      \
  "jnz 1b\n\t"                            \
  "vmovaps (%[sw]), %%zmm28\n\t"          \
  "vmovaps 64(%[sw]), %%zmm29\n\t"        \
  LB_ROWS##MR(SC, _)                      \
  "add $128, %[sw]\n\t"                   \
  "add %[m4], %[sx]\n\t"                  \
  "add %[m4], %[cr]\n\t"                  \
  "dec %[ng]\n\t"                         \
  "jnz 2b\n\t"                            \
  LB_ROWS##MR(LB_ST, _)
#define LB_CLOBBERS                                                                           \
  "r8", "r9", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",  \
      "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", \
      "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", \
      "xmm28", "xmm29", "xmm30", "xmm31"

// MR rows × 2 panels, all G groups. w: expanded weights [steps][2][64]; x: row 0's codes (rows s
// bytes apart); sx/cr: row 0's scales/corrections of group 0 (groups m4 bytes apart); sw: weight
// scales [G][2][16]; C: the output tile [MR][2][16]. spg must be even.
template <int MR, Sc SC>
void asm_tile(const uint8_t* w, const int8_t* x, int64_t s, const float* sx, const int32_t* cr, int64_t m4,
              const float* sw, int64_t ng, int64_t spg, float* C);

#define LB_DEFINE_TILE(MR, SC, SCALE)                                                                 \
  template <>                                                                                         \
  void asm_tile<MR, SC>(const uint8_t* w, const int8_t* x, int64_t s, const float* sx, const int32_t* cr, \
                        int64_t m4, const float* sw, int64_t ng, int64_t spg, float* C) {             \
    const int64_t s3 = 3 * s;                                                                         \
    __asm__ volatile(LB_TILE_BODY(MR, SCALE)                                                          \
                     : [w] "+r"(w), [x] "+r"(x), [sx] "+r"(sx), [cr] "+r"(cr), [sw] "+r"(sw),         \
                       [ng] "+r"(ng)                                                                  \
                     : [s] "r"(s), [s3] "r"(s3), [m4] "r"(m4), [spg] "r"(spg), [C] "r"(C)             \
                     : LB_CLOBBERS);                                                                  \
  }
LB_DEFINE_TILE(1, Sc::Fp, LB_SFP)
LB_DEFINE_TILE(2, Sc::Fp, LB_SFP)
LB_DEFINE_TILE(3, Sc::Fp, LB_SFP)
LB_DEFINE_TILE(4, Sc::Fp, LB_SFP)
LB_DEFINE_TILE(5, Sc::Fp, LB_SFP)
LB_DEFINE_TILE(6, Sc::Fp, LB_SFP)
LB_DEFINE_TILE(1, Sc::Exp, LB_SEXP)
LB_DEFINE_TILE(2, Sc::Exp, LB_SEXP)
LB_DEFINE_TILE(3, Sc::Exp, LB_SEXP)
LB_DEFINE_TILE(4, Sc::Exp, LB_SEXP)
LB_DEFINE_TILE(5, Sc::Exp, LB_SEXP)
LB_DEFINE_TILE(6, Sc::Exp, LB_SEXP)

template <int MR, Sc SC>
void tile_2panels(const Gemm& a, int64_t mb, int64_t pg) {
  const LowbitActs& A = *a.A;
  alignas(64) float C[MR * 2 * 16];
  asm_tile<MR, SC>(a.w, A.codes.as<int8_t>() + mb * a.kp, a.kp, A.scale.as<float>() + mb,
                   A.corr.as<int32_t>() + mb, A.m * 4, a.sw, a.G, a.spg, C);
  store_tile<MR, 2>(a, C, mb, pg);
}

// One panel (the odd one at the end), intrinsics: MR rows, expanded layout [steps][1][64].
template <int MR, Sc SC>
void tile_1panel(const Gemm& a, int64_t mb, int64_t pg) {
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, G = a.G, spg = a.spg, M = A.m;
  const int8_t* x = A.codes.as<int8_t>() + mb * kp;
  const float* sx = A.scale.as<float>() + mb;
  const int32_t* cx = A.corr.as<int32_t>() + mb;
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i I[MR];
    for (int i = 0; i < MR; ++i) I[i] = _mm512_set1_epi32(cx[g * M + i]);
    const uint8_t* wg = a.w + g * spg * 64;
    const int8_t* xg = x + g * a.group;
    for (int64_t j = 0; j < spg; ++j) {
      const __m512i wv = _mm512_load_si512(wg + j * 64);
      for (int i = 0; i < MR; ++i) I[i] = _mm512_dpbusd_epi32(I[i], wv, bcast_i32(xg + i * kp + 4 * j));
    }
    const __m512 sw = _mm512_load_ps(a.sw + g * 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 s = _mm512_set1_ps(sx[g * M + i]);
      if (SC == Sc::Fp) acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I[i]), sw), s, acc[i]);
      else acc[i] = _mm512_add_ps(acc[i], _mm512_scalef_ps(_mm512_cvtepi32_ps(I[i]), _mm512_add_ps(s, sw)));
    }
  }
  alignas(64) float C[MR * 16];
  for (int i = 0; i < MR; ++i) _mm512_store_ps(C + 16 * i, acc[i]);
  store_tile<MR, 1>(a, C, mb, pg);
}

template <Sc SC>
void tile_dispatch(const Gemm& a, int64_t mb, int64_t mr, int64_t pg, int64_t nv) {
  if (nv == 2) {
    switch (mr) {
      case 1: tile_2panels<1, SC>(a, mb, pg); break;
      case 2: tile_2panels<2, SC>(a, mb, pg); break;
      case 3: tile_2panels<3, SC>(a, mb, pg); break;
      case 4: tile_2panels<4, SC>(a, mb, pg); break;
      case 5: tile_2panels<5, SC>(a, mb, pg); break;
      default: tile_2panels<6, SC>(a, mb, pg); break;
    }
  } else {
    switch (mr) {
      case 1: tile_1panel<1, SC>(a, mb, pg); break;
      case 2: tile_1panel<2, SC>(a, mb, pg); break;
      case 3: tile_1panel<3, SC>(a, mb, pg); break;
      case 4: tile_1panel<4, SC>(a, mb, pg); break;
      case 5: tile_1panel<5, SC>(a, mb, pg); break;
      default: tile_1panel<6, SC>(a, mb, pg); break;
    }
  }
}

// Panels [pg, pg+nv) -> u8 operands (code + offset; with s8, the signed values themselves, for
// AMX's s8×s8 products), interleaved per step: [kp/4][nv][64]; and their scales as fp32 (Exp:
// e_w), [G][nv][16].
void expand_panels(const LowbitLayer& L, int64_t pg, int64_t nv, uint8_t* wexp, float* wsc, bool s8 = false) {
  const int64_t kp = L.kp, G = L.groups;
  const int64_t step = nv * 64;
  if (L.scheme == LowbitScheme::W8A8) {
    for (int64_t v = 0; v < nv; ++v) {
      const uint8_t* src = L.w.as<uint8_t>() + (pg + v) * kp * 16;
      const __m512i flip = _mm512_set1_epi8(s8 ? static_cast<char>(0x80) : 0);  // q + 128 -> q
      for (int64_t j = 0; j < kp / 4; ++j)
        _mm512_store_si512(wexp + j * step + v * 64, _mm512_xor_si512(_mm512_load_si512(src + j * 64), flip));
      _mm512_store_ps(wsc + v * 16, _mm512_load_ps(L.w_scale.as<float>() + (pg + v) * 16));
    }
    return;
  }
  const bool e2m1 = L.scheme == LowbitScheme::Mxfp4 || L.scheme == LowbitScheme::Nvfp4;
  const __m512i lut = s8 ? lut_e2m1x2() : lut_e2m1x2_plus12();
  const __m512i low = _mm512_set1_epi8(0x0F);
  const __m512i int4_zero = _mm512_set1_epi8(s8 ? 8 : 0);  // INT4 nibbles hold q + 8
  for (int64_t v = 0; v < nv; ++v) {
    const uint8_t* src = L.w.as<uint8_t>() + (pg + v) * kp * 8;
    uint8_t* dst = wexp + v * 64;
    for (int64_t j = 0; j < kp / 8; ++j) {
      const __m512i b = _mm512_load_si512(src + j * 64);
      __m512i lo = _mm512_and_si512(b, low);
      __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low);
      if (e2m1) {
        lo = _mm512_shuffle_epi8(lut, lo);
        hi = _mm512_shuffle_epi8(lut, hi);
      } else {
        lo = _mm512_sub_epi8(lo, int4_zero);
        hi = _mm512_sub_epi8(hi, int4_zero);
      }
      _mm512_store_si512(dst + (2 * j) * step, lo);
      _mm512_store_si512(dst + (2 * j + 1) * step, hi);
    }
    for (int64_t g = 0; g < G; ++g) {
      __m512 f;
      if (!e2m1) {
        f = _mm512_load_ps(L.w_scale.as<float>() + ((pg + v) * G + g) * 16);
      } else {
        const __m512i b = _mm512_cvtepu8_epi32(
            _mm_load_si128(reinterpret_cast<const __m128i*>(L.w_scale.as<uint8_t>() + ((pg + v) * G + g) * 16)));
        f = L.scheme == LowbitScheme::Mxfp4 ? _mm512_cvtepi32_ps(b) : e4m3_to_f32(b);
      }
      _mm512_store_ps(wsc + (g * nv + v) * 16, f);
    }
  }
}

// A few rows (<= 8 per pass): the weights stream once per pass, panel after panel (one sequential stream of codes
// and one of scales, prefetched ahead), expanded in registers: INT4 by a mask and a shift, E2M1 by
// a table lookup; w8a8 bytes are used as they are. Two int32 sums per row (low / high nibbles)
// shorten the dependency chains; they are added (with the correction) before the scale step.
template <int MR, Sc SC>
void gemv_panels(const Gemm& a, int64_t mb, int64_t p0, int64_t p1, int64_t p_end) {
  const LowbitLayer& L = *a.L;
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, G = a.G, M = A.m;
  const bool w8 = L.scheme == LowbitScheme::W8A8;
  const bool e2m1 = L.scheme == LowbitScheme::Mxfp4 || L.scheme == LowbitScheme::Nvfp4;
  const bool nv4 = L.scheme == LowbitScheme::Nvfp4;
  const __m512i lut = lut_e2m1x2_plus12();
  const __m512i low = _mm512_set1_epi8(0x0F);
  const int8_t* x[MR];
  for (int i = 0; i < MR; ++i) x[i] = A.codes.as<int8_t>() + (mb + i) * kp;
  const float* sx = A.scale.as<float>() + mb;
  const int32_t* cx = A.corr.as<int32_t>() + mb;
  const int64_t wpanel = kp * (w8 ? 16 : 8);
  const int64_t spb = w8 ? 64 : (e2m1 ? G * 16 : G * 64);  // scale bytes per panel
  constexpr int64_t kAhead = 2048;                           // prefetch distance in the code stream
  // Low-rank factor block of a panel (the epilogue reads it): rank × 16 values.
  const int64_t lub = a.epilogue ? L.rank * 16 * (L.lowrank_bf16 ? 2 : 4) : 0;
  for (int64_t p = p0; p < p1; ++p) {
    const uint8_t* wp = L.w.as<uint8_t>() + p * wpanel;
    const uint8_t* sp = L.w_scale.as<uint8_t>() + p * spb;
    for (int64_t o = 0; o < spb; o += 64) _mm_prefetch(reinterpret_cast<const char*>(sp + spb + o), _MM_HINT_T0);
    if (p + 1 < p_end)
      for (int64_t o = 0; o < lub; o += 64)
        _mm_prefetch(reinterpret_cast<const char*>(L.l_up.as<uint8_t>() + (p + 1) * lub + o), _MM_HINT_T0);
    __m512 acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      // Up to 4 rows: two sums per row (low / high nibbles) to shorten the chains; more rows
      // give enough independent chains with one.
      constexpr int kChains = 2;
      __m512i I0[MR], I1[kChains == 2 ? MR : 1];
      for (int i = 0; i < MR; ++i) I0[i] = _mm512_set1_epi32(cx[g * M + i]);
      for (int i = 0; i < (kChains == 2 ? MR : 1); ++i) I1[i] = _mm512_setzero_si512();
      const int64_t k0 = g * a.group;
      if (w8) {
        for (int64_t j = 0; j < a.spg; j += 2) {
          const uint8_t* c = wp + (k0 / 4 + j) * 64;
          _mm_prefetch(reinterpret_cast<const char*>(c + kAhead), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(c + kAhead + 64), _MM_HINT_T0);
          const __m512i w0 = _mm512_load_si512(c), w1 = _mm512_load_si512(c + 64);
          for (int i = 0; i < MR; ++i) {
            I0[i] = _mm512_dpbusd_epi32(I0[i], w0, bcast_i32(x[i] + k0 + 4 * j));
            if (kChains == 2) I1[i] = _mm512_dpbusd_epi32(I1[i], w1, bcast_i32(x[i] + k0 + 4 * j + 4));
            else I0[i] = _mm512_dpbusd_epi32(I0[i], w1, bcast_i32(x[i] + k0 + 4 * j + 4));
          }
        }
      } else {
        for (int64_t j = 0; j < a.group / 8; ++j) {
          const uint8_t* c = wp + (k0 / 8 + j) * 64;
          _mm_prefetch(reinterpret_cast<const char*>(c + kAhead), _MM_HINT_T0);
          const __m512i b = _mm512_load_si512(c);
          __m512i lo = _mm512_and_si512(b, low);
          __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low);
          if (e2m1) {
            lo = _mm512_shuffle_epi8(lut, lo);
            hi = _mm512_shuffle_epi8(lut, hi);
          }
          for (int i = 0; i < MR; ++i) {
            I0[i] = _mm512_dpbusd_epi32(I0[i], lo, bcast_i32(x[i] + k0 + 8 * j));
            if (kChains == 2) I1[i] = _mm512_dpbusd_epi32(I1[i], hi, bcast_i32(x[i] + k0 + 8 * j + 4));
            else I0[i] = _mm512_dpbusd_epi32(I0[i], hi, bcast_i32(x[i] + k0 + 8 * j + 4));
          }
        }
      }
      __m512 sw;
      if (w8 || (!e2m1)) sw = _mm512_load_ps(reinterpret_cast<const float*>(sp) + (w8 ? 0 : g * 16));
      else if (nv4) sw = e4m3_to_f32(_mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(sp + g * 16))));
      else sw = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(sp + g * 16))));
      for (int i = 0; i < MR; ++i) {
        const __m512 f = _mm512_cvtepi32_ps(kChains == 2 ? _mm512_add_epi32(I0[i], I1[i % (kChains == 2 ? MR : 1)]) : I0[i]);
        const __m512 s = _mm512_set1_ps(sx[g * M + i]);
        if (SC == Sc::Fp) acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(f, sw), s, acc[i]);
        else acc[i] = _mm512_add_ps(acc[i], _mm512_scalef_ps(f, _mm512_add_ps(s, sw)));
      }
    }
    alignas(64) float C[MR * 16];
    for (int i = 0; i < MR; ++i) _mm512_store_ps(C + 16 * i, acc[i]);
    store_tile<MR, 1>(a, C, mb, p);
  }
}

template <Sc SC>
void gemv_dispatch(const Gemm& a, int64_t mb, int64_t mr, int64_t p0, int64_t p1, int64_t p_end) {
  switch (mr) {
    case 1: gemv_panels<1, SC>(a, mb, p0, p1, p_end); break;
    case 2: gemv_panels<2, SC>(a, mb, p0, p1, p_end); break;
    case 3: gemv_panels<3, SC>(a, mb, p0, p1, p_end); break;
    case 4: gemv_panels<4, SC>(a, mb, p0, p1, p_end); break;
    case 5: gemv_panels<5, SC>(a, mb, p0, p1, p_end); break;
    case 6: gemv_panels<6, SC>(a, mb, p0, p1, p_end); break;
    case 7: gemv_panels<7, SC>(a, mb, p0, p1, p_end); break;
    default: gemv_panels<8, SC>(a, mb, p0, p1, p_end); break;
  }
}

// A few rows: one pass over the panels for up to 8 rows; for more, each panel is used by every
// 8-row block in turn while it is in L1 (the weights still stream from memory once).
template <Sc SC>
void gemv_rows(const Gemm& a, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  if (m1 - m0 <= 8) {
    gemv_dispatch<SC>(a, m0, m1 - m0, p0, p1, p1);
    return;
  }
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t mb = m0; mb < m1; mb += 8) gemv_dispatch<SC>(a, mb, m1 - mb < 8 ? m1 - mb : 8, p, p + 1, p1);
}

// ---- w4a16: fp32 activations × INT4 weights ---------------------------------------------------
// Per group the fp32 dot P = Σ_k x̂_k·q_k is one fma chain in k order (lanes are columns), then
// acc = fma(P, s_w, acc) — the portable order. INT4 nibbles (q + 8) become fp32 q by a 16-entry
// table lookup (vpermps reads the low 4 bits of each lane).

inline __m512 lut_int4_f32() {
  return _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
}

// A few rows: the packed weights stream once, NV panels side by side (NV independent chains).
template <int MR, int NV>
void gemv_w4a16(const Gemm& a, int64_t mb, int64_t pg) {
  const LowbitLayer& L = *a.L;
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, G = a.G;
  const __m512 lut = lut_int4_f32();
  const float* x[MR];
  for (int i = 0; i < MR; ++i) x[i] = A.xhat.as<float>() + (mb + i) * kp;
  const uint8_t* wp[NV];
  for (int v = 0; v < NV; ++v) wp[v] = L.w.as<uint8_t>() + (pg + v) * kp * 8;
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512 P[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) P[i][v] = _mm512_setzero_ps();
    for (int64_t j = g * 8; j < g * 8 + 8; ++j) {  // 8 chunks of 8 k per group of 64
      __m512i b[NV];
      for (int v = 0; v < NV; ++v) {
        _mm_prefetch(reinterpret_cast<const char*>(wp[v] + j * 64 + 1024), _MM_HINT_T0);
        b[v] = _mm512_load_si512(wp[v] + j * 64);
      }
      for (int h = 0; h < 2; ++h)      // low nibbles: k = 8j+t; high nibbles: k = 8j+4+t
        for (int t = 0; t < 4; ++t) {
          __m512 q[NV];
          for (int v = 0; v < NV; ++v)
            q[v] = _mm512_permutexvar_ps(_mm512_srli_epi32(b[v], 8 * t + 4 * h), lut);
          const int64_t k = 8 * j + 4 * h + t;
          for (int i = 0; i < MR; ++i) {
            const __m512 xb = _mm512_set1_ps(x[i][k]);
            for (int v = 0; v < NV; ++v) P[i][v] = _mm512_fmadd_ps(xb, q[v], P[i][v]);
          }
        }
    }
    for (int v = 0; v < NV; ++v) {
      const __m512 sw = _mm512_load_ps(L.w_scale.as<float>() + ((pg + v) * G + g) * 16);
      for (int i = 0; i < MR; ++i) acc[i][v] = _mm512_fmadd_ps(P[i][v], sw, acc[i][v]);
    }
  }
  alignas(64) float C[MR * NV * 16];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) _mm512_store_ps(C + (i * NV + v) * 16, acc[i][v]);
  store_tile<MR, NV>(a, C, mb, pg);
}

// Panels [pg, pg+nv) -> fp32 weights q, [kp][nv][16], and scales [G][nv][16].
void expand_w4a16(const LowbitLayer& L, int64_t pg, int64_t nv, float* wf, float* wsc) {
  const int64_t kp = L.kp, G = L.groups;
  const __m512 lut = lut_int4_f32();
  for (int64_t v = 0; v < nv; ++v) {
    const uint8_t* src = L.w.as<uint8_t>() + (pg + v) * kp * 8;
    for (int64_t j = 0; j < kp / 8; ++j) {
      const __m512i b = _mm512_load_si512(src + j * 64);
      for (int h = 0; h < 2; ++h)
        for (int t = 0; t < 4; ++t)
          _mm512_store_ps(wf + ((8 * j + 4 * h + t) * nv + v) * 16,
                          _mm512_permutexvar_ps(_mm512_srli_epi32(b, 8 * t + 4 * h), lut));
    }
    for (int64_t g = 0; g < G; ++g)
      _mm512_store_ps(wsc + (g * nv + v) * 16, _mm512_load_ps(L.w_scale.as<float>() + ((pg + v) * G + g) * 16));
  }
}

// MR rows × NV panels from the fp32 expansion.
template <int MR, int NV>
void tile_w4a16(const Gemm& a, const float* wf, const float* wsc, int64_t mb, int64_t pg) {
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, G = a.G;
  const float* x = A.xhat.as<float>() + mb * kp;
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512 P[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) P[i][v] = _mm512_setzero_ps();
    for (int64_t k = g * 64; k < g * 64 + 64; ++k) {
      __m512 q[NV];
      for (int v = 0; v < NV; ++v) q[v] = _mm512_load_ps(wf + (k * NV + v) * 16);
      for (int i = 0; i < MR; ++i) {
        const __m512 xb = _mm512_set1_ps(x[i * kp + k]);
        for (int v = 0; v < NV; ++v) P[i][v] = _mm512_fmadd_ps(xb, q[v], P[i][v]);
      }
    }
    for (int v = 0; v < NV; ++v) {
      const __m512 sw = _mm512_load_ps(wsc + (g * NV + v) * 16);
      for (int i = 0; i < MR; ++i) acc[i][v] = _mm512_fmadd_ps(P[i][v], sw, acc[i][v]);
    }
  }
  alignas(64) float C[MR * NV * 16];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) _mm512_store_ps(C + (i * NV + v) * 16, acc[i][v]);
  store_tile<MR, NV>(a, C, mb, pg);
}

template <int NV>
void tile_w4a16_rows(const Gemm& a, const float* wf, const float* wsc, int64_t mb, int64_t mr, int64_t pg) {
  switch (mr) {
    case 1: tile_w4a16<1, NV>(a, wf, wsc, mb, pg); break;
    case 2: tile_w4a16<2, NV>(a, wf, wsc, mb, pg); break;
    case 3: tile_w4a16<3, NV>(a, wf, wsc, mb, pg); break;
    default: tile_w4a16<4, NV>(a, wf, wsc, mb, pg); break;
  }
}

void gemm_w4a16(const Gemm& a, int64_t m0, int64_t m1, int64_t p0, int64_t p1, LowbitScratch& s) {
  const int64_t mr = m1 - m0;
  if (mr <= 4) {
    int64_t pg = p0;
    if (mr <= 2) {
      for (; pg + 4 <= p1; pg += 4) {
        if (mr == 1) gemv_w4a16<1, 4>(a, m0, pg);
        else gemv_w4a16<2, 4>(a, m0, pg);
      }
    }
    for (; pg + 2 <= p1; pg += 2) {
      switch (mr) {
        case 1: gemv_w4a16<1, 2>(a, m0, pg); break;
        case 2: gemv_w4a16<2, 2>(a, m0, pg); break;
        case 3: gemv_w4a16<3, 2>(a, m0, pg); break;
        default: gemv_w4a16<4, 2>(a, m0, pg); break;
      }
    }
    for (; pg < p1; ++pg) {
      switch (mr) {
        case 1: gemv_w4a16<1, 1>(a, m0, pg); break;
        case 2: gemv_w4a16<2, 1>(a, m0, pg); break;
        case 3: gemv_w4a16<3, 1>(a, m0, pg); break;
        default: gemv_w4a16<4, 1>(a, m0, pg); break;
      }
    }
    return;
  }
  float* wf = s.wexp.as<float>();
  float* wsc = s.wscale.as<float>();
  for (int64_t pg = p0; pg < p1; pg += 2) {
    const int64_t nv = p1 - pg < 2 ? 1 : 2;
    expand_w4a16(*a.L, pg, nv, wf, wsc);
    for (int64_t mb = m0; mb < m1; mb += 4) {
      const int64_t rows = m1 - mb < 4 ? m1 - mb : 4;
      if (nv == 2) tile_w4a16_rows<2>(a, wf, wsc, mb, rows, pg);
      else tile_w4a16_rows<1>(a, wf, wsc, mb, rows, pg);
    }
  }
}

// ---- AMX (amx.h) ---------------------------------------------------------------------------
// The same block sums from the tile unit: per (16-token block, panel, group) one tdpbssd of the
// tokens' s8 codes (tile A: 16 rows × one group of k) by the panel's s8 weights (tile B: the group's
// 4-deep steps × 16 columns × 4, exactly the expanded layout above) gives the 16×16 int32 sums I,
// exact like VNNI's (s8×s8, no offset, so no correction). They go through memory to the vector
// unit, which applies the scale step of the group in the kernels' order, keeping the 16 rows' fp32
// accumulators in registers; the next group's tile multiply runs meanwhile (two C tiles in turn).
// w8a8 (one group, the whole row) accumulates every 64-deep chunk in the C tile and scales once.
// Tile instructions are written as inline assembly (no compiler flags needed).

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

#define AMX_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define AMX_LOAD(t, base, stride) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"(static_cast<int64_t>(stride)) : "memory")
#define AMX_STORE(t, base, stride) \
  __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"(static_cast<int64_t>(stride)) : "memory")
// tmm<c> += tmm2 (A, s8) · tmm3 (B, s8)
#define AMX_DP(c) __asm__ volatile("tdpbssd %%tmm3, %%tmm2, %%tmm" #c ::)

// The scale step of one group for 16 rows (the portable kernel's operations, in its order): w8a8's
// single group, after its chunks were summed in the C tile.
template <Sc SC>
inline void amx_scale(__m512 (&acc)[16], const int32_t* I, __m512 sw, const float* sx) {
  for (int r = 0; r < 16; ++r) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_load_si512(I + 16 * r));
    const __m512 s = _mm512_set1_ps(sx[r]);
    if (SC == Sc::Fp) acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(f, sw), s, acc[r]);
    else acc[r] = _mm512_add_ps(acc[r], _mm512_scalef_ps(f, _mm512_add_ps(s, sw)));
  }
}

// The 16 × 16 output tile over all groups, in assembly (the accumulators must stay in zmm0-15
// across the tile instructions). Tiles: C in tmm0 / tmm1 for even / odd groups, A in tmm2 / tmm4,
// B in tmm3 / tmm5, so that group g+1's multiply is issued before group g's sums are stored (the
// store waits for the multiply) and scaled. zmm16: the group's weight scales; zmm17-24 temporaries.
// Per row r of a group, exactly the portable kernel's operations (see the VNNI tile above):
//   Fp:  acc = fma(float(I)·s_w, s_x, acc)      Exp: acc = acc + scalef(float(I), e_x + e_w)
#define AX_FP(r, t, e, base)                                               \
  "vcvtdq2ps " #r "*64(" base "), %%zmm" #t "\n\t"                         \
  "vmulps %%zmm16, %%zmm" #t ", %%zmm" #t "\n\t"                           \
  "vfmadd231ps " #r "*4(%[sx])%{1to16%}, %%zmm" #t ", %%zmm" #r "\n\t"
#define AX_EXP(r, t, e, base)                                              \
  "vcvtdq2ps " #r "*64(" base "), %%zmm" #t "\n\t"                         \
  "vaddps " #r "*4(%[sx])%{1to16%}, %%zmm16, %%zmm" #e "\n\t"              \
  "vscalefps %%zmm" #e ", %%zmm" #t ", %%zmm" #t "\n\t"                    \
  "vaddps %%zmm" #t ", %%zmm" #r ", %%zmm" #r "\n\t"
// Rows with their temporaries (zmm17-20, and zmm21-24 for the Exp form), four rows in flight.
#define AX_ROWS(F, base)                                                                                   \
  F(0, 17, 21, base) F(1, 18, 22, base) F(2, 19, 23, base) F(3, 20, 24, base) F(4, 17, 21, base)          \
  F(5, 18, 22, base) F(6, 19, 23, base) F(7, 20, 24, base) F(8, 17, 21, base) F(9, 18, 22, base)          \
  F(10, 19, 23, base) F(11, 20, 24, base) F(12, 17, 21, base) F(13, 18, 22, base) F(14, 19, 23, base)     \
  F(15, 20, 24, base)
#define AX_SCALE(F, base) "vmovaps (%[sw]), %%zmm16\n\t" AX_ROWS(F, base) "add %[swstep], %[sw]\n\t" "add %[sxstep], %[sx]\n\t"
#define AX_NEXT(c, a, b)                          \
  "tilezero %%tmm" #c "\n\t"                      \
  "tileloadd (%[x],%[ldx],1), %%tmm" #a "\n\t"    \
  "tileloadd (%[w],%[ldw],1), %%tmm" #b "\n\t"    \
  "tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c "\n\t" \
  "add %[xg], %[x]\n\t"                           \
  "add %[wg], %[w]\n\t"
#define AX_L(r) "vmovaps " #r "*64(%[C]), %%zmm" #r "\n\t"
#define AX_S(r) "vmovaps %%zmm" #r ", " #r "*64(%[C])\n\t"
#define AX_ALL(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
#define AX_BODY(F)                                                     \
  AX_ALL(AX_L)                                                         \
  "lea 1024(%[stg]), %%r11\n\t"                                        \
  AX_NEXT(0, 2, 3)                                                     \
  "1:\n\t"                                                             \
  "dec %[ng]\n\t"                                                      \
  "jz 3f\n\t"                                                          \
  AX_NEXT(1, 4, 5)                                                     \
  "tilestored %%tmm0, (%[stg],%[s64],1)\n\t"                           \
  AX_SCALE(F, "%[stg]")                                                \
  "dec %[ng]\n\t"                                                      \
  "jz 4f\n\t"                                                          \
  AX_NEXT(0, 2, 3)                                                     \
  "tilestored %%tmm1, (%%r11,%[s64],1)\n\t"                            \
  AX_SCALE(F, "%%r11")                                                 \
  "jmp 1b\n\t"                                                         \
  "3:\n\t"                                                             \
  "tilestored %%tmm0, (%[stg],%[s64],1)\n\t"                           \
  AX_SCALE(F, "%[stg]")                                                \
  "jmp 5f\n\t"                                                         \
  "4:\n\t"                                                             \
  "tilestored %%tmm1, (%%r11,%[s64],1)\n\t"                            \
  AX_SCALE(F, "%%r11")                                                 \
  "5:\n\t"                                                             \
  AX_ALL(AX_S)

// ng >= 1 groups; x / w at the first group (advancing xg / wg bytes per group), sw / sx advancing
// swstep / sxstep bytes; stg: 2 KiB of staging; C: the 16 × 16 accumulators, read and written back
// (the caller zeroes them before the first group).
template <Sc SC>
void amx_tile_asm(const int8_t* x, int64_t ldx, int64_t xg, const uint8_t* w, int64_t ldw, int64_t wg, const float* sw,
                  int64_t swstep, const float* sx, int64_t sxstep, int64_t ng, int32_t* stg, float* C);

#define AX_DEFINE(SC, F)                                                                                            \
  template <>                                                                                                       \
  void amx_tile_asm<SC>(const int8_t* x, int64_t ldx, int64_t xg, const uint8_t* w, int64_t ldw, int64_t wg,        \
                        const float* sw, int64_t swstep, const float* sx, int64_t sxstep, int64_t ng, int32_t* stg, \
                        float* C) {                                                                                 \
    const int64_t s64 = 64;                                                                                         \
    __asm__ volatile(AX_BODY(F)                                                                                     \
                     : [x] "+r"(x), [w] "+r"(w), [sw] "+r"(sw), [sx] "+r"(sx), [ng] "+r"(ng)                        \
                     : [ldx] "r"(ldx), [xg] "r"(xg), [ldw] "r"(ldw), [wg] "r"(wg), [swstep] "r"(swstep),            \
                       [sxstep] "r"(sxstep), [stg] "r"(stg), [C] "r"(C), [s64] "r"(s64)                             \
                     : "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",        \
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17",      \
                       "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24");                              \
  }
AX_DEFINE(Sc::Fp, AX_FP)
AX_DEFINE(Sc::Exp, AX_EXP)

// The epilogue of a 16-row AMX tile for its first mr rows (store_tile, which needs MR at compile time).
void store_any(const Gemm& a, const float* C, int64_t mb, int64_t mr, int64_t p) {
  switch (mr) {
    case 1: store_tile<1, 1>(a, C, mb, p); break;
    case 2: store_tile<2, 1>(a, C, mb, p); break;
    case 3: store_tile<3, 1>(a, C, mb, p); break;
    case 4: store_tile<4, 1>(a, C, mb, p); break;
    case 5: store_tile<5, 1>(a, C, mb, p); break;
    case 6: store_tile<6, 1>(a, C, mb, p); break;
    case 7: store_tile<7, 1>(a, C, mb, p); break;
    case 8: store_tile<8, 1>(a, C, mb, p); break;
    case 9: store_tile<9, 1>(a, C, mb, p); break;
    case 10: store_tile<10, 1>(a, C, mb, p); break;
    case 11: store_tile<11, 1>(a, C, mb, p); break;
    case 12: store_tile<12, 1>(a, C, mb, p); break;
    case 13: store_tile<13, 1>(a, C, mb, p); break;
    case 14: store_tile<14, 1>(a, C, mb, p); break;
    case 15: store_tile<15, 1>(a, C, mb, p); break;
    default: store_tile<16, 1>(a, C, mb, p); break;
  }
}

// w8a8: 16 token rows [mb, mb+mr) × panel `v` of the expanded pair (column panel p): every 64-deep
// chunk summed in the C tile, one scale step. Rows past mr are computed from readable padding
// (LowbitActs keeps 15 rows of slack) and never stored.
template <Sc SC>
void amx_tile_w8(const Gemm& a, int64_t mb, int64_t mr, int64_t p, int64_t v, int64_t nv) {
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, ldw = nv * 64;
  const int8_t* x = A.codes.as<int8_t>() + mb * kp;
  const uint8_t* w = a.w + v * 64;
  alignas(64) int32_t staging[256];
  __m512 acc[16];
  for (auto& r : acc) r = _mm512_setzero_ps();
  AMX_ZERO(0);
  for (int64_t c = 0; c < kp / 64; ++c) {
    AMX_LOAD(2, x + c * 64, kp);
    AMX_LOAD(3, w + c * 16 * ldw, ldw);
    AMX_DP(0);
  }
  AMX_STORE(0, staging, 64);
  amx_scale<SC>(acc, staging, _mm512_load_ps(a.sw + v * 16), A.scale.as<float>() + mb);
  alignas(64) float C[16 * 16];
  for (int r = 0; r < 16; ++r) _mm512_store_ps(C + 16 * r, acc[r]);
  store_any(a, C, mb, mr, p);
}

// Groups per K block of the AMX loop: a block's A (16 rows) and B (both panels) stay in L1 while
// every 16-row block of the task uses them (int4: 8 × 64 k = 8 KiB of A, 16 KiB of B).
constexpr int64_t kAmxBlockK = 512;

void gemm_amx(Gemm& a, int64_t m0, int64_t m1, int64_t p0, int64_t p1, LowbitScratch& s) {
  const LowbitLayer& L = *a.L;
  const bool exp = L.scheme == LowbitScheme::Mxfp4;
  const int64_t chunk = L.scheme == LowbitScheme::W8A8 ? 64 : L.group;  // k per A tile
  TileConfig cfg;
  cfg.colsb[0] = cfg.colsb[1] = 64;  // C: 16 × 16 int32
  cfg.rows[0] = cfg.rows[1] = 16;
  cfg.colsb[2] = cfg.colsb[4] = static_cast<uint16_t>(chunk);  // A (even, odd groups): 16 tokens × chunk s8
  cfg.rows[2] = cfg.rows[4] = 16;
  cfg.colsb[3] = cfg.colsb[5] = 64;  // B: chunk/4 steps × 16 columns × 4 s8
  cfg.rows[3] = cfg.rows[5] = static_cast<uint8_t>(chunk / 4);
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
  const int64_t wpanel = L.kp * (L.scheme == LowbitScheme::W8A8 ? 16 : 8);
  const int64_t spanel = static_cast<int64_t>(L.w_scale.size()) / L.panels;
  const int64_t blocks = (m1 - m0 + 15) / 16;
  // Accumulators of every 16-row block × panel of the task (at most 16 × 2 KiB), and the staging
  // of the C tiles.
  float* acc = s.amx_acc.as<float>();
  alignas(64) int32_t staging[512];
  for (int64_t pg = p0; pg < p1; pg += 2) {
    const int64_t nv = p1 - pg < 2 ? 1 : 2;
    expand_panels(L, pg, nv, s.wexp.as<uint8_t>(), s.wscale.as<float>(), /*s8=*/true);
    a.w = s.wexp.as<uint8_t>();
    a.sw = s.wscale.as<float>();
    // While the blocks run, bring the next pair's codes and scales into L2, a slice per block.
    const int64_t next = pg + 2 < p1 ? pg + 2 : -1;
    const int64_t nnext = next < 0 ? 0 : (p1 - next < 2 ? 1 : 2);
    const int64_t wbytes = nnext * wpanel, sbytes = nnext * spanel;
    const int64_t wper = (wbytes / blocks + 63) / 64 * 64, sper = (sbytes / blocks + 63) / 64 * 64;
    auto prefetch_next = [&](int64_t t) {
      if (next < 0) return;
      const uint8_t* wn = L.w.as<uint8_t>() + next * wpanel;
      const uint8_t* sn = L.w_scale.as<uint8_t>() + next * spanel;
      for (int64_t o = t * wper; o < (t + 1) * wper && o < wbytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(wn + o), _MM_HINT_T1);
      for (int64_t o = t * sper; o < (t + 1) * sper && o < sbytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(sn + o), _MM_HINT_T1);
    };
    if (L.scheme == LowbitScheme::W8A8) {
      int64_t t = 0;
      for (int64_t mb = m0; mb < m1; mb += 16, ++t) {
        prefetch_next(t);
        const int64_t mr = m1 - mb < 16 ? m1 - mb : 16;
        for (int64_t v = 0; v < nv; ++v) {
          if (exp) amx_tile_w8<Sc::Exp>(a, mb, mr, pg + v, v, nv);
          else amx_tile_w8<Sc::Fp>(a, mb, mr, pg + v, v, nv);
        }
      }
      continue;
    }
    // K blocks outermost: each 16-row block × panel keeps its accumulators in acc between blocks.
    std::memset(acc, 0, static_cast<size_t>(blocks * nv) * 1024);
    const int64_t group = a.group, ldw = nv * 64, kg = kAmxBlockK / group > 0 ? kAmxBlockK / group : 1;
    const int64_t M = a.A->m, kp = a.kp;
    for (int64_t g0 = 0; g0 < a.G; g0 += kg) {
      const int64_t ng = a.G - g0 < kg ? a.G - g0 : kg;
      int64_t t = 0;
      for (int64_t mb = m0; mb < m1; mb += 16, ++t) {
        if (g0 == 0) prefetch_next(t);
        const int8_t* x = a.A->codes.as<int8_t>() + mb * kp + g0 * group;
        const float* sx = a.A->scale.as<float>() + g0 * M + mb;
        for (int64_t v = 0; v < nv; ++v) {
          const uint8_t* w = a.w + v * 64 + g0 * (group / 4) * ldw;
          const float* sw = a.sw + (g0 * nv + v) * 16;
          float* C = acc + (t * nv + v) * 256;
          if (exp) amx_tile_asm<Sc::Exp>(x, kp, group, w, ldw, (group / 4) * ldw, sw, nv * 64, sx, M * 4, ng, staging, C);
          else amx_tile_asm<Sc::Fp>(x, kp, group, w, ldw, (group / 4) * ldw, sw, nv * 64, sx, M * 4, ng, staging, C);
        }
      }
    }
    int64_t t = 0;
    for (int64_t mb = m0; mb < m1; mb += 16, ++t) {
      const int64_t mr = m1 - mb < 16 ? m1 - mb : 16;
      for (int64_t v = 0; v < nv; ++v) store_any(a, acc + (t * nv + v) * 256, mb, mr, pg + v);
    }
  }
  __asm__ volatile("tilerelease" ::);  // back to the initial state: no tile data to save on switches
}

void gemm(const LowbitLayer& L, const LowbitActs& A, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
          float* Y, int64_t ldy, bool epilogue, LowbitScratch& s) {
  Gemm a;
  a.L = &L;
  a.A = &A;
  a.kp = L.kp;
  a.G = L.groups;
  a.group = L.group;
  a.spg = L.group / 4;
  a.Y = Y;
  a.ldy = ldy;
  a.epilogue = epilogue;
  if (L.scheme == LowbitScheme::W4A16) {
    gemm_w4a16(a, m0, m1, p0, p1, s);
    return;
  }
  const bool exp = L.scheme == LowbitScheme::Mxfp4;
  if (m1 - m0 <= kGemvRows) {  // a few tokens: stream the weights, expanded in registers
    if (exp) gemv_rows<Sc::Exp>(a, m0, m1, p0, p1);
    else gemv_rows<Sc::Fp>(a, m0, m1, p0, p1);
    return;
  }
  if (amx_enabled()) {
    gemm_amx(a, m0, m1, p0, p1, s);
    return;
  }
  // Bytes of one panel's codes and scales in the kernel format (for prefetching the next pair).
  const int64_t wpanel = L.kp * (L.scheme == LowbitScheme::W8A8 ? 16 : 8);
  const int64_t spanel = static_cast<int64_t>(L.w_scale.size()) / L.panels;
  const int64_t tiles = (m1 - m0 + kMr - 1) / kMr;
  for (int64_t pg = p0; pg < p1; pg += 2) {
    const int64_t nv = p1 - pg < 2 ? 1 : 2;
    expand_panels(L, pg, nv, s.wexp.as<uint8_t>(), s.wscale.as<float>());
    a.w = s.wexp.as<uint8_t>();
    a.sw = s.wscale.as<float>();
    // While the tiles run, bring the next pair's codes and scales into L2, a slice per tile, so
    // that the next expansion does not wait on memory.
    const int64_t next = pg + 2 < p1 ? pg + 2 : -1;
    const int64_t nnext = next < 0 ? 0 : (p1 - next < 2 ? 1 : 2);
    const int64_t wbytes = nnext * wpanel, sbytes = nnext * spanel;
    const int64_t wper = (wbytes / tiles + 63) / 64 * 64, sper = (sbytes / tiles + 63) / 64 * 64;
    const uint8_t* wn = next < 0 ? nullptr : L.w.as<uint8_t>() + next * wpanel;
    const uint8_t* sn = next < 0 ? nullptr : L.w_scale.as<uint8_t>() + next * spanel;
    int64_t t = 0;
    for (int64_t mb = m0; mb < m1; mb += kMr, ++t) {
      if (wn != nullptr) {
        for (int64_t o = t * wper; o < (t + 1) * wper && o < wbytes; o += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wn + o), _MM_HINT_T1);
        for (int64_t o = t * sper; o < (t + 1) * sper && o < sbytes; o += 64)
          _mm_prefetch(reinterpret_cast<const char*>(sn + o), _MM_HINT_T1);
      }
      const int64_t mr = m1 - mb < kMr ? m1 - mb : kMr;
      if (exp) tile_dispatch<Sc::Exp>(a, mb, mr, pg, nv);
      else tile_dispatch<Sc::Fp>(a, mb, mr, pg, nv);
    }
  }
}

// ---- low-rank up-projection and the final add (side / unfused modes) --------------------------

void lowrank_up(const LowbitLayer& L, const float* D, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                float* U, int64_t ldu) {
  const int64_t R = L.rank;
  const bool bf16 = L.lowrank_bf16;
  for (int64_t m = m0; m < m1; m += 4) {
    const int rows = static_cast<int>(m1 - m < 4 ? m1 - m : 4);
    for (int64_t p = p0; p < p1; p += 4) {
      const int pn = static_cast<int>(p1 - p < 4 ? p1 - p : 4);
      __m512 u[4][4];
      for (int i = 0; i < 4; ++i)
        for (int v = 0; v < 4; ++v) u[i][v] = _mm512_setzero_ps();
      for (int64_t r = 0; r < R; ++r) {
        __m512 lu[4];
        for (int v = 0; v < 4; ++v) lu[v] = v < pn ? load_l(L.l_up, bf16, ((p + v) * R + r) * 16) : _mm512_setzero_ps();
        for (int i = 0; i < 4; ++i) {
          if (i >= rows) break;
          const __m512 d = _mm512_set1_ps(D[(m + i) * R + r]);
          for (int v = 0; v < 4; ++v) u[i][v] = _mm512_fmadd_ps(d, lu[v], u[i][v]);
        }
      }
      for (int i = 0; i < rows; ++i)
        for (int v = 0; v < pn; ++v) _mm512_storeu_ps(U + (m + i) * ldu + (p + v) * 16, u[i][v]);
    }
  }
}

void finish(const LowbitLayer& L, const float* U, int64_t ldu, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
            float* Y, int64_t ldy) {
  const bool addu = U != nullptr && L.rank > 0;
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * 16;
      const __mmask16 mk = mask16(L.n - n0);
      __m512 y = _mm512_maskz_loadu_ps(mk, Y + m * ldy + n0);
      if (addu) y = _mm512_add_ps(y, _mm512_loadu_ps(U + m * ldu + n0));
      if (L.has_bias) y = _mm512_add_ps(y, _mm512_load_ps(L.bias.as<float>() + n0));
      _mm512_mask_storeu_ps(Y + m * ldy + n0, mk, y);
    }
}

}  // namespace

const LowbitKernels kLowbitKernels = {quantize_rows, down_rows, gemm, lowrank_up, finish};

}  // namespace avx512
}  // namespace svdq
