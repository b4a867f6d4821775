// AVX2 (+FMA) low-bit layer kernels (lowbit.h). Bit-identical to lowbit_portable.cpp.
//
// Integer block sums: vpmaddubsw (u8 weight = code + offset, s8 activation) then vpmaddwd by ones
// into int32; a pair of products never exceeds 2·24·12 = 576 for 2·E2M1 or 2·15·8 for INT4, so the
// int16 step cannot saturate. INT8 weights (w8a8) use the sign trick instead, |w| × sign(x, w):
// activation codes are within ±127 (formats.h quantize_int8), so pairs stay below 2·128·127.
// The mxfp4 product fl(I·2^e) is formed in double (exact) and rounded once to fp32, which is what
// vscalefps and the portable code compute.
//
// Micro-tiles: 4 token rows × one panel of 16 columns (two 8-lane halves); weights are expanded to
// u8 per panel into the thread's scratch buffer.
//
// This file is compiled with -mavx2 -mfma -mf16c; everything has internal linkage and no
// vague-linkage inline function is used (codecs.h explains why).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/lowbit.h"

namespace svdq {
namespace avx2 {
namespace {

constexpr int kMr = 4;

inline __m256i mask8(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int c = n < 0 ? 0 : (n > 8 ? 8 : static_cast<int>(n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx);
}

inline __m256i bcast_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256i lut_e2m1x2_plus12() {
  return _mm256_broadcastsi128_si256(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
}
inline __m256i lut_e2m1x2() {
  return _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
}

inline __m256 load_l(const AlignedBytes& b, bool bf16, int64_t idx) {
  if (bf16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.as<uint16_t>() + idx));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps(b.as<float>() + idx);
}

inline __m256 e4m3_to_f32(__m256i b) {
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
  const __m256i mag = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7F)), 20);
  return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(sign, mag)), _mm256_set1_ps(1.329227995784916e36f));
}

// fl(I · 2^e) per lane, one rounding; NaN where e is NaN. e holds integers in [-256, 254].
// Exact product in double, rounded once to fp32 (the general path).
inline __m256 scale_pow2_slow(__m256i I, __m256 e) {
  const __m256i ei = _mm256_cvtps_epi32(e);
  const __m256i bias = _mm256_set1_epi64x(1023);
  const __m256i e_lo = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(ei)), bias);
  const __m256i e_hi = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(ei, 1)), bias);
  const __m256d p_lo = _mm256_castsi256_pd(_mm256_slli_epi64(e_lo, 52));
  const __m256d p_hi = _mm256_castsi256_pd(_mm256_slli_epi64(e_hi, 52));
  const __m256d t_lo = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(I)), p_lo);
  const __m256d t_hi = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(I, 1)), p_hi);
  const __m256 t = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(t_lo)), _mm256_cvtpd_ps(t_hi), 1);
  return _mm256_add_ps(t, _mm256_sub_ps(e, e));  // + 0, or NaN when e is NaN
}

// The usual case: every e in [-126, 127], so 2^e is a normal fp32 and one fp32 multiplication
// (correctly rounded, also into the subnormal range) gives the same fl(I · 2^e).
inline __m256 scale_pow2(__m256i I, __m256 e) {
  const __m256 lo = _mm256_cmp_ps(e, _mm256_set1_ps(-126.0f), _CMP_GE_OQ);
  const __m256 hi = _mm256_cmp_ps(e, _mm256_set1_ps(127.0f), _CMP_LE_OQ);
  if (_mm256_movemask_ps(_mm256_and_ps(lo, hi)) != 0xFF) return scale_pow2_slow(I, e);
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(e), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(_mm256_cvtepi32_ps(I), _mm256_castsi256_ps(bits));
}

// ---- quantize_act ------------------------------------------------------------------------------

