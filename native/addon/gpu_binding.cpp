// The GPU backends (DESIGN.md §5): a backend is a shared library (libsvdquant_cuda.so,
// libsvdquant_hip.so) implementing the C ABI of svdquant/gpu_abi.h. It is never linked: it is
// loaded here with dlopen at run time, so that the addon loads on machines without a GPU driver.
//
//   gpuProbe(platform, path) -> Promise<{ available, reason, platform, path, abiVersion, builtArchs,
//                                         devices: [...], backend: GpuBackend | null }>
//     never rejects for a missing or broken library: `reason` says what is wrong (file not found,
//     the dlopen error, a missing symbol, an ABI version mismatch, no device, a driver mismatch).
//   GpuBackend   createLayer(desc, device) -> Promise<GpuLayer>; allocBuffer(device, bytes) -> Promise<GpuBuffer>
//   GpuLayer     forward(x, m, y, mode), forwardDevice(xBuffer, m, yBuffer, mode) -> Promise<void>;
//                dispose(); bytes; disposed; device
//   GpuBuffer    upload(src, offset), download(dst, offset) -> Promise<void>; dispose(); bytes; disposed; device
//
// Every backend call runs on a worker thread. A failing status becomes a rejected Promise with an
// Error whose `code` names the failure (ERR_SVDQ_GPU_OOM, ERR_SVDQ_GPU_NO_DEVICE, ERR_SVDQ_GPU_DRIVER,
// ERR_SVDQ_GPU_RUNTIME, ERR_SVDQ_GPU_UNSUPPORTED, ERR_SVDQ_ARGUMENT) and `gpuStatus` its number.
// Layers and buffers are freed by dispose() or, as a safety net, by their finalizer; a call in flight
// holds its own reference, so a dispose() during a forward frees the memory when the forward ends.
// Loaded libraries are never unloaded (dlclose), so an API table stays valid for the process lifetime.
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "lowbit_desc.h"
#include "svdquant/gpu_abi.h"

