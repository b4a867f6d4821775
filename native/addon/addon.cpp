// Module entry: registers every binding family.
#include <napi.h>

#include <mutex>

#include "addon_data.h"
#include "bindings.h"

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

namespace {

// Keeps this library mapped until the process exits. The engine's threads (the dispatchers, the
// compute pools, the output pool's reclaimer) live as long as the process, but Node unloads an
// addon when the last environment that loaded it goes away (a worker thread that exits): a thread
// spinning or waking in unmapped code would crash the process.
void pin_library() {
#if defined(__linux__) || defined(__APPLE__)
  static std::once_flag once;  // environments (worker threads) start concurrently
  std::call_once(once, [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&pin_library), &info) != 0 && info.dli_fname != nullptr) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);  // a reference never closed
    }
  });
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pin_library();
  auto* data = new svdq_addon::AddonData();
  env.SetInstanceData(data);  // deleted with the environment
  data->engine = svdq_addon::engine_jobs_init(env);
  svdq_addon::register_formats(env, exports);
  svdq_addon::register_bench(env, exports);
  svdq_addon::register_layers(env, exports);
  svdq_addon::register_graph_ops(env, exports);
  svdq_addon::register_tensor_ops(env, exports);
  svdq_addon::register_quant(env, exports);
  svdq_addon::register_gpu(env, exports);
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(svdquant, Init)
