// AVX2 + FMA3 fp32 GEMM kernels (gemm_f32.h).
//
// Micro-kernel: a 6×16 register tile (kMR rows of X × two ymm of W columns = 12 ymm accumulators,
// two ymm for the W row, one for the broadcast: 15 of the 16 ymm registers). Per k: 2 W loads,
// 6 broadcasts, 12 FMAs; 12 independent accumulators cover the FMA latency of two pipes. Tails in
// M use a shorter tile (tile<m>); tails in N are zero panels in W and masked loads/stores in C.
//
// Prefetching: the C tile's lines before the k loop (the epilogue then finds them in L1), and one
// line per k step of the range the driver names (the next panel's k-block or the sliver's next
// k-block, into L2).
//
// This file is compiled with -mavx2 -mfma -mf16c. Everything here has internal linkage and no std::
// inline function is called (see codecs.h).
#include <immintrin.h>

#include <cstdint>

#include "svdquant/gemm_f32.h"

namespace svdq {
namespace avx2 {
namespace {

constexpr int kMR = 6;
constexpr int kNV = 2;  // ymm per W row of a panel
constexpr int kNR = 8 * kNV;

// Lanes [0, n) set (n clamped to [0, 8]).
inline __m256i mask8(int64_t n) {
  const int c = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// In-register transpose of 8 rows of 8.
inline void transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  // u[c] holds, in 128-bit lane L, column 4L + c of rows 0-3; u[4 + c] the same of rows 4-7.
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// Rows [0, rows) (rows <= 8, src row i at src + i·ld, k values each) transposed: for every p < k,
// the first `out` of the 8 values (row 0..7 at column p, zero past `rows`) go to dst + p·stride.
void transpose_rows(const float* src, int64_t ld, int rows, int64_t k, float* dst, int64_t stride,
                    int out) {
  const __m256i out_mask = mask8(out);
  for (int64_t p0 = 0; p0 < k; p0 += 8) {
    const int64_t cnt = k - p0 < 8 ? k - p0 : 8;
    const __m256i in = mask8(cnt);
    __m256 r[8];
    for (int i = 0; i < 8; ++i)
      r[i] = i < rows ? _mm256_maskload_ps(src + i * ld + p0, in) : _mm256_setzero_ps();
    transpose8(r);
    if (out == 8)
      for (int64_t p = 0; p < cnt; ++p) _mm256_storeu_ps(dst + (p0 + p) * stride, r[p]);
    else
      for (int64_t p = 0; p < cnt; ++p)
        _mm256_maskstore_ps(dst + (p0 + p) * stride, out_mask, r[p]);
  }
}

void pack_w(const float* w, int64_t ldw, int64_t n, int64_t k, float* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = n - j0 < kNR ? n - j0 : kNR;
    for (int v = 0; v < kNV; ++v) {
      const int64_t rows = cols - 8 * v;
      if (rows > 0)
        transpose_rows(w + (j0 + 8 * v) * ldw, ldw, static_cast<int>(rows < 8 ? rows : 8), k,
                       dst + 8 * v, kNR, 8);
      else
        for (int64_t p = 0; p < k; ++p)
          _mm256_storeu_ps(dst + p * kNR + 8 * v, _mm256_setzero_ps());
    }
    dst += k * kNR;
  }
}

void pack_wt(const float* b, int64_t ldb, int64_t n, int64_t k, float* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = n - j0 < kNR ? n - j0 : kNR;
    __m256i m[kNV];
    for (int v = 0; v < kNV; ++v) m[v] = mask8(cols - 8 * v);
    for (int64_t p = 0; p < k; ++p) {
      const float* s = b + p * ldb + j0;
      for (int v = 0; v < kNV; ++v)
        _mm256_storeu_ps(dst + p * kNR + 8 * v, _mm256_maskload_ps(s + 8 * v, m[v]));
    }
    dst += k * kNR;
  }
}

void pack_x(const float* x, int64_t ldx, int64_t m, int64_t k, float* dst) {
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const int64_t rows = m - i0 < kMR ? m - i0 : kMR;
    transpose_rows(x + i0 * ldx, ldx, static_cast<int>(rows), k, dst, kMR, kMR);
    dst += k * kMR;
  }
}

void pack_xt(const float* a, int64_t lda, int64_t m, int64_t k, float* dst) {
  const __m256i out = mask8(kMR);
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const __m256i in = mask8(m - i0);
    for (int64_t p = 0; p < k; ++p)
      _mm256_maskstore_ps(dst + p * kMR, out, _mm256_maskload_ps(a + p * lda + i0, in));
    dst += k * kMR;
  }
}

// M rows of the sliver (M <= kMR) times one panel.
template <int M>
void tile(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, int n,
          const GemmF32Epilogue* ep, const float* pf, int64_t pf_floats) {
  __m256 acc[M][kNV];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[i][v] = _mm256_setzero_ps();
  // The C tile is only touched after the k loop: start bringing its lines in now.
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + n - 1), _MM_HINT_T0);
  }
  const int64_t pf_lines = (pf_floats + 15) / 16;  // 64-byte lines
  for (int64_t p = 0; p < kc; ++p) {
    if (p < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * p), _MM_HINT_T1);
    __m256 b[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) b[v] = _mm256_loadu_ps(wp + p * kNR + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m256 a = _mm256_broadcast_ss(xp + p * kMR + i);
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
  for (int64_t p = kc; p < pf_lines; ++p)
    _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * p), _MM_HINT_T1);
  __m256i m[kNV];
  for (int v = 0; v < kNV; ++v) m[v] = mask8(n - 8 * v);
  const bool full = n == kNR;
  const __m256 alpha = _mm256_set1_ps(ep->alpha);
  const __m256 beta = _mm256_set1_ps(ep->beta);
  const bool read_c = ep->beta != 0.0f;
  const float* bias = ep->bias;
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) {
      __m256 y = _mm256_mul_ps(alpha, acc[i][v]);
      if (full) {
        if (read_c) y = _mm256_fmadd_ps(beta, _mm256_loadu_ps(ci + 8 * v), y);
        if (bias != nullptr) y = _mm256_add_ps(y, _mm256_loadu_ps(bias + 8 * v));
        _mm256_storeu_ps(ci + 8 * v, y);
      } else {
        if (read_c) y = _mm256_fmadd_ps(beta, _mm256_maskload_ps(ci + 8 * v, m[v]), y);
        if (bias != nullptr) y = _mm256_add_ps(y, _mm256_maskload_ps(bias + 8 * v, m[v]));
        _mm256_maskstore_ps(ci + 8 * v, m[v], y);
      }
    }
  }
}

void kernel(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, int m, int n,
            const GemmF32Epilogue* ep, const float* pf, int64_t pf_floats) {
  switch (m) {
    case 1: tile<1>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 2: tile<2>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 3: tile<3>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 4: tile<4>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 5: tile<5>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    default: tile<6>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
  }
}

static_assert(kMR == 6, "kernel() dispatches tile<1..6>");

}  // namespace

const GemmF32Kernels kGemmF32Kernels = {
    Isa::Avx2,       kMR,    kNR,
    /*kc=*/512,
    /*mc=*/kMR * 24,
    /*nc=*/kNR * 16, pack_w, pack_wt, pack_x, pack_xt, kernel,
};

}  // namespace avx2
}  // namespace svdq
