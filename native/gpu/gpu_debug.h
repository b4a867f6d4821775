// Test-only entry points of a GPU backend library, beside the ABI table of gpu_abi.h (not part of
// that ABI: the addon never calls them). Exported with C linkage from the same objects.
#pragma once

#include <stdint.h>

#include "svdquant/gpu_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

// The integer block sums I of the layer's GEMM on X [m][k] (host fp32): int32 [m][n][groups] with
// groups = ceil(k / group) (w8a8: 1), computed by the same GEMM kernel (the path the layer uses)
// as the forward pass. w4a16 has no integer sums: SVDQ_GPU_UNSUPPORTED.
int svdq_gpu_debug_block_sums(svdq_gpu_layer* layer, const float* x, int64_t m, int32_t* sums,
                              svdq_gpu_status* status);

// Number of groups per row in the block-sum array.
int64_t svdq_gpu_debug_groups(const svdq_gpu_layer* layer);

// Forces the layer's GEMM path: 0 portable dot products, 1 the matrix-core path of the device (which
// falls back to dot products on devices without one). Returns the previous path.
int svdq_gpu_debug_set_path(svdq_gpu_layer* layer, int path);

// Benchmark helper: runs the forward pass on device buffers `warmup` times, then `iters` times, each
// timed with a pair of events on the layer's stream; ms[i] receives run i's time in milliseconds.
int svdq_gpu_debug_time_forward(svdq_gpu_layer* layer, const svdq_gpu_buffer* x, int64_t m, svdq_gpu_buffer* y,
                                int low_rank_mode, int warmup, int iters, float* ms, svdq_gpu_status* status);

#ifdef __cplusplus
}
#endif
