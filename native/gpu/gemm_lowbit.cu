// gemm_lowbit (DESIGN.md §5 step 2) on the GPU: Y = Q_a ⊗ Q_w with the low-rank up-projection and
// the bias in the epilogue; each output tile is written once.
//
// Work split: one block per 64×64 output tile (blockIdx.x: column tile, blockIdx.y: token tile),
// K in chunks of 64. Per chunk the block stages the activation codes (int8, from quantize_act) and
// the weight codes (4-bit, expanded to int8 in shared memory: INT4 sign-extended, E2M1 as 2·value)
// and the chunk's group scales. For each group the int32 block sums I are formed exactly:
//   path 0 (portable): 4-way int8 dot products (dp4a on NVIDIA sm_61+, plain int math elsewhere);
//   path 1 (matrix cores), chosen per device pass at compile time:
//     NVIDIA sm_80+:      mma.sync.aligned.m16n8k32 (group 16: m16n8k16) .row.col.s32.s8.s8.s32,
//                         4 warps, each a 32×32 sub-tile (2×4 MMA tiles);
//     AMD gfx908/gfx90a:  v_mfma_i32_16x16x16i8, 4 wavefronts of 64, each 32×32 (2×2 MFMA tiles);
//     AMD gfx940/941/942: v_mfma_i32_16x16x32_i8 (group 16: one instruction with the upper k half
//                         zeroed);
//     any other target:   the portable dot products.
// and folded into the fp32 accumulator in group order with lowbit.h's operations, each rounded once:
//   w4a4, w8a8, nvfp4: acc = fma(fl(float(I)·s_w), s_x, acc);  mxfp4: acc = acc + fl(I·2^(e_x+e_w−256)).
// The epilogue multiplies nvfp4's α_m, adds U = D·L_upᵀ (one fma chain in r order per output) and the
// bias: Y = (acc·α + U) + b. These are the CPU engine's operations in the CPU's order, so for the
// GEMM part the GPU reproduces the CPU bit for bit; see quantize_act.cu for D.
//
// w4a16 has its own kernel: X̂ in fp32 times the INT4 weights, P = one fma chain per group in k
// order, acc = fma(P, s_w, acc).
#include "gpu_codecs.h"
#include "gpu_kernels.h"
#include "gpu_matrix.h"

