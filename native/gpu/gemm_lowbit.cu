// gemm_lowbit (DESIGN.md §5 step 2) on the GPU: Y = Q_a ⊗ Q_w with the low-rank up-projection and
// the bias in the epilogue; each output tile is written once.
//
// Work split: one block of 256 threads per 128×128 output tile (blockIdx.x: column block,
// blockIdx.y: token block), K in chunks of 64. Per chunk:
//   1. stage: the packed 4-bit activation codes (from quantize_act) and weight codes, and the
//      chunk's group scales, copied global → shared with 16-byte asynchronous copies (cp.async on
//      sm_80+, a plain copy elsewhere) into a ring of 2-3 stages, issued STAGES−1 chunks ahead;
//      w8a8 stages its int8 codes straight into padded rows;
//   2. expand (4-bit schemes): each thread unpacks 32 codes of A and 32 of B into int8 rows
//      (gpu_unpack.h: INT4 sign-extended, E2M1 as 2·value), once per block and chunk;
//   3. products: per group the int32 block sums I exactly, on the device pass's matrix instruction:
//        MODE 0 portable: 4-way int8 dot products (dp4a on NVIDIA sm_61+); 8×8 outputs per thread;
//        MODE 1 NVIDIA sm_80+: ldmatrix.x4 fragments, mma.sync m16n8k32 (group 16: m16n8k16); 8
//               warps of 64×32;
//        MODE 2 AMD gfx908/90a: v_mfma_i32_16x16x16i8; 4 wavefronts of 64×64;
//        MODE 3 AMD gfx94x: v_mfma_i32_16x16x32_i8 (groups of 32 and 64);
//        MODE 4 AMD gfx94x, nvfp4 (group 16): v_mfma_i32_32x32x16_i8, one instruction per group at
//               the full MFMA rate (the 16x16x32 form would waste half of each instruction);
//   4. fold: the thread's group scales (its rows' s_x, its columns' s_w) are read into registers
//      once per group and each sum is folded into the fp32 accumulator in group order with
//      lowbit.h's operations, each rounded once:
//        w4a4, w8a8, nvfp4: acc = fma(fl(float(I)·s_w), s_x, acc);  mxfp4: acc = acc + fl(I·2^(e_x+e_w−256)).
// The epilogue multiplies nvfp4's α_m, adds U = D·L_upᵀ (one fma chain in r order per output, D and
// L_up staged in shared memory and read into registers per r) and the bias: Y = (acc·α + U) + b.
// These are the CPU engine's operations in the CPU's order, so the GPU reproduces the CPU bit for bit
// (quantize_act.cu says where D's sums may differ).
//
// w4a16 has its own kernel (64×64 tiles): X̂ in fp32 times the INT4 weights, P = one fma chain per
// group in k order, acc = fma(P, s_w, acc), k outermost so that no thread keeps more than its
// partial sums live.
#include "gpu_codecs.h"
#include "gpu_kernels.h"
#include "gpu_matrix.h"
#include "gpu_unpack.h"

