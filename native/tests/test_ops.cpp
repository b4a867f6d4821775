// Tests of the graph ops (ops.h) against plain double-precision references, with 1 and 3 pool
// threads (results must be bit-identical: every row is computed by one task in a fixed order).
// Tolerances as in test/graph-ops.test.ts: norms 1e-5·(1+|ref|), gelu/silu 1e-6·(1+|ref|),
// softmax 1e-7 + 1e-5·|ref|, attention 1e-5·(1 + max|v|).
// Then every instruction-set level this CPU has (portable, AVX2, AVX-512, forced through the Isa
// overloads): exp, erf and the activations over dense sweeps of all float magnitudes (every 61st or
// 97th bit pattern, both signs) plus ±0, ±Inf, NaN, subnormals and the overflow/underflow edges,
// against the C library in double; the row ops with every tail length; attention with several
// query blocks, key k-blocks and a head_dim above the GEMM's k-block.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "harness.h"
#include "svdquant/isa.h"
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

namespace {

// The general attention reference in double: q and out [B, Tq, H·hd], k and v [B, Tk, H·hd],
// key_bias [B, Tk] or empty; a row whose scores are all -Inf gives NaN (0/0), as the op.
std::vector<double> attention_ref_general(const std::vector<float>& q, const std::vector<float>& k,
                                          const std::vector<float>& v, const std::vector<float>& bias,
                                          int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t hd,
                                          double scale) {
  const int64_t d = heads * hd;
  std::vector<double> ref(q.size());
  std::vector<double> s(static_cast<size_t>(tk));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < tq; ++i) {
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < tk; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < hd; ++c) acc += double(q[(b * tq + i) * d + h * hd + c]) * k[(b * tk + j) * d + h * hd + c];
          s[j] = acc * scale + (bias.empty() ? 0.0 : double(bias[b * tk + j]));
          mx = std::max(mx, s[j]);
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t c = 0; c < hd; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < tk; ++j) acc += s[j] / sum * v[(b * tk + j) * d + h * hd + c];
          ref[(b * tq + i) * d + h * hd + c] = acc;
        }
      }
  return ref;
}

// Self-attention without a bias ([B, T, H·hd]).
std::vector<double> attention_ref(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, int64_t batch, int64_t tokens, int64_t heads,
                                  int64_t hd, double scale) {
  return attention_ref_general(q, k, v, {}, batch, tokens, tokens, heads, hd, scale);
}

}  // namespace

TEST(ops_attention_matches_reference_and_thread_counts_agree) {
  const int64_t batch = 2, tokens = 37, heads = 3, hd = 8, d = heads * hd;
  const size_t n = static_cast<size_t>(batch * tokens * d);
  const auto q = random_vec(n, 6, 2.0f), k = random_vec(n, 7, 2.0f), v = random_vec(n, 8, 1.0f);
  const double scale = 1 / std::sqrt(double(hd));
  const auto ref = attention_ref(q, k, v, batch, tokens, heads, hd, scale);
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

// ---- every instruction-set level: the element functions against the C library over dense sweeps

namespace {

using svdq::Isa;

std::vector<Isa> ops_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    if (static_cast<int>(isa) <= static_cast<int>(svdq::isa_choice().detected)) out.push_back(isa);
    else std::printf("# note: this CPU has no %s: its op kernels are not tested here\n", svdq::isa_name(isa));
  }
  return out;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Every `stride`-th float of [lo, hi] (by bit pattern, both signs), plus specials and extremes.
std::vector<float> sweep(float lo, float hi, uint32_t stride) {
  std::vector<float> v;
  for (uint32_t u = 0; u < 0x7F800000u; u += stride) {
    const float f = from_bits(u);
    if (f <= hi) v.push_back(f);
    if (-f >= lo) v.push_back(-f);
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 1e-45f, -1e-45f,
                  std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(), 1e30f, -1e30f, 88.72f,
                  88.73f, -87.34f, -103.9f, -104.0f, -110.0f, 1.0f, -1.0f, 1.0000001f, 0.99999994f, 10.5f, -10.5f,
                  20.0f, -20.0f, 100.0f, -100.0f})
    v.push_back(f);
  return v;
}