namespace svdq_gpu {
namespace {

constexpr int BM = kTileM;
constexpr int BN = kTileN;
constexpr int KC = kChunkK;
constexpr int LDS = KC + 16;  // bytes per shared row: 80 = 20 words, conflict-free fragment loads
constexpr int LDW = LDS / 4;
constexpr int NT = SVDQ_BLOCK;
constexpr int NACC = BM * BN / NT;  // outputs per thread
constexpr int RS = NT / 16;         // portable path: row stride between a thread's rows
constexpr int RPT = BM / RS;        // portable path: rows per thread

template <int S>
struct Traits {
  static constexpr int group = S == kMxfp4 ? 32 : (S == kNvfp4 ? 16 : 64);
  static constexpr int gpc = S == kW8A8 ? 1 : KC / group;  // groups per K chunk
};

// Tile row / column of accumulator element e of thread `tid` (MODE: 0 portable, 1 mma.sync,
// 2/3 MFMA).
template <int MODE>
__device__ __forceinline__ void elem_rc(int e, int tid, int& r, int& c) {
  if constexpr (MODE == 1) {
    const int w = tid >> 5, lane = tid & 31;
    const int mi = e >> 4, ni = (e >> 2) & 3, v = e & 3;
    r = (w >> 1) * 32 + mi * 16 + (lane >> 2) + (v >> 1) * 8;
    c = (w & 1) * 32 + ni * 8 + (lane & 3) * 2 + (v & 1);
  } else if constexpr (MODE >= 2) {
    const int w = tid >> 6, lane = tid & 63;
    const int mi = e >> 3, ni = (e >> 2) & 1, v = e & 3;
    r = (w >> 1) * 32 + mi * 16 + (lane >> 4) * 4 + v;
    c = (w & 1) * 32 + ni * 16 + (lane & 15);
  } else {
    r = tid / 16 + (e >> 2) * RS;
    c = tid % 16 + 16 * (e & 3);
  }
}

// I += Σ_{k in [kb, kb+GS)} A[r][k]·B[c][k] for the thread's accumulator elements.
template <int MODE, int GS>
__device__ __forceinline__ void group_products(const int8_t* As, const int8_t* Bs, int kb, int tid, int32_t* I) {
  const uint32_t* A32 = reinterpret_cast<const uint32_t*>(As);
  const uint32_t* B32 = reinterpret_cast<const uint32_t*>(Bs);
  if constexpr (MODE == 0) {
    const int tm = tid / 16, tn = tid % 16;
#pragma unroll 4
    for (int kw = kb / 4; kw < (kb + GS) / 4; ++kw) {
      uint32_t a[RPT], b[4];
#pragma unroll
      for (int i = 0; i < RPT; ++i) a[i] = A32[(tm + i * RS) * LDW + kw];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = B32[(tn + 16 * j) * LDW + kw];
#pragma unroll
      for (int i = 0; i < RPT; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) I[i * 4 + j] = gpu_dot4_s8(a[i], b[j], I[i * 4 + j]);
    }
  }
#if SVDQ_DEVICE_MMA == 1
  if constexpr (MODE == 1) {
    const int w = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int wm = w >> 1, wn = w & 1;
    constexpr int STEP = GS == 16 ? 16 : 32;
#pragma unroll
    for (int ks = kb; ks < kb + GS; ks += STEP) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r0 = wm * 32 + mi * 16 + g;
        a[mi][0] = A32[r0 * LDW + ks / 4 + t4];
        a[mi][1] = A32[(r0 + 8) * LDW + ks / 4 + t4];
        if constexpr (STEP == 32) {
          a[mi][2] = A32[r0 * LDW + ks / 4 + 4 + t4];
          a[mi][3] = A32[(r0 + 8) * LDW + ks / 4 + 4 + t4];
        }
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int col = wn * 32 + ni * 8 + g;
        b[ni][0] = B32[col * LDW + ks / 4 + t4];
        if constexpr (STEP == 32) b[ni][1] = B32[col * LDW + ks / 4 + 4 + t4];
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          if constexpr (STEP == 32)
            gpu_mma_m16n8k32_s8(I + (mi * 4 + ni) * 4, a[mi], b[ni]);
          else
            gpu_mma_m16n8k16_s8(I + (mi * 4 + ni) * 4, a[mi], b[ni]);
        }
    }
  }
#endif
#if SVDQ_DEVICE_MMA == 2
  if constexpr (MODE == 2) {
    const int w = tid >> 6, lane = tid & 63;
    const int wm = w >> 1, wn = w & 1;
#pragma unroll
    for (int ks = kb; ks < kb + GS; ks += 16) {
      int a[2], b[2];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) a[mi] = static_cast<int>(A32[(wm * 32 + mi * 16 + (lane & 15)) * LDW + ks / 4 + (lane >> 4)]);
#pragma unroll
      for (int ni = 0; ni < 2; ++ni) b[ni] = static_cast<int>(B32[(wn * 32 + ni * 16 + (lane & 15)) * LDW + ks / 4 + (lane >> 4)]);
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 2; ++ni) {
          int32_t* c = I + (mi * 2 + ni) * 4;
          v4i32 acc = {c[0], c[1], c[2], c[3]};
          acc = gpu_mfma_i32_16x16x16_i8(a[mi], b[ni], acc);
          c[0] = acc[0]; c[1] = acc[1]; c[2] = acc[2]; c[3] = acc[3];
        }
    }
  }
#endif
#if SVDQ_DEVICE_MMA == 3
  if constexpr (MODE == 3) {
    const int w = tid >> 6, lane = tid & 63;
    const int wm = w >> 1, wn = w & 1;
    const bool live = GS != 16 || (lane >> 4) < 2;  // group 16: only the lower k half of the k32 step
#pragma unroll
    for (int ks = kb; ks < kb + GS; ks += 32) {
      long a[2], b[2];
      const int ko = ks + (lane >> 4) * 8;
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
        a[mi] = live ? *reinterpret_cast<const long*>(As + (wm * 32 + mi * 16 + (lane & 15)) * LDS + ko) : 0;
#pragma unroll
      for (int ni = 0; ni < 2; ++ni)
        b[ni] = live ? *reinterpret_cast<const long*>(Bs + (wn * 32 + ni * 16 + (lane & 15)) * LDS + ko) : 0;
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 2; ++ni) {
          int32_t* c = I + (mi * 2 + ni) * 4;
          v4i32 acc = {c[0], c[1], c[2], c[3]};
          acc = gpu_mfma_i32_16x16x32_i8(a[mi], b[ni], acc);
          c[0] = acc[0]; c[1] = acc[1]; c[2] = acc[2]; c[3] = acc[3];
        }
    }
  }