namespace svdq_gpu {
namespace {

constexpr int BM = kTileM;    // 128
constexpr int BN = kBlockN;   // 128
constexpr int KC = kChunkK;   // 64
constexpr int NT = 256;       // threads per block: 8 warps (NVIDIA) or 4 wavefronts (AMD)
constexpr int LDS = KC + 16;  // bytes per int8 row in shared memory: 80, conflict-free fragment loads
constexpr int NACC = BM * BN / NT;
constexpr int EPI_LD = 33;    // epilogue staging row stride (floats)

template <int S>
struct Traits {
  static constexpr bool four_bit = S != kW8A8;
  static constexpr int group = S == kMxfp4 ? 32 : (S == kNvfp4 ? 16 : (S == kW8A8 ? KC : 64));
  static constexpr int gpc = S == kW8A8 ? 1 : KC / group;  // groups per K chunk
  // One stage of the ring: A and B codes, then (4-bit) the chunk's scales.
  static constexpr int a_bytes = four_bit ? BM * KC / 2 : BM * LDS;
  static constexpr int b_bytes = four_bit ? BN * KC / 2 : BN * LDS;
  static constexpr int sa_bytes = four_bit ? gpc * BM * 4 : 0;                      // fp32 s_x
  static constexpr int sb_bytes = four_bit ? gpc * BN * (S == kW4A4 ? 4 : 1) : 0;  // fp32 or E8M0/E4M3
  static constexpr int stage_bytes = a_bytes + b_bytes + sa_bytes + sb_bytes;
  // Within the 48 KiB a CUDA block may use without opting in (AMD: 64 KiB).
  static constexpr int stages = (S == kW4A4 || S == kMxfp4) ? 3 : 2;
  static constexpr int expand_bytes = four_bit ? (BM + BN) * LDS : 0;
  static constexpr int main_bytes = stages * stage_bytes + expand_bytes;
  static constexpr int epi_bytes = (BM + BN) * EPI_LD * 4;
  static constexpr int smem = main_bytes > epi_bytes ? main_bytes : epi_bytes;
};

// ---- accumulator layouts ---------------------------------------------------------------------------
// Element e of a thread's NACC accumulators sits at tile row slot_row(rs(e)), column slot_col(cs(e));
// a thread's distinct rows and columns ("slots") are few, so per group it reads NR + NC scales.
template <int MODE>
struct Layout;

template <>
struct Layout<0> {  // portable: rows tid/16 + 16i, columns tid%16 + 16j
  static constexpr int NR = 8, NC = 8;
  static __device__ __forceinline__ int rs(int e) { return e >> 3; }
  static __device__ __forceinline__ int cs(int e) { return e & 7; }
  static __device__ __forceinline__ int row(int i, int tid) { return (tid >> 4) + 16 * i; }
  static __device__ __forceinline__ int col(int j, int tid) { return (tid & 15) + 16 * j; }
};
#if SVDQ_DEVICE_MMA == 1
template <>
struct Layout<1> {  // mma.sync: warp w at rows 64·(w/4), columns 32·(w%4); e = (mi·4 + ni)·4 + v
  static constexpr int NR = 8, NC = 8;
  static __device__ __forceinline__ int rs(int e) { return ((e >> 4) << 1) | ((e >> 1) & 1); }
  static __device__ __forceinline__ int cs(int e) { return (((e >> 2) & 3) << 1) | (e & 1); }
  static __device__ __forceinline__ int row(int i, int tid) {
    const int w = tid >> 5, lane = tid & 31;
    return (w >> 2) * 64 + (i >> 1) * 16 + (lane >> 2) + 8 * (i & 1);
  }
  static __device__ __forceinline__ int col(int j, int tid) {
    const int w = tid >> 5, lane = tid & 31;
    return (w & 3) * 32 + (j >> 1) * 8 + 2 * (lane & 3) + (j & 1);
  }
};
#endif
#if SVDQ_DEVICE_MMA >= 2
template <>
struct Layout<2> {  // MFMA 16×16: wave w at rows 64·(w/2), columns 64·(w%2); e = (mi·4 + ni)·4 + v
  static constexpr int NR = 16, NC = 4;
  static __device__ __forceinline__ int rs(int e) { return ((e >> 4) << 2) | (e & 3); }
  static __device__ __forceinline__ int cs(int e) { return (e >> 2) & 3; }
  static __device__ __forceinline__ int row(int i, int tid) {
    const int w = tid >> 6, lane = tid & 63;
    return (w >> 1) * 64 + (i >> 2) * 16 + 4 * (lane >> 4) + (i & 3);
  }
  static __device__ __forceinline__ int col(int j, int tid) {
    const int w = tid >> 6, lane = tid & 63;
    return (w & 1) * 64 + j * 16 + (lane & 15);
  }
};
template <>
struct Layout<3> : Layout<2> {};
#endif
#if SVDQ_DEVICE_MMA == 3
template <>
struct Layout<4> {  // MFMA 32×32: wave tile 64×64 of 2×2 instructions; e = (mi·2 + ni)·16 + gpr
  static constexpr int NR = 32, NC = 2;
  static __device__ __forceinline__ int rs(int e) { return ((e >> 5) << 4) | (e & 15); }
  static __device__ __forceinline__ int cs(int e) { return (e >> 4) & 1; }
  static __device__ __forceinline__ int row(int i, int tid) {
    const int w = tid >> 6, lane = tid & 63, g = i & 15;
    return (w >> 1) * 64 + (i >> 4) * 32 + 8 * (g >> 2) + 4 * (lane >> 5) + (g & 3);
  }
  static __device__ __forceinline__ int col(int j, int tid) {
    const int w = tid >> 6, lane = tid & 63;
    return (w & 1) * 64 + j * 32 + (lane & 31);
  }
};
#endif

// The matrix mode of a device pass for scheme S and GEMM path PATH (0 portable, 1 matrix cores).
template <int S, int PATH>
#if defined(SVDQ_DEVICE_PASS)
constexpr int kGemmMode = PATH == 0 ? 0 : (SVDQ_DEVICE_MMA == 3 && S == kNvfp4 ? 4 : SVDQ_DEVICE_MMA);
#else
constexpr int kGemmMode = 0;
#endif

// ---- products: I += A·Bᵀ over k in [k0, k0 + KS) of the int8 rows in shared memory -------------------
// (KS: 16 for mma k16 / 16x16x16 / 32x32x16, 32 for mma k32 / 16x16x32, any multiple of 4 for dots.)
template <int MODE, int KS>
__device__ __forceinline__ void products(const int8_t* As, const int8_t* Bs, int k0, int tid, int32_t* I) {
  if constexpr (MODE == 0) {
    const uint32_t* A32 = reinterpret_cast<const uint32_t*>(As);
    const uint32_t* B32 = reinterpret_cast<const uint32_t*>(Bs);
    const int tr = tid >> 4, tc = tid & 15;
#pragma unroll
    for (int kw = k0 / 4; kw < (k0 + KS) / 4; ++kw) {
      uint32_t a[8], b[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] = A32[(tr + 16 * i) * (LDS / 4) + kw];
#pragma unroll
      for (int j = 0; j < 8; ++j) b[j] = B32[(tc + 16 * j) * (LDS / 4) + kw];
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) I[i * 8 + j] = gpu_dot4_s8(a[i], b[j], I[i * 8 + j]);
    }
  }
#if SVDQ_DEVICE_MMA == 1
  if constexpr (MODE == 1) {
    const int w = tid >> 5, lane = tid & 31;
    const int r0 = (w >> 2) * 64, c0 = (w & 3) * 32;
    const int kq = k0 & ~31;  // the 32-wide step holding [k0, k0 + KS)
    uint32_t a[4][4], b[4][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)  // matrices: rows 0-7 / 8-15 × k 0-15 / 16-31
      gpu_ldmatrix_x4(a[mi], As + (r0 + mi * 16 + (lane & 15)) * LDS + kq + 16 * (lane >> 4));
#pragma unroll
    for (int np = 0; np < 2; ++np) {  // matrices: n-tile 2np, 2np+1 × k 0-15 / 16-31
      uint32_t d[4];
      gpu_ldmatrix_x4(d, Bs + (c0 + (2 * np + (lane >> 4)) * 8 + (lane & 7)) * LDS + kq + 16 * ((lane >> 3) & 1));
      b[2 * np][0] = d[0];
      b[2 * np][1] = d[1];
      b[2 * np + 1][0] = d[2];
      b[2 * np + 1][1] = d[3];
    }
    const int h = (k0 - kq) / 16;  // k16: which half of the step
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        if constexpr (KS == 32) {
          gpu_mma_m16n8k32_s8(I + (mi * 4 + ni) * 4, a[mi], b[ni]);
        } else {
          const uint32_t ah[2] = {a[mi][2 * h], a[mi][2 * h + 1]};
          gpu_mma_m16n8k16_s8(I + (mi * 4 + ni) * 4, ah, &b[ni][h]);
        }
      }
  }
#endif
#if SVDQ_DEVICE_MMA == 2
  if constexpr (MODE == 2) {
    const int w = tid >> 6, lane = tid & 63;
    const int r0 = (w >> 1) * 64, c0 = (w & 1) * 64;
    const int ko = k0 + 4 * (lane >> 4);
    int a[4], b[4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) a[mi] = *reinterpret_cast<const int*>(As + (r0 + mi * 16 + (lane & 15)) * LDS + ko);
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) b[ni] = *reinterpret_cast<const int*>(Bs + (c0 + ni * 16 + (lane & 15)) * LDS + ko);
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        int32_t* c = I + (mi * 4 + ni) * 4;
        v4i32 acc = {c[0], c[1], c[2], c[3]};
        acc = gpu_mfma_i32_16x16x16_i8(a[mi], b[ni], acc);
        c[0] = acc[0]; c[1] = acc[1]; c[2] = acc[2]; c[3] = acc[3];
      }
  }
