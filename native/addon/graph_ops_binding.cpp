// Bindings for the tensor graph (lib/graph): the non-linear ops of ops.h and the Linear layer's
// fp32 GEMM with weights packed once (gemm_f32.h). Every op runs off the JavaScript thread and
// returns a Promise. The output argument is either a caller's Float32Array (the Promise resolves
// to undefined) or null: then the worker allocates the output itself (host_buffers.h) and the
// Promise resolves to a new Float32Array over it — no zero-filling or freeing of large buffers on
// the JavaScript thread.
#include <algorithm>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "handles.h"
#include "host_buffers.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/ops.h"
#include "svdquant/tensor_ops.h"
#include "svdquant/thread_pool.h"

namespace svdq_addon {
namespace {

constexpr int64_t kMaxElems = int64_t(1) << 46;

// Tags the externals that hold packed weights, so that no other external is ever read as one.
const napi_type_tag kPackedTag = {0x5c1d4e2a9b7f4c31ULL, 0x8e0f6a2d3b9c7e15ULL};

using PackedPtr = std::shared_ptr<svdq::PackedF32>;

const float* get_optional_f32(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t elems,
                              std::vector<Napi::Value>& keep) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  const float* p = get_array<float>(info, i, name, napi_float32_array, elems, "Float32Array or null");
  keep.push_back(info[i]);
  return p;
}

int get_threads(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int>(get_int(info, i, "threads", 0, 1024));
}

// The buffer under info[0] when it is a Float32Array covering a whole live block of the output pool
// (an array a native op allocated, host_buffers.h); an empty buffer for any other Float32Array.
Napi::ArrayBuffer whole_pool_buffer(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw_arg(info.Env(), "a", "a Float32Array");
  }
  Napi::Float32Array a = info[0].As<Napi::Float32Array>();
  Napi::ArrayBuffer buf = a.ArrayBuffer();
  const size_t bytes = buf.ByteLength();
  if (a.ByteOffset() != 0 || a.ByteLength() != bytes || bytes == 0 || !host_f32_owns(buf.Data(), bytes)) return Napi::ArrayBuffer();
  return buf;
}

// releaseF32(a: Float32Array) -> boolean. Frees now the storage of an array that a native op
// allocated and that covers its whole buffer: the buffer is detached (every view of it becomes
// empty) and the block goes back to the pool, so that V8 stops counting it towards its next major
// GC. Any other array is left alone (false).
Napi::Value ReleaseF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buf = whole_pool_buffer(info);
  if (buf.IsEmpty()) return Napi::Boolean::New(env, false);
  // Report hidden bytes again before the detach: the other order dips V8's external-memory count
  // below its low-water mark and the re-report then counts as fresh allocation.
  const int64_t hidden = host_f32_release_detached(static_cast<float*>(buf.Data()));
  if (hidden != 0) Napi::MemoryManagement::AdjustExternalMemory(env, hidden);
  buf.Detach();
  return Napi::Boolean::New(env, true);
}

// setF32Scoped(a: Float32Array, scoped: boolean) -> boolean. Whether a memory scope will free the
// storage of `a` (an array a native op allocated, covering its whole buffer): while it does, V8
// does not count it towards its GC triggers (host_f32_set_scoped). False for any other array,
// which is left alone.
Napi::Value SetF32Scoped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsBoolean()) throw_arg(env, "scoped", "a boolean");
  Napi::ArrayBuffer buf = whole_pool_buffer(info);
  if (buf.IsEmpty()) return Napi::Boolean::New(env, false);
  const int64_t change = host_f32_set_scoped(buf.Data(), buf.ByteLength(), info[1].As<Napi::Boolean>().Value());
  if (change != 0) Napi::MemoryManagement::AdjustExternalMemory(env, change);
  return Napi::Boolean::New(env, true);
}

// layerNorm(x, rows, dim, gamma|null, beta|null, eps, y|null, threads) -> Promise<void | Float32Array>
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = get_int(info, 1, "rows", 0, kMaxElems);
  const int64_t dim = get_int(info, 2, "dim", 0, kMaxElems);
  if (rows * dim > kMaxElems) throw_arg(env, "rows", "rows · dim below 2^46");
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, rows * dim, "Float32Array");
  std::vector<Napi::Value> keep{info[0]};
  const float* gamma = get_optional_f32(info, 3, "gamma", dim, keep);
  const float* beta = get_optional_f32(info, 4, "beta", dim, keep);
  const float eps = static_cast<float>(get_number(info, 5, "eps"));
  float* out = get_output(info, 6, "y", rows * dim, keep);
  const int threads = get_threads(info, 7);
  return run_out_job(env, out, rows * dim, [=](float* y) {
    svdq::layernorm_f32(x, rows, dim, gamma, beta, eps, y, svdq::shared_pool(threads));
  }, keep);
}

