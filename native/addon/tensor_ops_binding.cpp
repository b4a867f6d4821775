// Bindings of the model graph's tensor ops (tensor_ops.h): strided copies, broadcasting elementwise
// arithmetic, LayerNorm + modulation and GroupNorm. Every op runs off the JavaScript thread; the
// output is a caller's Float32Array or, for null, one the worker allocates (async_task.h). Shapes and
// strides arrive as plain arrays of integers; every view is checked to stay inside its array.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "svdquant/tensor_ops.h"
#include "svdquant/thread_pool.h"

namespace svdq_addon {
namespace {

constexpr int64_t kMaxElems = int64_t(1) << 46;

int get_threads(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int>(get_int(info, i, "threads", 0, 1024));
}

// An array of `count` (or any count when count < 0) integers in [lo, hi].
std::vector<int64_t> get_ints(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count, int64_t lo,
                              int64_t hi) {
  if (info.Length() <= i || !info[i].IsArray()) throw_arg(info.Env(), name, "an array of integers");
  Napi::Array a = info[i].As<Napi::Array>();
  if (count >= 0 && static_cast<int64_t>(a.Length()) != count)
    throw_arg(info.Env(), name, "an array of " + std::to_string(count) + " integers");
  if (a.Length() > static_cast<uint32_t>(svdq::kMaxTensorDims))
    throw_arg(info.Env(), name, "at most " + std::to_string(svdq::kMaxTensorDims) + " dimensions");
  std::vector<int64_t> out;
  for (uint32_t j = 0; j < a.Length(); ++j) {
    Napi::Value v = a.Get(j);
    if (!v.IsNumber()) throw_arg(info.Env(), name, "an array of integers");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d)))
      throw_arg(info.Env(), name, "integers in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

int64_t count_elems(Napi::Env env, const std::vector<int64_t>& shape) {
  double n = 1;
  for (int64_t d : shape) n *= static_cast<double>(d);
  if (n > static_cast<double>(kMaxElems)) throw_arg(env, "shape", "fewer than 2^46 elements");
  int64_t m = 1;
  for (int64_t d : shape) m *= d;
  return m;
}

// The view (offset, strides over shape) must stay within an array of `length` elements.
void check_view(Napi::Env env, const char* name, int64_t offset, const std::vector<int64_t>& shape,
                const std::vector<int64_t>& strides, int64_t length) {
  if (count_elems(env, shape) == 0) return;
  double last = static_cast<double>(offset);
  for (size_t d = 0; d < shape.size(); ++d) last += static_cast<double>(shape[d] - 1) * static_cast<double>(strides[d]);
  if (offset < 0 || last >= static_cast<double>(length))
    throw_arg(env, name, "a view inside its array (offset and strides reach element " +
                             std::to_string(static_cast<int64_t>(last)) + " of " + std::to_string(length) + ")");
}

// stridedCopy(src, offset, shape, strides, out|null, threads) -> Promise<void | Float32Array>
Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t offset = get_int(info, 1, "offset", 0, kMaxElems);
  const std::vector<int64_t> shape = get_ints(info, 2, "shape", -1, 0, kMaxElems);
  const std::vector<int64_t> strides = get_ints(info, 3, "strides", static_cast<int64_t>(shape.size()), 0, kMaxElems);
  const float* src = get_array<float>(info, 0, "src", napi_float32_array, 0, "Float32Array");
  const int64_t length = static_cast<int64_t>(info[0].As<Napi::TypedArray>().ElementLength());
  check_view(env, "strides", offset, shape, strides, length);
  const int64_t n = count_elems(env, shape);
  std::vector<Napi::Value> keep{info[0]};
  float* out = get_output(info, 4, "out", n, keep);
  const int threads = get_threads(info, 5);
  return run_out_job(env, out, n, [=](float* y) {
    svdq::strided_copy_f32(src + offset, shape.data(), strides.data(), static_cast<int>(shape.size()), y,
                           svdq::shared_pool(threads));
  }, keep);
}

// elementwise(op, inputs: Float32Array[], offsets: number[], strides: number[][], shape, out|null, threads)
Napi::Value Elementwise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto op = static_cast<svdq::ElementwiseOp>(get_int(info, 0, "op", 0, 5));
  const int arity = svdq::elementwise_arity(op);
  if (info.Length() <= 1 || !info[1].IsArray() || info[1].As<Napi::Array>().Length() != static_cast<uint32_t>(arity))
    throw_arg(env, "inputs", "an array of " + std::to_string(arity) + " Float32Arrays");
  if (info.Length() <= 3 || !info[3].IsArray() || info[3].As<Napi::Array>().Length() != static_cast<uint32_t>(arity))
    throw_arg(env, "strides", "an array of " + std::to_string(arity) + " stride arrays");
  const std::vector<int64_t> offsets = get_ints(info, 2, "offsets", arity, 0, kMaxElems);
  const std::vector<int64_t> shape = get_ints(info, 4, "shape", -1, 0, kMaxElems);
  const int64_t n = count_elems(env, shape);
  Napi::Array inputs = info[1].As<Napi::Array>(), stride_lists = info[3].As<Napi::Array>();
  std::vector<Napi::Value> keep;
  std::vector<const float*> ptrs;
  std::vector<std::vector<int64_t>> strides;
  for (int k = 0; k < arity; ++k) {
    Napi::Value v = inputs.Get(static_cast<uint32_t>(k));
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw_arg(env, "inputs", "Float32Arrays");
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    Napi::Value sv = stride_lists.Get(static_cast<uint32_t>(k));
    if (!sv.IsArray() || sv.As<Napi::Array>().Length() != shape.size()) throw_arg(env, "strides", "one stride per axis for every input");
    std::vector<int64_t> s;
    for (uint32_t d = 0; d < shape.size(); ++d) {
      Napi::Value x = sv.As<Napi::Array>().Get(d);
      const double dv = x.IsNumber() ? x.As<Napi::Number>().DoubleValue() : -1;
      if (!(dv >= 0 && dv <= static_cast<double>(kMaxElems)) || dv != static_cast<double>(static_cast<int64_t>(dv)))
        throw_arg(env, "strides", "non-negative integers");
      s.push_back(static_cast<int64_t>(dv));
    }
    check_view(env, "strides", offsets[static_cast<size_t>(k)], shape, s, static_cast<int64_t>(a.ElementLength()));
    const float* base = a.ElementLength() == 0 ? nullptr : a.Data();
    if (base == nullptr && n > 0) throw_arg(env, "inputs", "attached, non-empty Float32Arrays");
    ptrs.push_back(base == nullptr ? nullptr : base + offsets[static_cast<size_t>(k)]);
    strides.push_back(std::move(s));
    keep.push_back(v);
  }
  float* out = get_output(info, 5, "out", n, keep);
  const int threads = get_threads(info, 6);
  return run_out_job(env, out, n, [=](float* y) {
    const int64_t* sp[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < arity; ++k) sp[k] = strides[static_cast<size_t>(k)].data();
    svdq::elementwise_f32(op, ptrs.data(), sp, shape.data(), static_cast<int>(shape.size()), y,
                          svdq::shared_pool(threads));
  }, keep);
}