#endif
#if SVDQ_DEVICE_MMA == 3
  if constexpr (MODE == 3) {
    const int w = tid >> 6, lane = tid & 63;
    const int r0 = (w >> 1) * 64, c0 = (w & 1) * 64;
    const int ko = k0 + 8 * (lane >> 4);
    long a[4], b[4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) a[mi] = *reinterpret_cast<const long*>(As + (r0 + mi * 16 + (lane & 15)) * LDS + ko);
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) b[ni] = *reinterpret_cast<const long*>(Bs + (c0 + ni * 16 + (lane & 15)) * LDS + ko);
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        int32_t* c = I + (mi * 4 + ni) * 4;
        v4i32 acc = {c[0], c[1], c[2], c[3]};
        acc = gpu_mfma_i32_16x16x32_i8(a[mi], b[ni], acc);
        c[0] = acc[0]; c[1] = acc[1]; c[2] = acc[2]; c[3] = acc[3];
      }
  }
  if constexpr (MODE == 4) {
    const int w = tid >> 6, lane = tid & 63;
    const int r0 = (w >> 1) * 64, c0 = (w & 1) * 64;
    const int ko = k0 + 8 * (lane >> 5);
    long a[2], b[2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) a[mi] = *reinterpret_cast<const long*>(As + (r0 + mi * 32 + (lane & 31)) * LDS + ko);
#pragma unroll
    for (int ni = 0; ni < 2; ++ni) b[ni] = *reinterpret_cast<const long*>(Bs + (c0 + ni * 32 + (lane & 31)) * LDS + ko);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 2; ++ni) {
        int32_t* c = I + (mi * 2 + ni) * 16;
        v16i32 acc;
#pragma unroll
        for (int i = 0; i < 16; ++i) acc[i] = c[i];
        acc = gpu_mfma_i32_32x32x16_i8(a[mi], b[ni], acc);
#pragma unroll
        for (int i = 0; i < 16; ++i) c[i] = acc[i];
      }
  }
