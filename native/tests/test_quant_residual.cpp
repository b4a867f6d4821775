// Tests of the residual helpers (quant.h): R = Ŵ − L_up·L_down, RTN through the formats.h row
// quantizers, dequantize, and refine_lowrank. The residual and RTN are compared bit for bit with
// the operations they are defined by (a copy + gemm_f32 with alpha −1 / beta 1; the format
// kernels on the whole matrix); refine_lowrank by its contract (errors falling until the last
// step, the returned branch's error equal to errors[best]).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.h"
#include "quant_test_rng.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/quant.h"
#include "svdquant/thread_pool.h"

namespace {

using svdq_test::Rng;

const svdq::Scheme kSchemes[] = {svdq::Scheme::Int4, svdq::Scheme::Mxfp4, svdq::Scheme::Nvfp4,
                                 svdq::Scheme::Int8};

}  // namespace

TEST(quant_residual_matches_gemm) {
  Rng rng(41);
  auto& pool = svdq::shared_pool(2);
  const int64_t N = 70, K = 130, r = 5;
  std::vector<float> W(N * K), up(N * r), down(r * K);
  for (auto& v : W) v = rng.normal();
  for (auto& v : up) v = rng.normal();
  for (auto& v : down) v = rng.normal();
  std::vector<float> R(N * K), ref(W);
  svdq::compute_residual(W.data(), N, K, up.data(), down.data(), r, R.data(), pool);
  svdq::gemm_f32(false, false, N, K, r, -1.0f, up.data(), r, down.data(), K, 1.0f, ref.data(), K, pool);
  CHECK(R == ref);
  // rank 0: R = W.
  svdq::compute_residual(W.data(), N, K, nullptr, nullptr, 0, R.data(), pool);
  CHECK(R == W);
  // Through a LowRank: against double arithmetic, loosely.
  svdq::LowRank lr;
  lr.n = N;
  lr.k = K;
  lr.rank = r;
  lr.up = up;
  lr.down = down;
  svdq::compute_residual(W.data(), lr, R.data(), pool);
  double worst = 0.0;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < K; ++k) {
      double s = W[i * K + k];
      for (int64_t c = 0; c < r; ++c) s -= static_cast<double>(up[i * r + c]) * down[c * K + k];
      worst = std::max(worst, std::fabs(s - R[i * K + k]));
    }
  CHECK(worst < 1e-5);
}