// rmsNorm(x, rows, dim, gamma|null, eps, y|null, threads) -> Promise<void | Float32Array>
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = get_int(info, 1, "rows", 0, kMaxElems);
  const int64_t dim = get_int(info, 2, "dim", 0, kMaxElems);
  if (rows * dim > kMaxElems) throw_arg(env, "rows", "rows · dim below 2^46");
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, rows * dim, "Float32Array");
  std::vector<Napi::Value> keep{info[0]};
  const float* gamma = get_optional_f32(info, 3, "gamma", dim, keep);
  const float eps = static_cast<float>(get_number(info, 4, "eps"));
  float* out = get_output(info, 5, "y", rows * dim, keep);
  const int threads = get_threads(info, 6);
  return run_out_job(env, out, rows * dim, [=](float* y) {
    svdq::rmsnorm_f32(x, rows, dim, gamma, eps, y, svdq::shared_pool(threads));
  }, keep);
}

// Elementwise unary op: (x, n, y, ...) with n elements.
Napi::Value Gelu(const Napi::CallbackInfo& info) {
  // gelu(x, n, y|null, approximate 0 (erf) | 1 (tanh), threads) -> Promise<void | Float32Array>
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 0, kMaxElems);
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, n, "Float32Array");
  std::vector<Napi::Value> keep{info[0]};
  float* out = get_output(info, 2, "y", n, keep);
  const bool approx = get_int(info, 3, "approximate", 0, 1) == 1;
  const int threads = get_threads(info, 4);
  return run_out_job(env, out, n, [=](float* y) { svdq::gelu_f32(x, n, y, approx, svdq::shared_pool(threads)); }, keep);
}

// silu(x, n, y|null, threads) -> Promise<void | Float32Array>
Napi::Value Silu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 0, kMaxElems);
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, n, "Float32Array");
  std::vector<Napi::Value> keep{info[0]};
  float* out = get_output(info, 2, "y", n, keep);
  const int threads = get_threads(info, 3);
  return run_out_job(env, out, n, [=](float* y) { svdq::silu_f32(x, n, y, svdq::shared_pool(threads)); }, keep);
}

// softmaxRows(x, rows, cols, y|null, threads) -> Promise<void | Float32Array>
Napi::Value SoftmaxRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = get_int(info, 1, "rows", 0, kMaxElems);
  const int64_t cols = get_int(info, 2, "cols", 0, kMaxElems);
  if (rows * cols > kMaxElems) throw_arg(env, "rows", "rows · cols below 2^46");
  const float* x = get_array<float>(info, 0, "x", napi_float32_array, rows * cols, "Float32Array");
  std::vector<Napi::Value> keep{info[0]};
  float* out = get_output(info, 3, "y", rows * cols, keep);
  const int threads = get_threads(info, 4);
  return run_out_job(env, out, rows * cols, [=](float* y) {
    svdq::softmax_rows_f32(x, rows, cols, y, svdq::shared_pool(threads));
  }, keep);
}

// add(a, b, n, y|null, threads) -> Promise<void | Float32Array>
Napi::Value Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 2, "n", 0, kMaxElems);
  const float* a = get_array<float>(info, 0, "a", napi_float32_array, n, "Float32Array");
  const float* b = get_array<float>(info, 1, "b", napi_float32_array, n, "Float32Array");
  std::vector<Napi::Value> keep{info[0], info[1]};
  float* out = get_output(info, 3, "y", n, keep);
  const int threads = get_threads(info, 4);
  return run_out_job(env, out, n, [=](float* y) { svdq::add_f32(a, b, n, y, svdq::shared_pool(threads)); }, keep);
}

