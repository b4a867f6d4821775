// The graph's non-linear ops (ops.h): argument checks, the split into tasks of whole rows (or
// element ranges) over the engine's thread pool, and the fused attention. The loops themselves are
// the instruction-set level's OpsKernels (ops_portable.cpp, ops_avx2.cpp, ops_avx512.cpp).
#include "svdquant/ops.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/thread_pool.h"

namespace svdq {

const OpsKernels& ops_kernels_for(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(isa_choice().detected))
    throw std::invalid_argument(std::string("ops: instruction-set level ") + isa_name(isa) +
                                " is not supported by this CPU (" + isa_name(isa_choice().detected) + ")");
#if defined(SVDQ_HAVE_X86_VARIANTS)
  if (isa == Isa::Avx512) return avx512::kOpsKernels;
  if (isa == Isa::Avx2) return avx2::kOpsKernels;
#endif
  return portable::kOpsKernels;
}

const OpsKernels& ops_kernels() { return ops_kernels_for(isa_choice().active); }

namespace {

// Elements per task: large enough that scheduling costs nothing, small enough to balance.
constexpr int64_t kGrain = 32768;
// Attention: queries per tile (rounded to whole GEMM slivers) and keys per online-softmax step.
// A query tile reads its head's whole K and V once, so it must be tall enough to amortize that;
// the working set of one step (packed Q tile, scores, packed P, one K and V tile: ~0.6 MiB at
// head_dim 128) stays inside L2. Chosen by measurement at 4608 tokens (96 and 288 queries, 128 and
// 512 keys were 5-15% slower in CPU time).
constexpr int64_t kQueryTile = 192;
constexpr int64_t kKeyTile = 256;

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Runs fn(r0, r1) over [0, rows) in chunks of about kGrain elements (rows of `width`).
template <typename Fn>
void for_rows(int64_t rows, int64_t width, ThreadPool& pool, Fn fn) {
  if (rows <= 0) return;
  const int64_t per = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, width));
  const int64_t tasks = ceil_div(rows, per);
  if (tasks == 1 || pool.size() == 1) {
    fn(int64_t(0), rows);
    return;
  }
  pool.parallel_for(tasks, [&](int64_t t, int) { fn(t * per, std::min(rows, (t + 1) * per)); });
}

// A 64-byte aligned float buffer.
class Buffer {
 public:
  explicit Buffer(size_t count)
      : p_(count == 0 ? nullptr
                      : static_cast<float*>(::operator new(count * sizeof(float), std::align_val_t(64)))) {}
  ~Buffer() {
    if (p_ != nullptr) ::operator delete(p_, std::align_val_t(64));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* get() const { return p_; }

 private:
  float* p_;
};

}  // namespace

void layernorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                   float eps, float* y, ThreadPool& pool, Isa isa) {
  require(rows >= 0 && dim >= 0, "layernorm_f32: rows and dim must be >= 0");
  const OpsKernels& k = ops_kernels_for(isa);
  if (rows == 0 || dim == 0) return;
  require(x != nullptr && y != nullptr, "layernorm_f32: x and y must not be null");
  for_rows(rows, dim, pool, [&](int64_t r0, int64_t r1) {
    k.layernorm_rows(x + r0 * dim, r1 - r0, dim, gamma, beta, eps, y + r0 * dim);
  });
}

void rmsnorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
                 ThreadPool& pool, Isa isa) {
  require(rows >= 0 && dim >= 0, "rmsnorm_f32: rows and dim must be >= 0");
  const OpsKernels& k = ops_kernels_for(isa);
  if (rows == 0 || dim == 0) return;
  require(x != nullptr && y != nullptr, "rmsnorm_f32: x and y must not be null");
  for_rows(rows, dim, pool, [&](int64_t r0, int64_t r1) {
    k.rmsnorm_rows(x + r0 * dim, r1 - r0, dim, gamma, eps, y + r0 * dim);
  });
}