TEST(quant_rtn_matches_formats) {
  Rng rng(42);
  const svdq::FormatKernels& fk = svdq::format_kernels();
  for (int threads : {1, 2}) {
    auto& pool = svdq::shared_pool(threads);
    for (int64_t K : {100, 128, 7}) {
      const int64_t N = 150;  // more than one row task
      std::vector<float> R(N * K);
      for (auto& v : R) v = rng.heavy();
      for (svdq::Scheme s : kSchemes) {
        const svdq::QuantizedWeight q = svdq::quantize_rtn(R.data(), N, K, s, svdq::MxScaleRule::Even, pool);
        const int g = svdq::scheme_group(s, K);
        CHECK_EQ(q.group, g);
        const int64_t kp = s == svdq::Scheme::Int8 ? K : svdq::padded_k(K, g);
        std::vector<uint8_t> codes(s == svdq::Scheme::Int8 ? N * K : N * kp / 2);
        std::vector<float> sf;
        std::vector<uint8_t> sb;
        std::vector<float> deq_ref(N * K), deq(N * K);
        switch (s) {
          case svdq::Scheme::Int4:
            sf.resize(N * kp / 64);
            fk.quantize_int4(R.data(), N, K, codes.data(), sf.data());
            fk.dequantize_int4(codes.data(), sf.data(), N, K, deq_ref.data());
            break;
          case svdq::Scheme::Mxfp4:
            sb.resize(N * kp / 32);
            fk.quantize_mxfp4(R.data(), N, K, codes.data(), sb.data(), svdq::MxScaleRule::Even);
            fk.dequantize_mxfp4(codes.data(), sb.data(), N, K, deq_ref.data());
            break;
          case svdq::Scheme::Nvfp4: {
            const float G = svdq::nvfp4_global_scale(fk.amax_finite(R.data(), N * K));
            CHECK_EQ(q.global_scale, G);
            sb.resize(N * kp / 16);
            fk.quantize_nvfp4(R.data(), N, K, G, codes.data(), sb.data());
            fk.dequantize_nvfp4(codes.data(), sb.data(), G, N, K, deq_ref.data());
            break;
          }
          case svdq::Scheme::Int8:
            sf.resize(N);
            fk.quantize_int8(R.data(), N, K, reinterpret_cast<int8_t*>(codes.data()), sf.data());
            fk.dequantize_int8(reinterpret_cast<const int8_t*>(codes.data()), sf.data(), N, K, deq_ref.data());
            break;
        }
        CHECK(q.codes == codes);
        CHECK(q.scales_f32 == sf);
        CHECK(q.scales_u8 == sb);
        svdq::dequantize(q, deq.data(), pool);
        CHECK(std::memcmp(deq.data(), deq_ref.data(), deq.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST(quant_rtn_errors) {
  auto& pool = svdq::shared_pool(1);
  std::vector<float> R(4 * 64, 0.5f);
  R[70] = std::numeric_limits<float>::infinity();
  bool threw = false;
  try { svdq::quantize_rtn(R.data(), 4, 64, svdq::Scheme::Int4, svdq::MxScaleRule::Even, pool, "layer.w"); }
  catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("layer.w at row 1, column 6") != std::string::npos;
  }
  CHECK(threw);
  svdq::QuantizedWeight q;
  q.n = 2;
  q.k = 64;
  std::vector<float> out(128);
  threw = false;
  try { svdq::dequantize(q, out.data(), pool); } catch (const std::invalid_argument&) { threw = true; }
  CHECK(threw);
}

TEST(quant_refine_lowrank) {
  Rng rng(43);
  auto& pool = svdq::shared_pool(2);
  const int64_t N = 96, K = 160, r = 8;
  // Heavy-tailed weights plus a few strong directions.
  std::vector<float> W(N * K);
  for (auto& v : W) v = 0.1f * rng.heavy();
  std::vector<float> a(N * 4), b(4 * K);
  for (auto& v : a) v = rng.normal();
  for (auto& v : b) v = rng.normal();
  svdq::gemm_f32(false, false, N, K, 4, 1.0f, a.data(), 4, b.data(), K, 1.0f, W.data(), K, pool);
  for (svdq::Scheme s : {svdq::Scheme::Int4, svdq::Scheme::Nvfp4}) {
    svdq::RefineOptions o;
    o.scheme = s;
    o.iters = 20;
    const svdq::RefineResult res = svdq::refine_lowrank(W.data(), N, K, r, o, pool);
    const size_t n = res.errors.size();
    CHECK(n >= 2);
    CHECK(res.best >= 0 && static_cast<size_t>(res.best) < n);
    // Strictly falling up to best; the step after best (if any) did not fall; it stopped there.
    for (int t = 1; t <= res.best; ++t) CHECK(res.errors[t] < res.errors[t - 1]);
    if (static_cast<size_t>(res.best) + 1 < n) {
      CHECK_EQ(n, static_cast<size_t>(res.best) + 2);
      CHECK(!(res.errors[n - 1] < res.errors[n - 2]));
    } else {
      CHECK_EQ(n, static_cast<size_t>(o.iters) + 1);
    }
    CHECK(res.errors[res.best] < res.errors[0]);  // refinement helps on this matrix
    // The returned branch has the reported error.
    std::vector<float> R(N * K), D(N * K);
    CHECK_EQ(res.branch.rank, r);
    svdq::compute_residual(W.data(), res.branch, R.data(), pool);
    const svdq::QuantizedWeight q = svdq::quantize_rtn(R.data(), N, K, s, svdq::MxScaleRule::Even, pool);
    svdq::dequantize(q, D.data(), pool);
    double e2 = 0.0;
    for (int64_t i = 0; i < N * K; ++i) e2 += (static_cast<double>(R[i]) - D[i]) * (static_cast<double>(R[i]) - D[i]);
    CHECK_EQ(std::sqrt(e2), res.errors[res.best]);
    std::printf("# refine %s: errors %.4f -> %.4f in %d step(s)\n", s == svdq::Scheme::Int4 ? "int4" : "nvfp4",
                res.errors[0], res.errors[res.best], res.best);
  }
  // iters = 0: just the SVD.
  svdq::RefineOptions o0;
  o0.iters = 0;
  const svdq::RefineResult r0 = svdq::refine_lowrank(W.data(), N, K, r, o0, pool);
  CHECK_EQ(r0.errors.size(), static_cast<size_t>(1));
  CHECK_EQ(r0.best, 0);
}