namespace svdq_addon {
namespace {

// The constructors of this environment's wrapped classes (passed as the classes' and functions' data).
struct GpuCtors {
  Napi::FunctionReference backend, layer, buffer;
};

const char* code_name(int code) {
  switch (code) {
    case SVDQ_GPU_INVALID_ARGUMENT: return "ERR_SVDQ_ARGUMENT";
    case SVDQ_GPU_OUT_OF_MEMORY: return "ERR_SVDQ_GPU_OOM";
    case SVDQ_GPU_NO_DEVICE: return "ERR_SVDQ_GPU_NO_DEVICE";
    case SVDQ_GPU_DRIVER_MISMATCH: return "ERR_SVDQ_GPU_DRIVER";
    case SVDQ_GPU_UNSUPPORTED: return "ERR_SVDQ_GPU_UNSUPPORTED";
    default: return "ERR_SVDQ_GPU_RUNTIME";
  }
}

const char* code_words(int code) {
  switch (code) {
    case SVDQ_GPU_INVALID_ARGUMENT: return "invalid argument";
    case SVDQ_GPU_OUT_OF_MEMORY: return "out of memory";
    case SVDQ_GPU_NO_DEVICE: return "no device";
    case SVDQ_GPU_DRIVER_MISMATCH: return "driver mismatch";
    case SVDQ_GPU_RUNTIME: return "runtime error";
    case SVDQ_GPU_UNSUPPORTED: return "unsupported";
    default: return "unknown status";
  }
}

void clear(svdq_gpu_status& st) {
  st.code = SVDQ_GPU_OK;
  st.message[0] = '\0';
}

// The backend's message, or a generic one when it left none.
std::string status_text(const svdq_gpu_status& st) {
  std::string msg(st.message, strnlen(st.message, sizeof(st.message)));
  if (msg.empty()) msg = std::string(code_words(st.code)) + " (status " + std::to_string(st.code) + ")";
  return msg;
}

Napi::Value gpu_error(Napi::Env env, const std::string& platform, const svdq_gpu_status& st) {
  Napi::Error err = make_error(env, code_name(st.code), platform + ": " + status_text(st));
  err.Set("gpuStatus", Napi::Number::New(env, st.code));
  err.Set("platform", Napi::String::New(env, platform));
  return err.Value();
}

// Runs one backend call on a worker thread; rejects with the mapped error when the status is not OK,
// else resolves with what `done` builds on the JavaScript thread (undefined when it is empty).
class GpuTask : public Napi::AsyncWorker {
 public:
  using Job = std::function<void(svdq_gpu_status&)>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  GpuTask(Napi::Env env, std::string platform, Job job, Done done, const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, "svdquant-gpu"), platform_(std::move(platform)), job_(std::move(job)),
        done_(std::move(done)), deferred_(Napi::Promise::Deferred::New(env)) {
    clear(status_);
    for (const auto& v : keep) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      job_(status_);
    } catch (const std::exception& e) {
      status_.code = SVDQ_GPU_RUNTIME;
      std::snprintf(status_.message, sizeof(status_.message), "native error: %s", e.what());
    } catch (...) {
      status_.code = SVDQ_GPU_RUNTIME;
      std::snprintf(status_.message, sizeof(status_.message), "unknown native error");
    }
    status_.message[sizeof(status_.message) - 1] = '\0';
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (status_.code != SVDQ_GPU_OK) {
      deferred_.Reject(gpu_error(env, platform_, status_));
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string platform_;
  Job job_;
  Done done_;
  svdq_gpu_status status_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Promise queue(Napi::Env env, const std::string& platform, GpuTask::Job job, GpuTask::Done done,
                    const std::vector<Napi::Value>& keep) {
  auto* task = new GpuTask(env, platform, std::move(job), std::move(done), keep);
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

// ---- the loaded library ---------------------------------------------------------------------------

struct Library {
  const svdq_gpu_api* api = nullptr;
  std::string platform;  // as requested (and checked against api->platform)
  std::string path;
};

// Device memory on one device; freed when the last reference (the wrapper or a call in flight) goes.
struct BufferState {
  std::shared_ptr<const Library> lib;
  svdq_gpu_buffer* buffer = nullptr;
  int device = 0;
  size_t bytes = 0;
  ~BufferState() {
    if (buffer != nullptr) lib->api->buffer_free(buffer);
  }
};

struct LayerState {
  std::shared_ptr<const Library> lib;
  svdq_gpu_layer* layer = nullptr;
  int device = 0;
  int64_t n = 0, k = 0;
  size_t bytes = 0;
  ~LayerState() {
    if (layer != nullptr) lib->api->layer_destroy(layer);
  }
};

const char* missing_function(const svdq_gpu_api* a) {
  if (a->device_count == nullptr) return "device_count";
  if (a->device_info == nullptr) return "device_info";
  if (a->buffer_alloc == nullptr) return "buffer_alloc";
  if (a->buffer_upload == nullptr) return "buffer_upload";
  if (a->buffer_download == nullptr) return "buffer_download";
  if (a->buffer_bytes == nullptr) return "buffer_bytes";
  if (a->buffer_free == nullptr) return "buffer_free";
  if (a->layer_create == nullptr) return "layer_create";
  if (a->layer_bytes == nullptr) return "layer_bytes";
  if (a->layer_forward_host == nullptr) return "layer_forward_host";
  if (a->layer_forward_device == nullptr) return "layer_forward_device";
  if (a->layer_destroy == nullptr) return "layer_destroy";
  return nullptr;
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

struct ProbeResult {
  bool available = false;
  std::string reason;
  int abi_version = 0;
  std::string built_archs;
  std::vector<std::pair<int, svdq_gpu_device_info>> devices;
  std::shared_ptr<const Library> lib;  // set when the library loaded and its API table is usable
};

// Loads and checks the library, then asks it for its devices. Never throws; fills `reason`.
void probe(const std::string& platform, const std::string& path, ProbeResult& r) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) {
    const int err = errno;
    r.reason = err == ENOENT ? base_name(path) + " not found at " + path
                             : "cannot access " + path + ": " + std::strerror(err);
    return;
  }
  if (!S_ISREG(sb.st_mode)) {
    r.reason = path + " is not a regular file";
    return;
  }
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    r.reason = std::string("dlopen failed: ") + (e != nullptr ? e : "unknown error");
    return;
  }
  dlerror();
  void* sym = dlsym(handle, "svdq_gpu_get_api");
  if (sym == nullptr) {
    r.reason = path + " does not export svdq_gpu_get_api (not an svdquant GPU backend library)";
    dlclose(handle);  // nothing from it was called or kept
    return;
  }
  // From here on the library has run code of ours: it stays loaded for the process lifetime.
  svdq_gpu_get_api_fn get_api = nullptr;
  static_assert(sizeof(get_api) == sizeof(sym), "function and object pointers differ in size");
  std::memcpy(&get_api, &sym, sizeof(sym));
  const svdq_gpu_api* api = get_api();
  if (api == nullptr) {
    r.reason = path + ": svdq_gpu_get_api returned NULL (the library cannot describe itself)";
    return;
  }
  r.abi_version = api->abi_version;
  if (api->abi_version != SVDQ_GPU_ABI_VERSION) {
    r.reason = "ABI version mismatch: " + path + " implements GPU ABI version " + std::to_string(api->abi_version) +
               ", this addon expects version " + std::to_string(SVDQ_GPU_ABI_VERSION) +
               " (rebuild the backend and the addon from the same sources)";
    return;
  }
  const std::string lib_platform = api->platform != nullptr ? std::string(api->platform) : std::string();
  if (lib_platform != platform) {
    r.reason = path + " is a '" + lib_platform + "' backend, expected '" + platform + "'";
    return;
  }
  if (const char* fn = missing_function(api)) {
    r.reason = path + ": incomplete API table (" + fn + " is NULL)";
    return;
  }
  r.built_archs = api->built_archs != nullptr ? api->built_archs : "";
  auto lib = std::make_shared<Library>();
  lib->api = api;
  lib->platform = platform;
  lib->path = path;
  r.lib = lib;

  svdq_gpu_status st;
  clear(st);
  int count = 0;
  const int code = api->device_count(&count, &st);
  st.message[sizeof(st.message) - 1] = '\0';
  if (code != SVDQ_GPU_OK) {
    st.code = code;
    r.reason = std::string(code_words(code)) + ": " + status_text(st);
    return;
  }
  if (count <= 0) {
    r.reason = "no device: the " + platform + " driver reports 0 devices";
    return;
  }
  std::string failures;
  for (int d = 0; d < count; ++d) {
    svdq_gpu_device_info info;
    std::memset(&info, 0, sizeof(info));
    clear(st);
    const int c = api->device_info(d, &info, &st);
    st.message[sizeof(st.message) - 1] = '\0';
    if (c != SVDQ_GPU_OK) {
      st.code = c;
      failures += (failures.empty() ? "" : "; ") + std::string("device ") + std::to_string(d) + ": " + status_text(st);
      continue;
    }
    info.name[sizeof(info.name) - 1] = '\0';
    info.arch[sizeof(info.arch) - 1] = '\0';
    r.devices.emplace_back(d, info);
  }
  r.available = !r.devices.empty();
  r.reason = failures;
  if (!r.available) r.reason = "no usable device: " + failures;
}

// ---- wrapped classes ------------------------------------------------------------------------------

class GpuBuffer : public Napi::ObjectWrap<GpuBuffer> {
 public:
  static Napi::Function Define(Napi::Env env, GpuCtors* ctors) {
    return DefineClass(env, "GpuBuffer", {
      InstanceMethod("upload", &GpuBuffer::Upload, napi_default, ctors),
      InstanceMethod("download", &GpuBuffer::Download, napi_default, ctors),
      InstanceMethod("dispose", &GpuBuffer::Dispose, napi_default, ctors),
      InstanceAccessor("bytes", &GpuBuffer::Bytes, nullptr),
      InstanceAccessor("device", &GpuBuffer::Device, nullptr),
      InstanceAccessor("disposed", &GpuBuffer::Disposed, nullptr),
    }, ctors);
  }

