// Benchmark of the fp32 GEMM (gemm_f32.h). Never asserts.
//
// 1. Measures this machine's fp32 peak at every instruction-set level it supports with a
//    register-only loop (16 independent accumulator zmm, 12 ymm/xmm, so the FMA latency never
//    limits it): AVX-512 and AVX2 with fused multiply-adds, the portable (SSE2) level with a
//    multiply and an add per element; 1 and 2 threads (each thread its own loop, all released
//    together). The peak is the best run (noise only ever slows a run down): of 5 runs of 0.3 s,
//    and of the short probes of step 2, which run the same loop.
// 2. Times gemm_f32_packed (Y = X·Wᵀ + bias, W packed beforehand) at the shapes of FLUX.1-sized
//    layers, threads 1 and 2: the median of `reps` runs after a warm-up, in GFLOP/s (2·M·N·K
//    flops) and as a fraction of the peak for the same level and thread count. Around each row a
//    short probe of the peak loop shows whether other work shared the machine ('avail').
// Progress goes to stderr, the tables to stdout at the end.
//
// Usage: bench_gemm_f32 [--isa=active|portable|avx2|avx512|all] [--reps=N] [--threads=1,2]
//                       [--m=1,16,256,1024,4096] [--kn=3072x3072,...] [--general] [--skip-peak]
//   --general also times gemm_f32 (packs W on every call) next to gemm_f32_packed.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_flags.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/thread_pool.h"

using svdq::Isa;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- register-only peak loops: `iters` steps of kAcc independent vector FMAs (or mul + add) --

// Independent accumulator vectors: enough to cover latency × pipes (4 × 2 for FMA, 5 × 2 for a
// dependent mul + add), few enough to stay in registers with the two constants (32 zmm; 16
// ymm/xmm).
constexpr int kAcc = 16;    // zmm
constexpr int kAcc16 = 12;  // ymm, xmm
constexpr double kProbeSeconds = 0.02;  // per probe run; a probe is the best of 3 runs

__attribute__((target("avx512f"), noinline)) float peak_loop_avx512(int64_t iters, float seed) {
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(seed + static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  float out[16];
  _mm512_storeu_ps(out, s);
  float sum = 0.0f;
  for (float v : out) sum += v;
  return sum;
}

__attribute__((target("avx2,fma"), noinline)) float peak_loop_avx2(int64_t iters, float seed) {
  __m256 acc[kAcc16];
  for (int i = 0; i < kAcc16; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kAcc16; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kAcc16; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// Baseline x86-64: SSE2, a multiply and a dependent add per element (no FMA).
__attribute__((noinline)) float peak_loop_sse(int64_t iters, float seed) {
  __m128 acc[kAcc16];
  for (int i = 0; i < kAcc16; ++i) acc[i] = _mm_set1_ps(seed + static_cast<float>(i));
  const __m128 m = _mm_set1_ps(0.999999f), a = _mm_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kAcc16; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], m), a);
  }
  __m128 s = acc[0];
  for (int i = 1; i < kAcc16; ++i) s = _mm_add_ps(s, acc[i]);
  float out[4];
  _mm_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3];
}

struct PeakLoop {
  float (*fn)(int64_t, float);
  int lanes;  // fp32 lanes per vector; 2 flops per lane per step (FMA or mul + add)
  int acc;    // vectors per step
};

PeakLoop peak_loop_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return {peak_loop_avx512, 16, kAcc};
    case Isa::Avx2: return {peak_loop_avx2, 8, kAcc16};
    default: return {peak_loop_sse, 4, kAcc16};
  }
}

volatile float g_sink;

