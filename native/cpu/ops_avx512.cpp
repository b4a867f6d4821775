// AVX-512 loops of the graph ops (ops.h): the generic SIMD code of ops_simd.inc over 16-lane zmm
// vectors, with masked loads and stores for row tails.
//
// This file is compiled with -mavx2 -mfma -mf16c -mavx512{f,bw,vl,dq,vnni}. Everything here has
// internal linkage and no std:: inline function is called (see codecs.h).
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

#include "svdquant/ops.h"

namespace svdq {
namespace avx512 {
namespace {

struct V {
  using T = __m512;
  using M = __mmask16;
  struct D {
    __m512d a, b;
  };
  static constexpr int W = 16;

  static __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }  // 0 <= n < 16
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T loadn(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(n), p);
  }
  static void storen(float* p, T v, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T fnma(T a, T b, T c) { return _mm512_fnmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  static T abs(T a) { return _mm512_abs_ps(a); }
  static T neg(T a) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN)));
  }
  static T copysign(T mag, T sgn) {
    const __m512i s = _mm512_set1_epi32(INT32_MIN);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(s, _mm512_castps_si512(mag)),
                                               _mm512_and_si512(s, _mm512_castps_si512(sgn))));
  }
  static T round(T a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p·2^n in one instruction, rounded once (subnormal results included), as the two exact
  // power-of-two factors of the other levels give.
  static T scale2n(T p, T n) { return _mm512_scalef_ps(p, n); }
  static void sqr_split(T x, T& hi, T& lo) {
    hi = _mm512_mul_ps(x, x);
    lo = _mm512_fmsub_ps(x, x, hi);
  }
  static M le(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static M lt(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M isnan(T a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static M mor(M a, M b) { return static_cast<M>(a | b); }
  static bool any(M m) { return m != 0; }
  static M none() { return 0; }
  static T select(M m, T a, T b) { return _mm512_mask_blend_ps(m, b, a); }
  static float hmax(T v) {
    alignas(64) float l[16];
    _mm512_store_ps(l, v);
    float m = l[0];
    for (int i = 1; i < 16; ++i) m = l[i] > m ? l[i] : m;
    return m;
  }
  static D dzero() { return D{_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static void dacc(D& d, T x) {
    d.a = _mm512_add_pd(d.a, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    d.b = _mm512_add_pd(d.b, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
  }
  static void dacc_sq(D& d, T x) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    d.a = _mm512_fmadd_pd(lo, lo, d.a);
    d.b = _mm512_fmadd_pd(hi, hi, d.b);
  }
  static double dsum(const D& d) {
    alignas(64) double l[8];
    _mm512_store_pd(l, _mm512_add_pd(d.a, d.b));
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }
};

#include "ops_simd.inc"

}  // namespace

const OpsKernels kOpsKernels = {Isa::Avx512, exp_n,        erf_n,          gelu_erf_n,  gelu_tanh_n,
                                silu_n,      add_n,        softmax_rows,   layernorm_rows, rmsnorm_rows, softmax_tile};

}  // namespace avx512
}  // namespace svdq