  explicit GpuBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GpuBuffer>(info) {}

  void adopt(std::shared_ptr<BufferState> s) {
    state_ = std::move(s);
    device_ = state_->device;
  }
  std::shared_ptr<BufferState> state() const { return state_; }

 private:
  std::shared_ptr<BufferState> live(Napi::Env env) const {
    if (!state_) throw make_error(env, "ERR_SVDQ_ARGUMENT", "invalid argument 'this': the device buffer was disposed");
    return state_;
  }

  // The bytes of a typed array argument and the byte offset into the buffer, checked against its size.
  static void span(const Napi::CallbackInfo& info, const BufferState& s, uint8_t** host, size_t* bytes, size_t* offset) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw_arg(env, "host", "a typed array");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    const int64_t off = get_int(info, 1, "offset", 0, int64_t(1) << 50);
    *bytes = ta.ByteLength();
    *offset = static_cast<size_t>(off);
    if (*offset > s.bytes || *bytes > s.bytes - *offset)
      throw_arg(env, "host", "at most " + std::to_string(s.bytes - std::min(*offset, s.bytes)) + " bytes at offset " +
                                 std::to_string(off) + " of a " + std::to_string(s.bytes) + "-byte device buffer, got " +
                                 std::to_string(*bytes) + " bytes");
    auto* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data());
    if (base == nullptr && *bytes > 0) throw_arg(env, "host", "an attached (not transferred) buffer");
    *host = base == nullptr ? nullptr : base + ta.ByteOffset();
  }

