// fp32 GEMM (gemm_f32.h): dispatch to the instruction-set level's kernel table, PackedF32, and the
// blocked, threaded driver shared by every level (the levels differ only in their kernel table).
//
// Driver, per call:
//   1. M is cut into chunks whose packed X (rows × K floats) fits a scratch budget (kXChunkFloats).
//      A chunk's X is packed once into slivers, in parallel, then shared by every task.
//   2. The chunk's output is cut into tasks of (mc rows × nc columns) tiles; small problems get
//      narrower column ranges so that there are at least kTasksPerThread tasks per pool thread
//      (M = 1 still spreads over N). Tasks run k-blocks in order; inside a k-block a task walks its
//      W panels (outer loop: a kc×nr panel block is read from L3 once, then reused by every sliver
//      from L1/L2) and its X slivers (inner loop: the mc×kc X block stays in L2, as does the task's
//      C tile between k-blocks). Consecutive tasks share their column range, so threads running at
//      the same time read the same W block (L3).
//   3. Each micro-kernel call also prefetches (into L2) a share of the next panel's k-block or,
//      after the last panel, its sliver's next k-block, so that the first pass over a block does
//      not wait for L3 (worth ~10% on Zen 5 with 1 and 2 threads).
//   4. The first k-block applies the caller's epilogue (alpha, beta, bias); later k-blocks add
//      alpha·acc to C.
// Block boundaries depend only on M, N, K and the kernel table, never on the thread count, and a
// task owns its output tile, so every output is summed in the same order: bit-identical results
// for any number of threads.
#include "svdquant/gemm_f32.h"

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "svdquant/isa.h"
#include "svdquant/thread_pool.h"

namespace svdq {

const GemmF32Kernels& gemm_f32_kernels_for(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(isa_choice().detected))
    throw std::invalid_argument(std::string("gemm_f32: instruction-set level ") + isa_name(isa) +
                                " is not supported by this CPU (" +
                                isa_name(isa_choice().detected) + ")");
#if defined(SVDQ_HAVE_X86_VARIANTS)
  if (isa == Isa::Avx512) return avx512::kGemmF32Kernels;
  if (isa == Isa::Avx2) return avx2::kGemmF32Kernels;
#endif
  return portable::kGemmF32Kernels;
}

const GemmF32Kernels& gemm_f32_kernels() { return gemm_f32_kernels_for(isa_choice().active); }

namespace {

constexpr size_t kAlign = 64;
// Packed X per chunk of rows: at most this many floats (8 MiB), so that a chunk and the W block
// being worked on fit the L3 together.
constexpr int64_t kXChunkFloats = int64_t{1} << 21;
// The general form packs op(B) in column chunks of at most this many floats (16 MiB).
constexpr int64_t kWChunkFloats = int64_t{1} << 22;
constexpr int64_t kTasksPerThread = 8;

float* alloc_floats(size_t count) {
  if (count == 0) return nullptr;
  if (count > SIZE_MAX / sizeof(float)) throw std::bad_alloc();
  return static_cast<float*>(::operator new(count * sizeof(float), std::align_val_t(kAlign)));
}

void free_floats(float* p) {
  if (p != nullptr) ::operator delete(p, std::align_val_t(kAlign));
}

// Scratch buffers (packed X, packed op(B)) are kept for reuse by later calls: a fresh multi-MiB
// allocation costs a page fault per 4 KiB on first touch (~11 ms for 36 MiB here), as much as the
// packing itself. At most kCachedBuffers idle buffers are kept process-wide (<= 8 + 16 MiB by the
// budgets above); concurrent calls beyond that allocate their own.
constexpr size_t kCachedBuffers = 2;

class ScratchCache {
 public:
  // A buffer of at least `count` floats; *cap receives its capacity.
  float* acquire(size_t count, size_t* cap) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = free_.size();
      for (size_t i = 0; i < free_.size(); ++i)
        if (free_[i].second >= count &&
            (best == free_.size() || free_[i].second < free_[best].second))
          best = i;
      if (best < free_.size()) {
        const std::pair<float*, size_t> b = free_[best];
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
        *cap = b.second;
        return b.first;
      }
    }
    *cap = count;
    return alloc_floats(count);
  }
  void release(float* p, size_t cap) {
    if (p == nullptr) return;
    float* drop = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.emplace_back(p, cap);
      if (free_.size() > kCachedBuffers) {  // drop the smallest
        auto smallest = std::min_element(
            free_.begin(), free_.end(),
            [](const std::pair<float*, size_t>& a, const std::pair<float*, size_t>& b) {
              return a.second < b.second;
            });
        drop = smallest->first;
        free_.erase(smallest);
      }
    }
    free_floats(drop);
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<float*, size_t>> free_;
};

