// Benchmark of the SVDQuant low-bit layer (lowbit.h). Never asserts.
//
// 1. This machine's limits, measured in the same run: the int8 multiply-add peak from a
//    register-only vpdpbusd loop (AVX-512 VNNI; 12 independent accumulators; 2 ops per multiply-add,
//    64 per instruction), with 1 and 2 threads (best of 5), and the DRAM read bandwidth (threads
//    streaming disjoint halves of a 1 GiB buffer, best of 5).
// 2. lowbit_forward for w4a4 and mxfp4 at K=3072, N in {3072, 12288}, M in {1, 16, 256, 1024},
//    rank 32 (fused, side, unfused) and rank 0, threads 1 and 2: the median of >= 5 runs after a
//    warm-up, as GOP/s (2·M·N·K / time) and as a fraction of the int8 peak at the same thread count.
//    The variants of one configuration (rank 32 fused / side / unfused, rank 0) and a short sample
//    of the int8 peak run round-robin, one call each per repetition, and each reports its median, so
//    that a neighbour starting or stopping on a shared machine affects them all alike ("peak GOP/s"
//    is that interleaved median; the fraction uses it). For M = 1 the layer is cycled through enough copies that the weights come from
//    DRAM, and the bytes streamed per second are compared with the measured DRAM bandwidth: the
//    4-bit weights and their scales ("weight GB/s"), and every kernel-format byte of the layer
//    including the fp32 (or bf16) low-rank factors, λ and bias ("all GB/s"). Each table row of a
//    rank-32 layer is followed by the fused branch's overhead against rank 0.
// 3. Unreliable figures (bench_flags.h, the rules of lib/bench/reliability.ts) carry their flags in
//    the last column: spread of the repetitions, above the in-run peak or DRAM bandwidth, an
//    interleaved peak below 80% of the run's best-of-5 peak or drifting, a negative overhead.
//
// Usage: bench_lowbit [--quick] [--reps=N] [--threads=1,2] [--m=1,16,256,1024] [--n=3072,12288]
//                     [--schemes=w4a4,mxfp4] [--isa=avx512|avx2|portable] [--bf16] [--skip-peak]
// GCC 12 flags the deliberately self-initialised _mm512_undefined_*() of its own headers as
// (maybe-)uninitialized once inlined (a known false positive); silence it for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_flags.h"
#include "svdquant/formats.h"
#include "svdquant/isa.h"
#include "svdquant/lowbit.h"
#include "svdquant/thread_pool.h"

using svdq::Isa;
using svdq::LowbitScheme;
using svdq::LowRankMode;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- int8 peak: register-only vpdpbusd -----------------------------------------------------------

#define BENCH_BARRIER4(a, b, c, d) __asm__ volatile("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d))

__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) int32_t vnni_loop(int64_t iters) {
  __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2), a3 = _mm512_set1_epi32(3);
  __m512i a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5), a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7);
  __m512i a8 = _mm512_set1_epi32(8), a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
  const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_dpbusd_epi32(a0, x, y); a1 = _mm512_dpbusd_epi32(a1, x, y); a2 = _mm512_dpbusd_epi32(a2, x, y);
    a3 = _mm512_dpbusd_epi32(a3, x, y); a4 = _mm512_dpbusd_epi32(a4, x, y); a5 = _mm512_dpbusd_epi32(a5, x, y);
    a6 = _mm512_dpbusd_epi32(a6, x, y); a7 = _mm512_dpbusd_epi32(a7, x, y); a8 = _mm512_dpbusd_epi32(a8, x, y);
    a9 = _mm512_dpbusd_epi32(a9, x, y); a10 = _mm512_dpbusd_epi32(a10, x, y); a11 = _mm512_dpbusd_epi32(a11, x, y);
    BENCH_BARRIER4(a0, a1, a2, a3);
    BENCH_BARRIER4(a4, a5, a6, a7);
    BENCH_BARRIER4(a8, a9, a10, a11);
  }
  const __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                     _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)),
                                                      _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11))));
  return _mm512_reduce_add_epi32(s);
}

// Runs fn(thread) on `threads` threads started together; returns the wall time.
template <typename F>
double run_threads(int threads, F fn) {
  std::vector<std::thread> ts;
  const double t0 = now_s();
  for (int t = 1; t < threads; ++t) ts.emplace_back([&, t] { fn(t); });
  fn(0);
  for (auto& t : ts) t.join();
  return now_s() - t0;
}

