// The native SVDQuant layer as a JavaScript object: created from canonical tensors (repacked into
// the kernel format off the main thread), run with forward(), released with dispose() (a finalizer
// is the safety net). Its kernel-format bytes are reported to V8 as external memory.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "handles.h"
#include "lowbit_desc.h"
#include "svdquant/lowbit.h"

namespace svdq_addon {
namespace {

using svdq::LowbitLayer;

class LayerHandle : public Napi::ObjectWrap<LayerHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLowbitLayer", {
      InstanceMethod("forward", &LayerHandle::Forward),
      InstanceMethod("dispose", &LayerHandle::Dispose),
      InstanceAccessor("bytes", &LayerHandle::Bytes, nullptr),
      InstanceAccessor("disposed", &LayerHandle::Disposed, nullptr),
    });
  }

  explicit LayerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LayerHandle>(info) {}

  ~LayerHandle() override { release(Env(), /*adjust=*/false); }

  std::shared_ptr<LowbitLayer> layer() const { return layer_; }

  void adopt(Napi::Env env, std::shared_ptr<LowbitLayer> layer) {
    layer_ = std::move(layer);
    external_ = static_cast<int64_t>(layer_->bytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, external_);
  }

 private:
  void release(Napi::Env env, bool adjust) {
    if (!layer_) return;
    layer_.reset();  // an in-flight forward keeps its own reference until it ends
    if (adjust) Napi::MemoryManagement::AdjustExternalMemory(env, -external_);
    external_ = 0;
  }

  // forward(x: Float32Array, m, y: Float32Array | null, mode 0..2, threads) -> Promise<void | Float32Array>
  // (y null: the worker allocates the output, see run_out_job)
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!layer_) throw make_error(env, "ERR_SVDQ_ARGUMENT", "invalid argument 'this': the native layer was disposed");
    std::shared_ptr<LowbitLayer> layer = layer_;
    const int64_t m = get_int(info, 1, "m", 0, int64_t(1) << 40);
    const float* x = get_array<float>(info, 0, "x", napi_float32_array, m * layer->k, "Float32Array");
    std::vector<Napi::Value> keep{info[0]};
    float* out = get_output(info, 2, "y", m * layer->n, keep);
    const auto mode = static_cast<svdq::LowRankMode>(get_int(info, 3, "mode", 0, 2));
    const int threads = static_cast<int>(get_int(info, 4, "threads", 0, 1024));
    return run_out_job(env, out, m * layer->n, [layer, x, m, mode, threads](float* y) {
      svdq::lowbit_forward(*layer, x, m, y, mode, threads);
    }, keep);
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env(), true);
    return info.Env().Undefined();
  }

  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), layer_ ? static_cast<double>(layer_->bytes()) : 0.0);
  }

  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !layer_); }

  std::shared_ptr<LowbitLayer> layer_;
  int64_t external_ = 0;
};

// Repacks off the main thread, then wraps the layer in a LayerHandle.
class PrepareTask : public Napi::AsyncWorker {
 public:
  PrepareTask(Napi::Env env, svdq::LowbitLayerDesc desc, svdq::LowbitOptions options, Napi::Object keep)
      : Napi::AsyncWorker(env, "svdquant"), desc_(desc), options_(options),
        deferred_(Napi::Promise::Deferred::New(env)), keep_(Napi::Persistent(keep)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      layer_ = svdq::prepare_lowbit_layer(desc_, options_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Object obj = addon_data(Env()).layer_ctor.New({});
    LayerHandle::Unwrap(obj)->adopt(Env(), std::shared_ptr<LowbitLayer>(std::move(layer_)));
    deferred_.Resolve(obj);
  }

  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), "ERR_SVDQ_ARGUMENT", e.Message()).Value());
  }

 private:
  svdq::LowbitLayerDesc desc_;
  svdq::LowbitOptions options_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  std::unique_ptr<LowbitLayer> layer_;
};

// prepareLowbitLayer(desc) -> Promise<NativeLowbitLayer>. desc: { scheme 0..4, n, k, rank, codes,
// scales, globalScale, smooth?, lDown?, lUp?, bias?, actMxRule 0..2, lowRankBf16 }
Napi::Value PrepareLowbitLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_arg(env, "desc", "an object");
  Napi::Object o = info[0].As<Napi::Object>();
  svdq::LowbitLayerDesc d;
  svdq::LowbitOptions opt;
  read_lowbit_desc(env, o, d, opt, nullptr);
  auto* task = new PrepareTask(env, d, opt, o);
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

}  // namespace

// Reads and checks the canonical layer description shared by prepareLowbitLayer and the GPU
// backends' createLayer (see lowbit_desc.h).
static const float* optional_f32(const Napi::Object& o, const char* key, int64_t count, Napi::Env env) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_arg(env, std::string("desc.") + key, "a Float32Array or null");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != count)
    throw_arg(env, std::string("desc.") + key, "a Float32Array of " + std::to_string(count) + " elements");
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

