// The graph's non-linear ops (ops.h): argument checks, the split into tasks of whole rows (or
// element ranges) over the engine's thread pool, and the fused attention. The loops themselves are
// the instruction-set level's OpsKernels (ops_portable.cpp, ops_avx2.cpp, ops_avx512.cpp).
#include "svdquant/ops.h"

#include <algorithm>
#include <cstddef>
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
// Attention: the score block of one task (queries × keys floats) is kept near this size (L2).
constexpr int64_t kScoreBlockFloats = int64_t(64) << 10;

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

  // 1. K_h as W of S = Q·Kᵀ ([T, hd]: T panels columns, k = hd) and V_h as W of O = P·V
  //    (W = V_hᵀ: hd columns, k = T), packed once per (batch, head).
  const int64_t kp_floats = round_up(T, nr) * hd;
  const int64_t vp_floats = round_up(hd, nr) * T;
  Buffer kpack(static_cast<size_t>(groups * kp_floats)), vpack(static_cast<size_t>(groups * vp_floats));
  const int64_t kpanels = ceil_div(T, nr), vpanels = ceil_div(hd, nr);
  const int64_t pgroup = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, hd));  // K panels per packing task
  const int64_t ktasks = ceil_div(kpanels, pgroup);
  pool.parallel_for(groups * (ktasks + 1), [&](int64_t t, int) {
    const int64_t g = t / (ktasks + 1), part = t % (ktasks + 1);
    const int64_t base = (g / heads) * T * d + (g % heads) * hd;  // of K and V
    if (part < ktasks) {
      const int64_t j0 = part * pgroup * nr, cols = std::min(pgroup * nr, T - j0);
      gk.pack_w(k + base + j0 * d, d, cols, hd, kpack.get() + g * kp_floats + j0 * hd);
    } else {
      gk.pack_wt(v + base, d, hd, T, vpack.get() + g * vp_floats);
    }
  });

  // 2. Tasks of (batch, head, block of queries): scores of the block kept near L2 size.
  const int64_t qb = std::min(round_up(Tq, mr), std::max<int64_t>(mr, kScoreBlockFloats / T / mr * mr));
  const int64_t qblocks = ceil_div(Tq, qb);
  // k-blocks of the two products, as the GEMM driver cuts them (none longer than kc).
  const int64_t nkb1 = ceil_div(hd, gk.kc), kcb1 = ceil_div(hd, nkb1);
  const int64_t nkb2 = ceil_div(T, gk.kc), kcb2 = ceil_div(T, nkb2);
  const int threads = pool.size();
  // Per thread: packed Q block (qb × hd), scores (qb × T), packed P (qb × T).
  const int64_t per_thread = qb * hd + 2 * qb * T;
  Buffer scratch(static_cast<size_t>(threads * per_thread));
  pool.parallel_for(groups * qblocks, [&](int64_t t, int thread) {
    const int64_t g = t / qblocks, q0 = (t % qblocks) * qb, rows = std::min(qb, Tq - q0);
    const int64_t qbase = (g / heads) * Tq * d + (g % heads) * hd;  // of Q and the output
    float* xq = scratch.get() + thread * per_thread;
    float* s = xq + qb * hd;
    float* xp = s + qb * T;
    const float* kp = kpack.get() + g * kp_floats;
    const float* vp = vpack.get() + g * vp_floats;
    const int64_t slivers = ceil_div(rows, mr);
    // S = scale · Q_blk · K_hᵀ  [rows, T]
    gk.pack_x(q + qbase + q0 * d, d, rows, hd, xq);
    for (int64_t p = 0; p < kpanels; ++p) {
      const int n = static_cast<int>(std::min(nr, T - p * nr));
      for (int64_t k0 = 0; k0 < hd; k0 += kcb1) {
        const int64_t kc = std::min(kcb1, hd - k0);
        const GemmF32Epilogue ep{scale, k0 == 0 ? 0.0f : 1.0f, nullptr};
        for (int64_t sl = 0; sl < slivers; ++sl) {
          const int m = static_cast<int>(std::min(mr, rows - sl * mr));
          gk.kernel(kc, xq + sl * hd * mr + k0 * mr, kp + p * hd * nr + k0 * nr, s + sl * mr * T + p * nr, T,
                    m, n, &ep, nullptr, 0);
        }
      }
    }
    // The key bias (a padding mask: 0 or a large negative value per key) is added to every row.
    if (key_bias != nullptr) {
      const float* kb = key_bias + (g / heads) * T;
      for (int64_t r = 0; r < rows; ++r) {
        float* sr = s + r * T;
        for (int64_t j = 0; j < T; ++j) sr[j] += kb[j];
      }
    }
    // P = softmax(S) row by row, then packed as the X of the second product.
    ok.softmax_rows(s, rows, T, s);
    gk.pack_x(s, T, rows, T, xp);
    // O_blk = P · V_h  [rows, hd]
    float* o = out + qbase + q0 * d;
    for (int64_t p = 0; p < vpanels; ++p) {
      const int n = static_cast<int>(std::min(nr, hd - p * nr));
      for (int64_t k0 = 0; k0 < T; k0 += kcb2) {
        const int64_t kc = std::min(kcb2, T - k0);
        const GemmF32Epilogue ep{1.0f, k0 == 0 ? 0.0f : 1.0f, nullptr};
        for (int64_t sl = 0; sl < slivers; ++sl) {
          const int m = static_cast<int>(std::min(mr, rows - sl * mr));
          gk.kernel(kc, xp + sl * T * mr + k0 * mr, vp + p * T * nr + k0 * nr, o + sl * mr * d + p * nr, d, m, n,
                    &ep, nullptr, 0);
        }
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
