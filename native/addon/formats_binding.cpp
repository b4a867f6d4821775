// Bindings of the format kernels: quantize, dequantize, amax, non-finite scan.
// Argument order mirrors lib/native.ts; buffers are caller-allocated typed arrays (zero-copy).
#include <cmath>
#include <limits>

#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "svdquant/isa.h"

namespace svdq_addon {
namespace {

using svdq::Scheme;

constexpr int64_t kMaxDim = int64_t(1) << 40;

Scheme get_scheme(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<Scheme>(get_int(info, i, "scheme", 0, 3));
}

int64_t codes_per_row(Scheme s, int64_t k) {
  if (s == Scheme::Int8) return k;
  return svdq::padded_k(k, svdq::scheme_group(s, k)) / 2;
}

int64_t scales_per_row(Scheme s, int64_t k) {
  if (s == Scheme::Int8) return 1;
  const int64_t g = svdq::scheme_group(s, k);
  return svdq::padded_k(k, g) / g;
}

void check_size(Napi::Env env, int64_t rows, int64_t k) {
  if (rows > 0 && k > std::numeric_limits<int64_t>::max() / 4 / rows) throw_arg(env, "rows*k", "a smaller tensor");
}

// quantize(scheme, x: Float32Array, rows, k, codes: Uint8Array|Int8Array, scales, rule, globalScale, sync)
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Scheme scheme = get_scheme(info, 0);
  const int64_t rows = get_int(info, 2, "rows", 0, kMaxDim);
  const int64_t k = get_int(info, 3, "k", 1, kMaxDim);
  check_size(env, rows, k);
  const float* x = get_array<float>(info, 1, "x", napi_float32_array, rows * k, "Float32Array");
  const int64_t nc = rows * codes_per_row(scheme, k), ns = rows * scales_per_row(scheme, k);
  const int rule = static_cast<int>(get_int(info, 6, "rule", 0, 2));
  const float g = static_cast<float>(get_number(info, 7, "globalScale"));
  const bool sync = info.Length() > 8 && info[8].ToBoolean();
  const svdq::FormatKernels& kern = svdq::format_kernels();
  std::function<void()> job;
  switch (scheme) {
    case Scheme::Int4: {
      auto* c = get_array<uint8_t>(info, 4, "codes", napi_uint8_array, nc, "Uint8Array");
      auto* s = get_array<float>(info, 5, "scales", napi_float32_array, ns, "Float32Array");
      job = [=, &kern] { kern.quantize_int4(x, rows, k, c, s); };
      break;
    }
    case Scheme::Mxfp4: {
      auto* c = get_array<uint8_t>(info, 4, "codes", napi_uint8_array, nc, "Uint8Array");
      auto* s = get_array<uint8_t>(info, 5, "scales", napi_uint8_array, ns, "Uint8Array");
      job = [=, &kern] { kern.quantize_mxfp4(x, rows, k, c, s, static_cast<svdq::MxScaleRule>(rule)); };
      break;
    }
    case Scheme::Nvfp4: {
      if (!(g > 0.0f) || !std::isfinite(g)) throw_arg(env, "globalScale", "a positive finite number");
      auto* c = get_array<uint8_t>(info, 4, "codes", napi_uint8_array, nc, "Uint8Array");
      auto* s = get_array<uint8_t>(info, 5, "scales", napi_uint8_array, ns, "Uint8Array");
      job = [=, &kern] { kern.quantize_nvfp4(x, rows, k, g, c, s); };
      break;
    }
    case Scheme::Int8: {
      auto* c = get_array<int8_t>(info, 4, "codes", napi_int8_array, nc, "Int8Array");
      auto* s = get_array<float>(info, 5, "scales", napi_float32_array, ns, "Float32Array");
      job = [=, &kern] { kern.quantize_int8(x, rows, k, c, s); };
      break;
    }
  }
  return run_job(env, sync, std::move(job), {info[1], info[4], info[5]});
}

// dequantize(scheme, codes, scales, rows, k, globalScale, out: Float32Array, sync)
Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Scheme scheme = get_scheme(info, 0);
  const int64_t rows = get_int(info, 3, "rows", 0, kMaxDim);
  const int64_t k = get_int(info, 4, "k", 1, kMaxDim);
  check_size(env, rows, k);
  const int64_t nc = rows * codes_per_row(scheme, k), ns = rows * scales_per_row(scheme, k);
  const float g = static_cast<float>(get_number(info, 5, "globalScale"));
  float* out = get_array<float>(info, 6, "out", napi_float32_array, rows * k, "Float32Array");
  const bool sync = info.Length() > 7 && info[7].ToBoolean();
  const svdq::FormatKernels& kern = svdq::format_kernels();
  std::function<void()> job;
  switch (scheme) {
    case Scheme::Int4: {
      auto* c = get_array<uint8_t>(info, 1, "codes", napi_uint8_array, nc, "Uint8Array");
      auto* s = get_array<float>(info, 2, "scales", napi_float32_array, ns, "Float32Array");
      job = [=, &kern] { kern.dequantize_int4(c, s, rows, k, out); };
      break;
    }
    case Scheme::Mxfp4: {
      auto* c = get_array<uint8_t>(info, 1, "codes", napi_uint8_array, nc, "Uint8Array");
      auto* s = get_array<uint8_t>(info, 2, "scales", napi_uint8_array, ns, "Uint8Array");
      job = [=, &kern] { kern.dequantize_mxfp4(c, s, rows, k, out); };
      break;
    }
    case Scheme::Nvfp4: {
      auto* c = get_array<uint8_t>(info, 1, "codes", napi_uint8_array, nc, "Uint8Array");
      auto* s = get_array<uint8_t>(info, 2, "scales", napi_uint8_array, ns, "Uint8Array");
      job = [=, &kern] { kern.dequantize_nvfp4(c, s, g, rows, k, out); };
      break;
    }
    case Scheme::Int8: {
      auto* c = get_array<int8_t>(info, 1, "codes", napi_int8_array, nc, "Int8Array");
      auto* s = get_array<float>(info, 2, "scales", napi_float32_array, ns, "Float32Array");
      job = [=, &kern] { kern.dequantize_int8(c, s, rows, k, out); };
      break;
    }
  }
  return run_job(env, sync, std::move(job), {info[1], info[2], info[6]});
}