void gelu_f32(const float* x, int64_t n, float* y, bool tanh_approx, ThreadPool& pool, Isa isa) {
  require(n >= 0, "gelu_f32: n must be >= 0");
  const OpsKernels& k = ops_kernels_for(isa);
  if (n == 0) return;
  require(x != nullptr && y != nullptr, "gelu_f32: x and y must not be null");
  const auto fn = tanh_approx ? k.gelu_tanh : k.gelu_erf;
  for_rows(n, 1, pool, [&](int64_t i0, int64_t i1) { fn(x + i0, i1 - i0, y + i0); });
}

void silu_f32(const float* x, int64_t n, float* y, ThreadPool& pool, Isa isa) {
  require(n >= 0, "silu_f32: n must be >= 0");
  const OpsKernels& k = ops_kernels_for(isa);
  if (n == 0) return;
  require(x != nullptr && y != nullptr, "silu_f32: x and y must not be null");
  for_rows(n, 1, pool, [&](int64_t i0, int64_t i1) { k.silu(x + i0, i1 - i0, y + i0); });
}

void softmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* y, ThreadPool& pool, Isa isa) {
  require(rows >= 0 && cols >= 0, "softmax_rows_f32: rows and cols must be >= 0");
  const OpsKernels& k = ops_kernels_for(isa);
  if (rows == 0 || cols == 0) return;
  require(x != nullptr && y != nullptr, "softmax_rows_f32: x and y must not be null");
  for_rows(rows, cols, pool, [&](int64_t r0, int64_t r1) {
    k.softmax_rows(x + r0 * cols, r1 - r0, cols, y + r0 * cols);
  });
}

void add_f32(const float* a, const float* b, int64_t n, float* y, ThreadPool& pool, Isa isa) {
  require(n >= 0, "add_f32: n must be >= 0");
  const OpsKernels& k = ops_kernels_for(isa);
  if (n == 0) return;
  require(a != nullptr && b != nullptr && y != nullptr, "add_f32: a, b and y must not be null");
  for_rows(n, 1, pool, [&](int64_t i0, int64_t i1) { k.add(a + i0, b + i0, i1 - i0, y + i0); });
}