// |got - want| in units of the last place of want as a float (subnormal spacing at the bottom).
double ulp_error(float got, double want) {
  const double a = std::fabs(want);
  const double ulp = a < 1.1754943508222875e-38 ? 1.401298464324817e-45 : std::ldexp(1.0, std::ilogb(a) - 23);
  return std::fabs(double(got) - want) / ulp;
}

// Non-finite and NaN cases must match exactly (same class, same sign).
bool same_special(float got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return true;
}

}  // namespace

TEST(ops_exp_within_3_ulp_on_every_level) {
  const auto x = sweep(-120.0f, 100.0f, 61);
  std::vector<float> y(x.size());
  for (Isa isa : ops_isas()) {
    svdq::ops_kernels_for(isa).exp(x.data(), int64_t(x.size()), y.data());
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(double(x[i]));
      const double wantf = double(float(want));  // the correctly rounded float (Inf on overflow)
      if (!same_special(y[i], wantf) || (std::isfinite(wantf) && !std::isfinite(y[i]))) {
        if (bad++ < 5) std::printf("    %s exp(%.9g) = %.9g, want %.9g\n", svdq::isa_name(isa), x[i], y[i], want);
        continue;
      }
      if (std::isfinite(wantf)) worst = std::max(worst, ulp_error(y[i], want));
    }
    std::printf("# exp %s: %zu points, max error %.2f ulp\n", svdq::isa_name(isa), x.size(), worst);
    CHECK(bad == 0);
    CHECK(worst <= 3.0);
  }
}

TEST(ops_erf_and_gelu_match_the_c_library_on_every_level) {
  const auto x = sweep(-1e30f, 1e30f, 97);
  std::vector<float> y(x.size());
  for (Isa isa : ops_isas()) {
    const svdq::OpsKernels& k = svdq::ops_kernels_for(isa);
    // erf: absolute error against std::erf (its values are O(1)).
    k.erf(x.data(), int64_t(x.size()), y.data());
    double worst_erf = 0, worst_small = 0;
    int bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::erf(double(x[i]));
      if (!same_special(y[i], want) || std::isnan(y[i]) != std::isnan(want)) {
        ++bad;
        continue;
      }
      if (std::isnan(want)) continue;
      worst_erf = std::max(worst_erf, std::fabs(y[i] - want));
      if (std::fabs(x[i]) <= 1) worst_small = std::max(worst_small, ulp_error(y[i], want));
    }
    std::printf("# erf %s: max abs error %.3g, %.2f ulp for |x| <= 1\n", svdq::isa_name(isa), worst_erf, worst_small);
    CHECK(bad == 0);
    CHECK(worst_erf <= 2.4e-7);
    CHECK(worst_small <= 4.0);
    // Exact GELU x·Φ(x): relative error against x·erfc(-x/√2)/2 in double, down to underflow.
    k.gelu_erf(x.data(), int64_t(x.size()), y.data());
    double worst_gelu = 0;
    bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xd = x[i];
      const double want = 0.5 * xd * std::erfc(-xd / std::sqrt(2.0));
      if (std::isnan(want) || std::isinf(want)) {
        if (!same_special(y[i], want)) ++bad;
        continue;
      }
      if (std::fabs(want) < 1e-30) {  // deep tail: only require the tiny value (or 0)
        if (!(std::fabs(y[i]) < 1e-29)) ++bad;
        continue;
      }
      worst_gelu = std::max(worst_gelu, std::fabs(y[i] - want) / std::fabs(want));
    }
    std::printf("# gelu(erf) %s: max relative error %.3g\n", svdq::isa_name(isa), worst_gelu);
    CHECK(bad == 0);
    CHECK(worst_gelu <= 1e-6);
    // tanh GELU against 0.5·x·(1 + tanh(u)) with std::tanh (the identity with std::exp where
    // 1 + tanh(u) cancels, u < -1), and SiLU against x / (1 + exp(-x)): relative errors.
    k.gelu_tanh(x.data(), int64_t(x.size()), y.data());
    std::vector<float> s(x.size());
    k.silu(x.data(), int64_t(x.size()), s.data());
    double worst_tanh = 0, worst_silu = 0;
    bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double xd = x[i];
      const double u = std::sqrt(2 / M_PI) * (xd + 0.044715 * xd * xd * xd);
      double want = u >= -1 ? 0.5 * xd * (1 + std::tanh(u)) : xd * std::exp(2 * u) / (1 + std::exp(2 * u));
      if (std::isinf(xd)) want = xd > 0 ? xd : std::nan("");
      if (std::isnan(want) || std::isinf(want)) {
        if (!same_special(y[i], want)) ++bad;
      } else if (std::fabs(want) < 1e-30) {
        if (!(std::fabs(y[i]) < 1e-29)) ++bad;
      } else {
        // In the exponential tail the rounding of u itself (as of x) is amplified |2u| times.
        worst_tanh = std::max(worst_tanh, std::fabs(y[i] - want) / std::fabs(want) / (1 + std::fabs(2 * u)));
      }
      double ws = xd / (1 + std::exp(-xd));
      if (std::isinf(xd)) ws = xd > 0 ? xd : std::nan("");
      if (std::isnan(ws) || std::isinf(ws)) {
        if (!same_special(s[i], ws)) ++bad;
      } else if (std::fabs(ws) < 1e-30) {
        if (!(std::fabs(s[i]) < 1e-29)) ++bad;
      } else {
        worst_silu = std::max(worst_silu, std::fabs(s[i] - ws) / std::fabs(ws));
      }
    }
    std::printf("# gelu(tanh) %s: max relative error %.3g·(1 + |2u|); silu %.3g\n", svdq::isa_name(isa), worst_tanh, worst_silu);
    CHECK(bad == 0);
    CHECK(worst_tanh <= 4e-7);
    CHECK(worst_silu <= 1e-6);
  }
}