void xhat_row(const LowbitLayer& L, const float* x, float* out) {
  const int64_t K = L.k;
  int64_t i = 0;
  if (L.has_smooth) {
    const float* lam = L.smooth.as<float>();
    for (; i + 8 <= K; i += 8) _mm256_store_ps(out + i, _mm256_div_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(lam + i)));
    for (; i < K; ++i) out[i] = x[i] / lam[i];
  } else {
    for (; i + 8 <= K; i += 8) _mm256_store_ps(out + i, _mm256_loadu_ps(x + i));
    for (; i < K; ++i) out[i] = x[i];
  }
  for (; i < L.kp; ++i) out[i] = 0.0f;
}

// D: ROWS rows × 16 r values, one fma chain in k order per (row, r).
template <int ROWS>
void down_tile(const LowbitLayer& L, const float* xh, int64_t r0, float* D) {
  const int64_t K = L.k, kp = L.kp, R = L.rank;
  const bool bf16 = L.lowrank_bf16;
  __m256 acc[ROWS][2];
  for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256 l0 = load_l(L.l_down_t, bf16, ((r0 / 16) * kp + k) * 16);  // [rank_pad/16][kp][16]
    const __m256 l1 = load_l(L.l_down_t, bf16, ((r0 / 16) * kp + k) * 16 + 8);
    for (int i = 0; i < ROWS; ++i) {
      const __m256 xb = _mm256_set1_ps(xh[i * kp + k]);
      acc[i][0] = _mm256_fmadd_ps(xb, l0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xb, l1, acc[i][1]);
    }
  }
  for (int i = 0; i < ROWS; ++i)
    for (int h = 0; h < 2; ++h) {
      const int64_t r = r0 + 8 * h;
      _mm256_maskstore_ps(D + i * R + r, mask8(R - r), acc[i][h]);
    }
}

void down_block(const LowbitLayer& L, const float* xh, int64_t rows, float* D, int64_t rb, int64_t re) {
  for (int64_t i0 = 0; i0 < rows; i0 += 4) {
    const int64_t n = rows - i0 < 4 ? rows - i0 : 4;
    for (int64_t r0 = rb; r0 < re; r0 += 16) {
      const float* x = xh + i0 * L.kp;
      float* d = D + i0 * L.rank;
      switch (n) {
        case 1: down_tile<1>(L, x, r0, d); break;
        case 2: down_tile<2>(L, x, r0, d); break;
        case 3: down_tile<3>(L, x, r0, d); break;
        default: down_tile<4>(L, x, r0, d); break;
      }
    }
  }
}

void quantize_row(const LowbitLayer& L, const float* xr, int64_t m, LowbitActs& A, uint8_t* tmp) {
  const FormatKernels& fk = kFormatKernels;
  const int64_t K = L.k, kp = L.kp, G = L.groups;
  float* scale = A.scale.as<float>() + m;  // group-major: element g at g·M
  int32_t* corr = A.corr.as<int32_t>() + m;
  const int64_t gs = A.m;
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
  } else {
    uint8_t* packed = tmp;
    uint8_t* sb = tmp + kp / 2;
    if (L.scheme == LowbitScheme::W4A4) {
      fk.quantize_int4(xr, 1, K, packed, reinterpret_cast<float*>(sb));
      for (int64_t g = 0; g < G; ++g) std::memcpy(scale + g * gs, sb + 4 * g, 4);
    } else if (L.scheme == LowbitScheme::Mxfp4) {
      fk.quantize_mxfp4(xr, 1, K, packed, sb, L.act_mx_rule);
      for (int64_t g = 0; g < G; ++g)
        scale[g * gs] = sb[g] == kE8M0Nan ? f32_from_bits(0x7FC00000u) : static_cast<float>(static_cast<int>(sb[g]) - 256);
    } else {
      const float gx = nvfp4_global_scale(fk.amax_finite(xr, K));
      fk.quantize_nvfp4(xr, 1, K, gx, packed, sb);
      for (int64_t g = 0; g < G; ++g) scale[g * gs] = e4m3_decode(sb[g]);
      A.row_scale.as<float>()[m] =
          static_cast<float>(1.0 / (4.0 * static_cast<double>(gx) * static_cast<double>(L.w_global_scale)));
    }
    const bool int4 = L.scheme == LowbitScheme::W4A4;
    const __m256i lut = lut_e2m1x2();
    for (int64_t i = 0; i < kp; i += 32) {  // kp is a multiple of 16; 16 bytes give 32 codes
      __m128i b;
      if (kp - i >= 32) b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + i / 2));
      else b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + i / 2));
      const __m256i w = _mm256_cvtepu8_epi16(b);
      const __m256i nib = _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi16(0x000F)),
                                          _mm256_and_si256(_mm256_slli_epi16(w, 4), _mm256_set1_epi16(0x0F00)));
      const __m256i q = int4 ? _mm256_sub_epi8(_mm256_xor_si256(nib, _mm256_set1_epi8(8)), _mm256_set1_epi8(8))
                             : _mm256_shuffle_epi8(lut, nib);
      if (kp - i >= 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), q);
      else _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm256_castsi256_si128(q));
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    int32_t sum = 0;
    for (int64_t i = g * L.group; i < (g + 1) * L.group; ++i) sum += codes[i];
    corr[g * gs] = -L.offset * sum;
  }
}

