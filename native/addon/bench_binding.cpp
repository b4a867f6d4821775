// Bindings for the benchmark harness: machine peaks (see native/include/svdquant/peaks.h).
#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "svdquant/peaks.h"

namespace svdq_addon {
namespace {

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

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("measurePeaks", Napi::Function::New(env, MeasurePeaks, "measurePeaks"));
}

}  // namespace svdq_addon
