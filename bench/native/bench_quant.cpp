// Benchmark of the quantizer's heavy numerics (quant.h) at a FLUX.1 MLP shape: the top-r
// randomized SVD, the residual and its RTN quantization, the low-rank refinement, the Hessian
// accumulation and GPTQ. Never asserts; prints a Markdown table (median of `reps` runs for the
// short steps, one run for the long ones) and a few quality figures.
//
// Usage: bench_quant [--n=12288] [--k=3072] [--r=32] [--m=1024] [--threads=1,2] [--reps=3]
//                    [--skip-gptq] [--skip-refine]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/quant.h"
#include "svdquant/thread_pool.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The runs of the last time_median call: a Row made right after it takes their flags.
std::vector<double> g_last_runs;

double time_median(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_s();
    fn();
    t.push_back(now_s() - t0);
  }
  g_last_runs = t;
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float normal() {
    double u = (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    const double v = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    return static_cast<float>(std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v));
  }
};

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  while (*s) {
    out.push_back(std::atoi(s));
    const char* c = std::strchr(s, ',');
    if (!c) break;
    s = c + 1;
  }
  return out;
}

struct Row {
  std::string what;
  int threads;
  double seconds;
  std::string note;
  // Flags of the timing (bench_flags.h); single-run steps (reps 1) cannot show a spread: "1 run".
  std::string flags = g_last_runs.size() < 3 ? std::string("1 run")
                                             : bench_flags::Flags().spread_of(g_last_runs).suffix();
};

}  // namespace