#endif
  (void)As;
  (void)Bs;
  (void)k0;
  (void)tid;
  (void)I;
}

// ---- staging ----------------------------------------------------------------------------------------

// Issues the copies of chunk `ch` into stage buffer `st` (one 16-byte copy per thread and operand for
// the 4-bit schemes, two for w8a8). Rows past M are zero-filled.
template <int S>
__device__ __forceinline__ void load_stage(const LayerView& L, const ActsView& A, unsigned char* st, int64_t ch,
                                           int64_t m0, int64_t n0, int tid) {
  using T = Traits<S>;
  const int64_t chunks = L.kp / KC;
  unsigned char* sA = st;
  unsigned char* sB = st + T::a_bytes;
  if constexpr (T::four_bit) {
    {  // A: 128 rows × 32 bytes
      const int r = tid >> 1, h = tid & 1;
      const bool ok = m0 + r < A.m;
      const int8_t* src = A.codes + (ok ? (m0 + r) * (L.kp / 2) + ch * (KC / 2) + h * 16 : 0);
      gpu_cp_async16(sA + r * (KC / 2) + h * 16, src, ok);
    }
    {  // B: two format tiles of 64 columns × 32 bytes, contiguous 2 KiB blocks
      const int t = tid >> 7, q = tid & 127;
      const uint8_t* src = L.w + ((n0 / kTileN + t) * chunks + ch) * (kTileN * KC / 2) + q * 16;
      gpu_cp_async16(sB + t * (kTileN * KC / 2) + q * 16, src, true);
    }
    unsigned char* sa = sB + T::b_bytes;
    unsigned char* sb = sa + T::sa_bytes;
    if (tid < T::gpc * (BM / 4)) {  // s_x: [gpc][128] fp32 from A.scale [groups_pad][mp]
      const int gi = tid / (BM / 4), q = tid % (BM / 4);
      gpu_cp_async16(sa + (gi * BM + q * 4) * 4, A.scale + (ch * T::gpc + gi) * A.mp + m0 + q * 4, true);
    }
    constexpr int per_b = S == kW4A4 ? BN / 4 : BN / 16;  // 16-byte pieces per group of s_w
    if (tid >= 128 && tid < 128 + T::gpc * per_b) {
      const int gi = (tid - 128) / per_b, q = (tid - 128) % per_b;
      const int esz = S == kW4A4 ? 4 : 1;
      const unsigned char* src = static_cast<const unsigned char*>(L.w_scale) + ((ch * T::gpc + gi) * L.np + n0) * esz + q * 16;
      gpu_cp_async16(sb + gi * BN * esz + q * 16, src, true);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // A: 128 rows × 64 bytes into padded rows
      const int idx = tid + NT * i, r = idx >> 2, q = idx & 3;
      const bool ok = m0 + r < A.m;
      const int8_t* src = A.codes + (ok ? (m0 + r) * L.kp + ch * KC + q * 16 : 0);
      gpu_cp_async16(sA + r * LDS + q * 16, src, ok);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // B: two tiles × 64 columns × 64 bytes
      const int idx = tid + NT * i, t = idx >> 8, c = (idx >> 2) & 63, q = idx & 3;
      const uint8_t* src = L.w + ((n0 / kTileN + t) * chunks + ch) * (kTileN * KC) + c * KC + q * 16;
      gpu_cp_async16(sB + (t * kTileN + c) * LDS + q * 16, src, true);
    }
  }
}