// GFLOP/s of `threads` threads each running the loop `iters` steps, all released together.
double peak_once(Isa isa, int threads, int64_t iters) {
  const PeakLoop loop = peak_loop_for(isa);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  std::vector<double> ends(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      ready++;
      while (!go.load()) {}
      g_sink = loop.fn(iters, 1.0f + static_cast<float>(t));
      ends[static_cast<size_t>(t)] = now_s();
    });
  while (ready.load() < threads) {}
  const double t0 = now_s();
  go = true;
  for (auto& w : workers) w.join();
  const double t1 = *std::max_element(ends.begin(), ends.end());
  const double flops = 2.0 * loop.lanes * loop.acc * static_cast<double>(iters) * threads;
  return flops / (t1 - t0) * 1e-9;
}

// Loop steps that take about `seconds` on one thread.
int64_t calibrate(Isa isa, double seconds) {
  int64_t iters = 1 << 16;
  for (;;) {
    const double t0 = now_s();
    g_sink = peak_loop_for(isa).fn(iters, 1.0f);
    const double dt = now_s() - t0;
    if (dt > 0.02 || iters > (int64_t{1} << 34))
      return std::max<int64_t>(1, static_cast<int64_t>(iters * seconds / dt));
    iters *= 2;
  }
}

// Best of 3 short runs: how much of the peak the machine gives us right now.
double probe(Isa isa, int threads, int64_t iters) {
  double best = 0.0;
  for (int r = 0; r < 3; ++r) best = std::max(best, peak_once(isa, threads, iters));
  return best;
}

double measure_peak(Isa isa, int threads, double* median_out) {
  const int64_t iters = calibrate(isa, 0.3);
  std::vector<double> runs;
  for (int r = 0; r < 5; ++r) runs.push_back(peak_once(isa, threads, iters));
  *median_out = median(runs);
  return *std::max_element(runs.begin(), runs.end());
}

// ---- GEMM timing ------------------------------------------------------------------------------

std::vector<float> random_vec(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<int32_t>(s >> 32)) * (1.0f / 2147483648.0f);
  }
  return v;
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  while (*s) {
    char* end;
    out.push_back(std::strtoll(s, &end, 10));
    s = *end ? end + 1 : end;
  }
  return out;
}

struct KN {
  int64_t k, n;
};

}  // namespace