ScratchCache& scratch_cache() {
  static ScratchCache* cache = new ScratchCache();  // never destroyed: usable until exit
  return *cache;
}

// A scratch buffer from the cache, given back when it goes out of scope.
class Scratch {
 public:
  explicit Scratch(size_t count)
      : p_(count > 0 ? scratch_cache().acquire(count, &cap_) : nullptr) {}
  ~Scratch() { scratch_cache().release(p_, cap_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return p_; }

 private:
  size_t cap_ = 0;
  float* p_;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}

// X[i][p] = trans ? p[p·ld + i] : p[i·ld + p]
struct XSource {
  const float* p;
  int64_t ld;
  bool trans;
};

// C = beta·C + bias without a product (K == 0 or alpha == 0).
void scale_only(int64_t M, int64_t N, float beta, const float* bias, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* ci = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) {
      float y = beta == 0.0f ? 0.0f : beta * ci[j];
      if (bias != nullptr) y += bias[j];
      ci[j] = y;
    }
  }
}

// C[M, N] = epilogue(X · Wᵀ) with W packed (wpack: ceil(N/nr) panels of K·nr floats). K >= 1.
void run_packed(const GemmF32Kernels& kt, int64_t M, int64_t N, int64_t K, XSource xs,
                const float* wpack, GemmF32Epilogue ep, float* C, int64_t ldc, ThreadPool& pool) {
  if (M <= 0 || N <= 0) return;
  const int64_t mr = kt.mr, nr = kt.nr;
  const int64_t threads = pool.size();

  // k-blocks: as even as possible, none longer than kt.kc.
  const int64_t nkb = ceil_div(K, kt.kc);
  const int64_t kcb = ceil_div(K, nkb);

  // Row chunks: packed X of a chunk within kXChunkFloats (at least one sliver), as even as
  // possible.
  int64_t chunk_rows = std::max<int64_t>(mr, kXChunkFloats / K / mr * mr);
  const int64_t nchunks = ceil_div(M, chunk_rows);
  chunk_rows = round_up(ceil_div(M, nchunks), mr);

  const Scratch xscratch(static_cast<size_t>(chunk_rows * K));
  float* xbuf = xscratch.get();

  const int64_t panels = ceil_div(N, nr);
  for (int64_t m0 = 0; m0 < M; m0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, M - m0);
    const int64_t slivers = ceil_div(rows, mr);

    // 1. Pack the chunk's X, a group of slivers per task.
    const int64_t group = std::max<int64_t>(1, ceil_div(slivers, kTasksPerThread * threads));
    pool.parallel_for(ceil_div(slivers, group), [&](int64_t t, int) {
      const int64_t s0 = t * group;
      const int64_t i0 = s0 * mr;
      const int64_t m = std::min(group * mr, rows - i0);
      const int64_t r = m0 + i0;
      const float* src = xs.trans ? xs.p + r : xs.p + r * xs.ld;
      (xs.trans ? kt.pack_xt : kt.pack_x)(src, xs.ld, m, K, xbuf + s0 * K * mr);
    });

    // 2. Output tiles.
    const int64_t nmb = ceil_div(rows, kt.mc);
    const int64_t mc = round_up(ceil_div(rows, nmb), mr);
    int64_t ppt = std::max<int64_t>(1, kt.nc / nr);  // panels per task
    int64_t nnb = ceil_div(panels, ppt);
    if (threads > 1 && nmb * nnb < kTasksPerThread * threads) {
      nnb = std::min(panels, ceil_div(kTasksPerThread * threads, nmb));
      ppt = ceil_div(panels, nnb);
      nnb = ceil_div(panels, ppt);
    }
    pool.parallel_for(nmb * nnb, [&](int64_t t, int) {
      const int64_t mb = t % nmb, nb = t / nmb;
      const int64_t i0 = mb * mc, i1 = std::min(rows, i0 + mc);
      const int64_t q0 = nb * ppt, q1 = std::min(panels, q0 + ppt);
      for (int64_t k0 = 0; k0 < K; k0 += kcb) {
        const int64_t kc = std::min(kcb, K - k0);
        const bool first = k0 == 0;
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t j0 = q * nr;
          const int n = static_cast<int>(std::min(nr, N - j0));
          GemmF32Epilogue e;
          e.alpha = ep.alpha;
          e.beta = first ? ep.beta : 1.0f;
          e.bias = first && ep.bias != nullptr ? ep.bias + j0 : nullptr;
          const float* wp = wpack + q * K * nr + k0 * nr;
          // Prefetch what comes next: the next panel's k-block (a share per sliver) or, after the
          // last panel, each sliver's next k-block.
          const bool next_panel = q + 1 < q1;
          const int64_t k1 = k0 + kc, kc1 = std::min(kcb, K - k1);
          const float* wnext = next_panel ? wp + K * nr : nullptr;
          const int64_t wlen = kc * nr, nsl = ceil_div(i1 - i0, mr);
          for (int64_t i = i0; i < i1; i += mr) {
            const int m = static_cast<int>(std::min(mr, rows - i));
            const int64_t s = i / mr;
            const float* xp = xbuf + s * K * mr + k0 * mr;
            const float* pf = nullptr;
            int64_t pf_len = 0;
            if (next_panel) {
              const int64_t t = s - i0 / mr;
              pf = wnext + t * wlen / nsl;
              pf_len = (t + 1) * wlen / nsl - t * wlen / nsl;
            } else if (k1 < K) {
              pf = xbuf + s * K * mr + k1 * mr;
              pf_len = kc1 * mr;
            }
            kt.kernel(kc, xp, wp, C + (m0 + i) * ldc + j0, ldc, m, n, &e, pf, pf_len);
          }
        }
      }
    });
  }
}

