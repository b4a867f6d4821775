// The low-rank branch's separate kernels, for the side and unfused modes (DESIGN.md §5):
//   lowrank_up: U [m][n] = D·L_upᵀ, one fp32 fma chain in r order from 0 per output (the same chain
//               as the fused GEMM epilogue, so every mode gives the same bits);
//   finish:     Y = (Y + U) + b.
// (The unfused mode's separate down-projection is quantize_act.cu's kernel with only `down` set.)
#include "gpu_codecs.h"
#include "gpu_kernels.h"

namespace svdq_gpu {
namespace {

constexpr int TM = 64, TN = 64, RC = 32;

__global__ void __launch_bounds__(256) lowrank_up_kernel(LayerView L, const float* __restrict__ D, int64_t M,
                                                         float* __restrict__ U) {
  __shared__ float Ds[TM][RC + 1];
  __shared__ float Ls[TN][RC + 1];
  const int tid = threadIdx.x, tm = tid / 16, tn = tid % 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * TM, n0 = static_cast<int64_t>(blockIdx.x) * TN;
  const int64_t R = L.rank, N = L.n;
  float u[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) u[i][j] = 0.0f;
  for (int64_t rc = 0; rc < R; rc += RC) {
    __syncthreads();
    for (int idx = tid; idx < TM * RC; idx += 256) {
      const int r = idx / RC, q = idx % RC;
      Ds[r][q] = (m0 + r < M && rc + q < R) ? D[(m0 + r) * R + rc + q] : 0.0f;
      Ls[r][q] = rc + q < R ? L.l_up[(n0 + r) * R + rc + q] : 0.0f;  // TN == TM
    }
    __syncthreads();
    const int qn = R - rc < RC ? static_cast<int>(R - rc) : RC;
    for (int q = 0; q < qn; ++q) {  // r outermost: each output's chain stays in r order
      float d[4], l[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        d[i] = Ds[tm + 16 * i][q];
        l[i] = Ls[tn + 16 * i][q];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) u[i][j] = fma_rn(d[i], l[j], u[i][j]);
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + tm + 16 * i, n = n0 + tn + 16 * j;
      if (m < M && n < N) U[m * N + n] = u[i][j];
    }
}

__global__ void finish_kernel(LayerView L, const float* __restrict__ U, int64_t total, float* __restrict__ Y) {
  const int64_t N = L.n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float y = Y[i];
    if (U != nullptr) y = add_rn(y, U[i]);
    if (L.has_bias) y = add_rn(y, L.bias[i % N]);
    Y[i] = y;
  }
}

}  // namespace

gpuError_t launch_lowrank_up(const LayerView& L, const float* D, int64_t m, float* U, gpuStream_t stream) {
  if (m <= 0 || L.rank <= 0) return gpuSuccess;
  if ((m + TM - 1) / TM > 65535) return gpuErrorInvalidValue;
  const dim3 grid(static_cast<unsigned int>(L.np / TN), static_cast<unsigned int>((m + TM - 1) / TM));
  SVDQ_LAUNCH(grid, 256, 0, stream, lowrank_up_kernel)(L, D, m, U);
  return gpuGetLastError();
}

gpuError_t launch_finish(const LayerView& L, const float* U, int64_t m, float* Y, gpuStream_t stream) {
  const int64_t total = m * L.n;
  if (total <= 0 || (U == nullptr && !L.has_bias)) return gpuSuccess;
  int64_t blocks = (total + 255) / 256;
  if (blocks > 65535) blocks = 65535;
  SVDQ_LAUNCH(static_cast<unsigned int>(blocks), 256, 0, stream, finish_kernel)(L, U, total, Y);
  return gpuGetLastError();
}

}  // namespace svdq_gpu
