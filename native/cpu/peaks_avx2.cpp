// AVX2 peak loops: 12 independent 256-bit FMA chains; int8 via vpmaddubsw + vpmaddwd + vpaddd
// (the AVX2 int8 dot product, 32 multiply-adds per three instructions).
#include <immintrin.h>

#include "svdquant/peaks.h"

namespace svdq {
namespace avx2 {
namespace {

// Named accumulators so that they live in registers; the empty asm statements keep the optimizer
// from folding the constant updates.
#define SVDQ_BARRIER4(a, b, c, d) __asm__ volatile("" : "+x"(a), "+x"(b), "+x"(c), "+x"(d))

double fp32_fma(int64_t iters) {
  __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3);
  __m256 a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7);
  const __m256 m = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(0.9999999f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
    a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
    a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c);
    SVDQ_BARRIER4(a0, a1, a2, a3); SVDQ_BARRIER4(a4, a5, a6, a7);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  volatile float sink = _mm256_cvtss_f32(s);
  (void)sink;
  return static_cast<double>(iters) * 8 * 8 * 2;
}

// One AVX2 int8 dot step: vpmaddubsw (u8·s8 pairs -> s16) then vpmaddwd with ones (-> s32) and add.
static inline __m256i dot_step(__m256i acc, __m256i x, __m256i y, __m256i ones) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones));
}

// Six chains, each with its own u8 operand (kept opaque) so that no product is shared between chains.
double int8_dot(int64_t iters) {
  __m256i a0 = _mm256_set1_epi32(0), a1 = _mm256_set1_epi32(1), a2 = _mm256_set1_epi32(2);
  __m256i a3 = _mm256_set1_epi32(3), a4 = _mm256_set1_epi32(4), a5 = _mm256_set1_epi32(5);
  __m256i x0 = _mm256_set1_epi8(1), x1 = _mm256_set1_epi8(2), x2 = _mm256_set1_epi8(3);
  __m256i x3 = _mm256_set1_epi8(4), x4 = _mm256_set1_epi8(5), x5 = _mm256_set1_epi8(6);
  const __m256i y = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = dot_step(a0, x0, y, ones); a1 = dot_step(a1, x1, y, ones); a2 = dot_step(a2, x2, y, ones);
    a3 = dot_step(a3, x3, y, ones); a4 = dot_step(a4, x4, y, ones); a5 = dot_step(a5, x5, y, ones);
    SVDQ_BARRIER4(a0, a1, a2, a3); SVDQ_BARRIER4(a4, a5, x0, x1); SVDQ_BARRIER4(x2, x3, x4, x5);
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                     _mm256_add_epi32(a4, a5));
  volatile int sink = _mm256_extract_epi32(s, 0);
  (void)sink;
  return static_cast<double>(iters) * 6 * 32 * 2;
}

}  // namespace

const PeakKernels kPeakKernels = {fp32_fma, int8_dot, nullptr};

}  // namespace avx2
}  // namespace svdq
