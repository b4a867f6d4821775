// Tests of the tensor ops (tensor_ops.h) against plain double-precision loops written from their
// definitions, with 1 and 3 pool threads (results must be bit-identical across thread counts).
// Copies and concatenation are exact; elementwise ops are exact in float (one rounding per op, so
// compared bit for bit with the same float expression); norms and convolution within
// 1e-5·(1 + |ref|).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "harness.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/tensor_ops.h"
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

bool close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= tol * (1.0 + std::fabs(want[i])))) {
      std::printf("    index %zu: got %.9g, want %.9g\n", i, got[i], want[i]);
      return false;
    }
  }
  return true;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(tensor_ops_strided_copy_permute_slice_expand) {
  // src [2, 3, 4]; permute to [4, 2, 3]: out[d][a][b] = src[a][b][d].
  const auto src = random_vec(24, 1, 1.0f);
  for (int threads : {1, 3}) {
    svdq::ThreadPool pool(threads);
    std::vector<float> out(24);
    const int64_t shape[] = {4, 2, 3};
    const int64_t strides[] = {1, 12, 4};
    svdq::strided_copy_f32(src.data(), shape, strides, 3, out.data(), pool);
    bool ok = true;
    for (int d = 0; d < 4; ++d)
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 3; ++b) ok = ok && out[(d * 2 + a) * 3 + b] == src[(a * 3 + b) * 4 + d];
    CHECK(ok);

    // Slice [:, 1:3, 2:] of src (offset pointer + strides): shape [2, 2, 2].
    std::vector<float> sl(8);
    const int64_t sshape[] = {2, 2, 2};
    const int64_t sstr[] = {12, 4, 1};
    svdq::strided_copy_f32(src.data() + 4 + 2, sshape, sstr, 3, sl.data(), pool);
    ok = true;
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b)
        for (int c = 0; c < 2; ++c) ok = ok && sl[(a * 2 + b) * 2 + c] == src[(a * 3 + b + 1) * 4 + c + 2];
    CHECK(ok);

    // Nearest 2x upsampling of a [3, 2] image as the view [3, 2(f), 2, 2(f)] with stride 0 on f.
    std::vector<float> up(24);
    const int64_t ushape[] = {3, 2, 2, 2};
    const int64_t ustr[] = {2, 0, 1, 0};
    svdq::strided_copy_f32(src.data(), ushape, ustr, 4, up.data(), pool);
    ok = true;
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 4; ++x) ok = ok && up[y * 4 + x] == src[(y / 2) * 2 + x / 2];
    CHECK(ok);

    // A scalar (ndim 0) copies one element.
    float one = 0.0f;
    svdq::strided_copy_f32(src.data() + 5, nullptr, nullptr, 0, &one, pool);
    CHECK_EQ(one, src[5]);
  }
}

