// The graph's non-linear ops (ops.h): plain C++ loops the compiler vectorizes, split into tasks of
// whole rows (or element ranges) over the engine's thread pool.
#include "svdquant/ops.h"

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "svdquant/gemm_f32.h"
#include "svdquant/thread_pool.h"

namespace svdq {
namespace {

// Elements per task: large enough that scheduling costs nothing, small enough to balance.
constexpr int64_t kGrain = 16384;
// Score-matrix floats per attention query block.
constexpr int64_t kScoreFloats = int64_t(4) << 20;

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// exp(x) in fp32 without a library call: the libm call made tanh-GELU and SiLU about as slow as a
// 4-bit GEMM of the same layer; this inline version is about 3x faster (not yet vectorized: GCC
// does not if-convert the clamps for SSE2). Cody-Waite reduction
// x = n·ln2 + r, |r| <= ln2/2, and a degree-7 Taylor polynomial (truncation < 1e-8 relative): within
// 2 ulp of expf. The input is clamped to [-87.3, 88.7], where 2^n stays a normal float; NaN passes.
inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest integer
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;   // ln2 split in two parts
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

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

void layernorm_row(const float* x, int64_t dim, const float* gamma, const float* beta, float eps, float* y) {
  double sum = 0.0;
  for (int64_t j = 0; j < dim; ++j) sum += x[j];
  const double mean = sum / static_cast<double>(dim);
  double sq = 0.0;
  for (int64_t j = 0; j < dim; ++j) {
    const double d = x[j] - mean;
    sq += d * d;
  }
  const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + eps));
  const float meanf = static_cast<float>(mean);
  if (gamma != nullptr && beta != nullptr) {
    for (int64_t j = 0; j < dim; ++j) y[j] = (x[j] - meanf) * rstd * gamma[j] + beta[j];
  } else if (gamma != nullptr) {
    for (int64_t j = 0; j < dim; ++j) y[j] = (x[j] - meanf) * rstd * gamma[j];
  } else if (beta != nullptr) {
    for (int64_t j = 0; j < dim; ++j) y[j] = (x[j] - meanf) * rstd + beta[j];
  } else {
    for (int64_t j = 0; j < dim; ++j) y[j] = (x[j] - meanf) * rstd;
  }
}

void rmsnorm_row(const float* x, int64_t dim, const float* gamma, float eps, float* y) {
  double sq = 0.0;
  for (int64_t j = 0; j < dim; ++j) sq += static_cast<double>(x[j]) * x[j];
  const float r = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + eps));
  if (gamma != nullptr) {
    for (int64_t j = 0; j < dim; ++j) y[j] = x[j] * r * gamma[j];
  } else {
    for (int64_t j = 0; j < dim; ++j) y[j] = x[j] * r;
  }
}

void softmax_row(const float* x, int64_t cols, float* y) {
  float mx = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (int64_t j = 0; j < cols; ++j) {
    mx = std::max(mx, x[j]);
    nan |= std::isnan(x[j]);
  }
  if (nan || mx == -std::numeric_limits<float>::infinity()) {
    for (int64_t j = 0; j < cols; ++j) y[j] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  double sum = 0.0;
  for (int64_t j = 0; j < cols; ++j) {
    const float e = std::exp(x[j] - mx);
    y[j] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < cols; ++j) y[j] *= inv;
}

}  // namespace

void layernorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                   float eps, float* y, ThreadPool& pool) {
  require(rows >= 0 && dim >= 0, "layernorm_f32: rows and dim must be >= 0");
  if (rows == 0 || dim == 0) return;
  require(x != nullptr && y != nullptr, "layernorm_f32: x and y must not be null");
  for_rows(rows, dim, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) layernorm_row(x + r * dim, dim, gamma, beta, eps, y + r * dim);
  });
}

void rmsnorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
                 ThreadPool& pool) {
  require(rows >= 0 && dim >= 0, "rmsnorm_f32: rows and dim must be >= 0");
  if (rows == 0 || dim == 0) return;
  require(x != nullptr && y != nullptr, "rmsnorm_f32: x and y must not be null");
  for_rows(rows, dim, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rmsnorm_row(x + r * dim, dim, gamma, eps, y + r * dim);
  });
}