void quantize_rows(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1, LowbitActs& A,
                   bool with_down, LowbitScratch& s) {
  float* rows = s.rows.as<float>();
  for (int64_t m = m0; m < m1; ++m) {
    float* xr = rows + (m - m0) * L.kp;
    xhat_row(L, X + m * L.k, xr);
    quantize_row(L, xr, m, A, s.codes.as<uint8_t>());
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

enum class Sc { Fp, Exp };

struct Gemm {
  const LowbitLayer* L;
  const LowbitActs* A;
  int64_t kp, G, group, spg;
  const uint8_t* w;   // u8 weights of one panel, [kp/4][64]
  const float* sw;    // fp32 scales of the panel (Exp: e_w), [G][16]
  float* Y;
  int64_t ldy;
  bool epilogue;
};

template <int MR>
void store_tile(const Gemm& a, const float* C, int64_t mb, int64_t p) {
  const LowbitLayer& L = *a.L;
  const bool nv4 = L.scheme == LowbitScheme::Nvfp4;
  __m256 y[MR][2];
  for (int i = 0; i < MR; ++i) {
    const __m256 alpha = _mm256_set1_ps(nv4 ? a.A->row_scale.as<float>()[mb + i] : 1.0f);
    for (int h = 0; h < 2; ++h) {
      y[i][h] = _mm256_load_ps(C + (2 * i + h) * 8);
      if (nv4) y[i][h] = _mm256_mul_ps(y[i][h], alpha);
    }
  }
  if (a.epilogue) {
    if (L.rank > 0) {
      __m256 u[MR][2];
      for (int i = 0; i < MR; ++i) u[i][0] = u[i][1] = _mm256_setzero_ps();
      const float* D = a.A->down.as<float>() + mb * L.rank;
      for (int64_t r = 0; r < L.rank; ++r) {
        const __m256 l0 = load_l(L.l_up, L.lowrank_bf16, (p * L.rank + r) * 16);
        const __m256 l1 = load_l(L.l_up, L.lowrank_bf16, (p * L.rank + r) * 16 + 8);
        for (int i = 0; i < MR; ++i) {
          const __m256 d = _mm256_set1_ps(D[i * L.rank + r]);
          u[i][0] = _mm256_fmadd_ps(d, l0, u[i][0]);
          u[i][1] = _mm256_fmadd_ps(d, l1, u[i][1]);
        }
      }
      for (int i = 0; i < MR; ++i)
        for (int h = 0; h < 2; ++h) y[i][h] = _mm256_add_ps(y[i][h], u[i][h]);
    }
    if (L.has_bias) {
      for (int h = 0; h < 2; ++h) {
        const __m256 b = _mm256_load_ps(L.bias.as<float>() + p * 16 + 8 * h);
        for (int i = 0; i < MR; ++i) y[i][h] = _mm256_add_ps(y[i][h], b);
      }
    }
  }
  for (int h = 0; h < 2; ++h) {
    const int64_t n0 = p * 16 + 8 * h;
    if (n0 >= L.n) break;
    const __m256i mk = mask8(L.n - n0);
    for (int i = 0; i < MR; ++i) _mm256_maskstore_ps(a.Y + (mb + i) * a.ldy + n0, mk, y[i][h]);
  }
}

template <int MR, Sc SC, bool W8>
void micro(const Gemm& a, int64_t mb, int64_t p) {
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, G = a.G, spg = a.spg;
  const int8_t* x[MR];
  const float* sx[MR];
  const int32_t* cx[MR];
  for (int i = 0; i < MR; ++i) {
    x[i] = A.codes.as<int8_t>() + (mb + i) * kp;
    sx[i] = A.scale.as<float>() + mb + i;  // element g at g·M
    cx[i] = A.corr.as<int32_t>() + mb + i;
  }
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) float C[MR * 16];
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256i I[MR][2];
    for (int i = 0; i < MR; ++i) {
      // W8: the sign trick needs no offset correction.
      const __m256i c = W8 ? _mm256_setzero_si256() : _mm256_set1_epi32(cx[i][g * A.m]);
      I[i][0] = I[i][1] = c;
    }
    const uint8_t* wg = a.w + g * spg * 64;
    const int64_t xo = g * a.group;
    for (int64_t j = 0; j < spg; ++j) {
      __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wg + j * 64));
      __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wg + j * 64 + 32));
      __m256i s0 = w0, s1 = w1;
      if (W8) {
        s0 = _mm256_xor_si256(w0, _mm256_set1_epi8(static_cast<char>(0x80)));  // the signed code
        s1 = _mm256_xor_si256(w1, _mm256_set1_epi8(static_cast<char>(0x80)));
        w0 = _mm256_abs_epi8(s0);
        w1 = _mm256_abs_epi8(s1);
      }
      for (int i = 0; i < MR; ++i) {
        const __m256i xb = bcast_i32(x[i] + xo + 4 * j);
        const __m256i x0 = W8 ? _mm256_sign_epi8(xb, s0) : xb;
        const __m256i x1 = W8 ? _mm256_sign_epi8(xb, s1) : xb;
        I[i][0] = _mm256_add_epi32(I[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(w0, x0), ones));
        I[i][1] = _mm256_add_epi32(I[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(w1, x1), ones));
      }
    }
    const __m256 sw0 = _mm256_load_ps(a.sw + g * 16);
    const __m256 sw1 = _mm256_load_ps(a.sw + g * 16 + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 s = _mm256_set1_ps(sx[i][g * A.m]);
      if (SC == Sc::Fp) {
        acc[i][0] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(I[i][0]), sw0), s, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(I[i][1]), sw1), s, acc[i][1]);
      } else {
        acc[i][0] = _mm256_add_ps(acc[i][0], scale_pow2(I[i][0], _mm256_add_ps(s, sw0)));
        acc[i][1] = _mm256_add_ps(acc[i][1], scale_pow2(I[i][1], _mm256_add_ps(s, sw1)));
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(C + 16 * i, acc[i][0]);
    _mm256_store_ps(C + 16 * i + 8, acc[i][1]);
  }
  store_tile<MR>(a, C, mb, p);
}

