// Peak measurement driver and the portable loops (see peaks.h).
#include "svdquant/peaks.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "svdquant/amx.h"
#include "svdquant/thread_pool.h"

namespace svdq {
namespace portable {
namespace {

// Eight independent multiply-add chains on arrays the compiler keeps in registers (SSE2).
double fp32_fma(int64_t iters) {
  float acc[8][4] = {};
  const float a = 1.0000001f, b = 0.9999999f;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 4; ++l) acc[j][l] = acc[j][l] * a + b;
  float sink = 0;
  for (auto& r : acc) for (float v : r) sink += v;
  if (sink == 12345.0f) std::abort();  // keeps the loop alive
  return static_cast<double>(iters) * 8 * 4 * 2;
}

double int8_dot(int64_t iters) {
  int32_t acc[8][4] = {};
  const int8_t a[4] = {3, -5, 7, 1}, b[4] = {2, 9, -4, 6};
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 8; ++j)
      for (int l = 0; l < 4; ++l) acc[j][l] += a[l] * b[(l + j) & 3];
  int64_t sink = 0;
  for (auto& r : acc) for (int32_t v : r) sink += v;
  if (sink == 12345) std::abort();
  return static_cast<double>(iters) * 8 * 4 * 2;
}

}  // namespace

const PeakKernels kPeakKernels = {fp32_fma, int8_dot, nullptr};

}  // namespace portable

const PeakKernels& peak_kernels_for(Isa isa) {
#if defined(SVDQ_HAVE_X86_VARIANTS)
  if (isa == Isa::Avx512) return avx512::kPeakKernels;
  if (isa == Isa::Avx2) return avx2::kPeakKernels;
#else
  (void)isa;
#endif
  return portable::kPeakKernels;
}

namespace {

using Clock = std::chrono::steady_clock;

// Runs `work(thread)` on every pool thread at once and returns total ops per second (best of reps).
template <typename Work>
double best_rate(ThreadPool& pool, int reps, Work work) {
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> ops(pool.size(), 0.0);
    const auto t0 = Clock::now();
    pool.parallel_for(pool.size(), [&](int64_t task, int) { ops[task] = work(); });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    double total = 0;
    for (double o : ops) total += o;
    if (s > 0 && total / s > best) best = total / s;
  }
  return best;
}

}  // namespace

Peaks measure_peaks(int threads, Isa isa) {
  ThreadPool& pool = shared_pool(threads);
  const PeakKernels& k = peak_kernels_for(isa);
  Peaks p{};
  // Calibrate the loop count to about 50 ms per repetition.
  auto calibrated = [&](double (*fn)(int64_t)) {
    int64_t iters = 1 << 16;
    for (;;) {
      const auto t0 = Clock::now();
      fn(iters);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (s > 0.02 || iters > (int64_t(1) << 34)) return static_cast<int64_t>(iters * (0.05 / (s > 0 ? s : 1e-3)));
      iters *= 4;
    }
  };
  const int64_t fma_iters = calibrated(k.fp32_fma);
  p.fp32_gflops = best_rate(pool, 4, [&] { return k.fp32_fma(fma_iters); }) / 1e9;
  const int64_t dot_iters = calibrated(k.int8_dot);
  p.int8_gops = best_rate(pool, 4, [&] { return k.int8_dot(dot_iters); }) / 1e9;
  p.amx_int8_gops = 0;
  if (k.amx_int8_dot != nullptr && amx_enabled()) {
    const int64_t amx_iters = calibrated(k.amx_int8_dot);
    p.amx_int8_gops = best_rate(pool, 4, [&] { return k.amx_int8_dot(amx_iters); }) / 1e9;
  }

  // DRAM: each thread sums its slice of a 1 GiB buffer (32x the L3 here), touched once beforehand.
  const size_t bytes = size_t(1) << 30;
  std::unique_ptr<uint64_t[]> buf(new uint64_t[bytes / 8]);
  const int64_t slices = pool.size();
  const size_t per = bytes / 8 / static_cast<size_t>(slices);
  pool.parallel_for(slices, [&](int64_t t, int) { std::memset(buf.get() + t * per, 1, per * 8); });
  std::atomic<uint64_t> sink{0};
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    pool.parallel_for(slices, [&](int64_t t, int) {
      const uint64_t* q = buf.get() + t * per;
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = 0; i + 4 <= per; i += 4) { s0 += q[i]; s1 += q[i + 1]; s2 += q[i + 2]; s3 += q[i + 3]; }
      sink += s0 + s1 + s2 + s3;
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double rate = static_cast<double>(per * 8 * slices) / s;
    if (rate > best) best = rate;
  }
  if (sink.load() == 1) std::abort();
  p.dram_gbps = best / 1e9;
  return p;
}

}  // namespace svdq
