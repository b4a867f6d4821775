// Module entry: registers every binding family.
#include <napi.h>

#include "bindings.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
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