template <Sc SC, bool W8>
void micro_rows(const Gemm& a, int64_t mb, int64_t mr, int64_t p) {
  switch (mr) {
    case 1: micro<1, SC, W8>(a, mb, p); break;
    case 2: micro<2, SC, W8>(a, mb, p); break;
    case 3: micro<3, SC, W8>(a, mb, p); break;
    default: micro<4, SC, W8>(a, mb, p); break;
  }
}

// Panel p of a 4-bit layer -> u8 operands (code + offset) and fp32 scales.
void expand_panel(const LowbitLayer& L, int64_t p, uint8_t* wexp, float* wsc) {
  const int64_t kp = L.kp, G = L.groups;
  const bool e2m1 = L.scheme == LowbitScheme::Mxfp4 || L.scheme == LowbitScheme::Nvfp4;
  const __m256i lut = lut_e2m1x2_plus12();
  const __m256i low = _mm256_set1_epi8(0x0F);
  const uint8_t* src = L.w.as<uint8_t>() + p * kp * 8;
  for (int64_t j = 0; j < kp / 8; ++j)
    for (int h = 0; h < 2; ++h) {
      const __m256i b = _mm256_load_si256(reinterpret_cast<const __m256i*>(src + j * 64 + 32 * h));
      __m256i lo = _mm256_and_si256(b, low);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), low);
      if (e2m1) {
        lo = _mm256_shuffle_epi8(lut, lo);
        hi = _mm256_shuffle_epi8(lut, hi);
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(wexp + (2 * j) * 64 + 32 * h), lo);
      _mm256_store_si256(reinterpret_cast<__m256i*>(wexp + (2 * j + 1) * 64 + 32 * h), hi);
    }
  if (e2m1) {
    const uint8_t* sb = L.w_scale.as<uint8_t>() + p * G * 16;
    for (int64_t g = 0; g < G; ++g)
      for (int h = 0; h < 2; ++h) {
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sb + g * 16 + 8 * h)));
        const __m256 f = L.scheme == LowbitScheme::Mxfp4 ? _mm256_cvtepi32_ps(b) : e4m3_to_f32(b);
        _mm256_store_ps(wsc + g * 16 + 8 * h, f);
      }
  }
}

