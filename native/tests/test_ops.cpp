// Tests of the graph ops (ops.h) against plain double-precision references, with 1 and 3 pool
// threads (results must be bit-identical: every row is computed by one task in a fixed order).
// Tolerances as in test/graph-ops.test.ts: norms 1e-5·(1+|ref|), gelu/silu 1e-6·(1+|ref|),
// softmax 1e-7 + 1e-5·|ref|, attention 1e-5·(1 + max|v|).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "harness.h"
#include "svdquant/ops.h"
#include "svdquant/thread_pool.h"

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float scale) {
  std::vector<float> v(n);
  uint32_t s = seed;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = (static_cast<float>(s) / 4294967296.0f - 0.5f) * 2.0f * scale;
  }
  return v;
}

bool close(const std::vector<float>& got, const std::vector<double>& want, double abs, double rel) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= abs + rel * std::fabs(want[i]))) {
      std::printf("    index %zu: got %.9g, want %.9g\n", i, got[i], want[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

TEST(ops_layernorm_rmsnorm_match_reference) {
  for (int threads : {1, 3}) {
    svdq::ThreadPool pool(threads);
    for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {40, 1000}}) {
      const auto x = random_vec(static_cast<size_t>(rows * dim), 1, 3.0f);
      const auto g = random_vec(static_cast<size_t>(dim), 2, 1.0f);
      const auto b = random_vec(static_cast<size_t>(dim), 3, 1.0f);
      std::vector<float> y(x.size()), yr(x.size());
      std::vector<double> ref(x.size()), refr(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        double mean = 0, var = 0, sq = 0;
        for (int64_t j = 0; j < dim; ++j) mean += x[r * dim + j];
        mean /= dim;
        for (int64_t j = 0; j < dim; ++j) {
          var += (x[r * dim + j] - mean) * (x[r * dim + j] - mean);
          sq += double(x[r * dim + j]) * x[r * dim + j];
        }
        var /= dim;
        for (int64_t j = 0; j < dim; ++j) {
          ref[r * dim + j] = (x[r * dim + j] - mean) / std::sqrt(var + 1e-5) * g[j] + b[j];
          refr[r * dim + j] = x[r * dim + j] / std::sqrt(sq / dim + 1e-6) * g[j];
        }
      }
      svdq::layernorm_f32(x.data(), rows, dim, g.data(), b.data(), 1e-5f, y.data(), pool);
      CHECK(close(y, ref, 1e-5, 1e-5));
      svdq::rmsnorm_f32(x.data(), rows, dim, g.data(), 1e-6f, yr.data(), pool);
      CHECK(close(yr, refr, 1e-5, 1e-5));
    }
  }
}

TEST(ops_activations_softmax_add_match_reference) {
  svdq::ThreadPool pool(3);
  const int64_t n = 50000;  // several tasks
  auto x = random_vec(static_cast<size_t>(n), 4, 8.0f);
  x[0] = -100.0f;
  x[1] = 100.0f;
  std::vector<float> y(x.size());
  std::vector<double> ref(x.size());
  for (int approx = 0; approx < 2; ++approx) {
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i];
      ref[i] = approx ? 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                      : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    }
    svdq::gelu_f32(x.data(), n, y.data(), approx == 1, pool);
    CHECK(close(y, ref, 1e-6, 1e-6));
  }
  for (int64_t i = 0; i < n; ++i) ref[i] = x[i] / (1 + std::exp(-double(x[i])));
  svdq::silu_f32(x.data(), n, y.data(), pool);
  CHECK(close(y, ref, 1e-6, 1e-6));
  const auto b = random_vec(static_cast<size_t>(n), 5, 1.0f);
  for (int64_t i = 0; i < n; ++i) ref[i] = double(x[i]) + b[i];
  svdq::add_f32(x.data(), b.data(), n, y.data(), pool);
  CHECK(close(y, ref, 0, 6e-8));
  // softmax over rows of 1000
  const int64_t rows = 50, cols = 1000;
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -1e300, s = 0;
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, double(x[r * cols + j]));
    for (int64_t j = 0; j < cols; ++j) s += std::exp(x[r * cols + j] - mx);
    for (int64_t j = 0; j < cols; ++j) ref[r * cols + j] = std::exp(x[r * cols + j] - mx) / s;
  }
  svdq::softmax_rows_f32(x.data(), rows, cols, y.data(), pool);
  CHECK(close(y, ref, 1e-7, 1e-5));
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> edge{-inf, -inf}, out(2);
  svdq::softmax_rows_f32(edge.data(), 1, 2, out.data(), pool);
  CHECK(std::isnan(out[0]) && std::isnan(out[1]));
}

TEST(ops_attention_matches_reference_and_thread_counts_agree) {
  const int64_t batch = 2, tokens = 37, heads = 3, hd = 8, d = heads * hd;
  const size_t n = static_cast<size_t>(batch * tokens * d);
  const auto q = random_vec(n, 6, 2.0f), k = random_vec(n, 7, 2.0f), v = random_vec(n, 8, 1.0f);
  std::vector<double> ref(n);
  const double scale = 1 / std::sqrt(double(hd));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < tokens; ++i) {
        std::vector<double> s(static_cast<size_t>(tokens));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < tokens; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < hd; ++c) acc += double(q[(b * tokens + i) * d + h * hd + c]) * k[(b * tokens + j) * d + h * hd + c];
          s[j] = acc * scale;
          mx = std::max(mx, s[j]);
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t c = 0; c < hd; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < tokens; ++j) acc += s[j] / sum * v[(b * tokens + j) * d + h * hd + c];
          ref[(b * tokens + i) * d + h * hd + c] = acc;
        }
      }
  std::vector<float> out1(n), out3(n);
  svdq::ThreadPool p1(1), p3(3);
  svdq::attention_f32(q.data(), k.data(), v.data(), batch, tokens, heads, hd, float(scale), out1.data(), p1);
  svdq::attention_f32(q.data(), k.data(), v.data(), batch, tokens, heads, hd, float(scale), out3.data(), p3);
  CHECK(close(out1, ref, 2e-5, 0));
  CHECK(std::memcmp(out1.data(), out3.data(), n * sizeof(float)) == 0);
}

TEST(ops_reject_bad_sizes) {
  svdq::ThreadPool pool(1);
  bool threw = false;
  try {
    svdq::layernorm_f32(nullptr, 2, 2, nullptr, nullptr, 1e-5f, nullptr, pool);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    svdq::gelu_f32(nullptr, -1, nullptr, false, pool);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  svdq::silu_f32(nullptr, 0, nullptr, pool);  // size 0: nothing to do
}
