// Bindings for the benchmark harness (bench/run.ts): machine peaks, and timed runs of the kernels
// on synthetic layers built here, so that each run is timed inside native code (no JS dispatch in
// the measured interval) and setup (quantization, repacking) stays outside it.
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "host_buffers.h"
#include "svdquant/compute_slice.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/lowbit.h"
#include "svdquant/peaks.h"
#include "svdquant/thread_pool.h"

namespace svdq_addon {
namespace {

using Clock = std::chrono::steady_clock;

// measurePeaks(threads, isa: 0|1|2, out: Float64Array(3)) -> Promise; out = [fp32 GFLOP/s, int8 GOP/s, DRAM GB/s]
Napi::Value MeasurePeaks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int threads = static_cast<int>(get_int(info, 0, "threads", 0, 1024));
  const int isa = static_cast<int>(get_int(info, 1, "isa", 0, 2));
  if (isa > static_cast<int>(svdq::isa_choice().detected)) throw_arg(env, "isa", "a level this CPU supports");
  double* out = get_array<double>(info, 2, "out", napi_float64_array, 3, "Float64Array");
  return run_job(env, false, [=] {
    const svdq::Peaks p = svdq::measure_peaks(threads, static_cast<svdq::Isa>(isa));
    out[0] = p.fp32_gflops;
    out[1] = p.int8_gops;
    out[2] = p.dram_gbps;
  }, {info[2]});
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <typename Run>
void time_runs(int warmup, int reps, double* out_ms, Run run) {
  for (int i = 0; i < warmup; ++i) run();
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    run();
    out_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }
}

// benchLowbit(scheme 0..4, m, k, n, rank, mode 0..2, threads, warmup, reps, out: Float64Array(reps + 2),
// streamBytes) -> Promise; out = [ms per run..., kernel-format bytes, bf16 bytes of the dense layer].
// With streamBytes > 0 the runs rotate over enough kernel-format copies of the layer to cover that
// many bytes (pass about twice the last-level cache), so each run streams its weights from DRAM.
Napi::Value BenchLowbit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int scheme = static_cast<int>(get_int(info, 0, "scheme", 0, 4));
  const int64_t m = get_int(info, 1, "m", 1, 1 << 20);
  const int64_t k = get_int(info, 2, "k", 1, 1 << 20);
  const int64_t n = get_int(info, 3, "n", 1, 1 << 20);
  const int64_t rank = get_int(info, 4, "rank", 0, 4096);
  const int mode = static_cast<int>(get_int(info, 5, "mode", 0, 2));
  const int threads = static_cast<int>(get_int(info, 6, "threads", 0, 1024));
  const int warmup = static_cast<int>(get_int(info, 7, "warmup", 0, 1000));
  const int reps = static_cast<int>(get_int(info, 8, "reps", 1, 100000));
  double* out = get_array<double>(info, 9, "out", napi_float64_array, reps + 2, "Float64Array");
  const int64_t stream_bytes = info.Length() > 10 ? get_int(info, 10, "streamBytes", 0, int64_t(1) << 40) : 0;
  return run_job(env, false, [=] {
    using namespace svdq;
    const auto sch = static_cast<LowbitScheme>(scheme);
    // Canonical residual from random weights with the portable row quantizers (formats.h).
    const std::vector<float> w = random_floats(static_cast<size_t>(n * k), 1, 0.05f);
    const FormatKernels& fk = portable::kFormatKernels;
    std::vector<uint8_t> codes;
    std::vector<uint8_t> scales;
    float g_w = 1.0f;
    LowbitLayerDesc d;
    d.scheme = sch;
    d.n = n;
    d.k = k;
    d.rank = rank;
    switch (sch) {
      case LowbitScheme::W4A4:
      case LowbitScheme::W4A16: {
        const int64_t kp = padded_k(k, kInt4Group);
        codes.resize(static_cast<size_t>(n * kp / 2));
        scales.resize(static_cast<size_t>(n * (kp / kInt4Group)) * 4);
        fk.quantize_int4(w.data(), n, k, codes.data(), reinterpret_cast<float*>(scales.data()));
        break;
      }
      case LowbitScheme::Mxfp4: {
        const int64_t kp = padded_k(k, kMxfp4Group);
        codes.resize(static_cast<size_t>(n * kp / 2));
        scales.resize(static_cast<size_t>(n * (kp / kMxfp4Group)));
        fk.quantize_mxfp4(w.data(), n, k, codes.data(), scales.data(), MxScaleRule::Even);
        break;
      }
      case LowbitScheme::Nvfp4: {
        const int64_t kp = padded_k(k, kNvfp4Group);
        codes.resize(static_cast<size_t>(n * kp / 2));
        scales.resize(static_cast<size_t>(n * (kp / kNvfp4Group)));
        g_w = nvfp4_global_scale(fk.amax_finite(w.data(), n * k));
        fk.quantize_nvfp4(w.data(), n, k, g_w, codes.data(), scales.data());
        break;
      }
      case LowbitScheme::W8A8: {
        codes.resize(static_cast<size_t>(n * k));
        scales.resize(static_cast<size_t>(n) * 4);
        fk.quantize_int8(w.data(), n, k, reinterpret_cast<int8_t*>(codes.data()), reinterpret_cast<float*>(scales.data()));
        break;
      }
    }
    std::vector<float> smooth = random_floats(static_cast<size_t>(k), 2, 0.25f);
    for (auto& s : smooth) s = 1.0f + std::fabs(s);
    const std::vector<float> l_down = random_floats(static_cast<size_t>(rank * k), 3, 0.02f);
    const std::vector<float> l_up = random_floats(static_cast<size_t>(n * rank), 4, 0.02f);
    const std::vector<float> bias = random_floats(static_cast<size_t>(n), 5, 0.1f);
    d.w_codes = codes.data();
    d.w_scales = scales.data();
    d.w_global_scale = g_w;
    d.smooth = smooth.data();
    d.l_down = rank > 0 ? l_down.data() : nullptr;
    d.l_up = rank > 0 ? l_up.data() : nullptr;
    d.bias = bias.data();
    std::vector<std::unique_ptr<LowbitLayer>> layers;
    layers.push_back(prepare_lowbit_layer(d));
    const int64_t one = static_cast<int64_t>(layers[0]->bytes());
    while (static_cast<int64_t>(layers.size()) * one < stream_bytes && layers.size() < 64) layers.push_back(prepare_lowbit_layer(d));
    const std::vector<float> x = random_floats(static_cast<size_t>(m * k), 6, 1.0f);
    std::vector<float> y(static_cast<size_t>(m * n));
    size_t next = 0;
    time_runs(warmup, reps, out, [&] {
      lowbit_forward(*layers[next], x.data(), m, y.data(), static_cast<LowRankMode>(mode), threads);
      next = (next + 1) % layers.size();
    });
    out[reps] = static_cast<double>(one);
    out[reps + 1] = static_cast<double>(layers[0]->bf16_bytes());
  }, {info[9]});
}