// attention(q, k, v, batch, qTokens, kvTokens, heads, headDim, scale, keyBias|null, out|null, threads)
//   -> Promise<void | Float32Array>
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t batch = get_int(info, 3, "batch", 0, kMaxElems);
  const int64_t q_tokens = get_int(info, 4, "qTokens", 0, kMaxElems);
  const int64_t kv_tokens = get_int(info, 5, "kvTokens", 1, kMaxElems);
  const int64_t heads = get_int(info, 6, "heads", 0, 1 << 20);
  const int64_t head_dim = get_int(info, 7, "headDim", 0, 1 << 20);
  const double width = static_cast<double>(heads) * static_cast<double>(head_dim);
  if (static_cast<double>(batch) * static_cast<double>(std::max(q_tokens, kv_tokens)) * width > static_cast<double>(kMaxElems))
    throw_arg(env, "qTokens", "batch · tokens · heads · headDim below 2^46");
  const int64_t q_elems = batch * q_tokens * heads * head_dim, kv_elems = batch * kv_tokens * heads * head_dim;
  const float* q = get_array<float>(info, 0, "q", napi_float32_array, q_elems, "Float32Array");
  const float* k = get_array<float>(info, 1, "k", napi_float32_array, kv_elems, "Float32Array");
  const float* v = get_array<float>(info, 2, "v", napi_float32_array, kv_elems, "Float32Array");
  const float scale = static_cast<float>(get_number(info, 8, "scale"));
  std::vector<Napi::Value> keep{info[0], info[1], info[2]};
  const float* key_bias = get_optional_f32(info, 9, "keyBias", batch * kv_tokens, keep);
  float* user_out = get_output(info, 10, "out", q_elems, keep);
  const int threads = get_threads(info, 11);
  return run_out_job(env, user_out, q_elems, [=](float* out) {
    svdq::attention_f32(q, k, v, batch, q_tokens, kv_tokens, heads, head_dim, scale, key_bias, out,
                        svdq::shared_pool(threads));
  }, keep);
}

// Packs W [n, k] off the main thread, then settles with a tagged external owning the panels.
class PackTask : public Napi::AsyncWorker {
 public:
  PackTask(Napi::Env env, const float* w, int64_t n, int64_t k, int threads, Napi::Object keep)
      : Napi::AsyncWorker(env, "svdquant"), w_(w), n_(n), k_(k), threads_(threads),
        deferred_(Napi::Promise::Deferred::New(env)), keep_(Napi::Persistent(keep)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      packed_ = std::make_shared<svdq::PackedF32>(svdq::pack_f32_weights(
          w_, n_, k_, k_, svdq::isa_choice().active, svdq::shared_pool(threads_)));
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    const int64_t bytes = static_cast<int64_t>(packed_->bytes);
    auto* holder = new PackedPtr(std::move(packed_));
    Napi::External<PackedPtr> ext = Napi::External<PackedPtr>::New(env, holder, [bytes](Napi::Env e, PackedPtr* p) {
      Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
      delete p;
    });
    ext.TypeTag(&kPackedTag);
    Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
    deferred_.Resolve(ext);
  }

  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), "ERR_SVDQ_NATIVE", e.Message()).Value());
  }

 private:
  const float* w_;
  int64_t n_, k_;
  int threads_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  PackedPtr packed_;
};

// packF32Weights(w, n, k, threads) -> Promise<external>
Napi::Value PackF32Weights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 1, int64_t(1) << 30);
  const int64_t k = get_int(info, 2, "k", 1, int64_t(1) << 30);
  if (static_cast<double>(n) * static_cast<double>(k) > static_cast<double>(kMaxElems)) throw_arg(env, "n", "n · k below 2^46");
  const float* w = get_array<float>(info, 0, "w", napi_float32_array, n * k, "Float32Array");
  const int threads = get_threads(info, 3);
  auto* task = new PackTask(env, w, n, k, threads, info[0].As<Napi::Object>());
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

// linearF32(packed, x, m, bias|null, y|null, threads) -> Promise<void | Float32Array>: y[m, n] = x[m, k]·Wᵀ (+ bias)
Napi::Value LinearF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw_arg(env, "packed", "packed weights from packF32Weights");
  PackedPtr packed = packed_f32_of(env, info[0], "packed");
  const int64_t m = get_int(info, 2, "m", 0, kMaxElems);
  if (static_cast<double>(m) * static_cast<double>(std::max(packed->k, packed->n)) > static_cast<double>(kMaxElems))
    throw_arg(env, "m", "m · max(n, k) below 2^46");
  const float* x = get_array<float>(info, 1, "x", napi_float32_array, m * packed->k, "Float32Array");
  std::vector<Napi::Value> keep{info[1]};
  const float* bias = get_optional_f32(info, 3, "bias", packed->n, keep);
  float* out = get_output(info, 4, "y", m * packed->n, keep);
  const int threads = get_threads(info, 5);
  return run_out_job(env, out, m * packed->n, [=](float* y) {
    svdq::gemm_f32_packed(x, m, packed->k, *packed, bias, y, packed->n, false, svdq::shared_pool(threads));
  }, keep);
}