// scanFloats(x: Float32Array, out: Float64Array(2), sync): out = [amax over finite values, index of
// the first NaN/Inf or -1]. A streaming pass over the tensor, so it runs off the main thread too.
Napi::Value ScanFloats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw_arg(env, "x", "a Float32Array");
  const int64_t n = static_cast<int64_t>(info[0].As<Napi::TypedArray>().ElementLength());
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, n, "Float32Array");
  double* out = get_array<double>(info, 1, "out", napi_float64_array, 2, "Float64Array");
  const bool sync = info.Length() > 2 && info[2].ToBoolean();
  const svdq::FormatKernels& kern = svdq::format_kernels();
  return run_job(env, sync, [=, &kern] {
    out[0] = kern.amax_finite(x, n);
    out[1] = static_cast<double>(kern.find_nonfinite(x, n));
  }, {info[0], info[1]});
}

Napi::Value IsaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const svdq::IsaChoice& c = svdq::isa_choice();
  Napi::Object r = Napi::Object::New(env);
  r.Set("active", svdq::isa_name(c.active));
  r.Set("detected", svdq::isa_name(c.detected));
  r.Set("source", c.source);
  r.Set("error", c.error);
  return r;
}

}  // namespace

void register_formats(Napi::Env env, Napi::Object exports) {
  exports.Set("quantize", Napi::Function::New(env, Quantize, "quantize"));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize, "dequantize"));
  exports.Set("scanFloats", Napi::Function::New(env, ScanFloats, "scanFloats"));
  exports.Set("isaInfo", Napi::Function::New(env, IsaInfo, "isaInfo"));
}

}  // namespace svdq_addon
