// Row quantizers of DESIGN.md §3: the kernel table every instruction-set variant fills in.
//
// All quantizers work along the last axis of a row-major [rows, k] fp32 matrix. Groups run along k;
// a k that is not a multiple of the group is padded with zeros up to kp (the padded length), and
// the padding never changes a result (codes of padded elements are 0).
//
// Layouts (per row; rows are consecutive):
//   int4  : codes  kp/2 bytes (two's complement nibbles, element 2i low), scales kp/64 fp32
//   mxfp4 : codes  kp/2 bytes (E2M1 nibbles),                              scales kp/32 E8M0 bytes
//   nvfp4 : codes  kp/2 bytes (E2M1 nibbles),                              scales kp/16 E4M3 bytes,
//           plus one fp32 tensor scale G shared by all rows
//   int8  : codes  k bytes (int8),                                         scales 1 fp32
//
// Non-finite input: a group holding NaN or ±Inf gets a NaN scale (fp32 NaN, E8M0 0xFF, E4M3 0x7F)
// and all-zero codes, so its dequantized values and every GEMM output it feeds are NaN. (Weights
// are checked for non-finite values before quantization by the caller, which raises an error.)
#pragma once

#include <cstdint>

#include "svdquant/codecs.h"

namespace svdq {

constexpr int kInt4Group = 64;
constexpr int kMxfp4Group = 32;
constexpr int kNvfp4Group = 16;

enum class Scheme : int { Int4 = 0, Mxfp4 = 1, Nvfp4 = 2, Int8 = 3 };

static inline int scheme_group(Scheme s, int64_t k) {
  switch (s) {
    case Scheme::Int4: return kInt4Group;
    case Scheme::Mxfp4: return kMxfp4Group;
    case Scheme::Nvfp4: return kNvfp4Group;
    case Scheme::Int8: return static_cast<int>(k > 0 ? k : 1);
  }
  return 1;
}

static inline int64_t padded_k(int64_t k, int64_t group) { return (k + group - 1) / group * group; }

// Instruction-set levels, lowest first. A level is usable only where the CPU supports it.
enum class Isa : int { Portable = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);

// One entry per kernel; each ISA variant provides all of them and must match the portable one bit
// for bit.
struct FormatKernels {
  void (*quantize_int4)(const float* x, int64_t rows, int64_t k, uint8_t* codes, float* scales);
  void (*quantize_mxfp4)(const float* x, int64_t rows, int64_t k, uint8_t* codes, uint8_t* scales,
                         MxScaleRule rule);
  void (*quantize_nvfp4)(const float* x, int64_t rows, int64_t k, float global_scale,
                         uint8_t* codes, uint8_t* scales);
  void (*quantize_int8)(const float* x, int64_t rows, int64_t k, int8_t* codes, float* scales);

  void (*dequantize_int4)(const uint8_t* codes, const float* scales, int64_t rows, int64_t k,
                          float* out);
  void (*dequantize_mxfp4)(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k,
                           float* out);
  void (*dequantize_nvfp4)(const uint8_t* codes, const uint8_t* scales, float global_scale,
                           int64_t rows, int64_t k, float* out);
  void (*dequantize_int8)(const int8_t* codes, const float* scales, int64_t rows, int64_t k,
                          float* out);

  // Largest |x| over the finite elements (0 if none). Used for the NVFP4 tensor scale.
  float (*amax_finite)(const float* x, int64_t n);
  // Index of the first NaN or ±Inf, or -1.
  int64_t (*find_nonfinite)(const float* x, int64_t n);
};

namespace portable { extern const FormatKernels kFormatKernels; }
namespace avx2 { extern const FormatKernels kFormatKernels; }
namespace avx512 { extern const FormatKernels kFormatKernels; }

}  // namespace svdq
