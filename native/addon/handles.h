// The native objects behind JavaScript handles, for binding files other than their own (the bench
// times the kernels on the very objects the public API runs).
#pragma once

#include <napi.h>

#include <memory>

#include "svdquant/gemm_f32.h"
#include "svdquant/lowbit.h"

namespace svdq_addon {

// The kernel-format layer of a NativeLowbitLayer handle (layer_binding.cpp); throws an argument
// error naming `name` for anything else or a disposed layer.
std::shared_ptr<svdq::LowbitLayer> lowbit_layer_of(Napi::Env env, Napi::Value v, const char* name);

// The packed weights of a packF32Weights external (graph_ops_binding.cpp); throws an argument error
// naming `name` for anything else.
std::shared_ptr<svdq::PackedF32> packed_f32_of(Napi::Env env, Napi::Value v, const char* name);

}  // namespace svdq_addon
