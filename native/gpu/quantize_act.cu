// quantize_act (DESIGN.md §5 step 1) on the GPU: one block of 256 threads per 8 token rows reads X
// once in K chunks of 256: X̂ = X/λ (one fp32 division per element), the activation codes (packed at
// 4 bits for the 4-bit schemes, int8 for w8a8) and group scales (the rules of formats.h, via
// gpu_codecs.h: bit-identical to the CPU quantizers), and D = X̂·L_downᵀ from the same chunk while it
// is in shared memory.
//
// D's sums: with rows·rank >= 256 (rows: the block's tokens, at most 8) every (row, r) is one fp32
// fma chain in k order, exactly as on the CPU. With fewer pairs, each chunk's k range is split over
// 256/(rows·rank) threads whose partial fma chains are added to the running sum in a fixed order:
// deterministic for a given M, but a different fp32 summation order than the CPU (covered by
// lowbit.h's error bound), and for a small rank a token's D may differ in the last bits between a
// batch of M < 8 tokens and a larger one.
//
// nvfp4 and w8a8 need the row's abs-max before any code: a first pass over the row computes it
// (X is read twice for these two schemes).
#include "gpu_codecs.h"
#include "gpu_kernels.h"

namespace svdq_gpu {
namespace {

constexpr int RB = kQuantRows;
constexpr int KC = kQuantChunk;
constexpr int NT = kQuantThreads;

__device__ __forceinline__ float xhat_at(const LayerView& L, const float* X, int64_t M, int64_t m, int64_t kk) {
  if (m >= M || kk >= L.k) return 0.0f;
  const float x = X[m * L.k + kk];
  return L.has_smooth ? div_rn(x, L.smooth[kk]) : x;
}

__global__ void __launch_bounds__(NT) quantize_act_kernel(LayerView L, const float* __restrict__ X, ActsView A,
                                                          int quant, int down) {
  __shared__ __align__(16) float xs[RB][KC];
  __shared__ float part[NT];
  __shared__ unsigned int row_max[RB];
  __shared__ float row_param[RB];  // nvfp4: G_x; w8a8: s_x
  SVDQ_DYNAMIC_SHARED(float, dacc);  // [RB][rank]

  const int tid = threadIdx.x;
  const int64_t M = A.m;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * RB;
  const int64_t R = L.rank;
  const bool do_down = down && R > 0;
  const int scheme = L.scheme;

  if (do_down)
    for (int64_t p = tid; p < RB * R; p += NT) dacc[p] = 0.0f;
  if (tid < RB) {
    row_max[tid] = 0u;
    row_param[tid] = 1.0f;
  }
  __syncthreads();

  // Row abs-max (nvfp4: over finite values only; w8a8: NaN/Inf make the bits >= Inf).
  if (quant && (scheme == kNvfp4 || scheme == kW8A8)) {
    for (int i = 0; i < RB; ++i) {
      unsigned int mx = 0u;
      for (int64_t kk = tid; kk < L.k; kk += NT) {
        const unsigned int a = bits_of(xhat_at(L, X, M, m0 + i, kk)) & 0x7FFFFFFFu;
        if (scheme == kW8A8 || a < kInfBits) mx = a > mx ? a : mx;
      }
      atomicMax(&row_max[i], mx);
    }
    __syncthreads();
    if (tid < RB && m0 + tid < M) {
      const int64_t m = m0 + tid;
      const float amax = float_of(row_max[tid]);
      if (scheme == kNvfp4) {
        const float gx = nvfp4_global_scale(amax);
        row_param[tid] = gx;
        A.row_scale[m] = static_cast<float>(1.0 / (4.0 * static_cast<double>(gx) * static_cast<double>(L.w_global_scale)));
      } else {
        const float s = row_max[tid] >= kInfBits ? float_of(kNanBits) : div_rn(amax, 127.0f);
        row_param[tid] = s;
        A.scale[m] = s;  // group 0
      }
    }
    __syncthreads();
  }

  const int gs = L.group;
  const int lanes = gs / 4;  // threads per group in the quantizer (4 elements each)
  // (row, r) pairs of the rows this block really has: a block with fewer than 8 tokens (M < 8, or
  // the last block) splits each chunk over more threads, so a single token's D does not run one
  // K-long chain per thread.
  const int rows = static_cast<int>(M - m0 < RB ? M - m0 : RB);
  const int pairs = static_cast<int>(rows * R);
  const int split = (do_down && pairs < NT) ? NT / pairs : 1;

  for (int64_t c0 = 0; c0 < L.kp; c0 += KC) {
    for (int e = tid; e < RB * KC; e += NT) xs[e / KC][e % KC] = xhat_at(L, X, M, m0 + e / KC, c0 + e % KC);
    __syncthreads();

    if (quant && scheme == kW4A16) {
      for (int e = tid; e < RB * KC; e += NT) {
        const int64_t m = m0 + e / KC, kk = c0 + e % KC;
        if (m < M && kk < L.kp) A.xhat[m * L.kp + kk] = xs[e / KC][e % KC];
      }
    } else if (quant) {
      for (int it = 0; it < RB * KC / (NT * 4); ++it) {
        const int e = it * NT * 4 + tid * 4;
        const int i = e / KC, cc = e % KC;
        const int64_t m = m0 + i, kk = c0 + cc;
        float v[4];
        unsigned int mx = 0u;
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
          v[j] = xs[i][cc + j];
          const unsigned int a = bits_of(v[j]) & 0x7FFFFFFFu;
          mx = a > mx ? a : mx;
        }
        if (scheme != kW8A8)
          for (int w = 1; w < lanes; w <<= 1) {
            const unsigned int o = gpu_shfl_xor(mx, w, lanes);
            mx = o > mx ? o : mx;
          }
        const bool nonfinite = mx >= kInfBits;
        const float amax = float_of(mx);
        int32_t q[4] = {0, 0, 0, 0};
        float stored = 0.0f;
        if (scheme == kW4A4) {
          const float s = nonfinite ? float_of(kNanBits) : div_rn(amax, 7.0f);
          stored = s;
          if (!nonfinite && s != 0.0f)
            #pragma unroll
            for (int j = 0; j < 4; ++j) q[j] = int_round_clamp(div_rn(v[j], s), -8.0f, 7.0f);
        } else if (scheme == kMxfp4) {
          const uint32_t b = nonfinite ? kE8M0Nan : e8m0_scale_for_amax(amax, L.act_rule);
          stored = nonfinite ? float_of(kNanBits) : static_cast<float>(static_cast<int>(b) - 256);
          if (!nonfinite) {
            const float inv = e8m0_reciprocal(b);
            #pragma unroll
            for (int j = 0; j < 4; ++j) q[j] = static_cast<int32_t>(e2m1_encode(mul_rn(v[j], inv)));
          }
        } else if (scheme == kNvfp4) {
          const float gx = row_param[i];
          const uint32_t b = nonfinite ? kE4M3Nan : e4m3_encode(div_rn(mul_rn(gx, amax), 6.0f));
          stored = e4m3_decode(b);
          if (!nonfinite && b != 0) {
            const float d = div_rn(e4m3_decode(b), gx);
            #pragma unroll
            for (int j = 0; j < 4; ++j) q[j] = static_cast<int32_t>(e2m1_encode(div_rn(v[j], d)));
          }
        } else {  // w8a8: the row scale from the first pass
          const float s = row_param[i];
          if (s == s && s != 0.0f)
            #pragma unroll
            for (int j = 0; j < 4; ++j) q[j] = int_round_clamp(div_rn(v[j], s), -128.0f, 127.0f);
        }
        if (m < M && kk < L.kp) {
          if (scheme == kW8A8) {
            const uint32_t word = (static_cast<uint32_t>(q[0]) & 0xFFu) | ((static_cast<uint32_t>(q[1]) & 0xFFu) << 8) |
                                  ((static_cast<uint32_t>(q[2]) & 0xFFu) << 16) | (static_cast<uint32_t>(q[3]) << 24);
            *reinterpret_cast<uint32_t*>(A.codes + m * L.kp + kk) = word;
          } else {  // four 4-bit codes (INT4 nibbles, E2M1 codes) in two bytes, as the weights are packed
            const uint32_t half = (static_cast<uint32_t>(q[0]) & 0xFu) | ((static_cast<uint32_t>(q[1]) & 0xFu) << 4) |
                                  ((static_cast<uint32_t>(q[2]) & 0xFu) << 8) | ((static_cast<uint32_t>(q[3]) & 0xFu) << 12);
            *reinterpret_cast<uint16_t*>(A.codes + m * (L.kp / 2) + kk / 2) = static_cast<uint16_t>(half);
            if ((cc % gs) == 0) A.scale[(kk / gs) * A.mp + m] = stored;
          }
        }
      }
    }

    if (do_down) {
      const int64_t kend = (L.k - c0) < KC ? (L.k - c0) : KC;  // chain over k < K only
      if (split == 1) {
        for (int p = tid; p < pairs; p += NT) {
          const int i = p / static_cast<int>(R), j = p % static_cast<int>(R);
          float acc = dacc[p];
          const float* ld = L.l_down_t + c0 * R + j;
          for (int cc = 0; cc < kend; ++cc) acc = fma_rn(xs[i][cc], ld[cc * R], acc);
          dacc[p] = acc;
        }
      } else {
        const int p = tid / split, seg = tid % split;
        float acc = 0.0f;
        if (p < pairs) {
          const int i = p / static_cast<int>(R), j = p % static_cast<int>(R);
          const int lo = seg * KC / split, hi = (seg + 1) * KC / split;
          const float* ld = L.l_down_t + c0 * R + j;
          for (int cc = lo; cc < hi && cc < kend; ++cc) acc = fma_rn(xs[i][cc], ld[cc * R], acc);
        }
        part[tid] = acc;
        __syncthreads();
        if (p < pairs && seg == 0) {
          float s = dacc[p];
          for (int q = 0; q < split; ++q) s = add_rn(s, part[tid + q]);
          dacc[p] = s;
        }
      }
    }
    __syncthreads();
  }

  if (do_down)
    for (int p = tid; p < pairs; p += NT) {
      const int64_t m = m0 + p / R;
      if (m < M) A.down[m * R + p % R] = dacc[p];
    }
}

}  // namespace

gpuError_t launch_quantize_act(const LayerView& L, const float* X, const ActsView& A, bool quant, bool down,
                               gpuStream_t stream) {
  if (A.m <= 0) return gpuSuccess;
  const bool do_down = down && L.rank > 0;
  const size_t smem = do_down ? static_cast<size_t>(kQuantRows * L.rank) * sizeof(float) : 0;
  const unsigned int blocks = static_cast<unsigned int>((A.m + kQuantRows - 1) / kQuantRows);
  SVDQ_LAUNCH(blocks, kQuantThreads, smem, stream, quantize_act_kernel)(L, X, A, quant ? 1 : 0, do_down ? 1 : 0);
  return gpuGetLastError();
}

}  // namespace svdq_gpu