// ---- w4a16: fp32 activations × INT4 weights ---------------------------------------------------
// Per group P = Σ_k x̂_k·q_k as one fma chain in k order, then acc = fma(P, s_w, acc) (the portable
// order). The panel's INT4 weights are expanded to fp32 q ([kp][16]) in the scratch buffer.

void expand_w4a16(const LowbitLayer& L, int64_t p, float* wf) {
  const int64_t kp = L.kp;
  const uint8_t* src = L.w.as<uint8_t>() + p * kp * 8;
  const __m256i low = _mm256_set1_epi32(0xF);
  const __m256 eight = _mm256_set1_ps(8.0f);
  for (int64_t j = 0; j < kp / 8; ++j)
    for (int half = 0; half < 2; ++half) {
      const __m256i b = _mm256_load_si256(reinterpret_cast<const __m256i*>(src + j * 64 + 32 * half));
      for (int h = 0; h < 2; ++h)
        for (int t = 0; t < 4; ++t) {
          const __m256i n = _mm256_and_si256(_mm256_srli_epi32(b, 8 * t + 4 * h), low);
          _mm256_store_ps(wf + (8 * j + 4 * h + t) * 16 + 8 * half, _mm256_sub_ps(_mm256_cvtepi32_ps(n), eight));
        }
    }
}

template <int MR>
void tile_w4a16(const Gemm& a, const float* wf, int64_t mb, int64_t p) {
  const LowbitActs& A = *a.A;
  const int64_t kp = a.kp, G = a.G;
  const float* x = A.xhat.as<float>() + mb * kp;
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256 P[MR][2];
    for (int i = 0; i < MR; ++i) P[i][0] = P[i][1] = _mm256_setzero_ps();
    for (int64_t k = g * 64; k < g * 64 + 64; ++k) {
      const __m256 q0 = _mm256_load_ps(wf + k * 16), q1 = _mm256_load_ps(wf + k * 16 + 8);
      for (int i = 0; i < MR; ++i) {
        const __m256 xb = _mm256_set1_ps(x[i * kp + k]);
        P[i][0] = _mm256_fmadd_ps(xb, q0, P[i][0]);
        P[i][1] = _mm256_fmadd_ps(xb, q1, P[i][1]);
      }
    }
    const float* sw = a.L->w_scale.as<float>() + (p * G + g) * 16;
    const __m256 s0 = _mm256_load_ps(sw), s1 = _mm256_load_ps(sw + 8);
    for (int i = 0; i < MR; ++i) {
      acc[i][0] = _mm256_fmadd_ps(P[i][0], s0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(P[i][1], s1, acc[i][1]);
    }
  }
  alignas(32) float C[MR * 16];
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(C + 16 * i, acc[i][0]);
    _mm256_store_ps(C + 16 * i + 8, acc[i][1]);
  }
  store_tile<MR>(a, C, mb, p);
}