  // upload(src: TypedArray, offsetBytes) -> Promise<void>
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    auto s = live(info.Env());
    uint8_t* host = nullptr;
    size_t bytes = 0, offset = 0;
    span(info, *s, &host, &bytes, &offset);
    return queue(info.Env(), s->lib->platform, [s, host, bytes, offset](svdq_gpu_status& st) {
      if (bytes == 0) return;
      st.code = s->lib->api->buffer_upload(s->buffer, offset, host, bytes, &st);
    }, nullptr, {info[0]});
  }

  // download(dst: TypedArray, offsetBytes) -> Promise<void>
  Napi::Value Download(const Napi::CallbackInfo& info) {
    auto s = live(info.Env());
    uint8_t* host = nullptr;
    size_t bytes = 0, offset = 0;
    span(info, *s, &host, &bytes, &offset);
    return queue(info.Env(), s->lib->platform, [s, host, bytes, offset](svdq_gpu_status& st) {
      if (bytes == 0) return;
      st.code = s->lib->api->buffer_download(s->buffer, offset, host, bytes, &st);
    }, nullptr, {info[0]});
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();  // a copy in flight keeps the memory until it ends
    return info.Env().Undefined();
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), state_ ? static_cast<double>(state_->bytes) : 0.0);
  }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_); }

  std::shared_ptr<BufferState> state_;
  int device_ = 0;
};

class GpuLayer : public Napi::ObjectWrap<GpuLayer> {
 public:
  static Napi::Function Define(Napi::Env env, GpuCtors* ctors) {
    return DefineClass(env, "GpuLayer", {
      InstanceMethod("forward", &GpuLayer::Forward, napi_default, ctors),
      InstanceMethod("forwardDevice", &GpuLayer::ForwardDevice, napi_default, ctors),
      InstanceMethod("dispose", &GpuLayer::Dispose, napi_default, ctors),
      InstanceAccessor("bytes", &GpuLayer::Bytes, nullptr),
      InstanceAccessor("device", &GpuLayer::Device, nullptr),
      InstanceAccessor("disposed", &GpuLayer::Disposed, nullptr),
    }, ctors);
  }