// One short sample (~60 ms) of the int8 peak with `threads` threads, GOP/s.
double int8_peak_sample(int threads) {
  const int64_t iters = 5000000;
  volatile int32_t sink = 0;
  const double t = run_threads(threads, [&](int) { sink = sink + vnni_loop(iters); });
  return static_cast<double>(threads) * iters * 12.0 * 64.0 * 2.0 / t / 1e9;
}

double int8_peak_gops(int threads) {
  const int64_t iters = 20000000;  // 12 instructions × 64 MACs each per iteration
  volatile int32_t sink = 0;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t = run_threads(threads, [&](int) { sink = sink + vnni_loop(iters); });
    best = std::max(best, static_cast<double>(threads) * iters * 12.0 * 64.0 * 2.0 / t / 1e9);
  }
  return best;
}

// ---- DRAM read bandwidth -------------------------------------------------------------------------

__attribute__((target("avx512f"), noinline)) double read_stream(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

double dram_gbps(int threads) {
  const int64_t bytes = int64_t(1) << 30;
  const int64_t n = bytes / 4;
  float* buf = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
  // First touch from the reading threads' halves.
  run_threads(threads, [&](int t) {
    const int64_t per = n / threads;
    std::memset(buf + t * per, 0, static_cast<size_t>(per) * 4);
  });
  volatile double sink = 0;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t = run_threads(threads, [&](int th) {
      const int64_t per = n / threads;
      sink = sink + read_stream(buf + th * per, per);
    });
    best = std::max(best, static_cast<double>(bytes) / t / 1e9);
  }
  std::free(buf);
  return best;
}

// ---- layers --------------------------------------------------------------------------------------

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
    double u = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    if (u < 1e-300) u = 1e-300;
    const double v = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    return static_cast<float>(std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v));
  }
};