TEST(ops_every_level_matches_reference_with_tails_and_thread_counts_agree) {
  svdq::ThreadPool p1(1), p3(3);
  for (Isa isa : ops_isas()) {
    // Row ops over widths with every tail length of 8 and 16 lanes, several tasks.
    for (int64_t dim : {1, 7, 15, 16, 17, 33, 768, 1001}) {
      const int64_t rows = 70;
      const auto x = random_vec(static_cast<size_t>(rows * dim), 11 + uint32_t(dim), 4.0f);
      const auto g = random_vec(static_cast<size_t>(dim), 12, 1.0f), b = random_vec(static_cast<size_t>(dim), 13, 1.0f);
      std::vector<float> y(x.size()), y3(x.size());
      std::vector<double> ln(x.size()), rn(x.size()), sm(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = &x[r * dim];
        double mean = 0, var = 0, sq = 0, mx = -1e300, sum = 0;
        for (int64_t j = 0; j < dim; ++j) mean += xr[j], sq += double(xr[j]) * xr[j], mx = std::max(mx, double(xr[j]));
        mean /= dim;
        for (int64_t j = 0; j < dim; ++j) var += (xr[j] - mean) * (xr[j] - mean), sum += std::exp(xr[j] - mx);
        var /= dim;
        for (int64_t j = 0; j < dim; ++j) {
          ln[r * dim + j] = (xr[j] - mean) / std::sqrt(var + 1e-5) * g[j] + b[j];
          rn[r * dim + j] = xr[j] / std::sqrt(sq / dim + 1e-6) * g[j];
          sm[r * dim + j] = std::exp(xr[j] - mx) / sum;
        }
      }
      svdq::layernorm_f32(x.data(), rows, dim, g.data(), b.data(), 1e-5f, y.data(), p1, isa);
      svdq::layernorm_f32(x.data(), rows, dim, g.data(), b.data(), 1e-5f, y3.data(), p3, isa);
      CHECK(close(y, ln, 1e-5, 1e-5));
      CHECK(std::memcmp(y.data(), y3.data(), y.size() * 4) == 0);
      svdq::rmsnorm_f32(x.data(), rows, dim, g.data(), 1e-6f, y.data(), p3, isa);
      CHECK(close(y, rn, 1e-5, 1e-5));
      svdq::softmax_rows_f32(x.data(), rows, dim, y.data(), p3, isa);
      CHECK(close(y, sm, 1e-7, 1e-5));
      std::vector<double> ad(x.size());
      for (size_t i = 0; i < x.size(); ++i) ad[i] = double(x[i]) + x[(i * 7) % x.size()];
      std::vector<float> x2(x.size());
      for (size_t i = 0; i < x.size(); ++i) x2[i] = x[(i * 7) % x.size()];
      svdq::add_f32(x.data(), x2.data(), int64_t(x.size()), y.data(), p3, isa);
      CHECK(close(y, ad, 0, 6e-8));
    }
    // Softmax specials: NaN or all -Inf rows give NaN; +-1000 is exact; in place works.
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> sx(3 * 19, 0.0f);
    for (int j = 0; j < 19; ++j) sx[j] = -inf;
    sx[19 + 17] = nan;
    sx[38] = 1000.0f;
    sx[39] = -1000.0f;
    svdq::softmax_rows_f32(sx.data(), 3, 19, sx.data(), p1, isa);
    bool nan_rows = true;
    for (int j = 0; j < 38; ++j) nan_rows = nan_rows && std::isnan(sx[j]);
    CHECK(nan_rows);
    CHECK(sx[38] == 1.0f && sx[39] == 0.0f);
    // GELU / SiLU through the threaded driver, in place.
    auto a = random_vec(100003, 14, 6.0f);
    std::vector<float> ye(a.size()), yt(a.size()), ys(a.size());
    svdq::gelu_f32(a.data(), int64_t(a.size()), ye.data(), false, p3, isa);
    svdq::gelu_f32(a.data(), int64_t(a.size()), yt.data(), true, p3, isa);
    svdq::silu_f32(a.data(), int64_t(a.size()), ys.data(), p3, isa);
    std::vector<double> re(a.size()), rt(a.size()), rs(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
      const double v = a[i];
      re[i] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
      rt[i] = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      rs[i] = v / (1 + std::exp(-v));
    }
    CHECK(close(ye, re, 1e-6, 1e-6));
    CHECK(close(yt, rt, 1e-6, 1e-6));
    CHECK(close(ys, rs, 1e-6, 1e-6));
    svdq::gelu_f32(a.data(), int64_t(a.size()), a.data(), false, p3, isa);
    CHECK(std::memcmp(a.data(), ye.data(), a.size() * 4) == 0);
    // Attention: one block, several query blocks and key k-blocks (T > 512), a head_dim over the
    // GEMM's k-block (600 > 512), head_dim not a multiple of the panel width.
    struct Case { int64_t batch, tokens, heads, hd; };
    for (const Case c : {Case{1, 1, 1, 4}, Case{2, 37, 3, 8}, Case{1, 300, 2, 24}, Case{1, 1100, 1, 16},
                         Case{1, 20, 1, 600}}) {
      const int64_t d = c.heads * c.hd;
      const size_t n = static_cast<size_t>(c.batch * c.tokens * d);
      const auto q = random_vec(n, 21, 2.0f / std::sqrt(float(c.hd) / 8)), k = random_vec(n, 22, 2.0f),
                 v = random_vec(n, 23, 1.0f);
      const double scale = 1 / std::sqrt(double(c.hd));
      const auto ref = attention_ref(q, k, v, c.batch, c.tokens, c.heads, c.hd, scale);
      std::vector<float> o1(n), o3(n);
      svdq::attention_f32(q.data(), k.data(), v.data(), c.batch, c.tokens, c.heads, c.hd, float(scale), o1.data(), p1, isa);
      svdq::attention_f32(q.data(), k.data(), v.data(), c.batch, c.tokens, c.heads, c.hd, float(scale), o3.data(), p3, isa);
      CHECK(close(o1, ref, 2e-5, 0));
      CHECK(std::memcmp(o1.data(), o3.data(), n * 4) == 0);
    }
    std::printf("# %s: norms, softmax, add, activations and attention checked\n", svdq::isa_name(isa));
  }
}

