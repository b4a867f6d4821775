// What the addon keeps per JavaScript environment (main thread, each worker thread): Node-API has
// one instance-data slot, so everything lives in this struct.
#pragma once

#include <napi.h>

#include <memory>

#include "engine_jobs.h"

namespace svdq_addon {

struct AddonData {
  Napi::FunctionReference layer_ctor;  // NativeLowbitLayer (layer_binding.cpp)
  std::shared_ptr<EngineEnv> engine;   // job completions (engine_jobs.h)
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace svdq_addon