void gemm_w4a16(const Gemm& a, int64_t m0, int64_t m1, int64_t p0, int64_t p1, LowbitScratch& s) {
  float* wf = s.wexp.as<float>();
  for (int64_t p = p0; p < p1; ++p) {
    expand_w4a16(*a.L, p, wf);
    for (int64_t mb = m0; mb < m1; mb += 3) {
      const int64_t rows = m1 - mb < 3 ? m1 - mb : 3;
      if (rows == 1) tile_w4a16<1>(a, wf, mb, p);
      else if (rows == 2) tile_w4a16<2>(a, wf, mb, p);
      else tile_w4a16<3>(a, wf, mb, p);
    }
  }
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
  const bool w8 = L.scheme == LowbitScheme::W8A8;
  for (int64_t p = p0; p < p1; ++p) {
    if (w8) {
      a.w = L.w.as<uint8_t>() + p * L.kp * 16;
      a.sw = L.w_scale.as<float>() + p * 16;
    } else {
      expand_panel(L, p, s.wexp.as<uint8_t>(), s.wscale.as<float>());
      a.w = s.wexp.as<uint8_t>();
      a.sw = L.scheme == LowbitScheme::W4A4 ? L.w_scale.as<float>() + p * L.groups * 16 : s.wscale.as<float>();
    }
    for (int64_t mb = m0; mb < m1; mb += kMr) {
      const int64_t mr = m1 - mb < kMr ? m1 - mb : kMr;
      if (w8) micro_rows<Sc::Fp, true>(a, mb, mr, p);
      else if (exp) micro_rows<Sc::Exp, false>(a, mb, mr, p);
      else micro_rows<Sc::Fp, false>(a, mb, mr, p);
    }
  }
}

// ---- low-rank up-projection and the final add ---------------------------------------------------

void lowrank_up(const LowbitLayer& L, const float* D, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                float* U, int64_t ldu) {
  const int64_t R = L.rank;
  for (int64_t m = m0; m < m1; m += 2) {
    const int rows = m1 - m < 2 ? 1 : 2;
    for (int64_t p = p0; p < p1; ++p) {
      __m256 u[2][2];
      for (int i = 0; i < 2; ++i) u[i][0] = u[i][1] = _mm256_setzero_ps();
      for (int64_t r = 0; r < R; ++r) {
        const __m256 l0 = load_l(L.l_up, L.lowrank_bf16, (p * R + r) * 16);
        const __m256 l1 = load_l(L.l_up, L.lowrank_bf16, (p * R + r) * 16 + 8);
        for (int i = 0; i < rows; ++i) {
          const __m256 d = _mm256_set1_ps(D[(m + i) * R + r]);
          u[i][0] = _mm256_fmadd_ps(d, l0, u[i][0]);
          u[i][1] = _mm256_fmadd_ps(d, l1, u[i][1]);
        }
      }
      for (int i = 0; i < rows; ++i) {
        _mm256_storeu_ps(U + (m + i) * ldu + p * 16, u[i][0]);
        _mm256_storeu_ps(U + (m + i) * ldu + p * 16 + 8, u[i][1]);
      }
    }
  }
}

void finish(const LowbitLayer& L, const float* U, int64_t ldu, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
            float* Y, int64_t ldy) {
  const bool addu = U != nullptr && L.rank > 0;
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n0 = p0 * 16; n0 < p1 * 16 && n0 < L.n; n0 += 8) {
      const __m256i mk = mask8(L.n - n0);
      __m256 y = _mm256_maskload_ps(Y + m * ldy + n0, mk);
      if (addu) y = _mm256_add_ps(y, _mm256_loadu_ps(U + m * ldu + n0));
      if (L.has_bias) y = _mm256_add_ps(y, _mm256_load_ps(L.bias.as<float>() + n0));
      _mm256_maskstore_ps(Y + m * ldy + n0, mk, y);
    }
}

}  // namespace

const LowbitKernels kLowbitKernels = {quantize_rows, down_rows, gemm, lowrank_up, finish};

}  // namespace avx2
}  // namespace svdq