#endif
  (void)A32;
  (void)B32;
}

// 16 packed 4-bit codes (32 elements) → 32 int8 GEMM operands, as 8 little-endian words.
template <bool FP4>
__device__ __forceinline__ void expand16(const uint4& v, uint32_t* out) {
  const uint32_t in[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int wd = 0; wd < 8; ++wd) {
    const uint32_t half = in[wd >> 1] >> ((wd & 1) * 16);  // two bytes: elements 4wd .. 4wd+3
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t nib = (half >> (4 * j)) & 0xFu;
      const int32_t q = FP4 ? e2m1x2_of_code(nib) : int4_of_nibble(nib);
      word |= (static_cast<uint32_t>(q) & 0xFFu) << (8 * j);
    }
    out[wd] = word;
  }
}

// acc·α (nvfp4), + D·L_upᵀ, + b; stores the tile's outputs once.
template <int MODE>
__device__ __forceinline__ void epilogue_store(const LayerView& L, const ActsView& A, float* Y, bool epilogue,
                                               float* acc, int64_t m0, int64_t n0, int tid, float (*Ds)[33],
                                               float (*Us)[33]) {
  const int64_t M = A.m, N = L.n, R = L.rank;
  if (L.scheme == kNvfp4)
    #pragma unroll
    for (int e = 0; e < NACC; ++e) {
      int r, c;
      elem_rc<MODE>(e, tid, r, c);
      acc[e] = mul_rn(acc[e], m0 + r < M ? A.row_scale[m0 + r] : 0.0f);
    }
  if (epilogue && R > 0) {
    float u[NACC];
    #pragma unroll
    for (int e = 0; e < NACC; ++e) u[e] = 0.0f;
    for (int64_t rc = 0; rc < R; rc += 32) {
      __syncthreads();
      for (int idx = tid; idx < BM * 32; idx += NT) {
        const int r = idx / 32, q = idx % 32;
        Ds[r][q] = (m0 + r < M && rc + q < R) ? A.down[(m0 + r) * R + rc + q] : 0.0f;
      }
      for (int idx = tid; idx < BN * 32; idx += NT) {
        const int c = idx / 32, q = idx % 32;
        Us[c][q] = rc + q < R ? L.l_up[(n0 + c) * R + rc + q] : 0.0f;
      }
      __syncthreads();
      const int qn = R - rc < 32 ? static_cast<int>(R - rc) : 32;
#pragma unroll
      for (int e = 0; e < NACC; ++e) {
        int r, c;
        elem_rc<MODE>(e, tid, r, c);
        float s = u[e];
        for (int q = 0; q < qn; ++q) s = fma_rn(Ds[r][q], Us[c][q], s);
        u[e] = s;
      }
    }
    #pragma unroll
    for (int e = 0; e < NACC; ++e) acc[e] = add_rn(acc[e], u[e]);
  }
  #pragma unroll
  for (int e = 0; e < NACC; ++e) {
    int r, c;
    elem_rc<MODE>(e, tid, r, c);
    const int64_t m = m0 + r, n = n0 + c;
    if (m < M && n < N) {
      float y = acc[e];
      if (epilogue && L.has_bias) y = add_rn(y, L.bias[n]);
      Y[m * N + n] = y;
    }
  }
}

