// AVX-512 fp32 GEMM kernels (gemm_f32.h).
//
// Micro-kernel: a 14×32 register tile (kMR rows of X × two zmm of W columns = 28 zmm accumulators,
// two zmm for the W row, one or two for broadcasts: the 32 zmm registers). Per k: 2 W loads,
// 14 broadcasts, 28 FMAs, so the two FMA pipes stay busy while the loads use a fraction of the load
// ports; 28 independent accumulators hide the FMA latency (4 cycles × 2 pipes needs >= 8). Tails
// in M use a shorter tile (tile<m>); tails in N are zero panels in W and masked stores in C.
//
// Prefetching: the C tile's lines before the k loop (the epilogue then finds them in L1), and one
// line per k step of the range the driver names (the next panel's k-block or the sliver's next
// k-block, into L2).
//
// Packing transposes 16×16 blocks in registers (X into 14-row slivers, W into 32-column panels).
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

#include "svdquant/gemm_f32.h"

namespace svdq {
namespace avx512 {
namespace {

constexpr int kMR = 14;
constexpr int kNV = 2;  // zmm per W row of a panel
constexpr int kNR = 16 * kNV;

inline __mmask16 mask16(int64_t n) {
  if (n <= 0) return 0;
  if (n >= 16) return 0xFFFF;
  return static_cast<__mmask16>((1u << n) - 1u);
}

// In-register transpose: r[i] lane j -> r[j] lane i.
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + c] holds, in 128-bit lane L, column 4L + c of rows 4g..4g+3.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);  // lanes 0,2 of rows 0-7
    const __m512 w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);  // lanes 1,3 of rows 0-7
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
}

// Rows [0, rows) (rows <= 16, src row i at src + i·ld, k values each) transposed: for every p < k,
// the 16 values (row 0..15 at column p, zero past `rows`) are stored under `out` at dst + p·stride.
void transpose_rows(const float* src, int64_t ld, int rows, int64_t k, float* dst, int64_t stride,
                    __mmask16 out) {
  for (int64_t p0 = 0; p0 < k; p0 += 16) {
    const int64_t cnt = k - p0 < 16 ? k - p0 : 16;
    const __mmask16 in = mask16(cnt);
    __m512 r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(in, src + i * ld + p0) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t p = 0; p < cnt; ++p) _mm512_mask_storeu_ps(dst + (p0 + p) * stride, out, r[p]);
  }
}

void pack_w(const float* w, int64_t ldw, int64_t n, int64_t k, float* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = n - j0 < kNR ? n - j0 : kNR;
    for (int v = 0; v < kNV; ++v) {
      const int64_t rows = cols - 16 * v;
      if (rows > 0)
        transpose_rows(w + (j0 + 16 * v) * ldw, ldw, static_cast<int>(rows < 16 ? rows : 16), k,
                       dst + 16 * v, kNR, 0xFFFF);
      else
        for (int64_t p = 0; p < k; ++p)
          _mm512_storeu_ps(dst + p * kNR + 16 * v, _mm512_setzero_ps());
    }
    dst += k * kNR;
  }
}

void pack_wt(const float* b, int64_t ldb, int64_t n, int64_t k, float* dst) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = n - j0 < kNR ? n - j0 : kNR;
    __mmask16 m[kNV];
    for (int v = 0; v < kNV; ++v) m[v] = mask16(cols - 16 * v);
    for (int64_t p = 0; p < k; ++p) {
      const float* s = b + p * ldb + j0;
      for (int v = 0; v < kNV; ++v)
        _mm512_storeu_ps(dst + p * kNR + 16 * v, _mm512_maskz_loadu_ps(m[v], s + 16 * v));
    }
    dst += k * kNR;
  }
}

void pack_x(const float* x, int64_t ldx, int64_t m, int64_t k, float* dst) {
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const int64_t rows = m - i0 < kMR ? m - i0 : kMR;
    transpose_rows(x + i0 * ldx, ldx, static_cast<int>(rows), k, dst, kMR, mask16(kMR));
    dst += k * kMR;
  }
}

void pack_xt(const float* a, int64_t lda, int64_t m, int64_t k, float* dst) {
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const __mmask16 in = mask16(m - i0);
    for (int64_t p = 0; p < k; ++p)
      _mm512_mask_storeu_ps(dst + p * kMR, mask16(kMR),
                            _mm512_maskz_loadu_ps(in, a + p * lda + i0));
    dst += k * kMR;
  }
}

// M rows of the sliver (M <= kMR) times one panel.
template <int M>
void tile(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, int n,
          const GemmF32Epilogue* ep, const float* pf, int64_t pf_floats) {
  __m512 acc[M][kNV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_setzero_ps();
  // The C tile is only touched after the k loop: start bringing its lines in now.
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + (n > 16 ? 16 : n - 1)), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + n - 1), _MM_HINT_T0);
  }
  const int64_t pf_lines = (pf_floats + 15) / 16;  // 64-byte lines
  for (int64_t p = 0; p < kc; ++p) {
    if (p < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * p), _MM_HINT_T1);
    __m512 b[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) b[v] = _mm512_loadu_ps(wp + p * kNR + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512 a = _mm512_set1_ps(xp[p * kMR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
    }
  }
  for (int64_t p = kc; p < pf_lines; ++p)
    _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * p), _MM_HINT_T1);
  __mmask16 m[kNV];
  for (int v = 0; v < kNV; ++v) m[v] = mask16(n - 16 * v);
  const __m512 alpha = _mm512_set1_ps(ep->alpha);
  const __m512 beta = _mm512_set1_ps(ep->beta);
  const bool read_c = ep->beta != 0.0f;
  const float* bias = ep->bias;
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) {
      __m512 y = _mm512_mul_ps(alpha, acc[i][v]);
      if (read_c) y = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m[v], ci + 16 * v), y);
      if (bias != nullptr) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m[v], bias + 16 * v));
      _mm512_mask_storeu_ps(ci + 16 * v, m[v], y);
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
    case 6: tile<6>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 7: tile<7>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 8: tile<8>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 9: tile<9>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 10: tile<10>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 11: tile<11>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 12: tile<12>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    case 13: tile<13>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
    default: tile<14>(kc, xp, wp, c, ldc, n, ep, pf, pf_floats); break;
  }
}

static_assert(kMR == 14, "kernel() dispatches tile<1..14>");

}  // namespace

const GemmF32Kernels kGemmF32Kernels = {
    Isa::Avx512,     kMR,    kNR,
    /*kc=*/512,
    /*mc=*/kMR * 12,
    /*nc=*/kNR * 8,  pack_w, pack_wt, pack_x, pack_xt, kernel,
};

}  // namespace avx512
}  // namespace svdq