// benchGemmF32(m, k, n, threads, warmup, reps, out: Float64Array(reps + 1)) -> Promise;
// out = [ms per run..., packed weight bytes]. Y = X·Wᵀ + b with W packed once.
Napi::Value BenchGemmF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t m = get_int(info, 0, "m", 1, 1 << 20);
  const int64_t k = get_int(info, 1, "k", 1, 1 << 20);
  const int64_t n = get_int(info, 2, "n", 1, 1 << 20);
  const int threads = static_cast<int>(get_int(info, 3, "threads", 0, 1024));
  const int warmup = static_cast<int>(get_int(info, 4, "warmup", 0, 1000));
  const int reps = static_cast<int>(get_int(info, 5, "reps", 1, 100000));
  double* out = get_array<double>(info, 6, "out", napi_float64_array, reps + 1, "Float64Array");
  return run_job(env, false, [=] {
    using namespace svdq;
    const std::vector<float> w = random_floats(static_cast<size_t>(n * k), 1, 0.05f);
    const std::vector<float> x = random_floats(static_cast<size_t>(m * k), 6, 1.0f);
    const std::vector<float> bias = random_floats(static_cast<size_t>(n), 5, 0.1f);
    std::vector<float> y(static_cast<size_t>(m * n));
    ThreadPool& pool = shared_pool(threads);
    const PackedF32 packed = pack_f32_weights(w.data(), n, k);
    time_runs(warmup, reps, out, [&] {
      gemm_f32_packed(x.data(), m, k, packed, bias.data(), y.data(), n, false, pool);
    });
    out[reps] = static_cast<double>(packed.bytes);
  }, {info[6]});
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("measurePeaks", Napi::Function::New(env, MeasurePeaks, "measurePeaks"));
  exports.Set("benchLowbit", Napi::Function::New(env, BenchLowbit, "benchLowbit"));
  exports.Set("benchGemmF32", Napi::Function::New(env, BenchGemmF32, "benchGemmF32"));
  // schedInfo() -> { sliceMs, source, error, threadSliceMs }: the compute threads' scheduler hint
  // (compute_slice.h) and the slice the kernel reports for a thread that asks for it (-1: not Linux;
  // 0: a kernel without custom slices).
  exports.Set("schedInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    const svdq::ComputeSliceSetting& s = svdq::compute_slice_setting();
    int64_t applied = -1;
    std::thread probe([&applied] {  // a throwaway thread: the JavaScript thread is never touched
      svdq::mark_compute_thread();
      applied = svdq::current_slice_us();
    });
    probe.join();
    Napi::Object o = Napi::Object::New(e);
    o.Set("sliceMs", Napi::Number::New(e, static_cast<double>(s.us) / 1000.0));
    o.Set("source", Napi::String::New(e, s.source));
    o.Set("error", Napi::String::New(e, s.error));
    o.Set("threadSliceMs", Napi::Number::New(e, applied < 0 ? -1.0 : static_cast<double>(applied) / 1000.0));
    return o;
  }, "schedInfo"));
  // spinInfo() -> { us, error }: how long waiting pool threads spin before they sleep
  // (thread_pool.h); error: an invalid SVDQUANT_SPIN_US.
  exports.Set("spinInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    Napi::Object o = Napi::Object::New(e);
    o.Set("us", Napi::Number::New(e, static_cast<double>(svdq::spin_us())));
    o.Set("error", Napi::String::New(e, svdq::spin_setting_error()));
    return o;
  }, "spinInfo"));
  // hostPoolStats() -> { allocs, reused, freshBytes, liveBytes, cachedBytes }: the output-buffer
  // pool's counters (host_buffers.h), so the bench can say how many outputs came fresh.
  exports.Set("hostPoolStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    const HostPoolStats s = host_pool_stats();
    Napi::Object o = Napi::Object::New(e);
    o.Set("allocs", Napi::Number::New(e, static_cast<double>(s.allocs)));
    o.Set("reused", Napi::Number::New(e, static_cast<double>(s.reused)));
    o.Set("freshBytes", Napi::Number::New(e, static_cast<double>(s.fresh_bytes)));
    o.Set("liveBytes", Napi::Number::New(e, static_cast<double>(s.live_bytes)));
    o.Set("cachedBytes", Napi::Number::New(e, static_cast<double>(s.cached_bytes)));
    return o;
  }, "hostPoolStats"));
  exports.Set("physicalCores", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), svdq::physical_cores());
  }, "physicalCores"));
}

}  // namespace svdq_addon
