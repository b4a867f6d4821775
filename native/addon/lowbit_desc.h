// The canonical SVDQuant layer description that JavaScript passes to the native layers (the object
// NativeLowbitDesc in lib/native.ts): read and checked in one place for the CPU layer
// (prepareLowbitLayer) and the GPU backends (GpuBackend.createLayer).
#pragma once

#include <napi.h>

#include <vector>

#include "svdquant/lowbit.h"

namespace svdq_addon {

// Fills `d` and `opt` from `o` ({ scheme, n, k, rank, codes, scales, globalScale, smooth?, lDown?,
// lUp?, bias?, actMxRule, lowRankBf16 }); the pointers in `d` point into the object's typed arrays.
// Throws a JavaScript error with code ERR_SVDQ_ARGUMENT naming the field. When `keep` is given, the
// typed arrays the pointers refer to are appended to it (so an async job can hold them alive).
void read_lowbit_desc(Napi::Env env, Napi::Object o, svdq::LowbitLayerDesc& d, svdq::LowbitOptions& opt,
                      std::vector<Napi::Value>* keep);

}  // namespace svdq_addon