  explicit GpuLayer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GpuLayer>(info) {}

  void adopt(std::shared_ptr<LayerState> s) {
    state_ = std::move(s);
    device_ = state_->device;
  }

 private:
  std::shared_ptr<LayerState> live(Napi::Env env) const {
    if (!state_) throw make_error(env, "ERR_SVDQ_ARGUMENT", "invalid argument 'this': the GPU layer was disposed");
    return state_;
  }

  // forward(x: Float32Array, m, y: Float32Array, mode 0..2) -> Promise<void>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = live(env);
    const int64_t m = get_int(info, 1, "m", 0, int64_t(1) << 40);
    const float* x = get_array<float>(info, 0, "x", napi_float32_array, m * s->k, "Float32Array");
    float* y = get_array<float>(info, 2, "y", napi_float32_array, m * s->n, "Float32Array");
    const int mode = static_cast<int>(get_int(info, 3, "mode", 0, 2));
    return queue(env, s->lib->platform, [s, x, m, y, mode](svdq_gpu_status& st) {
      if (m == 0) return;
      st.code = s->lib->api->layer_forward_host(s->layer, x, m, y, mode, &st);
    }, nullptr, {info[0], info[2]});
  }

  std::shared_ptr<BufferState> buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* name,
                                          const LayerState& s, int64_t min_bytes) const {
    Napi::Env env = info.Env();
    auto* ctors = static_cast<GpuCtors*>(info.Data());
    if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(ctors->buffer.Value()))
      throw_arg(env, name, "a GpuBuffer");
    auto b = GpuBuffer::Unwrap(info[i].As<Napi::Object>())->state();
    if (!b) throw_arg(env, name, "a device buffer that has not been disposed");
    if (b->lib->api != s.lib->api) throw_arg(env, name, "a buffer of the layer's backend (" + s.lib->platform + ")");
    if (b->device != s.device)
      throw_arg(env, name, "a buffer on the layer's device " + std::to_string(s.device) + ", got device " + std::to_string(b->device));
    if (static_cast<int64_t>(b->bytes) < min_bytes)
      throw_arg(env, name, "a buffer of at least " + std::to_string(min_bytes) + " bytes, got " + std::to_string(b->bytes));
    return b;
  }

  // forwardDevice(x: GpuBuffer, m, y: GpuBuffer, mode 0..2) -> Promise<void>
  Napi::Value ForwardDevice(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = live(env);
    const int64_t m = get_int(info, 1, "m", 0, int64_t(1) << 40);
    auto x = buffer_arg(info, 0, "x", *s, m * s->k * 4);
    auto y = buffer_arg(info, 2, "y", *s, m * s->n * 4);
    if (x == y) throw_arg(env, "y", "a buffer other than x");
    const int mode = static_cast<int>(get_int(info, 3, "mode", 0, 2));
    return queue(env, s->lib->platform, [s, x, m, y, mode](svdq_gpu_status& st) {
      if (m == 0) return;
      st.code = s->lib->api->layer_forward_device(s->layer, x->buffer, m, y->buffer, mode, &st);
    }, nullptr, {});
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();  // a forward in flight keeps the layer until it ends
    return info.Env().Undefined();
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), state_ ? static_cast<double>(state_->bytes) : 0.0);
  }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_); }

  std::shared_ptr<LayerState> state_;
  int device_ = 0;
};

class GpuBackend : public Napi::ObjectWrap<GpuBackend> {
 public:
  static Napi::Function Define(Napi::Env env, GpuCtors* ctors) {
    return DefineClass(env, "GpuBackend", {
      InstanceMethod("createLayer", &GpuBackend::CreateLayer, napi_default, ctors),
      InstanceMethod("allocBuffer", &GpuBackend::AllocBuffer, napi_default, ctors),
      InstanceAccessor("platform", &GpuBackend::Platform, nullptr),
      InstanceAccessor("path", &GpuBackend::Path, nullptr),
    }, ctors);
  }

