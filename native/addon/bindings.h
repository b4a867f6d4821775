// One registration function per binding family; addon.cpp calls them all.
#pragma once
#include <napi.h>
namespace svdq_addon {
void register_formats(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_layers(Napi::Env env, Napi::Object exports);
void register_graph_ops(Napi::Env env, Napi::Object exports);
void register_tensor_ops(Napi::Env env, Napi::Object exports);
void register_quant(Napi::Env env, Napi::Object exports);
void register_gpu(Napi::Env env, Napi::Object exports);
}  // namespace svdq_addon
