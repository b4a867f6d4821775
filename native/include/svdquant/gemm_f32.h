// fp32 GEMM of the native engine (DESIGN.md §5): the Linear form Y = X·Wᵀ (+ bias) (+ Y) with W
// packed once into the micro-kernel's panel layout, and a general C = alpha·op(A)·op(B) + beta·C
// for the quantizer (SVD, GPTQ) that packs its operands on every call.
//
// Design (classic register-blocked GEMM):
//   - W ([N, K], row-major) is packed into panels of `nr` output columns: panel q holds, for
//     every k in [0, K), the nr values W[q·nr + j][k] (j = 0..nr-1) one after the other,
//     zero-filled past N. The layout does not depend on any k-blocking, so a panel's k-block is a
//     contiguous slice.
//   - X is packed per call into slivers of `mr` rows: sliver s holds, for every k, the mr values
//     X[s·mr + i][k], zero-filled past M.
//   - The micro-kernel multiplies one sliver by one panel over a k-block (an mr×nr tile of
//     accumulators held in registers), then applies the epilogue to the C tile in memory.
//   - Cache blocking: k-blocks of at most `kc`; work is split into tasks of (`mc` rows × `nc`
//     columns) spread over the pool's threads (see gemm_f32.cpp). Every output element is always
//     summed in the same order (k ascending inside a k-block, k-blocks in order; block boundaries
//     depend only on K and the ISA), so results are bit-identical for any thread count.
//   - Levels: AVX-512 14×32 (28 zmm accumulators), AVX2 6×16 (12 ymm), portable 2×24 (plain C++
//     the compiler vectorizes: 12 xmm with SSE2); kc = 512 for all three. The SIMD levels use fused
//     multiply-adds, the portable one a rounded product and sum, so levels differ in the last bits.
//   - Scratch: packed X (and, for gemm_f32, packed op(B)) live in buffers that are kept for reuse
//     by later calls (at most two idle ones process-wide, <= 24 MiB together).
//
// Instruction-set variants follow formats.h: one kernel table per level (svdq::portable,
// svdq::avx2, svdq::avx512), chosen at run time. The layout of a PackedF32 belongs to the level it
// was packed for (its `isa`); gemm_f32_packed uses that level's kernels.
//
// This header declares no inline function (it is included by the ISA translation units, see
// codecs.h): PackedF32's special members are defined out of line in gemm_f32.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "svdquant/formats.h"

namespace svdq {

class ThreadPool;

// How the micro-kernel writes its tile: C = alpha·acc + beta·C + bias. beta == 0 never reads C
// (NaN or garbage in C is overwritten). bias is nullable and already offset to the tile's first
// column.
struct GemmF32Epilogue {
  float alpha;
  float beta;
  const float* bias;
};

// One instruction-set level's GEMM kernels and its preferred blocking.
struct GemmF32Kernels {
  Isa isa;
  int mr;  // rows of the register tile (X sliver height)
  int nr;  // columns of the register tile (W panel width)
  int kc;  // largest k-block
  int mc;  // rows per task (a multiple of mr)
  int nc;  // columns per task (a multiple of nr)

  // Packs rows [0, n) of W, W[j][p] = w[j·ldw + p] for p in [0, k), into ceil(n/nr) panels of
  // k·nr floats (panel q at dst + q·k·nr), zero-filled for the columns past n.
  void (*pack_w)(const float* w, int64_t ldw, int64_t n, int64_t k, float* dst);
  // The same from the transposed storage: W[j][p] = b[p·ldb + j] (B = Wᵀ, [k, n] row-major).
  void (*pack_wt)(const float* b, int64_t ldb, int64_t n, int64_t k, float* dst);
  // Packs rows [0, m) of X, X[i][p] = x[i·ldx + p], into ceil(m/mr) slivers of k·mr floats
  // (sliver s at dst + s·k·mr), zero-filled for the rows past m.
  void (*pack_x)(const float* x, int64_t ldx, int64_t m, int64_t k, float* dst);
  // The same from the transposed storage: X[i][p] = a[p·lda + i].
  void (*pack_xt)(const float* a, int64_t lda, int64_t m, int64_t k, float* dst);

  // C[i][j] (i < m <= mr, j < n <= nr, at c[i·ldc + j]) = epilogue of
  // acc[i][j] = sum over p < kc of xp[p·mr + i] · wp[p·nr + j], summed in order of p.
  // xp: a k-block of a packed sliver; wp: the same k-block of a packed panel; kc >= 1.
  // [pf, pf + pf_floats): data the next calls will read; the kernel prefetches it into L2 while it
  // computes (a hint only, pf_floats may be 0; the range must be readable).
  void (*kernel)(int64_t kc, const float* xp, const float* wp, float* c, int64_t ldc, int m, int n,
                 const GemmF32Epilogue* ep, const float* pf, int64_t pf_floats);
};

namespace portable { extern const GemmF32Kernels kGemmF32Kernels; }
namespace avx2 { extern const GemmF32Kernels kGemmF32Kernels; }
namespace avx512 { extern const GemmF32Kernels kGemmF32Kernels; }

// Kernels for the active level (isa_choice().active), or for an explicit one. Throws
// std::invalid_argument for a level the CPU does not support.
const GemmF32Kernels& gemm_f32_kernels();
const GemmF32Kernels& gemm_f32_kernels_for(Isa isa);

// W packed for one level's micro-kernel. Owning, movable, not copyable; storage 64-byte aligned.
struct PackedF32 {
  float* data = nullptr;  // ceil(n/nr)·nr·k floats
  int64_t n = 0;
  int64_t k = 0;
  Isa isa = Isa::Portable;
  int nr = 0;
  size_t bytes = 0;  // size of the buffer at `data`

  PackedF32();
  ~PackedF32();
  PackedF32(PackedF32&& other) noexcept;
  PackedF32& operator=(PackedF32&& other) noexcept;
  PackedF32(const PackedF32&) = delete;
  PackedF32& operator=(const PackedF32&) = delete;
};

// Packs W ([N, K], row-major, row stride K) for `isa` (default: the active level). N, K >= 0.
PackedF32 pack_f32_weights(const float* W, int64_t N, int64_t K, Isa isa);
PackedF32 pack_f32_weights(const float* W, int64_t N, int64_t K);
// The same with pool threads packing panels in parallel and a row stride ldw >= K.
PackedF32 pack_f32_weights(const float* W, int64_t N, int64_t K, int64_t ldw, Isa isa,
                           ThreadPool& pool);

// Y[M, N] = X[M, K] · Wᵀ (+ bias[N]) (+ Y if accumulate). X rows at stride ldx >= K, Y rows at
// stride ldy >= N. Without accumulate Y is only written (NaN in Y does not matter). M >= 0.
void gemm_f32_packed(const float* X, int64_t M, int64_t ldx, const PackedF32& W, const float* bias,
                     float* Y, int64_t ldy, bool accumulate, ThreadPool& pool);

// C[M, N] = alpha·op(A)·op(B) + beta·C with op(A) [M, K] and op(B) [K, N], all row-major:
// op(A) = A ([M, K], stride lda) or, with transA, Aᵀ of A [K, M]; op(B) = B ([K, N], stride ldb)
// or, with transB, Bᵀ of B [N, K]. beta == 0 never reads C; alpha == 0 never reads A or B (BLAS
// rules). Packs both operands internally (temporary buffers). The overload without `isa` uses the
// active level.
void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, ThreadPool& pool);
void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, ThreadPool& pool, Isa isa);

}  // namespace svdq