// concat(inputs: Float32Array[], widths: number[], outer, out|null, threads): input i is [outer, widths[i]].
Napi::Value Concat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw_arg(env, "inputs", "an array of Float32Arrays");
  Napi::Array inputs = info[0].As<Napi::Array>();
  const uint32_t count = inputs.Length();
  if (count == 0 || count > 4096) throw_arg(env, "inputs", "1 to 4096 Float32Arrays");
  if (info.Length() < 2 || !info[1].IsArray() || info[1].As<Napi::Array>().Length() != count)
    throw_arg(env, "widths", "one width per input");
  const int64_t outer = get_int(info, 2, "outer", 0, kMaxElems);
  std::vector<int64_t> widths;
  std::vector<const float*> ptrs;
  std::vector<Napi::Value> keep;
  double total = 0;
  for (uint32_t i = 0; i < count; ++i) {
    Napi::Value wv = info[1].As<Napi::Array>().Get(i);
    const double w = wv.IsNumber() ? wv.As<Napi::Number>().DoubleValue() : -1;
    if (!(w >= 0 && w <= static_cast<double>(kMaxElems)) || w != static_cast<double>(static_cast<int64_t>(w)))
      throw_arg(env, "widths", "non-negative integers");
    Napi::Value v = inputs.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) throw_arg(env, "inputs", "Float32Arrays");
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    if (static_cast<double>(a.ElementLength()) < w * static_cast<double>(outer))
      throw_arg(env, "inputs", "arrays of at least outer · width elements each");
    widths.push_back(static_cast<int64_t>(w));
    ptrs.push_back(a.ElementLength() == 0 ? nullptr : a.Data());
    keep.push_back(v);
    total += w;
  }
  if (total * static_cast<double>(outer) > static_cast<double>(kMaxElems)) throw_arg(env, "outer", "outer · Σ widths below 2^46");
  const int64_t elems = static_cast<int64_t>(total) * outer;
  float* out = get_output(info, 3, "out", elems, keep);
  const int threads = get_threads(info, 4);
  return run_out_job(env, out, elems, [=](float* y) {
    svdq::concat_f32(ptrs.data(), widths.data(), static_cast<int>(ptrs.size()), outer, y, svdq::shared_pool(threads));
  }, keep);
}

