// AVX-512 peak loops: 16 independent 512-bit FMA chains; int8 via VNNI vpdpbusd (64 u8×s8
// multiply-adds per instruction), 12 independent accumulators; and AMX tile dot products.
#include <immintrin.h>

#include <cstdint>

#include "svdquant/peaks.h"

namespace svdq {
namespace avx512 {
namespace {

// Named accumulators (not an array) so that they live in registers; the empty asm statements make
// every chain opaque to the optimizer, which could otherwise fold the constant updates.
#define SVDQ_BARRIER4(a, b, c, d) __asm__ volatile("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d))

double fp32_fma(int64_t iters) {
  __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3);
  __m512 a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7);
  __m512 a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
  const __m512 m = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(0.9999999f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
    a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
    a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
    a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
    SVDQ_BARRIER4(a0, a1, a2, a3); SVDQ_BARRIER4(a4, a5, a6, a7); SVDQ_BARRIER4(a8, a9, a10, a11);
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                 _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                               _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))));
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);  // (not _mm512_reduce_add_ps: GCC 12 warns falsely on it)
  volatile float sink = lanes[0];
  (void)sink;
  return static_cast<double>(iters) * 12 * 16 * 2;
}

double int8_dot(int64_t iters) {
  __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2), a3 = _mm512_set1_epi32(3);
  __m512i a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5), a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7);
  __m512i a8 = _mm512_set1_epi32(8), a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
  const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_dpbusd_epi32(a0, x, y); a1 = _mm512_dpbusd_epi32(a1, x, y); a2 = _mm512_dpbusd_epi32(a2, x, y);
    a3 = _mm512_dpbusd_epi32(a3, x, y); a4 = _mm512_dpbusd_epi32(a4, x, y); a5 = _mm512_dpbusd_epi32(a5, x, y);
    a6 = _mm512_dpbusd_epi32(a6, x, y); a7 = _mm512_dpbusd_epi32(a7, x, y); a8 = _mm512_dpbusd_epi32(a8, x, y);
    a9 = _mm512_dpbusd_epi32(a9, x, y); a10 = _mm512_dpbusd_epi32(a10, x, y); a11 = _mm512_dpbusd_epi32(a11, x, y);
    SVDQ_BARRIER4(a0, a1, a2, a3); SVDQ_BARRIER4(a4, a5, a6, a7); SVDQ_BARRIER4(a8, a9, a10, a11);
  }
  const __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                     _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)),
                                                      _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11))));
  alignas(64) int lanes[16];
  _mm512_store_si512(lanes, s);
  volatile int sink = lanes[0];
  (void)sink;
  return static_cast<double>(iters) * 12 * 64 * 2;
}

// AMX: four independent 16×16 int32 tiles, each += a 16×64 s8 tile by a 16×64 s8 tile per
// tdpbssd (16·16·64 multiply-adds). The caller checks amx_enabled() first.
double amx_int8_dot(int64_t iters) {
  struct alignas(64) {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
  } cfg;
  alignas(64) static int8_t src[16 * 64];
  for (int i = 0; i < 16 * 64; ++i) src[i] = static_cast<int8_t>(i % 7 - 3);
  alignas(64) int32_t out[256];
  const int64_t stride = 64;
  __asm__ volatile(
      "ldtilecfg %[cfg]\n\t"
      "tilezero %%tmm0\n\t tilezero %%tmm1\n\t tilezero %%tmm2\n\t tilezero %%tmm3\n\t"
      "tileloadd (%[src],%[st],1), %%tmm4\n\t tileloadd (%[src],%[st],1), %%tmm5\n\t"
      "tileloadd (%[src],%[st],1), %%tmm6\n\t tileloadd (%[src],%[st],1), %%tmm7\n\t"
      ::[cfg] "m"(cfg), [src] "r"(src), [st] "r"(stride) : "memory");
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile(
        "tdpbssd %%tmm6, %%tmm4, %%tmm0\n\t tdpbssd %%tmm7, %%tmm4, %%tmm1\n\t"
        "tdpbssd %%tmm6, %%tmm5, %%tmm2\n\t tdpbssd %%tmm7, %%tmm5, %%tmm3\n\t" ::);
  }
  __asm__ volatile("tilestored %%tmm0, (%[out],%[st],1)\n\t tilerelease" ::[out] "r"(out), [st] "r"(stride) : "memory");
  volatile int32_t sink = out[0];
  (void)sink;
  return static_cast<double>(iters) * 4 * 16 * 16 * 64 * 2;
}

}  // namespace

const PeakKernels kPeakKernels = {fp32_fma, int8_dot, amx_int8_dot};

}  // namespace avx512
}  // namespace svdq