template <int S, int PATH>
__global__ void __launch_bounds__(NT) gemm_kernel(LayerView L, ActsView A, float* __restrict__ Y, int epilogue,
                                                  int32_t* __restrict__ dbg) {
#if defined(SVDQ_DEVICE_PASS)
  constexpr int MODE = PATH == 0 ? 0 : SVDQ_DEVICE_MMA;
#else
  constexpr int MODE = 0;
#endif
  using T = Traits<S>;
  constexpr int GS = S == kW8A8 ? KC : T::group;  // k extent of one products call
  __shared__ __align__(16) int8_t As[BM * LDS];
  __shared__ __align__(16) int8_t Bs[BN * LDS];
  __shared__ float sa[T::gpc][BM];
  __shared__ float sb[T::gpc][BN];
  __shared__ float Ds[BM][33];
  __shared__ float Us[BN][33];

  const int tid = threadIdx.x;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t M = A.m, N = L.n;
  const int64_t chunks = L.kp / KC;
  constexpr int tile_bytes = S == kW8A8 ? BN * KC : BN * KC / 2;
  const uint8_t* wt = L.w + static_cast<int64_t>(blockIdx.x) * chunks * tile_bytes;

  int32_t I[NACC];
  float acc[NACC];
#pragma unroll
  for (int e = 0; e < NACC; ++e) {
    I[e] = 0;
    acc[e] = 0.0f;
  }

  for (int64_t ch = 0; ch < chunks; ++ch) {
    __syncthreads();
    for (int idx = tid; idx < BM * KC / 16; idx += NT) {
      const int r = idx / (KC / 16), q = idx % (KC / 16);
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (m0 + r < M) v = *reinterpret_cast<const uint4*>(A.codes + (m0 + r) * L.kp + ch * KC + q * 16);
      *reinterpret_cast<uint4*>(As + r * LDS + q * 16) = v;
    }
    if constexpr (S == kW8A8) {
      for (int idx = tid; idx < BN * KC / 16; idx += NT) {
        const int c = idx / (KC / 16), q = idx % (KC / 16);
        *reinterpret_cast<uint4*>(Bs + c * LDS + q * 16) =
            *reinterpret_cast<const uint4*>(wt + ch * tile_bytes + idx * 16);
      }
    } else {
      for (int idx = tid; idx < BN * KC / 32; idx += NT) {
        const int c = idx / 2, h = idx % 2;
        const uint4 v = *reinterpret_cast<const uint4*>(wt + ch * tile_bytes + idx * 16);
        uint32_t words[8];
        expand16<S == kMxfp4 || S == kNvfp4>(v, words);
        uint4* dst = reinterpret_cast<uint4*>(Bs + c * LDS + h * 32);
        dst[0] = make_uint4(words[0], words[1], words[2], words[3]);
        dst[1] = make_uint4(words[4], words[5], words[6], words[7]);
      }
      for (int idx = tid; idx < T::gpc * BM; idx += NT) {
        const int gi = idx / BM, r = idx % BM;
        sa[gi][r] = m0 + r < M ? A.scale[(ch * T::gpc + gi) * A.mp + m0 + r] : 0.0f;
      }
      for (int idx = tid; idx < T::gpc * BN; idx += NT) {
        const int gi = idx / BN, c = idx % BN;
        const int64_t at = (ch * T::gpc + gi) * L.np + n0 + c;
        float s;
        if constexpr (S == kMxfp4)
          s = static_cast<float>(static_cast<const uint8_t*>(L.w_scale)[at]);
        else if constexpr (S == kNvfp4)
          s = e4m3_decode(static_cast<const uint8_t*>(L.w_scale)[at]);
        else
          s = static_cast<const float*>(L.w_scale)[at];
        sb[gi][c] = s;
      }
    }
    __syncthreads();

#pragma unroll
    for (int gi = 0; gi < T::gpc; ++gi) {
      if constexpr (S != kW8A8) {
#pragma unroll
        for (int e = 0; e < NACC; ++e) I[e] = 0;
      }
      group_products<MODE, GS>(As, Bs, gi * GS, tid, I);
      if constexpr (S != kW8A8) {
        const int64_t g = ch * T::gpc + gi;
        if (g < L.groups) {
#pragma unroll
          for (int e = 0; e < NACC; ++e) {
            int r, c;
            elem_rc<MODE>(e, tid, r, c);
            if (dbg != nullptr && m0 + r < M && n0 + c < N) dbg[((m0 + r) * N + n0 + c) * L.groups + g] = I[e];
            const float sx = sa[gi][r], sw = sb[gi][c];
            if constexpr (S == kMxfp4) {
              acc[e] = add_rn(acc[e], scale_pow2(I[e], add_rn(sx, sw)));
            } else {
              acc[e] = fma_rn(mul_rn(static_cast<float>(I[e]), sw), sx, acc[e]);
            }
          }
        }
      }
    }
  }

  if constexpr (S == kW8A8) {
#pragma unroll
    for (int e = 0; e < NACC; ++e) {
      int r, c;
      elem_rc<MODE>(e, tid, r, c);
      if (dbg != nullptr && m0 + r < M && n0 + c < N) dbg[(m0 + r) * N + n0 + c] = I[e];
      const float sx = m0 + r < M ? A.scale[m0 + r] : 0.0f;
      const float sw = static_cast<const float*>(L.w_scale)[n0 + c];
      acc[e] = fma_rn(mul_rn(static_cast<float>(I[e]), sw), sx, acc[e]);
    }
  }

  epilogue_store<MODE>(L, A, Y, epilogue != 0, acc, m0, n0, tid, Ds, Us);
}