// Packs columns [0, n) of W (from W rows or from B = Wᵀ rows) into dst, panel groups spread over
// the pool.
void pack_w_parallel(const GemmF32Kernels& kt, const float* w, int64_t ld, bool transposed,
                     int64_t n, int64_t k, float* dst, ThreadPool& pool) {
  const int64_t nr = kt.nr;
  const int64_t panels = ceil_div(n, nr);
  const int64_t group = std::max<int64_t>(1, ceil_div(panels, kTasksPerThread * pool.size()));
  pool.parallel_for(ceil_div(panels, group), [&](int64_t t, int) {
    const int64_t j0 = t * group * nr;
    const int64_t cols = std::min(group * nr, n - j0);
    if (transposed) kt.pack_wt(w + j0, ld, cols, k, dst + j0 * k);
    else kt.pack_w(w + j0 * ld, ld, cols, k, dst + j0 * k);
  });
}

}  // namespace

// ---- PackedF32 -------------------------------------------------------------------------------

PackedF32::PackedF32() = default;

PackedF32::~PackedF32() { free_floats(data); }

PackedF32::PackedF32(PackedF32&& o) noexcept
    : data(o.data), n(o.n), k(o.k), isa(o.isa), nr(o.nr), bytes(o.bytes) {
  o.data = nullptr;
  o.bytes = 0;
}

PackedF32& PackedF32::operator=(PackedF32&& o) noexcept {
  if (this != &o) {
    free_floats(data);
    data = o.data;
    n = o.n;
    k = o.k;
    isa = o.isa;
    nr = o.nr;
    bytes = o.bytes;
    o.data = nullptr;
    o.bytes = 0;
  }
  return *this;
}

PackedF32 pack_f32_weights(const float* W, int64_t N, int64_t K, int64_t ldw, Isa isa,
                           ThreadPool& pool) {
  require(N >= 0 && K >= 0, "pack_f32_weights: N and K must be >= 0");
  require(ldw >= K, "pack_f32_weights: ldw must be >= K");
  require(W != nullptr || N == 0 || K == 0, "pack_f32_weights: W is null");
  const GemmF32Kernels& kt = gemm_f32_kernels_for(isa);
  PackedF32 p;
  p.n = N;
  p.k = K;
  p.isa = isa;
  p.nr = kt.nr;
  const int64_t count = round_up(N, kt.nr) * K;
  if (count > 0) {
    p.data = alloc_floats(static_cast<size_t>(count));
    p.bytes = static_cast<size_t>(count) * sizeof(float);
    pack_w_parallel(kt, W, ldw, false, N, K, p.data, pool);
  }
  return p;
}