int main(int argc, char** argv) {
  int64_t N = 12288, K = 3072, r = 32, M = 1024;
  int reps = 3;
  std::vector<int> threads_list = {1, 2};
  bool skip_gptq = false, skip_refine = false;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strncmp(a, "--n=", 4) == 0) N = std::atoll(a + 4);
    else if (std::strncmp(a, "--k=", 4) == 0) K = std::atoll(a + 4);
    else if (std::strncmp(a, "--r=", 4) == 0) r = std::atoll(a + 4);
    else if (std::strncmp(a, "--m=", 4) == 0) M = std::atoll(a + 4);
    else if (std::strncmp(a, "--reps=", 7) == 0) reps = std::max(1, std::atoi(a + 7));
    else if (std::strncmp(a, "--threads=", 10) == 0) threads_list = parse_list(a + 10);
    else if (std::strcmp(a, "--skip-gptq") == 0) skip_gptq = true;
    else if (std::strcmp(a, "--skip-refine") == 0) skip_refine = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a);
      return 2;
    }
  }
  std::printf("# CPU level %s, physical cores %d; W [%lld, %lld], rank %lld, calibration tokens %lld\n",
              svdq::isa_name(svdq::isa_choice().active), svdq::physical_cores(),
              static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(r),
              static_cast<long long>(M));

  // A weight like a smoothed transformer weight: a few strong directions, a slowly decaying
  // middle (rank-256 part with σ ~ 1/sqrt(i)), heavy-tailed noise and a few outlier columns.
  Rng rng(7);
  auto& build_pool = svdq::shared_pool(0);
  const int64_t lr = 256;
  std::vector<float> A(static_cast<size_t>(N * lr)), B(static_cast<size_t>(lr * K)),
      W(static_cast<size_t>(N * K));
  for (int64_t c = 0; c < lr; ++c) {
    const float s = (c < 8 ? 6.0f : 1.0f) / std::sqrt(static_cast<float>(c + 1));
    for (int64_t i = 0; i < N; ++i) A[i * lr + c] = s * rng.normal();
  }
  for (auto& v : B) v = rng.normal() / std::sqrt(static_cast<float>(K));
  for (int64_t i = 0; i < N * K; ++i) {
    const float g = rng.normal();
    W[i] = 0.02f * g * (std::fabs(rng.normal()) > 2.5f ? 4.0f : 1.0f);
  }
  svdq::gemm_f32(false, false, N, K, lr, 0.05f, A.data(), lr, B.data(), K, 1.0f, W.data(), K, build_pool);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k : {int64_t(3), K / 3, K - 5}) W[i * K + k] *= 8.0f;
  A.clear();
  A.shrink_to_fit();

  std::vector<Row> rows;
  std::vector<float> R(static_cast<size_t>(N * K)), D(static_cast<size_t>(N * K));
  for (int threads : threads_list) {
    auto& pool = svdq::shared_pool(threads);
    svdq::RandomizedSvdOptions opts;
    svdq::SvdResult svd;
    const double t_svd = time_median(reps, [&] { svd = svdq::svd_topr_randomized(W.data(), N, K, r, opts, pool); });
    char note[200];
    std::snprintf(note, sizeof note, "oversample %d, power iters %d", opts.oversample, opts.power_iters);
    rows.push_back({"randomized SVD top-" + std::to_string(r), threads, t_svd, note});
    for (int q : {1, 2}) {
      svdq::RandomizedSvdOptions o2 = opts;
      o2.power_iters = q;
      const double t = time_median(reps, [&] { svdq::svd_topr_randomized(W.data(), N, K, r, o2, pool); });
      std::snprintf(note, sizeof note, "oversample %d, power iters %d", o2.oversample, o2.power_iters);
      rows.push_back({"randomized SVD top-" + std::to_string(r), threads, t, note});
    }
    std::vector<float> Y(static_cast<size_t>(N * (r + 16))), Qo(Y.size());
    for (auto& v : Y) v = rng.normal();
    const double t_qr = time_median(reps, [&] { svdq::linalg::orthonormalize(Y.data(), N, r + 16, Qo.data()); });
    rows.push_back({"  of which one QR of [N, r+16]", threads, t_qr, "Householder, double"});
    const double t_mm = time_median(reps, [&] {
      svdq::gemm_f32(false, false, N, r + 16, K, 1.0f, W.data(), K, Qo.data(), r + 16, 0.0f, Y.data(), r + 16, pool);
    });
    std::snprintf(note, sizeof note, "%.1f GFLOP/s", 2.0 * N * K * (r + 16) / t_mm / 1e9);
    rows.push_back({"  of which one W·Ω product", threads, t_mm, note});

    const svdq::LowRank branch = svdq::lowrank_from_svd(svd, r);
    const double t_res = time_median(reps, [&] { svdq::compute_residual(W.data(), branch, R.data(), pool); });
    rows.push_back({"residual R = W − L_up·L_down", threads, t_res, ""});
    for (svdq::Scheme s : {svdq::Scheme::Int4, svdq::Scheme::Mxfp4, svdq::Scheme::Nvfp4}) {
      svdq::QuantizedWeight q;
      const double t = time_median(reps, [&] { q = svdq::quantize_rtn(R.data(), N, K, s, svdq::MxScaleRule::Even, pool); });
      const char* name = s == svdq::Scheme::Int4 ? "int4" : s == svdq::Scheme::Mxfp4 ? "mxfp4" : "nvfp4";
      rows.push_back({std::string("RTN quantize ") + name, threads, t, ""});
      const double td = time_median(reps, [&] { svdq::dequantize(q, D.data(), pool); });
      rows.push_back({std::string("dequantize ") + name, threads, td, ""});
    }
    if (!skip_refine) {
      svdq::RefineOptions ro;
      ro.iters = 3;
      svdq::RefineResult rr;
      const double t = time_median(1, [&] { rr = svdq::refine_lowrank(W.data(), N, K, r, ro, pool); });
      std::string errs;
      for (double e : rr.errors) errs += (errs.empty() ? "" : ", ") + std::to_string(e);
      rows.push_back({"refine_lowrank int4, <= 3 iterations", threads, t, "errors " + errs});
    }
  }

  // Quality of the randomized SVD at this shape: energy captured by the top r against a reference
  // with many power iterations.
  {
    auto& pool = svdq::shared_pool(0);
    svdq::RandomizedSvdOptions ref;
    ref.power_iters = 12;
    ref.oversample = 32;
    const svdq::SvdResult a = svdq::svd_topr_randomized(W.data(), N, K, r, ref, pool);
    double ea = 0.0;
    for (int64_t i = 0; i < r; ++i) ea += static_cast<double>(a.S[i]) * a.S[i];
    std::printf("# top-%lld energy (Σσ²) with 12 power iterations, oversample 32: %.6g\n",
                static_cast<long long>(r), ea);
    for (auto qp : {std::pair<int, int>{1, 16}, {2, 16}, {3, 16}, {4, 16}, {2, 32}, {3, 32}}) {
      svdq::RandomizedSvdOptions o;
      o.power_iters = qp.first;
      o.oversample = qp.second;
      svdq::SvdResult b;
      const double t = time_median(1, [&] { b = svdq::svd_topr_randomized(W.data(), N, K, r, o, pool); });
      double eb = 0.0;
      for (int64_t i = 0; i < r; ++i) eb += static_cast<double>(b.S[i]) * b.S[i];
      std::printf("#   power iters %d, oversample %d: %.6g (%.2e relative shortfall), σ_r %.5g vs %.5g, %.3f s (%d threads)\n",
                  qp.first, qp.second, eb, (ea - eb) / ea, b.S[r - 1], a.S[r - 1], t, pool.size());
    }
  }

  if (!skip_gptq) {
    // Calibration inputs: correlated channels (a rank-64 latent) and a few large channels.
    std::vector<float> X(static_cast<size_t>(M * K)), Z(static_cast<size_t>(M * 64)),
        Mix(static_cast<size_t>(64 * K)), H(static_cast<size_t>(K * K), 0.0f);
    for (auto& v : Z) v = rng.normal();
    for (auto& v : Mix) v = rng.normal() * 0.2f;
    for (auto& v : X) v = 0.3f * rng.normal();
    svdq::gemm_f32(false, false, M, K, 64, 1.0f, Z.data(), 64, Mix.data(), K, 1.0f, X.data(), K,
                   svdq::shared_pool(0));
    for (int64_t t = 0; t < M; ++t)
      for (int64_t k : {int64_t(11), K / 2, K - 17}) X[t * K + k] *= 20.0f;
    for (int threads : threads_list) {
      auto& pool = svdq::shared_pool(threads);
      std::fill(H.begin(), H.end(), 0.0f);
      const double t_h = time_median(1, [&] { svdq::hessian_accumulate(H.data(), X.data(), M, K, pool); });
      char note[200];
      std::snprintf(note, sizeof note, "M = %lld tokens, %.1f GFLOP/s", static_cast<long long>(M),
                    2.0 * M * K * K / t_h / 1e9);
      rows.push_back({"hessian_accumulate", threads, t_h, note});
      struct G {
        svdq::Scheme s;
        bool act;
        const char* name;
      };
      for (const G& g : {G{svdq::Scheme::Int4, false, "int4"}, G{svdq::Scheme::Int4, true, "int4 act-order"},
                         G{svdq::Scheme::Nvfp4, false, "nvfp4"}}) {
        if (threads != threads_list.back() && g.act) continue;
        svdq::GptqOptions o;
        o.scheme = g.s;
        o.act_order = g.act;
        svdq::GptqResult gr;
        const double t = time_median(1, [&] { gr = svdq::gptq_quantize(R.data(), N, K, H.data(), o, pool); });
        // RTN's objective on the same H for comparison: tr(E·H·Eᵀ) through gemm_f32.
        const svdq::QuantizedWeight rq = svdq::quantize_rtn(R.data(), N, K, g.s, svdq::MxScaleRule::Even, pool);
        svdq::dequantize(rq, D.data(), pool);
        for (int64_t i = 0; i < N * K; ++i) D[i] = R[i] - D[i];
        std::vector<float> XE(static_cast<size_t>(M * 2048));
        double rtn = 0.0;
        for (int64_t n0 = 0; n0 < N; n0 += 2048) {
          const int64_t nn = std::min<int64_t>(2048, N - n0);
          svdq::gemm_f32(false, true, M, nn, K, 1.0f, X.data(), K, D.data() + n0 * K, K, 0.0f, XE.data(), nn, pool);
          for (int64_t i = 0; i < M * nn; ++i) rtn += static_cast<double>(XE[i]) * XE[i];
        }
        std::snprintf(note, sizeof note, "block 128; ‖X·Eᵀ‖²: GPTQ %.4g vs RTN %.4g (%.1f%% lower)",
                      gr.output_sq_error, rtn, 100.0 * (1.0 - gr.output_sq_error / rtn));
        rows.push_back({std::string("GPTQ ") + g.name, threads, t, note});
      }
    }
  }

  std::printf("\n| step | threads | seconds | note | flags |\n|---|---|---|---|---|\n");
  for (const Row& r2 : rows)
    std::printf("| %s | %d | %.3f | %s | %s |\n", r2.what.c_str(), r2.threads, r2.seconds, r2.note.c_str(),
                r2.flags.c_str());
  std::printf("# '1 run': a single timed run (slow steps), which cannot be checked for spread\n");
  bench_flags::print_legend();
  return 0;
}
