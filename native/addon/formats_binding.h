#pragma once
#include <napi.h>
namespace svdq_addon {
void register_formats(Napi::Env env, Napi::Object exports);
}