PackedF32 pack_f32_weights(const float* W, int64_t N, int64_t K, Isa isa) {
  require(N >= 0 && K >= 0, "pack_f32_weights: N and K must be >= 0");
  ThreadPool& pool = shared_pool(1);
  return pack_f32_weights(W, N, K, K, isa, pool);
}

PackedF32 pack_f32_weights(const float* W, int64_t N, int64_t K) {
  return pack_f32_weights(W, N, K, isa_choice().active);
}

// ---- the Linear form -------------------------------------------------------------------------

void gemm_f32_packed(const float* X, int64_t M, int64_t ldx, const PackedF32& W, const float* bias,
                     float* Y, int64_t ldy, bool accumulate, ThreadPool& pool) {
  const int64_t N = W.n, K = W.k;
  require(M >= 0, "gemm_f32_packed: M must be >= 0");
  require(ldx >= K, "gemm_f32_packed: ldx must be >= K");
  require(ldy >= N, "gemm_f32_packed: ldy must be >= N");
  if (M == 0 || N == 0) return;
  require(Y != nullptr, "gemm_f32_packed: Y is null");
  const float beta = accumulate ? 1.0f : 0.0f;
  if (K == 0) {
    scale_only(M, N, beta, bias, Y, ldy);
    return;
  }
  require(X != nullptr, "gemm_f32_packed: X is null");
  require(W.data != nullptr, "gemm_f32_packed: W is empty (moved from?)");
  const GemmF32Kernels& kt = gemm_f32_kernels_for(W.isa);
  require(W.nr == kt.nr, "gemm_f32_packed: W was packed for another panel width");
  GemmF32Epilogue ep;
  ep.alpha = 1.0f;
  ep.beta = beta;
  ep.bias = bias;
  run_packed(kt, M, N, K, XSource{X, ldx, false}, W.data, ep, Y, ldy, pool);
}

// ---- the general form ------------------------------------------------------------------------

void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, ThreadPool& pool, Isa isa) {
  require(M >= 0 && N >= 0 && K >= 0, "gemm_f32: M, N and K must be >= 0");
  require(lda >= (transA ? M : K), "gemm_f32: lda must be >= the row length of A");
  require(ldb >= (transB ? K : N), "gemm_f32: ldb must be >= the row length of B");
  require(ldc >= N, "gemm_f32: ldc must be >= N");
  const GemmF32Kernels& kt = gemm_f32_kernels_for(isa);
  if (M == 0 || N == 0) return;
  require(C != nullptr, "gemm_f32: C is null");
  if (K == 0 || alpha == 0.0f) {
    scale_only(M, N, beta, nullptr, C, ldc);
    return;
  }
  require(A != nullptr && B != nullptr, "gemm_f32: A or B is null");

  // op(B) = Wᵀ: W[j][p] = transB ? B[j·ldb + p] : B[p·ldb + j]. Columns in chunks.
  const int64_t nr = kt.nr;
  const int64_t chunk_cols = std::max<int64_t>(nr, kWChunkFloats / K / nr * nr);
  const Scratch wscratch(static_cast<size_t>(std::min(round_up(N, nr), chunk_cols) * K));
  float* wpack = wscratch.get();
  GemmF32Epilogue ep;
  ep.alpha = alpha;
  ep.beta = beta;
  ep.bias = nullptr;
  for (int64_t j0 = 0; j0 < N; j0 += chunk_cols) {
    const int64_t cols = std::min(chunk_cols, N - j0);
    const float* src = transB ? B + j0 * ldb : B + j0;
    pack_w_parallel(kt, src, ldb, !transB, cols, K, wpack, pool);
    run_packed(kt, M, cols, K, XSource{A, lda, transA}, wpack, ep, C + j0, ldc, pool);
  }
}

void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, ThreadPool& pool) {
  gemm_f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool, isa_choice().active);
}

}  // namespace svdq
