// Portable fp32 GEMM kernels (gemm_f32.h): plain C++ for baseline x86-64 (or any CPU). The
// micro-kernel holds a kMR×kNR tile of accumulators in a local array that the compiler keeps in
// registers and vectorizes with whatever the baseline offers: on x86-64 SSE2, 2×24 = 12 xmm
// accumulators, 6 W loads and 2 broadcasts per k. (Measured on Zen 5 with SSE2 only: 2×24 and 2×20
// run at ~85% of the mul+add peak, 4×8 at ~70%, 6×8 at ~55%: GCC's SLP vectorizer keeps the wide,
// short tile in registers, the taller ones spill.)
// No fused multiply-add: every product and every sum is rounded, in order of k.
//
// Everything here has internal linkage (see codecs.h).
#include <cstdint>

#include "svdquant/gemm_f32.h"

namespace svdq {
namespace portable {
namespace {

constexpr int kMR = 2;
constexpr int kNR = 24;

void pack_w(const float* w, int64_t ldw, int64_t n, int64_t k, float* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = n - j0 < kNR ? n - j0 : kNR;
    for (int64_t j = 0; j < cols; ++j) {
      const float* src = w + (j0 + j) * ldw;
      for (int64_t p = 0; p < k; ++p) dst[p * kNR + j] = src[p];
    }
    for (int64_t j = cols; j < kNR; ++j)
      for (int64_t p = 0; p < k; ++p) dst[p * kNR + j] = 0.0f;
    dst += k * kNR;
  }
}

void pack_wt(const float* b, int64_t ldb, int64_t n, int64_t k, float* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = n - j0 < kNR ? n - j0 : kNR;
    for (int64_t p = 0; p < k; ++p) {
      const float* src = b + p * ldb + j0;
      float* d = dst + p * kNR;
      for (int64_t j = 0; j < cols; ++j) d[j] = src[j];
      for (int64_t j = cols; j < kNR; ++j) d[j] = 0.0f;
    }
    dst += k * kNR;
  }
}

void pack_x(const float* x, int64_t ldx, int64_t m, int64_t k, float* dst) {
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const int64_t rows = m - i0 < kMR ? m - i0 : kMR;
    for (int64_t i = 0; i < rows; ++i) {
      const float* src = x + (i0 + i) * ldx;
      for (int64_t p = 0; p < k; ++p) dst[p * kMR + i] = src[p];
    }
    for (int64_t i = rows; i < kMR; ++i)
      for (int64_t p = 0; p < k; ++p) dst[p * kMR + i] = 0.0f;
    dst += k * kMR;
  }
}

void pack_xt(const float* a, int64_t lda, int64_t m, int64_t k, float* dst) {
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const int64_t rows = m - i0 < kMR ? m - i0 : kMR;
    for (int64_t p = 0; p < k; ++p) {
      const float* src = a + p * lda + i0;
      float* d = dst + p * kMR;
      for (int64_t i = 0; i < rows; ++i) d[i] = src[i];
      for (int64_t i = rows; i < kMR; ++i) d[i] = 0.0f;
    }
    dst += k * kMR;
  }
}

// M rows of the sliver (M <= kMR) times one panel.
template <int M>
void tile(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, int n,
          const GemmF32Epilogue* ep, const float* pf, int64_t pf_floats) {
  (void)pf;  // no prefetching here
  (void)pf_floats;
  float acc[M * kNR];
  for (int i = 0; i < M * kNR; ++i) acc[i] = 0.0f;
  for (int64_t p = 0; p < kc; ++p) {
    const float* a = xp + p * kMR;
    const float* b = wp + p * kNR;
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const float ai = a[i];
#pragma GCC unroll 16
      for (int j = 0; j < kNR; ++j) acc[i * kNR + j] += ai * b[j];
    }
  }
  const float alpha = ep->alpha, beta = ep->beta;
  const float* bias = ep->bias;
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < n; ++j) {
      float y = alpha * acc[i * kNR + j];
      if (beta != 0.0f) y += beta * ci[j];
      if (bias != nullptr) y += bias[j];
      ci[j] = y;
    }
  }
}

void kernel(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, int m, int n,
            const GemmF32Epilogue* ep, const float* pf, int64_t pf_floats) {
  if (m == 1) tile<1>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats);
  else tile<2>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats);
}

static_assert(kMR == 2, "kernel() dispatches tile<1..2>");

}  // namespace

const GemmF32Kernels kGemmF32Kernels = {
    Isa::Portable,   kMR,    kNR,
    /*kc=*/512,
    /*mc=*/kMR * 64,
    /*nc=*/kNR * 8,  pack_w, pack_wt, pack_x, pack_xt, kernel,
};

}  // namespace portable
}  // namespace svdq