// conv2d(packed, x, n, cin, h, w, kh, kw, strideH, strideW, padH, padW, bias|null, out|null, threads)
//   -> Promise<void | Float32Array>: out [n, cout, ho, wo]; packed holds the weight as [cout, cin·kh·kw].
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal() || !info[0].As<Napi::External<PackedPtr>>().CheckTypeTag(&kPackedTag))
    throw_arg(env, "packed", "packed weights from packF32Weights");
  PackedPtr packed = *info[0].As<Napi::External<PackedPtr>>().Data();
  const int64_t n = get_int(info, 2, "n", 0, kMaxElems);
  const int64_t cin = get_int(info, 3, "cin", 1, 1 << 20);
  const int64_t h = get_int(info, 4, "h", 1, 1 << 20);
  const int64_t w = get_int(info, 5, "w", 1, 1 << 20);
  const int64_t kh = get_int(info, 6, "kh", 1, 1 << 10);
  const int64_t kw = get_int(info, 7, "kw", 1, 1 << 10);
  const int64_t sh = get_int(info, 8, "strideH", 1, 1 << 10);
  const int64_t sw = get_int(info, 9, "strideW", 1, 1 << 10);
  const int64_t ph = get_int(info, 10, "padH", 0, 1 << 10);
  const int64_t pw = get_int(info, 11, "padW", 0, 1 << 10);
  if (packed->k != cin * kh * kw) throw_arg(env, "packed", "weights of [cout, cin·kh·kw] = [*, " + std::to_string(cin * kh * kw) + "]");
  if (h + 2 * ph < kh || w + 2 * pw < kw) throw_arg(env, "kh", "a kernel no larger than the padded input");
  const int64_t ho = (h + 2 * ph - kh) / sh + 1, wo = (w + 2 * pw - kw) / sw + 1;
  const double in_elems = static_cast<double>(n) * static_cast<double>(cin) * static_cast<double>(h) * static_cast<double>(w);
  const double out_elems = static_cast<double>(n) * static_cast<double>(packed->n) * static_cast<double>(ho) * static_cast<double>(wo);
  if (std::max(in_elems, out_elems) > static_cast<double>(kMaxElems)) throw_arg(env, "n", "input and output below 2^46 elements");
  const float* x = get_array<float>(info, 1, "x", napi_float32_array, static_cast<int64_t>(in_elems), "Float32Array");
  std::vector<Napi::Value> keep{info[1]};
  const float* bias = get_optional_f32(info, 12, "bias", packed->n, keep);
  float* user_out = get_output(info, 13, "out", static_cast<int64_t>(out_elems), keep);
  const int threads = get_threads(info, 14);
  return run_out_job(env, user_out, static_cast<int64_t>(out_elems), [=](float* out) {
    svdq::conv2d_f32(x, n, cin, h, w, *packed, kh, kw, sh, sw, ph, pw, bias, out, svdq::shared_pool(threads));
  }, keep);
}

}  // namespace

std::shared_ptr<svdq::PackedF32> packed_f32_of(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsExternal() || !v.As<Napi::External<PackedPtr>>().CheckTypeTag(&kPackedTag))
    throw_arg(env, name, "packed weights from packF32Weights");
  return *v.As<Napi::External<PackedPtr>>().Data();
}

void register_graph_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("releaseF32", Napi::Function::New(env, ReleaseF32, "releaseF32"));
  exports.Set("setF32Scoped", Napi::Function::New(env, SetF32Scoped, "setF32Scoped"));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm, "layerNorm"));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm, "rmsNorm"));
  exports.Set("gelu", Napi::Function::New(env, Gelu, "gelu"));
  exports.Set("silu", Napi::Function::New(env, Silu, "silu"));
  exports.Set("softmaxRows", Napi::Function::New(env, SoftmaxRows, "softmaxRows"));
  exports.Set("add", Napi::Function::New(env, Add, "add"));
  exports.Set("attention", Napi::Function::New(env, Attention, "attention"));
  exports.Set("packF32Weights", Napi::Function::New(env, PackF32Weights, "packF32Weights"));
  exports.Set("linearF32", Napi::Function::New(env, LinearF32, "linearF32"));
  exports.Set("conv2d", Napi::Function::New(env, Conv2d, "conv2d"));
}

}  // namespace svdq_addon