static const void* required_bytes(const Napi::Object& o, const char* key, int64_t bytes, Napi::Env env) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray()) throw_arg(env, std::string("desc.") + key, "a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ByteLength()) != bytes)
    throw_arg(env, std::string("desc.") + key, "a typed array of " + std::to_string(bytes) + " bytes, got " + std::to_string(ta.ByteLength()));
  return static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
}

static int64_t get_field_int(const Napi::Object& o, const char* key, int64_t lo, int64_t hi, Napi::Env env) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw_arg(env, std::string("desc.") + key, "an integer");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_arg(env, std::string("desc.") + key, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int64_t>(d);
}

void read_lowbit_desc(Napi::Env env, Napi::Object o, svdq::LowbitLayerDesc& d, svdq::LowbitOptions& opt,
                      std::vector<Napi::Value>* keep) {
  d.scheme = static_cast<svdq::LowbitScheme>(get_field_int(o, "scheme", 0, 4, env));
  d.n = get_field_int(o, "n", 1, int64_t(1) << 24, env);
  d.k = get_field_int(o, "k", 1, int64_t(1) << 24, env);
  d.rank = get_field_int(o, "rank", 0, 1 << 16, env);
  int64_t code_bytes = 0, scale_bytes = 0;
  switch (d.scheme) {
    case svdq::LowbitScheme::W4A4:
    case svdq::LowbitScheme::W4A16: {
      const int64_t kp = svdq::padded_k(d.k, svdq::kInt4Group);
      code_bytes = d.n * kp / 2;
      scale_bytes = d.n * (kp / svdq::kInt4Group) * 4;
      break;
    }
    case svdq::LowbitScheme::Mxfp4: {
      const int64_t kp = svdq::padded_k(d.k, svdq::kMxfp4Group);
      code_bytes = d.n * kp / 2;
      scale_bytes = d.n * (kp / svdq::kMxfp4Group);
      break;
    }
    case svdq::LowbitScheme::Nvfp4: {
      const int64_t kp = svdq::padded_k(d.k, svdq::kNvfp4Group);
      code_bytes = d.n * kp / 2;
      scale_bytes = d.n * (kp / svdq::kNvfp4Group);
      break;
    }
    case svdq::LowbitScheme::W8A8:
      code_bytes = d.n * d.k;
      scale_bytes = d.n * 4;
      break;
  }
  d.w_codes = required_bytes(o, "codes", code_bytes, env);
  d.w_scales = required_bytes(o, "scales", scale_bytes, env);
  Napi::Value g = o.Get("globalScale");
  d.w_global_scale = g.IsNumber() ? g.As<Napi::Number>().FloatValue() : 1.0f;
  d.smooth = optional_f32(o, "smooth", d.k, env);
  d.l_down = optional_f32(o, "lDown", d.rank * d.k, env);
  d.l_up = optional_f32(o, "lUp", d.n * d.rank, env);
  if (d.rank > 0 && (d.l_down == nullptr || d.l_up == nullptr)) throw_arg(env, "desc.lDown/desc.lUp", "both factors when rank > 0");
  d.bias = optional_f32(o, "bias", d.n, env);
  Napi::Value rule = o.Get("actMxRule");
  if (rule.IsNumber()) opt.act_mx_rule = static_cast<svdq::MxScaleRule>(get_field_int(o, "actMxRule", 0, 2, env));
  opt.lowrank_bf16 = o.Get("lowRankBf16").ToBoolean();
  if (keep != nullptr) {
    for (const char* key : {"codes", "scales", "smooth", "lDown", "lUp", "bias"}) {
      Napi::Value v = o.Get(key);
      if (v.IsTypedArray()) keep->push_back(v);
    }
  }
}

std::shared_ptr<svdq::LowbitLayer> lowbit_layer_of(Napi::Env env, Napi::Value v, const char* name) {
  Napi::FunctionReference& ctor = addon_data(env).layer_ctor;
  if (!v.IsObject() || ctor.IsEmpty() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) throw_arg(env, name, "a native layer handle");
  std::shared_ptr<svdq::LowbitLayer> layer = LayerHandle::Unwrap(v.As<Napi::Object>())->layer();
  if (!layer) throw_arg(env, name, "a layer that has not been disposed");
  return layer;
}

void register_layers(Napi::Env env, Napi::Object exports) {
  // Per-environment constructor (worker threads each load their own instance of the addon).
  addon_data(env).layer_ctor = Napi::Persistent(LayerHandle::Define(env));
  exports.Set("prepareLowbitLayer", Napi::Function::New(env, PrepareLowbitLayer, "prepareLowbitLayer"));
}

}  // namespace svdq_addon