  explicit GpuBackend(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GpuBackend>(info) {}

  void adopt(std::shared_ptr<const Library> lib) { lib_ = std::move(lib); }

 private:
  const std::shared_ptr<const Library>& lib(Napi::Env env) const {
    if (!lib_) throw make_error(env, "ERR_SVDQ_ARGUMENT", "invalid argument 'this': not a loaded GPU backend");
    return lib_;
  }

  // createLayer(desc, device) -> Promise<GpuLayer>; desc as prepareLowbitLayer's.
  Napi::Value CreateLayer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto l = lib(env);
    auto* ctors = static_cast<GpuCtors*>(info.Data());
    if (info.Length() < 1 || !info[0].IsObject()) throw_arg(env, "desc", "an object");
    const int device = static_cast<int>(get_int(info, 1, "device", 0, 1 << 20));
    svdq::LowbitLayerDesc d;
    svdq::LowbitOptions opt;
    std::vector<Napi::Value> keep{info[0]};
    read_lowbit_desc(env, info[0].As<Napi::Object>(), d, opt, &keep);
    svdq_gpu_layer_desc g;
    std::memset(&g, 0, sizeof(g));
    g.scheme = static_cast<int>(d.scheme);
    g.n = d.n;
    g.k = d.k;
    g.rank = d.rank;
    g.w_codes = d.w_codes;
    g.w_scales = d.w_scales;
    g.w_global_scale = d.w_global_scale;
    g.smooth = d.smooth;
    g.l_down = d.l_down;
    g.l_up = d.l_up;
    g.bias = d.bias;
    g.act_mx_rule = static_cast<int>(opt.act_mx_rule);
    auto state = std::make_shared<LayerState>();
    state->lib = l;
    state->device = device;
    state->n = d.n;
    state->k = d.k;
    return queue(env, l->platform, [state, g](svdq_gpu_status& st) {
      svdq_gpu_layer* layer = nullptr;
      st.code = state->lib->api->layer_create(state->device, &g, &layer, &st);
      if (st.code == SVDQ_GPU_OK && layer == nullptr) {
        st.code = SVDQ_GPU_RUNTIME;
        std::snprintf(st.message, sizeof(st.message), "layer_create returned no layer");
      }
      if (st.code != SVDQ_GPU_OK) {
        if (layer != nullptr) state->lib->api->layer_destroy(layer);
        return;
      }
      state->layer = layer;
      state->bytes = state->lib->api->layer_bytes(layer);
    }, [ctors, state](Napi::Env) -> Napi::Value {
      Napi::Object obj = ctors->layer.New({});
      GpuLayer::Unwrap(obj)->adopt(state);
      return obj;
    }, keep);
  }

  // allocBuffer(device, bytes) -> Promise<GpuBuffer>
  Napi::Value AllocBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto l = lib(env);
    auto* ctors = static_cast<GpuCtors*>(info.Data());
    const int device = static_cast<int>(get_int(info, 0, "device", 0, 1 << 20));
    const int64_t bytes = get_int(info, 1, "bytes", 0, int64_t(1) << 50);
    auto state = std::make_shared<BufferState>();
    state->lib = l;
    state->device = device;
    return queue(env, l->platform, [state, bytes](svdq_gpu_status& st) {
      svdq_gpu_buffer* buf = nullptr;
      st.code = state->lib->api->buffer_alloc(state->device, static_cast<size_t>(bytes), &buf, &st);
      if (st.code == SVDQ_GPU_OK && buf == nullptr) {
        st.code = SVDQ_GPU_RUNTIME;
        std::snprintf(st.message, sizeof(st.message), "buffer_alloc returned no buffer");
      }
      if (st.code != SVDQ_GPU_OK) {
        if (buf != nullptr) state->lib->api->buffer_free(buf);
        return;
      }
      state->buffer = buf;
      state->bytes = state->lib->api->buffer_bytes(buf);
    }, [ctors, state](Napi::Env) -> Napi::Value {
      Napi::Object obj = ctors->buffer.New({});
      GpuBuffer::Unwrap(obj)->adopt(state);
      return obj;
    }, {});
  }

  Napi::Value Platform(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), lib_ ? lib_->platform : std::string());
  }
  Napi::Value Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), lib_ ? lib_->path : std::string()); }

  std::shared_ptr<const Library> lib_;
};