const float* get_optional(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t elems,
                          std::vector<Napi::Value>& keep) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  const float* p = get_array<float>(info, i, name, napi_float32_array, elems, "Float32Array or null");
  keep.push_back(info[i]);
  return p;
}

// layerNormModulate(x, rows, dim, gamma|null, beta|null, eps, scale, shift, rowsPerSample, y|null, threads)
Napi::Value LayerNormModulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = get_int(info, 1, "rows", 0, kMaxElems);
  const int64_t dim = get_int(info, 2, "dim", 0, kMaxElems);
  if (static_cast<double>(rows) * static_cast<double>(dim) > static_cast<double>(kMaxElems)) throw_arg(env, "rows", "rows · dim below 2^46");
  const int64_t per = get_int(info, 8, "rowsPerSample", 1, kMaxElems);
  if (rows % per != 0) throw_arg(env, "rowsPerSample", "a divisor of rows");
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, rows * dim, "Float32Array");
  std::vector<Napi::Value> keep{info[0]};
  const float* gamma = get_optional(info, 3, "gamma", dim, keep);
  const float* beta = get_optional(info, 4, "beta", dim, keep);
  const float eps = static_cast<float>(get_number(info, 5, "eps"));
  const float* scale = get_array<float>(info, 6, "scale", napi_float32_array, rows / per * dim, "Float32Array");
  const float* shift = get_array<float>(info, 7, "shift", napi_float32_array, rows / per * dim, "Float32Array");
  keep.push_back(info[6]);
  keep.push_back(info[7]);
  float* out = get_output(info, 9, "y", rows * dim, keep);
  const int threads = get_threads(info, 10);
  return run_out_job(env, out, rows * dim, [=](float* y) {
    svdq::layernorm_modulate_f32(x, rows, dim, gamma, beta, eps, scale, shift, per, y, svdq::shared_pool(threads));
  }, keep);
}

// groupNorm(x, n, channels, spatial, groups, eps, gamma|null, beta|null, y|null, threads)
Napi::Value GroupNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 0, kMaxElems);
  const int64_t c = get_int(info, 2, "channels", 1, kMaxElems);
  const int64_t s = get_int(info, 3, "spatial", 0, kMaxElems);
  const int64_t groups = get_int(info, 4, "groups", 1, c);
  if (c % groups != 0) throw_arg(env, "groups", "a divisor of channels");
  const double total = static_cast<double>(n) * static_cast<double>(c) * static_cast<double>(s);
  if (total > static_cast<double>(kMaxElems)) throw_arg(env, "n", "n · channels · spatial below 2^46");
  const int64_t elems = n * c * s;
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, elems, "Float32Array");
  const float eps = static_cast<float>(get_number(info, 5, "eps"));
  std::vector<Napi::Value> keep{info[0]};
  const float* gamma = get_optional(info, 6, "gamma", c, keep);
  const float* beta = get_optional(info, 7, "beta", c, keep);
  float* out = get_output(info, 8, "y", elems, keep);
  const int threads = get_threads(info, 9);
  return run_out_job(env, out, elems, [=](float* y) {
    svdq::group_norm_f32(x, n, c, s, groups, eps, gamma, beta, y, svdq::shared_pool(threads));
  }, keep);
}

}  // namespace

void register_tensor_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("stridedCopy", Napi::Function::New(env, StridedCopy, "stridedCopy"));
  exports.Set("concat", Napi::Function::New(env, Concat, "concat"));
  exports.Set("elementwise", Napi::Function::New(env, Elementwise, "elementwise"));
  exports.Set("layerNormModulate", Napi::Function::New(env, LayerNormModulate, "layerNormModulate"));
  exports.Set("groupNorm", Napi::Function::New(env, GroupNorm, "groupNorm"));
}

}  // namespace svdq_addon