void gelu_f32(const float* x, int64_t n, float* y, bool tanh_approx, ThreadPool& pool) {
  require(n >= 0, "gelu_f32: n must be >= 0");
  if (n == 0) return;
  require(x != nullptr && y != nullptr, "gelu_f32: x and y must not be null");
  // Local restrict copies of the pointers: written through the lambda's by-reference captures, the
  // loop would have to assume y aliases them and would not vectorize.
  for_rows(n, 1, pool, [x, y, tanh_approx](int64_t i0, int64_t i1) {
    const float* __restrict xs = x;
    float* __restrict ys = y;
    if (tanh_approx) {
      const float c = 0.7978845608028654f;  // √(2/π)
      for (int64_t i = i0; i < i1; ++i) {
        const float v = xs[i];
        // tanh(u) = 1 - 2/(e^(2u) + 1): exact limits ±1, absolute error a few 1e-8.
        const float u = c * (v + 0.044715f * v * v * v);
        ys[i] = 0.5f * v * (2.0f - 2.0f / (exp_approx(2.0f * u) + 1.0f));
      }
    } else {
      const float r = 0.7071067811865476f;  // 1/√2
      for (int64_t i = i0; i < i1; ++i) {
        const float v = xs[i];
        ys[i] = 0.5f * v * (1.0f + std::erf(v * r));
      }
    }
  });
}

void silu_f32(const float* x, int64_t n, float* y, ThreadPool& pool) {
  require(n >= 0, "silu_f32: n must be >= 0");
  if (n == 0) return;
  require(x != nullptr && y != nullptr, "silu_f32: x and y must not be null");
  for_rows(n, 1, pool, [x, y](int64_t i0, int64_t i1) {
    const float* __restrict xs = x;
    float* __restrict ys = y;
    for (int64_t i = i0; i < i1; ++i) ys[i] = xs[i] / (1.0f + exp_approx(-xs[i]));
  });
}

void softmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* y, ThreadPool& pool) {
  require(rows >= 0 && cols >= 0, "softmax_rows_f32: rows and cols must be >= 0");
  if (rows == 0 || cols == 0) return;
  require(x != nullptr && y != nullptr, "softmax_rows_f32: x and y must not be null");
  for_rows(rows, cols, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmax_row(x + r * cols, cols, y + r * cols);
  });
}

void add_f32(const float* a, const float* b, int64_t n, float* y, ThreadPool& pool) {
  require(n >= 0, "add_f32: n must be >= 0");
  if (n == 0) return;
  require(a != nullptr && b != nullptr && y != nullptr, "add_f32: a, b and y must not be null");
  for_rows(n, 1, pool, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
  });
}

void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t tokens,
                   int64_t heads, int64_t head_dim, float scale, float* out, ThreadPool& pool) {
  require(batch >= 0 && tokens >= 0 && heads >= 0 && head_dim >= 0, "attention_f32: sizes must be >= 0");
  if (batch == 0 || tokens == 0 || heads == 0 || head_dim == 0) return;
  require(q != nullptr && k != nullptr && v != nullptr && out != nullptr, "attention_f32: null pointer");
  const int64_t d = heads * head_dim;
  const int64_t qb = std::max<int64_t>(1, std::min(tokens, kScoreFloats / tokens));
  std::vector<float> scores(static_cast<size_t>(qb * tokens));
  float* s = scores.data();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t base = b * tokens * d;
    for (int64_t h = 0; h < heads; ++h) {
      const float* kh = k + base + h * head_dim;
      const float* vh = v + base + h * head_dim;
      for (int64_t q0 = 0; q0 < tokens; q0 += qb) {
        const int64_t rows = std::min(qb, tokens - q0);
        const float* qh = q + base + q0 * d + h * head_dim;
        // S = scale · Q_h · K_hᵀ  [rows, tokens]
        gemm_f32(false, true, rows, tokens, head_dim, scale, qh, d, kh, d, 0.0f, s, tokens, pool);
        softmax_rows_f32(s, rows, tokens, s, pool);
        // O_h = S · V_h  [rows, head_dim]
        gemm_f32(false, false, rows, head_dim, tokens, 1.0f, s, tokens, vh, d, 0.0f,
                 out + base + q0 * d + h * head_dim, d, pool);
      }
    }
  }
}

}  // namespace svdq