// Unpacks the stage's 4-bit codes into int8 rows (each thread: 32 codes of A and 32 of B).
template <int S>
__device__ __forceinline__ void expand_stage(const unsigned char* st, int8_t* eA, int8_t* eB, int tid) {
  using T = Traits<S>;
  const int r = tid >> 1, h = tid & 1;
#pragma unroll
  for (int op = 0; op < 2; ++op) {
    const uint4 v = *reinterpret_cast<const uint4*>(st + (op == 0 ? 0 : T::a_bytes) + r * (KC / 2) + h * 16);
    const uint32_t in[4] = {v.x, v.y, v.z, v.w};
    uint32_t out[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = gpu_unpack4<S == kMxfp4 || S == kNvfp4>(in[i] & 0xFFFFu);
      out[2 * i + 1] = gpu_unpack4<S == kMxfp4 || S == kNvfp4>(in[i] >> 16);
    }
    uint4* dst = reinterpret_cast<uint4*>((op == 0 ? eA : eB) + r * LDS + h * 32);
    dst[0] = make_uint4(out[0], out[1], out[2], out[3]);
    dst[1] = make_uint4(out[4], out[5], out[6], out[7]);
  }
}

// acc += the group's sums scaled (lowbit.h's operations); the scales of the thread's rows and columns
// are read once into registers. Writes I to the debug array when asked.
template <int S, int MODE>
__device__ __forceinline__ void fold_group(const unsigned char* st, int gi, int64_t g, const LayerView& L,
                                           const ActsView& A, int64_t m0, int64_t n0, int tid, const int32_t* I,
                                           float* acc, int32_t* dbg) {
  using T = Traits<S>;
  using Lay = Layout<MODE>;
  const float* sa = reinterpret_cast<const float*>(st + T::a_bytes + T::b_bytes) + gi * BM;
  const unsigned char* sb = st + T::a_bytes + T::b_bytes + T::sa_bytes;
  float sx[Lay::NR], sw[Lay::NC];
#pragma unroll
  for (int i = 0; i < Lay::NR; ++i) sx[i] = sa[Lay::row(i, tid)];
#pragma unroll
  for (int j = 0; j < Lay::NC; ++j) {
    const int c = Lay::col(j, tid);
    if constexpr (S == kMxfp4)
      sw[j] = static_cast<float>(sb[gi * BN + c]);
    else if constexpr (S == kNvfp4)
      sw[j] = e4m3_decode(sb[gi * BN + c]);
    else
      sw[j] = reinterpret_cast<const float*>(sb)[gi * BN + c];
  }
  if constexpr (S == kMxfp4) {
    // fl(I·2^(s_x + s_w)) in two exact steps when every scale of the thread allows it: I·2^(s_x+127)
    // is exact while |I| < 2^14 and s_x + 127 in [−126, 100], and ·2^(s_w−127) (a normal power of two
    // for s_w >= 1) then rounds once; otherwise scale_pow2, which handles every exponent and NaN.
    bool fast = true;
    float pa[Lay::NR], pb[Lay::NC];
#pragma unroll
    for (int i = 0; i < Lay::NR; ++i) {
      const float a = sx[i] + 127.0f;
      fast = fast && a >= -126.0f && a <= 100.0f;  // false for NaN
      pa[i] = float_of(static_cast<uint32_t>(static_cast<int>(a >= -126.0f && a <= 100.0f ? a : 0.0f) + 127) << 23);
    }
#pragma unroll
    for (int j = 0; j < Lay::NC; ++j) {
      fast = fast && sw[j] >= 1.0f;
      pb[j] = float_of(static_cast<uint32_t>(static_cast<int>(sw[j] >= 1.0f ? sw[j] : 127.0f)) << 23);
    }
    if (fast) {
#pragma unroll
      for (int e = 0; e < NACC; ++e)
        acc[e] = add_rn(acc[e], mul_rn(mul_rn(static_cast<float>(I[e]), pa[Lay::rs(e)]), pb[Lay::cs(e)]));
    } else {
#pragma unroll
      for (int e = 0; e < NACC; ++e) acc[e] = add_rn(acc[e], scale_pow2(I[e], add_rn(sx[Lay::rs(e)], sw[Lay::cs(e)])));
    }
  } else {
#pragma unroll
    for (int e = 0; e < NACC; ++e)
      acc[e] = fma_rn(mul_rn(static_cast<float>(I[e]), sw[Lay::cs(e)]), sx[Lay::rs(e)], acc[e]);
  }
  if (dbg != nullptr) {
#pragma unroll
    for (int e = 0; e < NACC; ++e) {
      const int64_t m = m0 + Lay::row(Lay::rs(e), tid), n = n0 + Lay::col(Lay::cs(e), tid);
      if (m < A.m && n < L.n) dbg[(m * L.n + n) * L.groups + g] = I[e];
    }
  }
}

