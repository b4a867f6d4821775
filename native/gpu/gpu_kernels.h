// Host-side launchers of the GPU kernels (one .cu file per kernel family). Each returns the launch's
// error (gpuGetLastError after the launch); none synchronizes.
#pragma once

#include "gpu_compat.h"
#include "gpu_layer.h"

namespace svdq_gpu {

// GEMM paths (svdq_gpu_device_info.matrix_path): 0 portable dot products, 1 NVIDIA mma.sync,
// 2 AMD MFMA. The matrix-path kernel falls back to dot products in a device pass compiled for a
// target without the instruction, so either choice computes the same sums.
enum GemmPath : int { kPathDot = 0, kPathMma = 1, kPathMfma = 2 };

// quantize_act.cu: rows of X [m][k] (fp32, device) → A's codes, scales, row scales, X̂ (w4a16) when
// `quant`, and D = X̂·L_downᵀ when `down` (rank > 0).
gpuError_t launch_quantize_act(const LayerView& L, const float* X, const ActsView& A, bool quant, bool down,
                               gpuStream_t stream);

// gemm_lowbit.cu: Y [m][n] = Q_a ⊗ Q_w (·α for nvfp4), and with `epilogue` + D·L_upᵀ (rank > 0) + b.
// `debug_sums` (or null): int32 [m][n][groups] receives the integer block sums I.
gpuError_t launch_gemm(const LayerView& L, const ActsView& A, float* Y, bool epilogue, int32_t* debug_sums,
                       int path, gpuStream_t stream);

// lowrank.cu: U [m][n] = D·L_upᵀ (the side and unfused modes), and Y = (Y + U) + b.
gpuError_t launch_lowrank_up(const LayerView& L, const float* D, int64_t m, float* U, gpuStream_t stream);
gpuError_t launch_finish(const LayerView& L, const float* U, int64_t m, float* Y, gpuStream_t stream);

}  // namespace svdq_gpu