TEST(tensor_ops_strided_copy_rejects_bad_arguments) {
  svdq::ThreadPool pool(1);
  float x = 0.0f, y = 0.0f;
  const int64_t shape[] = {1};
  const int64_t neg[] = {-1};
  bool threw = false;
  try {
    svdq::strided_copy_f32(&x, shape, neg, 1, &y, pool);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    svdq::strided_copy_f32(&x, shape, shape, 9, &y, pool);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(tensor_ops_concat_along_inner_axis) {
  // Three inputs [outer=5, w_i] concatenated to [5, Σw].
  const int64_t widths[] = {3, 1, 4};
  const auto a = random_vec(15, 2, 1.0f), b = random_vec(5, 3, 1.0f), c = random_vec(20, 4, 1.0f);
  const float* ins[] = {a.data(), b.data(), c.data()};
  std::vector<float> want;
  for (int r = 0; r < 5; ++r) {
    for (int j = 0; j < 3; ++j) want.push_back(a[r * 3 + j]);
    want.push_back(b[r]);
    for (int j = 0; j < 4; ++j) want.push_back(c[r * 4 + j]);
  }
  for (int threads : {1, 3}) {
    svdq::ThreadPool pool(threads);
    std::vector<float> out(40);
    svdq::concat_f32(ins, widths, 3, 5, out.data(), pool);
    CHECK(same_bits(out, want));
  }
}

TEST(tensor_ops_elementwise_broadcasting_all_ops) {
  // Output [2, 3, 5]; a full, b broadcast over axis 1 ([2, 1, 5]), c broadcast over axes 0 and 2 ([1, 3, 1]).
  const int64_t shape[] = {2, 3, 5};
  const auto a = random_vec(30, 5, 2.0f), b = random_vec(10, 6, 2.0f), c = random_vec(3, 7, 2.0f);
  const int64_t sa[] = {15, 5, 1}, sb[] = {5, 0, 1}, sc[] = {0, 1, 0};
  const float* ins[] = {a.data(), b.data(), c.data()};
  const int64_t* strides[] = {sa, sb, sc};
  const svdq::ElementwiseOp ops[] = {svdq::ElementwiseOp::Add, svdq::ElementwiseOp::Sub, svdq::ElementwiseOp::Mul,
                                     svdq::ElementwiseOp::Div, svdq::ElementwiseOp::Modulate,
                                     svdq::ElementwiseOp::GatedAdd};
  for (auto op : ops) {
    std::vector<float> want(30);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 5; ++k) {
          const float x = a[i * 15 + j * 5 + k], y = b[i * 5 + k], z = c[j];
          float r = 0.0f;
          switch (op) {
            case svdq::ElementwiseOp::Add: r = x + y; break;
            case svdq::ElementwiseOp::Sub: r = x - y; break;
            case svdq::ElementwiseOp::Mul: r = x * y; break;
            case svdq::ElementwiseOp::Div: r = x / y; break;
            case svdq::ElementwiseOp::Modulate: r = x * (1.0f + y) + z; break;
            case svdq::ElementwiseOp::GatedAdd: r = x + y * z; break;
          }
          want[i * 15 + j * 5 + k] = r;
        }
    std::vector<float> first;
    for (int threads : {1, 3}) {
      svdq::ThreadPool pool(threads);
      std::vector<float> out(30);
      svdq::elementwise_f32(op, ins, strides, shape, 3, out.data(), pool);
      // Fused forms may be computed with an FMA; allow one rounding there, exact otherwise.
      const bool fused = op == svdq::ElementwiseOp::Modulate || op == svdq::ElementwiseOp::GatedAdd;
      if (fused) {
        std::vector<double> wd(want.begin(), want.end());
        CHECK(close(out, wd, 1e-6));
      } else {
        CHECK(same_bits(out, want));
      }
      if (first.empty()) first = out; else CHECK(same_bits(out, first));
    }
  }
  CHECK_EQ(svdq::elementwise_arity(svdq::ElementwiseOp::Add), 2);
  CHECK_EQ(svdq::elementwise_arity(svdq::ElementwiseOp::Modulate), 3);
  CHECK_EQ(svdq::elementwise_arity(svdq::ElementwiseOp::GatedAdd), 3);
}

TEST(tensor_ops_layernorm_modulate_matches_definition) {
  const int64_t rows = 6, dim = 37, per_sample = 3;  // two samples of three rows
  const auto x = random_vec(rows * dim, 8, 3.0f), gamma = random_vec(dim, 9, 1.0f), beta = random_vec(dim, 10, 1.0f);
  const auto scale = random_vec(2 * dim, 11, 0.5f), shift = random_vec(2 * dim, 12, 0.5f);
  const float eps = 1e-6f;
  for (bool affine : {false, true}) {
    std::vector<double> want(rows * dim);
    for (int64_t r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < dim; ++i) mean += x[r * dim + i];
      mean /= dim;
      for (int64_t i = 0; i < dim; ++i) var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
      var /= dim;
      const int64_t s = r / per_sample;
      for (int64_t i = 0; i < dim; ++i) {
        double v = (x[r * dim + i] - mean) / std::sqrt(var + eps);
        if (affine) v = v * gamma[i] + beta[i];
        want[r * dim + i] = v * (1.0 + scale[s * dim + i]) + shift[s * dim + i];
      }
    }
    std::vector<float> first;
    for (int threads : {1, 3}) {
      svdq::ThreadPool pool(threads);
      std::vector<float> y(rows * dim);
      svdq::layernorm_modulate_f32(x.data(), rows, dim, affine ? gamma.data() : nullptr,
                                   affine ? beta.data() : nullptr, eps, scale.data(), shift.data(), per_sample,
                                   y.data(), pool);
      CHECK(close(y, want, 1e-5));
      if (first.empty()) first = y; else CHECK(same_bits(y, first));
    }
  }
}