std::unique_ptr<svdq::LowbitLayer> make_layer(LowbitScheme scheme, int64_t N, int64_t K, int64_t R, bool bf16, Rng& rng) {
  const svdq::FormatKernels& fk = svdq::format_kernels();
  std::vector<float> W(static_cast<size_t>(N * K));
  for (auto& w : W) w = 0.05f * rng.normal();
  std::vector<uint8_t> codes;
  std::vector<float> fs;
  std::vector<uint8_t> bs;
  svdq::LowbitLayerDesc d;
  d.scheme = scheme;
  d.n = N;
  d.k = K;
  d.rank = R;
  if (scheme == LowbitScheme::W4A4) {
    const int64_t kp = svdq::padded_k(K, 64);
    codes.resize(static_cast<size_t>(N * kp / 2));
    fs.resize(static_cast<size_t>(N * kp / 64));
    fk.quantize_int4(W.data(), N, K, codes.data(), fs.data());
    d.w_scales = fs.data();
  } else {
    const int64_t kp = svdq::padded_k(K, 32);
    codes.resize(static_cast<size_t>(N * kp / 2));
    bs.resize(static_cast<size_t>(N * kp / 32));
    fk.quantize_mxfp4(W.data(), N, K, codes.data(), bs.data(), svdq::MxScaleRule::Even);
    d.w_scales = bs.data();
  }
  d.w_codes = codes.data();
  std::vector<float> lam(static_cast<size_t>(K)), ld(static_cast<size_t>(R * K)), lu(static_cast<size_t>(N * R)), b(static_cast<size_t>(N));
  for (auto& v : lam) v = 0.5f + 0.1f * std::fabs(rng.normal());
  for (auto& v : ld) v = 0.1f * rng.normal();
  for (auto& v : lu) v = 0.1f * rng.normal();
  for (auto& v : b) v = rng.normal();
  d.smooth = lam.data();
  d.l_down = R > 0 ? ld.data() : nullptr;
  d.l_up = R > 0 ? lu.data() : nullptr;
  d.bias = b.data();
  svdq::LowbitOptions opt;
  opt.lowrank_bf16 = bf16;
  return svdq::prepare_lowbit_layer(d, opt);
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  while (*s) {
    v.push_back(std::strtoll(s, nullptr, 10));
    const char* c = std::strchr(s, ',');
    if (!c) break;
    s = c + 1;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  bool quick = false, skip_peak = false, bf16 = false;
  std::vector<int64_t> threads_list = {1, 2}, ms = {1, 16, 256, 1024}, ns = {3072, 12288};
  std::vector<LowbitScheme> schemes = {LowbitScheme::W4A4, LowbitScheme::Mxfp4};
  Isa isa = svdq::isa_choice().active;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--skip-peak") skip_peak = true;
    else if (a == "--bf16") bf16 = true;
    else if (a.rfind("--reps=", 0) == 0) reps = std::max(5, std::atoi(a.c_str() + 7));
    else if (a.rfind("--threads=", 0) == 0) threads_list = parse_list(a.c_str() + 10);
    else if (a.rfind("--m=", 0) == 0) ms = parse_list(a.c_str() + 4);
    else if (a.rfind("--n=", 0) == 0) ns = parse_list(a.c_str() + 4);
    else if (a.rfind("--schemes=", 0) == 0) {
      schemes.clear();
      if (a.find("w4a4") != std::string::npos) schemes.push_back(LowbitScheme::W4A4);
      if (a.find("mxfp4") != std::string::npos) schemes.push_back(LowbitScheme::Mxfp4);
    } else if (a.rfind("--isa=", 0) == 0) {
      const std::string v = a.substr(6);
      isa = v == "portable" ? Isa::Portable : v == "avx2" ? Isa::Avx2 : Isa::Avx512;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (static_cast<int>(isa) > static_cast<int>(svdq::isa_choice().detected)) isa = svdq::isa_choice().detected;
  const int64_t K = 3072;
  std::printf("# bench_lowbit: isa=%s (detected %s), physical cores %d, K=%lld, low-rank factors %s\n",
              svdq::isa_name(isa), svdq::isa_name(svdq::isa_choice().detected), svdq::physical_cores(),
              static_cast<long long>(K), bf16 ? "bf16" : "fp32");

  std::vector<double> peak(3, 0.0), dram(3, 0.0);
  for (int64_t t : threads_list) {
    if (t < 1 || t > 2) continue;
    if (!skip_peak && svdq::isa_choice().detected == Isa::Avx512) peak[static_cast<size_t>(t)] = int8_peak_gops(static_cast<int>(t));
    dram[static_cast<size_t>(t)] = dram_gbps(static_cast<int>(t));
    std::printf("# threads=%lld: int8 VNNI peak %.1f GOP/s (register-only vpdpbusd, 2 ops/MAC), DRAM read %.1f GB/s\n",
                static_cast<long long>(t), peak[static_cast<size_t>(t)], dram[static_cast<size_t>(t)]);
  }

  std::printf("\n| scheme | N | M | rank | mode | thr | time ms | GOP/s | %% int8 peak | peak GOP/s | weight GB/s | %% DRAM | all GB/s | %% DRAM | flags |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  Rng rng(7);
  for (LowbitScheme scheme : schemes)
    for (int64_t N : ns) {
      const int64_t R = 32;
      const auto layer32 = make_layer(scheme, N, K, R, bf16, rng);
      const auto layer0 = make_layer(scheme, N, K, 0, bf16, rng);
      std::printf("# %s N=%lld: kernel format %.2f MB with rank 32 (%.3f x bf16 layer), weights+scales %.2f MB\n",
                  svdq::lowbit_scheme_name(scheme), static_cast<long long>(N), layer32->bytes() / 1e6,
                  static_cast<double>(layer32->bytes()) / static_cast<double>(layer32->bf16_bytes()),
                  (layer32->w.size() + layer32->w_scale.size()) / 1e6);
      // Copies for M = 1: total weight bytes above 96 MB so that each call streams from DRAM.
      const double wbytes = static_cast<double>(layer32->w.size() + layer32->w_scale.size());
      std::vector<std::unique_ptr<svdq::LowbitLayer>> copies32, copies0;
      const int ncopies = std::max(2, static_cast<int>(std::ceil(96e6 / wbytes)));
      for (int64_t M : ms) {
        std::vector<float> X(static_cast<size_t>(M * K));
        for (auto& x : X) x = rng.normal();
        std::vector<float> Y(static_cast<size_t>(M * N));
        if (M == 1 && copies32.empty()) {
          for (int c = 0; c < ncopies; ++c) {
            copies32.push_back(make_layer(scheme, N, K, R, bf16, rng));
            copies0.push_back(make_layer(scheme, N, K, 0, bf16, rng));
          }
        }
        for (int64_t thr : threads_list) {
          // Variants: rank 32 fused, side, unfused; rank 0 fused; and a short int8 peak sample. They
          // are run round-robin, one call each per repetition, and each reports its median: a
          // neighbour that starts or stops on a shared machine then affects all of them alike.
          std::vector<int> variants = {0, 1, 2, 3};
          if (quick) variants = {0, 3};
          const bool sample_peak = !skip_peak && svdq::isa_choice().detected == Isa::Avx512;
          const double gops = 2.0 * M * N * K / 1e9;
          const int warm = 2;
          const int runs = gops < 1.0 ? std::max(reps, 31) : reps;  // short calls: more samples
          std::vector<std::vector<double>> times(4);
          std::vector<double> peaks;
          // M = 1: every call takes the next copy of its layer (the copies cover ~96 MB), so each
          // call streams weights that the previous calls have pushed out of the caches.
          size_t next32 = 0, next0 = 0;
          for (int it = 0; it < warm + runs; ++it) {
            for (int variant : variants) {
              const bool r0 = variant == 3;
              const LowRankMode mode = r0 ? LowRankMode::Fused : static_cast<LowRankMode>(variant);
              const svdq::LowbitLayer& Lc =
                  M == 1 ? (r0 ? *copies0[next0++ % copies0.size()] : *copies32[next32++ % copies32.size()])
                         : (r0 ? *layer0 : *layer32);
              const double t0 = now_s();
              svdq::lowbit_forward(Lc, X.data(), M, Y.data(), mode, static_cast<int>(thr), isa);
              const double t = now_s() - t0;
              if (it >= warm) times[static_cast<size_t>(variant)].push_back(t);
            }
            if (sample_peak && it >= warm) peaks.push_back(int8_peak_sample(static_cast<int>(thr)));
          }
          const double pk = sample_peak ? median(peaks) : 0.0;
          const bool low_peak = pk > 0 && pk < bench_flags::kLowPeak * peak[static_cast<size_t>(thr)];
          const bool drift = bench_flags::drifted(peaks);
          double t_rank0 = 0.0, t_fused = 0.0;
          for (int variant : variants) {
            const bool r0 = variant == 3;
            const LowRankMode mode = r0 ? LowRankMode::Fused : static_cast<LowRankMode>(variant);
            const svdq::LowbitLayer& L = r0 ? *layer0 : *layer32;
            const double t = median(times[static_cast<size_t>(variant)]);
            if (r0) t_rank0 = t;
            if (variant == 0) t_fused = t;
            const double rate = gops / t;
            char wbuf[64] = "", dbuf[64] = "", abuf[64] = "", adbuf[64] = "";
            bench_flags::Flags flags;
            flags.spread_of(times[static_cast<size_t>(variant)]).add("over-peak", pk > 0 && rate > pk);
            flags.add("low-peak", low_peak).add("peak-drift", drift);
            if (M == 1) {
              flags.add("over-dram", static_cast<double>(L.bytes()) / t / 1e9 > dram[static_cast<size_t>(thr)]);
              const double bytes = static_cast<double>(L.w.size() + L.w_scale.size());
              const double all = static_cast<double>(L.bytes());
              const double bw = dram[static_cast<size_t>(thr)];
              std::snprintf(wbuf, sizeof wbuf, "%.1f", bytes / t / 1e9);
              std::snprintf(dbuf, sizeof dbuf, "%.0f%%", 100.0 * bytes / t / 1e9 / bw);
              std::snprintf(abuf, sizeof abuf, "%.1f", all / t / 1e9);
              std::snprintf(adbuf, sizeof adbuf, "%.0f%%", 100.0 * all / t / 1e9 / bw);
            }
            std::printf("| %s | %lld | %lld | %d | %s | %lld | %.3f | %.1f | %s | %s | %s | %s | %s | %s | %s |\n",
                        svdq::lowbit_scheme_name(scheme), static_cast<long long>(N), static_cast<long long>(M), r0 ? 0 : 32,
                        svdq::lowrank_mode_name(mode), static_cast<long long>(thr), t * 1e3, rate,
                        pk > 0 ? (std::to_string(static_cast<int>(std::lround(100.0 * rate / pk))) + "%").c_str() : "-",
                        pk > 0 ? (std::to_string(static_cast<int>(std::lround(pk)))).c_str() : "-", wbuf, dbuf, abuf, adbuf,
                        flags.suffix().c_str());
          }
          if (t_rank0 > 0 && t_fused > 0) {
            bench_flags::Flags flags;
            flags.spread_of(times[0]).spread_of(times[3]).add("negative-overhead", t_fused < t_rank0);
            std::printf("|  |  |  |  | fused rank-32 overhead vs rank 0: %+.1f%% |  |  |  |  |  |  |  |  |  | %s |\n",
                        100.0 * (t_fused / t_rank0 - 1.0), flags.suffix().c_str());
          }
          std::fflush(stdout);
        }
      }
    }
  bench_flags::print_legend();
  return 0;
}