void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t q_tokens,
                   int64_t kv_tokens, int64_t heads, int64_t head_dim, float scale, const float* key_bias,
                   float* out, ThreadPool& pool, Isa isa) {
  require(batch >= 0 && q_tokens >= 0 && kv_tokens >= 0 && heads >= 0 && head_dim >= 0,
          "attention_f32: sizes must be >= 0");
  const OpsKernels& ok = ops_kernels_for(isa);
  const GemmF32Kernels& gk = gemm_f32_kernels_for(isa);
  if (batch == 0 || q_tokens == 0 || heads == 0 || head_dim == 0) return;
  require(kv_tokens > 0, "attention_f32: at least one key");
  require(q != nullptr && k != nullptr && v != nullptr && out != nullptr, "attention_f32: null pointer");
  const int64_t d = heads * head_dim;
  const int64_t Tq = q_tokens, T = kv_tokens, hd = head_dim, mr = gk.mr, nr = gk.nr;
  const int64_t groups = batch * heads;

  // Query tiles of about kQueryTile rows (whole slivers, evened out over Tq) and key tiles of bc.
  const int64_t qtiles0 = ceil_div(Tq, kQueryTile);
  const int64_t br = round_up(ceil_div(Tq, qtiles0), mr);
  const int64_t qtiles = ceil_div(Tq, br);
  const int64_t bc = std::min(round_up(kKeyTile, nr), round_up(T, nr));
  // Tasks: (batch, head, run of query tiles). A task packs its head's K and V itself (thread
  // scratch, reused for all its query tiles), so a head is split only when there are too few
  // heads to keep every thread busy; the split does not change any result.
  const int threads = pool.size();
  const int64_t chunks = std::min(qtiles, std::max<int64_t>(1, ceil_div(2 * int64_t(threads), groups)));
  const int64_t tiles_per_task = ceil_div(qtiles, chunks);
  const int64_t tasks_per_group = ceil_div(qtiles, tiles_per_task);
  // k-blocks of S = Q·Kᵀ, as the GEMM driver cuts them (none longer than kc).
  const int64_t nkb1 = ceil_div(hd, gk.kc), kcb1 = ceil_div(hd, nkb1);
  const int64_t vpanels = ceil_div(hd, nr);
  // Per thread (every part 64-byte aligned): K_h packed as the W of S = Q·Kᵀ (T columns, k = hd),
  // V_h as the W of O = P·V (W = V_hᵀ: hd columns, k = T), the packed Q tile (br × hd), scores
  // (br × bc), packed P (br × bc), then per row the running max, rescale factor and sum (double).
  const int64_t kp_floats = round_up(round_up(T, nr) * hd, 16), vp_floats = round_up(round_up(hd, nr) * T, 16);
  const int64_t xq_floats = round_up(br * hd, 16), s_floats = round_up(br * bc, 16);
  const int64_t row_floats = round_up(br, 16);
  const int64_t per_thread = kp_floats + vp_floats + xq_floats + 2 * s_floats + 4 * row_floats;
  Buffer scratch(static_cast<size_t>(threads * per_thread));
  pool.parallel_for(groups * tasks_per_group, [&](int64_t task, int thread) {
    const int64_t g = task / tasks_per_group, tile0 = (task % tasks_per_group) * tiles_per_task;
    const int64_t tile1 = std::min(qtiles, tile0 + tiles_per_task);
    float* kp = scratch.get() + thread * per_thread;
    float* vp = kp + kp_floats;
    float* xq = vp + vp_floats;
    float* s = xq + xq_floats;
    float* xp = s + s_floats;
    float* mrow = xp + s_floats;
    float* alpha = mrow + row_floats;
    double* lrow = reinterpret_cast<double*>(alpha + row_floats);
    const int64_t kvbase = (g / heads) * T * d + (g % heads) * hd;  // of K and V
    gk.pack_w(k + kvbase, d, T, hd, kp);
    gk.pack_wt(v + kvbase, d, hd, T, vp);
    const float* kb = key_bias != nullptr ? key_bias + (g / heads) * T : nullptr;
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t q0 = tile * br, rows = std::min(br, Tq - q0);
      const int64_t qbase = (g / heads) * Tq * d + (g % heads) * hd;  // of Q and the output
      float* o = out + qbase + q0 * d;
      const int64_t slivers = ceil_div(rows, mr);
      gk.pack_x(q + qbase + q0 * d, d, rows, hd, xq);
      for (int64_t r = 0; r < rows; ++r) {
        mrow[r] = -std::numeric_limits<float>::infinity();
        lrow[r] = 0.0;
      }
      for (int64_t j0 = 0; j0 < T; j0 += bc) {
        const int64_t nk = std::min(bc, T - j0);
        // S = scale · Q_tile · K_tileᵀ  [rows, nk] at row stride bc
        for (int64_t p = j0 / nr; p < ceil_div(j0 + nk, nr); ++p) {
          const int n = static_cast<int>(std::min(nr, T - p * nr));
          for (int64_t k0 = 0; k0 < hd; k0 += kcb1) {
            const int64_t kc = std::min(kcb1, hd - k0);
            const GemmF32Epilogue ep{scale, k0 == 0 ? 0.0f : 1.0f, nullptr};
            for (int64_t sl = 0; sl < slivers; ++sl) {
              const int m = static_cast<int>(std::min(mr, rows - sl * mr));
              gk.kernel(kc, xq + sl * hd * mr + k0 * mr, kp + p * hd * nr + k0 * nr, s + sl * mr * bc + (p * nr - j0),
                        bc, m, n, &ep, nullptr, 0);
            }
          }
        }
        ok.softmax_tile(s, rows, nk, bc, kb != nullptr ? kb + j0 : nullptr, mrow, lrow, alpha);
        if (j0 > 0) {  // rescale what the earlier key tiles accumulated to the new running max
          for (int64_t r = 0; r < rows; ++r) {
            const float a = alpha[r];
            if (a == 1.0f) continue;
            float* orow = o + r * d;
            for (int64_t c = 0; c < hd; ++c) orow[c] *= a;
          }
        }
        // O (+)= P · V_tile  [rows, hd]
        gk.pack_x(s, bc, rows, nk, xp);
        for (int64_t p = 0; p < vpanels; ++p) {
          const int n = static_cast<int>(std::min(nr, hd - p * nr));
          for (int64_t k0 = 0; k0 < nk; k0 += gk.kc) {
            const int64_t kc = std::min<int64_t>(gk.kc, nk - k0);
            const GemmF32Epilogue ep{1.0f, j0 == 0 && k0 == 0 ? 0.0f : 1.0f, nullptr};
            for (int64_t sl = 0; sl < slivers; ++sl) {
              const int m = static_cast<int>(std::min(mr, rows - sl * mr));
              gk.kernel(kc, xp + sl * nk * mr + k0 * mr, vp + p * T * nr + (j0 + k0) * nr, o + sl * mr * d + p * nr, d,
                        m, n, &ep, nullptr, 0);
            }
          }
        }
      }
      // O / Σ; a row whose keys were all -Inf has Σ = 0 and gives NaN, as softmax_rows.
      for (int64_t r = 0; r < rows; ++r) {
        const float inv = lrow[r] > 0.0 ? static_cast<float>(1.0 / lrow[r]) : std::numeric_limits<float>::quiet_NaN();
        float* orow = o + r * d;
        for (int64_t c = 0; c < hd; ++c) orow[c] *= inv;
      }
    }
  });
}

void layernorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                   float eps, float* y, ThreadPool& pool) {
  layernorm_f32(x, rows, dim, gamma, beta, eps, y, pool, isa_choice().active);
}
void rmsnorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
                 ThreadPool& pool) {
  rmsnorm_f32(x, rows, dim, gamma, eps, y, pool, isa_choice().active);
}
void gelu_f32(const float* x, int64_t n, float* y, bool tanh_approx, ThreadPool& pool) {
  gelu_f32(x, n, y, tanh_approx, pool, isa_choice().active);
}
void silu_f32(const float* x, int64_t n, float* y, ThreadPool& pool) {
  silu_f32(x, n, y, pool, isa_choice().active);
}
void softmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* y, ThreadPool& pool) {
  softmax_rows_f32(x, rows, cols, y, pool, isa_choice().active);
}
void add_f32(const float* a, const float* b, int64_t n, float* y, ThreadPool& pool) {
  add_f32(a, b, n, y, pool, isa_choice().active);
}
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t tokens,
                   int64_t heads, int64_t head_dim, float scale, float* out, ThreadPool& pool) {
  attention_f32(q, k, v, batch, tokens, tokens, heads, head_dim, scale, nullptr, out, pool, isa_choice().active);
}
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t tokens,
                   int64_t heads, int64_t head_dim, float scale, float* out, ThreadPool& pool, Isa isa) {
  attention_f32(q, k, v, batch, tokens, tokens, heads, head_dim, scale, nullptr, out, pool, isa);
}
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t q_tokens,
                   int64_t kv_tokens, int64_t heads, int64_t head_dim, float scale, const float* key_bias,
                   float* out, ThreadPool& pool) {
  attention_f32(q, k, v, batch, q_tokens, kv_tokens, heads, head_dim, scale, key_bias, out, pool,
                isa_choice().active);
}

}  // namespace svdq