TEST(tensor_ops_group_norm_matches_definition) {
  const int64_t n = 2, channels = 6, spatial = 10, groups = 3;
  const auto x = random_vec(n * channels * spatial, 13, 4.0f);
  const auto gamma = random_vec(channels, 14, 1.0f), beta = random_vec(channels, 15, 1.0f);
  const float eps = 1e-6f;
  std::vector<double> want(x.size());
  const int64_t cpg = channels / groups;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t g = 0; g < groups; ++g) {
      const float* p = x.data() + (b * channels + g * cpg) * spatial;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < cpg * spatial; ++i) mean += p[i];
      mean /= cpg * spatial;
      for (int64_t i = 0; i < cpg * spatial; ++i) var += (p[i] - mean) * (p[i] - mean);
      var /= cpg * spatial;
      for (int64_t c = 0; c < cpg; ++c)
        for (int64_t s = 0; s < spatial; ++s) {
          const int64_t ch = g * cpg + c;
          const int64_t idx = (b * channels + ch) * spatial + s;
          want[idx] = (x[idx] - mean) / std::sqrt(var + eps) * gamma[ch] + beta[ch];
        }
    }
  std::vector<float> first;
  for (int threads : {1, 3}) {
    svdq::ThreadPool pool(threads);
    std::vector<float> y(x.size());
    svdq::group_norm_f32(x.data(), n, channels, spatial, groups, eps, gamma.data(), beta.data(), y.data(), pool);
    CHECK(close(y, want, 1e-5));
    if (first.empty()) first = y; else CHECK(same_bits(y, first));
  }
  // Channels not divisible by groups are refused.
  svdq::ThreadPool pool(1);
  std::vector<float> y(x.size());
  bool threw = false;
  try {
    svdq::group_norm_f32(x.data(), n, channels, spatial, 4, eps, nullptr, nullptr, y.data(), pool);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(tensor_ops_conv2d_matches_direct_convolution) {
  struct Shape {
    int64_t n, cin, h, w, cout, kh, kw, sh, sw, ph, pw;
  };
  // A 3x3 padding-1 convolution (VAE), a patch embedding (stride = kernel) and an odd strided case.
  const Shape cases[] = {{2, 5, 7, 6, 4, 3, 3, 1, 1, 1, 1}, {1, 4, 8, 8, 6, 2, 2, 2, 2, 0, 0},
                         {1, 3, 9, 7, 5, 3, 2, 2, 3, 1, 0}};
  uint32_t seed = 20;
  for (const auto& s : cases) {
    const auto x = random_vec(s.n * s.cin * s.h * s.w, seed++, 1.0f);
    const auto wt = random_vec(s.cout * s.cin * s.kh * s.kw, seed++, 0.5f);
    const auto bias = random_vec(s.cout, seed++, 0.5f);
    const int64_t ho = (s.h + 2 * s.ph - s.kh) / s.sh + 1, wo = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
    std::vector<double> want(s.n * s.cout * ho * wo);
    for (int64_t b = 0; b < s.n; ++b)
      for (int64_t co = 0; co < s.cout; ++co)
        for (int64_t oy = 0; oy < ho; ++oy)
          for (int64_t ox = 0; ox < wo; ++ox) {
            double acc = bias[co];
            for (int64_t ci = 0; ci < s.cin; ++ci)
              for (int64_t ky = 0; ky < s.kh; ++ky)
                for (int64_t kx = 0; kx < s.kw; ++kx) {
                  const int64_t iy = oy * s.sh - s.ph + ky, ix = ox * s.sw - s.pw + kx;
                  if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                  acc += double(x[((b * s.cin + ci) * s.h + iy) * s.w + ix]) *
                         wt[((co * s.cin + ci) * s.kh + ky) * s.kw + kx];
                }
            want[((b * s.cout + co) * ho + oy) * wo + ox] = acc;
          }
    const svdq::PackedF32 packed = svdq::pack_f32_weights(wt.data(), s.cout, s.cin * s.kh * s.kw);
    std::vector<float> first;
    for (int threads : {1, 3}) {
      svdq::ThreadPool pool(threads);
      std::vector<float> out(want.size());
      svdq::conv2d_f32(x.data(), s.n, s.cin, s.h, s.w, packed, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, bias.data(),
                       out.data(), pool);
      CHECK(close(out, want, 1e-5));
      if (first.empty()) first = out; else CHECK(same_bits(out, first));
    }
  }
}
