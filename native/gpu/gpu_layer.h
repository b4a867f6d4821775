// The GPU kernel format of an SVDQuant layer and the views the kernels receive. Host-only header
// without any runtime include, so that repack.cpp builds with the plain host compiler.
//
// ## GPU kernel format (built by repack_layer on the host, uploaded once at layer creation)
//
// Tiles: output columns in tiles of kTileN = 64, N padded to np = a multiple of kBlockN = 128 (the
// GEMM's block width: two format tiles), K padded with zero codes to kp = a multiple of
// kChunkK = 64 (so every group of 16, 32 or 64 lies inside one K chunk).
//   w         4-bit schemes: [np/64][kp/64][64 columns][32 bytes]: the 64 codes of one column in one
//             K chunk, element 2i in the low nibble of byte i (INT4 two's complement, E2M1 codes as
//             they are). One tile (column tile × K chunk) is one contiguous 2 KiB block, read with
//             16-byte loads.
//             w8a8: [np/64][kp/64][64][64] int8 codes.
//   w_scale   [groups_pad][np] (group-major, so the 64 scales of a tile are contiguous):
//             fp32 (w4a4, w4a16), E8M0 bytes (mxfp4), E4M3 bytes (nvfp4); w8a8: fp32 [np].
//   smooth    fp32 [k] (λ; empty when absent)
//   l_down_t  fp32 [k][rank]: L_downᵀ, so the down-projection's threads (one per rank column) read
//             one contiguous row per k
//   l_up      fp32 [np][rank] (zero rows for the padding columns)
//   bias      fp32 [np] (empty when absent)
//
// Quantized activations (per forward call, device scratch):
//   codes     4-bit schemes: uint8 [M][kp/2], packed like the weights (INT4 two's complement nibbles,
//             E2M1 codes; element 2i in the low nibble of byte i). w8a8: int8 [M][kp].
//   scale     fp32 [groups_pad][mp] (mp = M rounded up to kTileM = 128): s_x (w4a4, w8a8: group 0), the
//             decoded E4M3 block scale (nvfp4), e_x − 256 (mxfp4); NaN for a non-finite group
//   row_scale fp32 [mp]: nvfp4's α_m = fl(1/(4·G_x,m·G_w))
//   down      fp32 [mp][rank]: D = X̂·L_downᵀ
//   xhat      fp32 [M][kp]: X̂ (w4a16 only)
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

#include "svdquant/gpu_abi.h"

namespace svdq_gpu {

constexpr int kTileM = 128;      // GEMM token rows per block (and the padding of the activation scales)
constexpr int kTileN = 64;       // output columns per weight-format tile
constexpr int kBlockN = 128;     // GEMM output columns per block (and the column padding)
constexpr int kChunkK = 64;      // K per GEMM main-loop step (and the K padding)
constexpr int kQuantRows = 8;    // token rows per quantize_act block
constexpr int kQuantChunk = 256; // K elements per quantize_act step
constexpr int kQuantThreads = 256;
constexpr int kMaxRank = 1024;   // the quantize kernel keeps [8][rank] fp32 sums in shared memory

enum Scheme : int { kW4A4 = 0, kMxfp4 = 1, kNvfp4 = 2, kW8A8 = 3, kW4A16 = 4 };

const char* scheme_name(int scheme);

// Group size along K of a scheme in the GEMM (w8a8: one group, the whole row; 64 is its K chunk).
inline int scheme_group(int scheme) {
  switch (scheme) {
    case kMxfp4: return 32;
    case kNvfp4: return 16;
    default: return 64;
  }
}

struct HostFormat {
  int scheme = 0;
  int64_t n = 0, k = 0, rank = 0;
  int group = 64;
  int64_t kp = 0, np = 0;
  int64_t groups = 0;      // real groups: ceil(k / group) (w8a8: 1), as the CPU engine has them
  int64_t groups_pad = 0;  // kp / group (w8a8: 1)
  int act_rule = 1;
  float w_global_scale = 1.0f;
  bool has_smooth = false, has_bias = false;
  std::vector<uint8_t> w;
  std::vector<uint8_t> w_scale;
  std::vector<float> smooth, l_down_t, l_up, bias;
  size_t bytes() const {
    return w.size() + w_scale.size() + 4 * (smooth.size() + l_down_t.size() + l_up.size() + bias.size());
  }
};

// Validates the canonical layer and repacks it into the GPU kernel format. Returns SVDQ_GPU_OK, or
// SVDQ_GPU_INVALID_ARGUMENT / SVDQ_GPU_UNSUPPORTED with a message (never throws, except
// std::bad_alloc from the vectors, which the ABI boundary catches).
int repack_layer(const svdq_gpu_layer_desc& desc, HostFormat& out, std::string& message);

// Reads the code of (column n, element kk) back from the kernel format, as the int8 the GEMM
// multiplies (INT4 / INT8 code, or 2·E2M1). For tests of the layout.
int32_t host_weight_operand(const HostFormat& f, int64_t n, int64_t kk);

// ---- device views (plain structs passed by value to the kernels) -------------------------------

struct LayerView {
  int scheme, group, act_rule, has_smooth, has_bias;
  int64_t n, k, rank, kp, np, groups, groups_pad;
  float w_global_scale;
  const uint8_t* w;
  const void* w_scale;
  const float* smooth;
  const float* l_down_t;
  const float* l_up;
  const float* bias;
};

struct ActsView {
  int64_t m, mp;
  int8_t* codes;
  float* scale;
  float* row_scale;
  float* down;
  float* xhat;
};

}  // namespace svdq_gpu