int main(int argc, char** argv) {
  std::string isa_arg = "active";
  int reps = 5;
  std::vector<int64_t> threads_list = {1, 2};
  std::vector<int64_t> ms = {1, 16, 256, 1024, 4096};
  std::vector<KN> kns = {{3072, 3072}, {3072, 12288}, {12288, 3072}};
  bool general = false, skip_peak = false;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strncmp(a, "--isa=", 6) == 0) isa_arg = a + 6;
    else if (std::strncmp(a, "--reps=", 7) == 0) reps = std::max(1, std::atoi(a + 7));
    else if (std::strncmp(a, "--threads=", 10) == 0) threads_list = parse_list(a + 10);
    else if (std::strncmp(a, "--m=", 4) == 0) ms = parse_list(a + 4);
    else if (std::strncmp(a, "--kn=", 5) == 0) {
      kns.clear();
      const std::vector<int64_t> v = parse_list(a + 5);  // "KxN,KxN": x and , both separate
      for (size_t j = 0; j + 1 < v.size(); j += 2) kns.push_back({v[j], v[j + 1]});
    } else if (std::strcmp(a, "--general") == 0) general = true;
    else if (std::strcmp(a, "--skip-peak") == 0) skip_peak = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a);
      return 2;
    }
  }

  const svdq::IsaChoice& choice = svdq::isa_choice();
  std::vector<Isa> isas;
  if (isa_arg == "all") {
    for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512})
      if (static_cast<int>(isa) <= static_cast<int>(choice.detected)) isas.push_back(isa);
  } else if (isa_arg == "active") {
    isas.push_back(choice.active);
  } else {
    bool found = false;
    for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512})
      if (isa_arg == svdq::isa_name(isa)) {
        isas.push_back(isa);
        found = true;
      }
    if (!found || static_cast<int>(isas[0]) > static_cast<int>(choice.detected)) {
      std::fprintf(stderr, "bad or unsupported --isa=%s (this CPU: %s)\n", isa_arg.c_str(),
                   svdq::isa_name(choice.detected));
      return 2;
    }
  }
  std::printf("# CPU level %s, physical cores %d, hardware threads %u\n",
              svdq::isa_name(choice.detected), svdq::physical_cores(),
              std::thread::hardware_concurrency());

  // 1. Peak. (Printed at the end: the probes of step 2 run the same loop, and the best of all
  // those runs is the peak, which makes it robust to other work during step 1.)
  struct PeakRow {
    double best = 0.0, median = 0.0;
  };
  PeakRow peak[3][9];
  auto peak_ref = [&](Isa isa, int64_t t) -> PeakRow* {
    return t >= 1 && t < 9 ? &peak[static_cast<int>(isa)][t] : nullptr;
  };
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    if (skip_peak || static_cast<int>(isa) > static_cast<int>(choice.detected)) continue;
    for (int64_t t : threads_list) {
      PeakRow* row = peak_ref(isa, t);
      if (row == nullptr) continue;
      std::fprintf(stderr, "peak %s, %lld thread(s)...\n", svdq::isa_name(isa),
                   static_cast<long long>(t));
      row->best = measure_peak(isa, static_cast<int>(t), &row->median);
    }
  }

  // 2. GEMM.
  struct GemmRow {
    Isa isa;
    int64_t m, k, n, threads;
    double sec, gflops, probe0, probe1, general_gflops;
    std::vector<double> runs;  // the timed runs of gemm_f32_packed (for the spread flag)
  };
  std::vector<GemmRow> rows;
  for (Isa isa : isas) {
    const int64_t probe_iters = calibrate(isa, kProbeSeconds);
    for (const KN& kn : kns) {
      const int64_t K = kn.k, N = kn.n;
      const std::vector<float> W = random_vec(static_cast<size_t>(N * K), 1);
      const svdq::PackedF32 wp =
          svdq::pack_f32_weights(W.data(), N, K, K, isa, svdq::shared_pool(0));
      const std::vector<float> bias = random_vec(static_cast<size_t>(N), 3);
      for (int64_t M : ms) {
        const std::vector<float> X = random_vec(static_cast<size_t>(M * K), 2);
        std::vector<float> Y(static_cast<size_t>(M * N));
        for (int64_t t : threads_list) {
          svdq::ThreadPool pool(static_cast<int>(t));
          GemmRow row{isa, M, K, N, t, 0.0, 0.0, 0.0, 0.0, 0.0, {}};
          std::vector<double> last_runs;
          const double flops = 2.0 * static_cast<double>(M) * N * K;
          // Median of `reps` timed runs after a warm-up; small problems repeat inside one timed run
          // to last >= ~20 ms.
          auto time_median = [&](const auto& call) {
            double t0 = now_s();
            call();
            const double first = now_s() - t0;
            const int inner =
                first < 0.02
                    ? static_cast<int>(std::min(1000.0, std::ceil(0.02 / std::max(first, 1e-6))))
                    : 1;
            std::vector<double> runs;
            for (int r = 0; r < reps; ++r) {
              t0 = now_s();
              for (int i = 0; i < inner; ++i) call();
              runs.push_back((now_s() - t0) / inner);
            }
            last_runs = runs;
            return median(runs);
          };
          row.probe0 = probe(isa, static_cast<int>(t), probe_iters);
          row.sec = time_median([&] {
            svdq::gemm_f32_packed(X.data(), M, K, wp, bias.data(), Y.data(), N, false, pool);
          });
          row.runs = last_runs;
          row.probe1 = probe(isa, static_cast<int>(t), probe_iters);
          row.gflops = flops / row.sec * 1e-9;
          if (general)
            row.general_gflops = flops * 1e-9 / time_median([&] {
                                   svdq::gemm_f32(false, true, M, N, K, 1.0f, X.data(), K, W.data(),
                                                  K, 0.0f, Y.data(), N, pool, isa);
                                 });
          if (PeakRow* pr = peak_ref(isa, t))
            pr->best = std::max({pr->best, row.probe0, row.probe1});
          std::fprintf(stderr, "%s M=%lld K=%lld N=%lld threads=%lld: %.1f GFLOP/s\n",
                       svdq::isa_name(isa), static_cast<long long>(M), static_cast<long long>(K),
                       static_cast<long long>(N), static_cast<long long>(t), row.gflops);
          rows.push_back(row);
        }
      }
    }
  }

  // 3. Report.
  if (!skip_peak) {
    std::printf(
        "\n## fp32 peak: register-only loop, best of 5 runs of 0.3 s (and of the 20 ms probes of\n"
        "## the GEMM rows, which run the same loop); median of the 5 runs\n");
    std::printf("%-9s %7s %12s %12s\n", "level", "threads", "peak GF/s", "median GF/s");
    for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512})
      for (int64_t t : threads_list) {
        const PeakRow* pr = peak_ref(isa, t);
        if (pr == nullptr || pr->best <= 0.0) continue;
        std::printf("%-9s %7lld %12.1f %12.1f\n", svdq::isa_name(isa), static_cast<long long>(t),
                    pr->best, pr->median);
      }
  }
  std::printf(
      "\n## gemm_f32_packed: Y[M,N] = X[M,K]·W[N,K]^T + bias (median of %d runs after a warm-up)\n",
      reps);
  std::printf(
      "# avail: the register-only FMA loop (best of 3 runs of %d ms) just before and after the\n"
      "# row, as a fraction of the peak (the lower of the two); '*' marks rows where it was < "
      "85%%:\n"
      "# other work was running on the machine and the row understates the kernel (flag low-peak).\n"
      "# flags (bench_flags.h): the row is not a result; spread, over-peak, low-peak, peak-drift.\n",
      static_cast<int>(kProbeSeconds * 1000));
  std::printf("%-9s %6s %6s %6s %7s %10s %10s %8s %6s%s\n", "level", "M", "K", "N", "threads", "ms",
              "GFLOP/s", "of peak", "avail", general ? "   gemm_f32 GF/s (packs W per call)  flags" : "  flags");
  int contended = 0;
  for (const GemmRow& r : rows) {
    const PeakRow* pr = peak_ref(r.isa, r.threads);
    const double pk = pr != nullptr ? pr->best : 0.0;
    bench_flags::Flags flags;
    flags.spread_of(r.runs).add("over-peak", pk > 0 && r.gflops > pk);
    flags.add("peak-drift", std::max(r.probe0, r.probe1) > 0 &&
                                std::abs(r.probe0 - r.probe1) / std::max(r.probe0, r.probe1) > bench_flags::kDriftLimit);
    std::printf("%-9s %6lld %6lld %6lld %7lld %10.3f %10.1f", svdq::isa_name(r.isa),
                static_cast<long long>(r.m), static_cast<long long>(r.k),
                static_cast<long long>(r.n), static_cast<long long>(r.threads), r.sec * 1e3,
                r.gflops);
    if (pk > 0) {
      const double avail = std::min(r.probe0, r.probe1) / pk;
      if (avail < 0.85) ++contended;
      flags.add("low-peak", avail < 0.85);
      std::printf(" %7.1f%% %5.0f%%%s", 100.0 * r.gflops / pk, 100.0 * avail,
                  avail < 0.85 ? "*" : " ");
    } else {
      std::printf(" %8s %6s ", "-", "-");
    }
    if (general) std::printf("   %10.1f", r.general_gflops);
    std::printf("  %s\n", flags.suffix().c_str());
  }
  if (contended > 0)
    std::printf("# %d row(s) ran while the machine was busy with other work (avail < 85%%)\n",
                contended);
  bench_flags::print_legend();
  return 0;
}