// acc·α (nvfp4), + D·L_upᵀ, + b; stores the tile's outputs once. `smem` holds (BM + BN)·EPI_LD floats.
template <int MODE, int TBM, int TBN, int NTH>
__device__ __forceinline__ void epilogue_store(const LayerView& L, const ActsView& A, float* Y, bool epilogue,
                                               float* acc, int64_t m0, int64_t n0, int tid, float* smem) {
  using Lay = Layout<MODE>;
  constexpr int NA = TBM * TBN / NTH;
  const int64_t M = A.m, N = L.n, R = L.rank;
  if (L.scheme == kNvfp4) {
    float alpha[Lay::NR];
#pragma unroll
    for (int i = 0; i < Lay::NR; ++i) {
      const int64_t m = m0 + Lay::row(i, tid);
      alpha[i] = m < M ? A.row_scale[m] : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < NA; ++e) acc[e] = mul_rn(acc[e], alpha[Lay::rs(e)]);
  }
  if (epilogue && R > 0) {
    float* Ds = smem;                  // [TBM][EPI_LD]
    float* Us = smem + TBM * EPI_LD;   // [TBN][EPI_LD]
    float u[NA];
#pragma unroll
    for (int e = 0; e < NA; ++e) u[e] = 0.0f;
    for (int64_t rc = 0; rc < R; rc += 32) {
      __syncthreads();
      for (int idx = tid; idx < TBM * 32; idx += NTH) {
        const int r = idx / 32, q = idx % 32;
        Ds[r * EPI_LD + q] = (m0 + r < M && rc + q < R) ? A.down[(m0 + r) * R + rc + q] : 0.0f;
      }
      for (int idx = tid; idx < TBN * 32; idx += NTH) {
        const int c = idx / 32, q = idx % 32;
        Us[c * EPI_LD + q] = rc + q < R ? L.l_up[(n0 + c) * R + rc + q] : 0.0f;
      }
      __syncthreads();
      const int qn = R - rc < 32 ? static_cast<int>(R - rc) : 32;
      for (int q = 0; q < qn; ++q) {
        float dv[Lay::NR], uv[Lay::NC];
#pragma unroll
        for (int i = 0; i < Lay::NR; ++i) dv[i] = Ds[Lay::row(i, tid) * EPI_LD + q];
#pragma unroll
        for (int j = 0; j < Lay::NC; ++j) uv[j] = Us[Lay::col(j, tid) * EPI_LD + q];
#pragma unroll
        for (int e = 0; e < NA; ++e) u[e] = fma_rn(dv[Lay::rs(e)], uv[Lay::cs(e)], u[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < NA; ++e) acc[e] = add_rn(acc[e], u[e]);
  }
#pragma unroll
  for (int e = 0; e < NA; ++e) {
    const int64_t m = m0 + Lay::row(Lay::rs(e), tid), n = n0 + Lay::col(Lay::cs(e), tid);
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
  constexpr int MODE = kGemmMode<S, PATH>;
  using T = Traits<S>;
  constexpr int GS = T::group;
  // The k extent of one products() call: a group, or the instruction's k when a group is wider.
  constexpr int KSTEP = MODE == 0 ? (GS < 32 ? GS : 32) : ((MODE == 1 || MODE == 3) && GS >= 32 ? 32 : 16);
  SVDQ_DYNAMIC_SHARED(unsigned char, smem);
  unsigned char* stages = smem;
  int8_t* eA = reinterpret_cast<int8_t*>(smem + T::stages * T::stage_bytes);
  int8_t* eB = eA + BM * LDS;

  const int tid = threadIdx.x;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t chunks = L.kp / KC;

  int32_t I[NACC];
  float acc[NACC];  // 4-bit schemes: the running sum; w8a8: set once after the loop (nothing live before)
#pragma unroll
  for (int e = 0; e < NACC; ++e) {
    I[e] = 0;
    if constexpr (T::four_bit) acc[e] = 0.0f;
  }

#pragma unroll
  for (int s = 0; s < T::stages - 1; ++s) {
    if (s < chunks) load_stage<S>(L, A, stages + s * T::stage_bytes, s, m0, n0, tid);
    gpu_cp_async_commit();
  }
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t next = ch + T::stages - 1;  // its stage was read in iteration ch − 1, ended by a barrier
    if (next < chunks) load_stage<S>(L, A, stages + (next % T::stages) * T::stage_bytes, next, m0, n0, tid);
    gpu_cp_async_commit();
    gpu_cp_async_wait<T::stages - 1>();  // this thread's copies of chunk ch have landed
    __syncthreads();                     // and everyone's
    const unsigned char* st = stages + (ch % T::stages) * T::stage_bytes;
    const int8_t* As = reinterpret_cast<const int8_t*>(st);
    const int8_t* Bs = reinterpret_cast<const int8_t*>(st + T::a_bytes);
    if constexpr (T::four_bit) {
      expand_stage<S>(st, eA, eB, tid);
      __syncthreads();
      As = eA;
      Bs = eB;
    }
    auto step = [&](int k0) {
      products<MODE, KSTEP>(As, Bs, k0, tid, I);
      if constexpr (T::four_bit) {
        if ((k0 + KSTEP) % GS == 0) {
          const int gi = (k0 + KSTEP) / GS - 1;
          const int64_t g = ch * T::gpc + gi;
          if (g < L.groups) fold_group<S, MODE>(st, gi, g, L, A, m0, n0, tid, I, acc, dbg);
#pragma unroll
          for (int e = 0; e < NACC; ++e) I[e] = 0;
        }
      }
    };
    if constexpr (MODE == 0) {
      // The portable path keeps one copy of the step (its fragments need no constant k).
#pragma unroll 1
      for (int k0 = 0; k0 < KC; k0 += KSTEP) step(k0);
    } else {
#pragma unroll
      for (int k0 = 0; k0 < KC; k0 += KSTEP) step(k0);
    }
    __syncthreads();
  }

  if constexpr (S == kW8A8) {  // one group: the whole row
    using Lay = Layout<MODE>;
    float sx[Lay::NR], sw[Lay::NC];
#pragma unroll
    for (int i = 0; i < Lay::NR; ++i) {
      const int64_t m = m0 + Lay::row(i, tid);
      sx[i] = m < A.m ? A.scale[m] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < Lay::NC; ++j) sw[j] = static_cast<const float*>(L.w_scale)[n0 + Lay::col(j, tid)];
#pragma unroll
    for (int e = 0; e < NACC; ++e) acc[e] = fma_rn(mul_rn(static_cast<float>(I[e]), sw[Lay::cs(e)]), sx[Lay::rs(e)], 0.0f);
    if (dbg != nullptr) {
#pragma unroll
      for (int e = 0; e < NACC; ++e) {
        const int64_t m = m0 + Lay::row(Lay::rs(e), tid), n = n0 + Lay::col(Lay::cs(e), tid);
        if (m < A.m && n < L.n) dbg[m * L.n + n] = I[e];
      }
    }
  }

  epilogue_store<MODE, BM, BN, NT>(L, A, Y, epilogue != 0, acc, m0, n0, tid, reinterpret_cast<float*>(smem));
}

// ---- w4a16 ------------------------------------------------------------------------------------------

constexpr int W16_TILE = 64;
constexpr int W16_NT = 128;

template <>
struct Layout<5> {  // w4a16, 64×64 tiles, 128 threads: rows tid/16 + 8i (i < 8), columns tid%16 + 16j (j < 4)
  static constexpr int NR = 8, NC = 4;
  static __device__ __forceinline__ int rs(int e) { return e >> 2; }
  static __device__ __forceinline__ int cs(int e) { return e & 3; }
  static __device__ __forceinline__ int row(int i, int tid) { return (tid >> 4) + 8 * i; }
  static __device__ __forceinline__ int col(int j, int tid) { return (tid & 15) + 16 * j; }
};

__global__ void __launch_bounds__(W16_NT) gemm_w4a16_kernel(LayerView L, ActsView A, float* __restrict__ Y,
                                                             int epilogue) {
  using Lay = Layout<5>;
  constexpr int NA = W16_TILE * W16_TILE / W16_NT;  // 32
  __shared__ float tiles[2][W16_TILE][KC + 1];  // X̂ and the weights; one array, reused by the epilogue
  __shared__ float sw[W16_TILE];
  float(*Xs)[KC + 1] = tiles[0];
  float(*Ws)[KC + 1] = tiles[1];
  const int tid = threadIdx.x;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * W16_TILE;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * W16_TILE;
  const int64_t M = A.m;
  const int64_t chunks = L.kp / KC;
  // The 64-column tile t of the format: n0 / 64 (the format's tiles are 64 wide).
  const uint8_t* wt = L.w + static_cast<int64_t>(n0 / kTileN) * chunks * (kTileN * KC / 2);
  float acc[NA];
#pragma unroll
  for (int e = 0; e < NA; ++e) acc[e] = 0.0f;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    __syncthreads();
    for (int idx = tid; idx < W16_TILE * KC; idx += W16_NT) {
      const int r = idx / KC, q = idx % KC;
      Xs[r][q] = m0 + r < M ? A.xhat[(m0 + r) * L.kp + ch * KC + q] : 0.0f;
    }
    for (int idx = tid; idx < W16_TILE * KC / 2; idx += W16_NT) {
      const int c = idx / (KC / 2), b = idx % (KC / 2);
      const uint32_t byte = wt[ch * (kTileN * KC / 2) + idx];
      Ws[c][2 * b] = static_cast<float>(int4_of_nibble(byte & 0xFu));
      Ws[c][2 * b + 1] = static_cast<float>(int4_of_nibble(byte >> 4));
    }
    for (int c = tid; c < W16_TILE; c += W16_NT) sw[c] = static_cast<const float*>(L.w_scale)[ch * L.np + n0 + c];
    __syncthreads();
    if (ch < L.groups) {
      float p[NA];
#pragma unroll
      for (int e = 0; e < NA; ++e) p[e] = 0.0f;
      for (int q = 0; q < KC; ++q) {  // k outermost: each output's chain stays in k order
        float x[Lay::NR], w[Lay::NC];
#pragma unroll
        for (int i = 0; i < Lay::NR; ++i) x[i] = Xs[Lay::row(i, tid)][q];
#pragma unroll
        for (int j = 0; j < Lay::NC; ++j) w[j] = Ws[Lay::col(j, tid)][q];
#pragma unroll
        for (int e = 0; e < NA; ++e) p[e] = fma_rn(x[Lay::rs(e)], w[Lay::cs(e)], p[e]);
      }
#pragma unroll
      for (int e = 0; e < NA; ++e) acc[e] = fma_rn(p[e], sw[Lay::col(Lay::cs(e), tid)], acc[e]);
    }
  }
  // The epilogue's staging reuses the operand tiles ((64 + 64)·33 <= 2·64·65 floats).
  epilogue_store<5, W16_TILE, W16_TILE, W16_NT>(L, A, Y, epilogue != 0, acc, m0, n0, tid, &tiles[0][0][0]);
}

template <int S>
gpuError_t launch_scheme(const LayerView& L, const ActsView& A, float* Y, bool epilogue, int32_t* dbg, int path,
                         gpuStream_t stream) {
  const dim3 grid(static_cast<unsigned int>(L.np / BN), static_cast<unsigned int>((A.m + BM - 1) / BM));
  constexpr size_t smem = static_cast<size_t>(Traits<S>::smem);
  if (path == kPathDot)
    SVDQ_LAUNCH(grid, NT, smem, stream, gemm_kernel<S, 0>)(L, A, Y, epilogue ? 1 : 0, dbg);
  else
    SVDQ_LAUNCH(grid, NT, smem, stream, gemm_kernel<S, 1>)(L, A, Y, epilogue ? 1 : 0, dbg);
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
      if ((A.m + W16_TILE - 1) / W16_TILE > 65535) return gpuErrorInvalidValue;
      const dim3 grid(static_cast<unsigned int>(L.np / W16_TILE), static_cast<unsigned int>((A.m + W16_TILE - 1) / W16_TILE));
      SVDQ_LAUNCH(grid, W16_NT, 0, stream, gemm_w4a16_kernel)(L, A, Y, epilogue ? 1 : 0);
      return gpuGetLastError();
    }
  }
  return gpuErrorInvalidValue;
}

}  // namespace svdq_gpu