// w4a16: X̂ (fp32) × INT4 weights; group 64 = one K chunk.
__global__ void __launch_bounds__(NT) gemm_w4a16_kernel(LayerView L, ActsView A, float* __restrict__ Y,
                                                        int epilogue) {
  __shared__ float Xs[BM][KC + 1];
  __shared__ float Ws[BN][KC + 1];
  __shared__ float sw[BN];
  const int tid = threadIdx.x;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t M = A.m;
  const int64_t chunks = L.kp / KC;
  const uint8_t* wt = L.w + static_cast<int64_t>(blockIdx.x) * chunks * (BN * KC / 2);
  float acc[NACC];
  #pragma unroll
  for (int e = 0; e < NACC; ++e) acc[e] = 0.0f;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    __syncthreads();
    for (int idx = tid; idx < BM * KC; idx += NT) {
      const int r = idx / KC, q = idx % KC;
      Xs[r][q] = m0 + r < M ? A.xhat[(m0 + r) * L.kp + ch * KC + q] : 0.0f;
    }
    for (int idx = tid; idx < BN * KC / 2; idx += NT) {
      const int c = idx / (KC / 2), b = idx % (KC / 2);
      const uint32_t byte = wt[ch * (BN * KC / 2) + idx];
      Ws[c][2 * b] = static_cast<float>(int4_of_nibble(byte & 0xFu));
      Ws[c][2 * b + 1] = static_cast<float>(int4_of_nibble(byte >> 4));
    }
    for (int c = tid; c < BN; c += NT) sw[c] = static_cast<const float*>(L.w_scale)[ch * L.np + n0 + c];
    __syncthreads();
    if (ch < L.groups) {
#pragma unroll
      for (int e = 0; e < NACC; ++e) {
        int r, c;
        elem_rc<0>(e, tid, r, c);
        float p = 0.0f;
        for (int q = 0; q < KC; ++q) p = fma_rn(Xs[r][q], Ws[c][q], p);
        acc[e] = fma_rn(p, sw[c], acc[e]);
      }
    }
  }
  // The epilogue's staging reuses the operand tiles (64·33 <= 64·65 floats).
  epilogue_store<0>(L, A, Y, epilogue != 0, acc, m0, n0, tid, reinterpret_cast<float(*)[33]>(&Xs[0][0]),
                    reinterpret_cast<float(*)[33]>(&Ws[0][0]));
}

template <int S>
gpuError_t launch_scheme(const LayerView& L, const ActsView& A, float* Y, bool epilogue, int32_t* dbg, int path,
                         gpuStream_t stream) {
  const dim3 grid(static_cast<unsigned int>(L.np / BN), static_cast<unsigned int>((A.m + BM - 1) / BM));
  if (path == kPathDot)
    SVDQ_LAUNCH(grid, NT, 0, stream, gemm_kernel<S, 0>)(L, A, Y, epilogue ? 1 : 0, dbg);
  else
    SVDQ_LAUNCH(grid, NT, 0, stream, gemm_kernel<S, 1>)(L, A, Y, epilogue ? 1 : 0, dbg);
  return gpuGetLastError();
}

}  // namespace

gpuError_t launch_gemm(const LayerView& L, const ActsView& A, float* Y, bool epilogue, int32_t* debug_sums, int path,
                       gpuStream_t stream) {
  if (A.m <= 0) return gpuSuccess;
  if ((A.m + BM - 1) / BM > 65535) return gpuErrorInvalidValue;
  switch (L.scheme) {
    case kW4A4: return launch_scheme<kW4A4>(L, A, Y, epilogue, debug_sums, path, stream);
    case kMxfp4: return launch_scheme<kMxfp4>(L, A, Y, epilogue, debug_sums, path, stream);
    case kNvfp4: return launch_scheme<kNvfp4>(L, A, Y, epilogue, debug_sums, path, stream);
    case kW8A8: return launch_scheme<kW8A8>(L, A, Y, epilogue, debug_sums, path, stream);
    case kW4A16: {
      const dim3 grid(static_cast<unsigned int>(L.np / BN), static_cast<unsigned int>((A.m + BM - 1) / BM));
      SVDQ_LAUNCH(grid, NT, 0, stream, gemm_w4a16_kernel)(L, A, Y, epilogue ? 1 : 0);
      return gpuGetLastError();
    }
  }
  return gpuErrorInvalidValue;
}

}  // namespace svdq_gpu