namespace {

// |got - want| <= tol·(1 + max|v|) wherever want is finite; NaN exactly where want is NaN.
bool attention_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = std::isnan(want[i]) ? std::isnan(got[i]) : std::fabs(got[i] - want[i]) <= tol * 2.0;
    if (!ok) {
      std::printf("    index %zu: got %.9g, want %.9g\n", i, got[i], want[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

// The key-tiled online softmax: several key tiles (Tk > 264 on every level) with running maxima
// that grow from tile to tile (keys scaled up along the sequence) and sharp softmaxes (scores of
// tens), cross-attention (Tq != Tk), a key padding bias with -10000 and -Inf entries (a whole
// first key tile at -Inf, later tiles at -Inf), a batch whose keys are all -Inf (NaN rows, as the
// plain softmax) and a NaN query (NaN in its row and head only). Outputs within
// 1e-5·(1 + max|v|) of the double reference (max|v| = 1), bit-identical for 1 and 3 threads.
TEST(ops_attention_online_softmax_cross_attention_masks_and_specials) {
  svdq::ThreadPool p1(1), p3(3);
  const float inf = std::numeric_limits<float>::infinity();
  struct Case { int64_t batch, tq, tk, heads, hd; float qscale; };
  for (Isa isa : ops_isas()) {
    for (const Case c : {Case{2, 70, 777, 2, 40, 2.0f}, Case{2, 33, 600, 3, 72, 8.0f}, Case{1, 200, 5, 1, 16, 1.0f}}) {
      const int64_t d = c.heads * c.hd;
      auto q = random_vec(static_cast<size_t>(c.batch * c.tq * d), 31, c.qscale);
      auto k = random_vec(static_cast<size_t>(c.batch * c.tk * d), 32, 2.0f);
      const auto v = random_vec(static_cast<size_t>(c.batch * c.tk * d), 33, 1.0f);
      for (int64_t b = 0; b < c.batch; ++b)  // later keys larger: the running max moves up tile by tile
        for (int64_t j = 0; j < c.tk; ++j)
          for (int64_t x = 0; x < d; ++x) k[(b * c.tk + j) * d + x] *= 0.25f + 1.5f * float(j) / float(c.tk);
      const double scale = 1 / std::sqrt(double(c.hd));
      for (int masked = 0; masked < 3; ++masked) {
        // 0: no bias; 1: -10000 and -Inf spots, first and last keys of batch 1 at -Inf;
        // 2: batch 0 as in 1, batch 1 entirely -Inf (NaN rows), and a NaN query in batch 0.
        std::vector<float> bias;
        if (masked > 0) {
          bias.assign(static_cast<size_t>(c.batch * c.tk), 0.0f);
          for (int64_t j = 0; j < c.tk; ++j) {
            bias[j] = j % 7 == 3 ? -10000.0f : (j % 11 == 5 ? -inf : 0.0f);
            if (c.batch > 1) bias[c.tk + j] = masked == 2 || j < std::min<int64_t>(300, c.tk - 1) || j >= c.tk - 40 ? -inf : 0.0f;
          }
        }
        auto qm = q;
        if (masked == 2) qm[3 * d + (c.heads - 1) * c.hd + 1] = std::numeric_limits<float>::quiet_NaN();
        const auto ref = attention_ref_general(qm, k, v, bias, c.batch, c.tq, c.tk, c.heads, c.hd, scale);
        std::vector<float> o1(qm.size()), o3(qm.size());
        const float* kb = bias.empty() ? nullptr : bias.data();
        svdq::attention_f32(qm.data(), k.data(), v.data(), c.batch, c.tq, c.tk, c.heads, c.hd, float(scale), kb,
                            o1.data(), p1, isa);
        svdq::attention_f32(qm.data(), k.data(), v.data(), c.batch, c.tq, c.tk, c.heads, c.hd, float(scale), kb,
                            o3.data(), p3, isa);
        CHECK(attention_close(o1, ref, 1e-5));
        CHECK(std::memcmp(o1.data(), o3.data(), o1.size() * 4) == 0 ||
              std::equal(o1.begin(), o1.end(), o3.begin(), [](float a, float b) { return a == b || (a != a && b != b); }));
        if (masked == 2) {  // the NaN query poisons its own row and head only
          CHECK(std::isnan(o1[3 * d + (c.heads - 1) * c.hd]) && !std::isnan(o1[4 * d]));
          if (c.heads > 1) CHECK(!std::isnan(o1[3 * d]));
        }
      }
    }
    std::printf("# %s: key-tiled attention with masks and specials checked\n", svdq::isa_name(isa));
  }
}
