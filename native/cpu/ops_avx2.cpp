// AVX2 loops of the graph ops (ops.h): the generic SIMD code of ops_simd.inc over 8-lane ymm
// vectors; row tails go through a small stack buffer.
//
// This file is compiled with -mavx2 -mfma -mf16c. Everything here has internal linkage and no std::
// inline function is called (see codecs.h).
#include <immintrin.h>

#include <cstdint>

#include "svdquant/ops.h"

namespace svdq {
namespace avx2 {
namespace {

struct V {
  using T = __m256;
  using M = __m256;
  struct D {
    __m256d a, b;
  };
  static constexpr int W = 8;

  static T set1(float v) { return _mm256_set1_ps(v); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T loadn(const float* p, int64_t n, float fill) {  // 0 <= n < 8
    alignas(32) float b[8];
    for (int i = 0; i < 8; ++i) b[i] = i < n ? p[i] : fill;
    return _mm256_load_ps(b);
  }
  static void storen(float* p, T v, int64_t n) {
    alignas(32) float b[8];
    _mm256_store_ps(b, v);
    for (int64_t i = 0; i < n; ++i) p[i] = b[i];
  }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T div(T a, T b) { return _mm256_div_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T fnma(T a, T b, T c) { return _mm256_fnmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T min(T a, T b) { return _mm256_min_ps(a, b); }
  static T abs(T a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static T neg(T a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  static T copysign(T mag, T sgn) {
    const T s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
  }
  static T round(T a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static T scale2n(T p, T n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i b = _mm256_set1_epi32(127);
    const T s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, b), 23));
    const T s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, b), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  }
  static void sqr_split(T x, T& hi, T& lo) {
    hi = _mm256_mul_ps(x, x);
    lo = _mm256_fmsub_ps(x, x, hi);
  }
  static M le(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static M lt(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M isnan(T a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static M mor(M a, M b) { return _mm256_or_ps(a, b); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static M none() { return _mm256_setzero_ps(); }
  static T select(M m, T a, T b) { return _mm256_blendv_ps(b, a, m); }
  static float hmax(T v) {
    alignas(32) float l[8];
    _mm256_store_ps(l, v);
    float m = l[0];
    for (int i = 1; i < 8; ++i) m = l[i] > m ? l[i] : m;
    return m;
  }
  static D dzero() { return D{_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void dacc(D& d, T x) {
    d.a = _mm256_add_pd(d.a, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    d.b = _mm256_add_pd(d.b, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
  }
  static void dacc_sq(D& d, T x) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    d.a = _mm256_fmadd_pd(lo, lo, d.a);
    d.b = _mm256_fmadd_pd(hi, hi, d.b);
  }
  static double dsum(const D& d) {
    alignas(32) double l[4];
    _mm256_store_pd(l, _mm256_add_pd(d.a, d.b));
    return (l[0] + l[1]) + (l[2] + l[3]);
  }
};

#include "ops_simd.inc"

}  // namespace

const OpsKernels kOpsKernels = {Isa::Avx2, exp_n,        erf_n,          gelu_erf_n,  gelu_tanh_n,
                                silu_n,    add_n,        softmax_rows,   layernorm_rows, rmsnorm_rows, softmax_tile};

}  // namespace avx2
}  // namespace svdq