// gpuProbe(platform: 'cuda' | 'hip', path) -> Promise<report>
Napi::Value GpuProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* ctors = static_cast<GpuCtors*>(info.Data());
  if (info.Length() < 1 || !info[0].IsString()) throw_arg(env, "platform", "'cuda' or 'hip'");
  const std::string platform = info[0].As<Napi::String>().Utf8Value();
  if (platform != "cuda" && platform != "hip") throw_arg(env, "platform", "'cuda' or 'hip'");
  if (info.Length() < 2 || !info[1].IsString()) throw_arg(env, "path", "a file path (string)");
  const std::string path = info[1].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) throw_arg(env, "path", "a non-empty file path without NUL characters");
  auto result = std::make_shared<ProbeResult>();
  return queue(env, platform, [platform, path, result](svdq_gpu_status&) {
    try {
      probe(platform, path, *result);
    } catch (const std::exception& e) {
      result->available = false;
      result->reason = std::string("probe failed: ") + e.what();
    }
  }, [ctors, platform, path, result](Napi::Env env) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("available", Napi::Boolean::New(env, result->available));
    o.Set("reason", Napi::String::New(env, result->reason));
    o.Set("platform", Napi::String::New(env, platform));
    o.Set("path", Napi::String::New(env, path));
    o.Set("abiVersion", Napi::Number::New(env, result->abi_version));
    o.Set("builtArchs", Napi::String::New(env, result->built_archs));
    Napi::Array devices = Napi::Array::New(env, result->devices.size());
    uint32_t i = 0;
    for (const auto& [index, d] : result->devices) {
      Napi::Object dev = Napi::Object::New(env);
      dev.Set("index", Napi::Number::New(env, index));
      dev.Set("name", Napi::String::New(env, d.name));
      dev.Set("arch", Napi::String::New(env, d.arch));
      dev.Set("totalMemory", Napi::Number::New(env, static_cast<double>(d.total_memory)));
      dev.Set("freeMemory", Napi::Number::New(env, static_cast<double>(d.free_memory)));
      dev.Set("multiprocessors", Napi::Number::New(env, d.multiprocessors));
      dev.Set("driverVersion", Napi::Number::New(env, d.driver_version));
      dev.Set("runtimeVersion", Napi::Number::New(env, d.runtime_version));
      dev.Set("matrixPath", Napi::Number::New(env, d.matrix_path));
      devices.Set(i++, dev);
    }
    o.Set("devices", devices);
    if (result->available && result->lib) {
      Napi::Object backend = ctors->backend.New({});
      GpuBackend::Unwrap(backend)->adopt(result->lib);
      o.Set("backend", backend);
    } else {
      o.Set("backend", env.Null());
    }
    return o;
  }, {});
}

}  // namespace

void register_gpu(Napi::Env env, Napi::Object exports) {
  auto* ctors = new GpuCtors();
  ctors->backend = Napi::Persistent(GpuBackend::Define(env, ctors));
  ctors->layer = Napi::Persistent(GpuLayer::Define(env, ctors));
  ctors->buffer = Napi::Persistent(GpuBuffer::Define(env, ctors));
  env.AddCleanupHook([ctors]() { delete ctors; });
  exports.Set("gpuProbe", Napi::Function::New(env, GpuProbe, "gpuProbe", ctors));
  exports.Set("gpuAbiVersion", Napi::Number::New(env, SVDQ_GPU_ABI_VERSION));
}

}  // namespace svdq_addon
