// Bindings for the benchmark harness (lib/bench): machine peaks, and timed runs of the kernels on
// the layers and packed weights the public API uses, each run timed inside native code (no JS
// dispatch in the measured interval), so that the harness can set the API's time beside it.
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
#include "handles.h"
#include "host_buffers.h"
#include "svdquant/amx.h"
#include "svdquant/compute_slice.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/lowbit.h"
#include "svdquant/peaks.h"
#include "svdquant/thread_pool.h"

namespace svdq_addon {
namespace {

using Clock = std::chrono::steady_clock;

// measurePeaks(threads, isa: 0|1|2, out: Float64Array(4)) -> Promise; out = [fp32 GFLOP/s, int8 GOP/s
// (VNNI), DRAM GB/s, int8 GOP/s on the AMX tile unit (0 when the kernels do not use it)]
Napi::Value MeasurePeaks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int threads = static_cast<int>(get_int(info, 0, "threads", 0, 1024));
  const int isa = static_cast<int>(get_int(info, 1, "isa", 0, 2));
  if (isa > static_cast<int>(svdq::isa_choice().detected)) throw_arg(env, "isa", "a level this CPU supports");
  double* out = get_array<double>(info, 2, "out", napi_float64_array, 4, "Float64Array");
  return run_job(env, false, [=] {
    const svdq::Peaks p = svdq::measure_peaks(threads, static_cast<svdq::Isa>(isa));
    out[0] = p.fp32_gflops;
    out[1] = p.int8_gops;
    out[2] = p.dram_gbps;
    out[3] = p.amx_int8_gops;
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

// benchLayerForward(layers: NativeLowbitLayer handles, first, x, m, y, mode 0..2, threads, runs,
// out: Float64Array(runs)) -> Promise; out = ms of each run. Times `runs` calls of lowbit_forward
// (the kernels alone, no API path) on layers[(first + i) % layers.length], the very layer objects
// the public API runs, so that the bench's API/kernel ratio compares like with like. Rotating over
// copies that together exceed the last-level cache streams the weights from DRAM (M = 1).
Napi::Value BenchLayerForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0)
    throw_arg(env, "layers", "a non-empty array of native layer handles");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::shared_ptr<svdq::LowbitLayer>> layers;
  for (uint32_t i = 0; i < arr.Length(); ++i) layers.push_back(lowbit_layer_of(env, arr.Get(i), "layers"));
  const int64_t first = get_int(info, 1, "first", 0, int64_t(1) << 40);
  const int64_t m = get_int(info, 3, "m", 1, 1 << 20);
  const int64_t k = layers[0]->k, n = layers[0]->n;
  for (const auto& l : layers)
    if (l->k != k || l->n != n) throw_arg(env, "layers", "layers of one shape");
  const float* x = get_array<float>(info, 2, "x", napi_float32_array, m * k, "Float32Array");
  float* y = get_array<float>(info, 4, "y", napi_float32_array, m * n, "Float32Array");
  const auto mode = static_cast<svdq::LowRankMode>(get_int(info, 5, "mode", 0, 2));
  const int threads = static_cast<int>(get_int(info, 6, "threads", 0, 1024));
  const int runs = static_cast<int>(get_int(info, 7, "runs", 1, 100000));
  double* out = get_array<double>(info, 8, "out", napi_float64_array, runs, "Float64Array");
  return run_job(env, false, [=] {
    for (int i = 0; i < runs; ++i) {
      const svdq::LowbitLayer& layer = *layers[static_cast<size_t>((first + i) % static_cast<int64_t>(layers.size()))];
      const auto t0 = Clock::now();
      svdq::lowbit_forward(layer, x, m, y, mode, threads);
      out[i] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
  }, {info[0], info[2], info[4], info[8]});
}

// benchLinearForward(packed, x, m, bias|null, y, threads, runs, out: Float64Array(runs)) -> Promise;
// out = ms of each run of gemm_f32_packed (the Linear layer's kernel, no API path).
Napi::Value BenchLinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw_arg(env, "packed", "packed weights from packF32Weights");
  std::shared_ptr<svdq::PackedF32> packed = packed_f32_of(env, info[0], "packed");
  const int64_t m = get_int(info, 2, "m", 1, 1 << 20);
  const float* x = get_array<float>(info, 1, "x", napi_float32_array, m * packed->k, "Float32Array");
  std::vector<Napi::Value> keep{info[1]};
  const float* bias = nullptr;
  if (info.Length() > 3 && !info[3].IsNull() && !info[3].IsUndefined()) {
    bias = get_array<float>(info, 3, "bias", napi_float32_array, packed->n, "Float32Array or null");
    keep.push_back(info[3]);
  }
  float* y = get_array<float>(info, 4, "y", napi_float32_array, m * packed->n, "Float32Array");
  const int threads = static_cast<int>(get_int(info, 5, "threads", 0, 1024));
  const int runs = static_cast<int>(get_int(info, 6, "runs", 1, 100000));
  double* out = get_array<double>(info, 7, "out", napi_float64_array, runs, "Float64Array");
  keep.push_back(info[4]);
  keep.push_back(info[7]);
  return run_job(env, false, [=] {
    svdq::ThreadPool& pool = svdq::shared_pool(threads);
    for (int i = 0; i < runs; ++i) {
      const auto t0 = Clock::now();
      svdq::gemm_f32_packed(x, m, packed->k, *packed, bias, y, packed->n, false, pool);
      out[i] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
  }, keep);
}

// benchFlushCaches(bytes) -> Promise: reads a buffer of `bytes` (allocated and written once, kept),
// so that the data a following run reads comes from DRAM (pass about twice the last-level cache).
Napi::Value BenchFlushCaches(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = get_int(info, 0, "bytes", 0, int64_t(1) << 36);
  return run_job(env, false, [bytes] {
    static std::vector<uint64_t> buffer;  // run_job jobs of the bench run one at a time
    const size_t words = static_cast<size_t>(bytes) / 8;
    if (buffer.size() < words) buffer.assign(words, 1);
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i + 1 < words; i += 16) {  // one word per 64-byte line pair is enough to fetch them
      s0 += buffer[i];
      s1 += buffer[i + 8 < words ? i + 8 : i];
    }
    volatile uint64_t sink = s0 + s1;
    (void)sink;
  }, {});
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
  exports.Set("benchLayerForward", Napi::Function::New(env, BenchLayerForward, "benchLayerForward"));
  exports.Set("benchFlushCaches", Napi::Function::New(env, BenchFlushCaches, "benchFlushCaches"));
  exports.Set("benchLinearForward", Napi::Function::New(env, BenchLinearForward, "benchLinearForward"));
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
  // amxInfo() -> { supported, enabled, status, error }: the AMX tile unit of the low-bit GEMM
  // (amx.h); error: an invalid SVDQUANT_AMX.
  exports.Set("amxInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    Napi::Object o = Napi::Object::New(e);
    o.Set("supported", Napi::Boolean::New(e, svdq::amx_supported()));
    o.Set("enabled", Napi::Boolean::New(e, svdq::amx_enabled()));
    o.Set("status", Napi::String::New(e, svdq::amx_status()));
    o.Set("error", Napi::String::New(e, svdq::amx_setting_error()));
    return o;
  }, "amxInfo"));
  // hostPoolStats() -> { allocs, reused, freshLarge, freshBytes, liveBytes, cachedBytes, scopedBytes,
  // v8ExternalBytes }: the output-buffer pool's counters (host_buffers.h), so the bench can say how
  // many outputs came fresh, and V8's own count of external memory (the one its GC triggers use;
  // Node reports only the ArrayBuffer bytes).
  exports.Set("hostPoolStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    Napi::Env e = info.Env();
    const HostPoolStats s = host_pool_stats();
    Napi::Object o = Napi::Object::New(e);
    o.Set("allocs", Napi::Number::New(e, static_cast<double>(s.allocs)));
    o.Set("reused", Napi::Number::New(e, static_cast<double>(s.reused)));
    o.Set("freshLarge", Napi::Number::New(e, static_cast<double>(s.fresh_large)));
    o.Set("freshBytes", Napi::Number::New(e, static_cast<double>(s.fresh_bytes)));
    o.Set("liveBytes", Napi::Number::New(e, static_cast<double>(s.live_bytes)));
    o.Set("cachedBytes", Napi::Number::New(e, static_cast<double>(s.cached_bytes)));
    o.Set("scopedBytes", Napi::Number::New(e, static_cast<double>(s.scoped_bytes)));
    o.Set("v8ExternalBytes", Napi::Number::New(e, static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(e, 0))));
    return o;
  }, "hostPoolStats"));
  exports.Set("physicalCores", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), svdq::physical_cores());
  }, "physicalCores"));
}

}  // namespace svdq_addon
