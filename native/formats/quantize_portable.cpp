// Portable (baseline x86-64 / any CPU) row quantizers: the plain reference the SIMD variants must
// match bit for bit. Built without any -m flag, so this path holds no AVX instruction.
#include <cmath>
#include <cstring>

#include "svdquant/formats.h"

namespace svdq {
namespace portable {
namespace {

// Abs-max over n values and whether any is NaN/Inf. Integer max of the abs bits equals the float
// max for non-negative floats and puts NaN/Inf above every finite value.
struct GroupMax {
  float amax;
  bool nonfinite;
};

GroupMax group_max(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t a = f32_bits(x[i]) & 0x7FFFFFFFu;
    if (a > m) m = a;
  }
  return {f32_from_bits(m), m >= kF32InfBits};
}

const float kNan = f32_from_bits(0x7FC00000u);

void quantize_int4(const float* x, int64_t rows, int64_t k, uint8_t* codes, float* scales) {
  const int64_t kp = padded_k(k, kInt4Group);
  const int64_t groups = kp / kInt4Group;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    uint8_t* cr = codes + r * (kp / 2);
    std::memset(cr, 0, static_cast<size_t>(kp / 2));
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * kInt4Group;
      const int64_t n = (k - k0 < kInt4Group) ? k - k0 : kInt4Group;
      const GroupMax gm = group_max(xr + k0, n);
      float& scale = scales[r * groups + g];
      if (gm.nonfinite) { scale = kNan; continue; }
      scale = gm.amax / 7.0f;
      if (scale == 0.0f) continue;
      for (int64_t i = 0; i < n; ++i) {
        const int8_t q = int_round_clamp(xr[k0 + i] / scale, -8.0f, 7.0f);
        const int64_t e = k0 + i;
        cr[e / 2] |= static_cast<uint8_t>((q & 0xF) << ((e & 1) * 4));
      }
    }
  }
}

void quantize_mxfp4(const float* x, int64_t rows, int64_t k, uint8_t* codes, uint8_t* scales,
                    MxScaleRule rule) {
  const int64_t kp = padded_k(k, kMxfp4Group);
  const int64_t groups = kp / kMxfp4Group;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    uint8_t* cr = codes + r * (kp / 2);
    std::memset(cr, 0, static_cast<size_t>(kp / 2));
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * kMxfp4Group;
      const int64_t n = (k - k0 < kMxfp4Group) ? k - k0 : kMxfp4Group;
      const GroupMax gm = group_max(xr + k0, n);
      uint8_t& scale = scales[r * groups + g];
      if (gm.nonfinite) { scale = kE8M0Nan; continue; }
      scale = e8m0_scale_for_amax(gm.amax, rule);
      const float inv = e8m0_reciprocal(scale);  // x·2^-s == x / 2^s exactly
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t c = e2m1_encode(xr[k0 + i] * inv);
        const int64_t e = k0 + i;
        cr[e / 2] |= static_cast<uint8_t>(c << ((e & 1) * 4));
      }
    }
  }
}

void quantize_nvfp4(const float* x, int64_t rows, int64_t k, float global_scale, uint8_t* codes,
                    uint8_t* scales) {
  const int64_t kp = padded_k(k, kNvfp4Group);
  const int64_t groups = kp / kNvfp4Group;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    uint8_t* cr = codes + r * (kp / 2);
    std::memset(cr, 0, static_cast<size_t>(kp / 2));
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * kNvfp4Group;
      const int64_t n = (k - k0 < kNvfp4Group) ? k - k0 : kNvfp4Group;
      const GroupMax gm = group_max(xr + k0, n);
      uint8_t& scale = scales[r * groups + g];
      if (gm.nonfinite) { scale = kE4M3Nan; continue; }
      scale = e4m3_encode(global_scale * gm.amax / 6.0f);
      if (scale == 0) continue;  // block too small for E4M3: flushed to zero
      const float d = e4m3_decode(scale) / global_scale;  // the block's effective fp32 step
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t c = e2m1_encode(xr[k0 + i] / d);
        const int64_t e = k0 + i;
        cr[e / 2] |= static_cast<uint8_t>(c << ((e & 1) * 4));
      }
    }
  }
}

void quantize_int8(const float* x, int64_t rows, int64_t k, int8_t* codes, float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    int8_t* cr = codes + r * k;
    std::memset(cr, 0, static_cast<size_t>(k));
    const GroupMax gm = group_max(xr, k);
    if (gm.nonfinite) { scales[r] = kNan; continue; }
    const float scale = gm.amax / 127.0f;
    scales[r] = scale;
    if (scale == 0.0f) continue;
    for (int64_t i = 0; i < k; ++i) cr[i] = int_round_clamp(xr[i] / scale, -128.0f, 127.0f);
  }
}

void dequantize_int4(const uint8_t* codes, const float* scales, int64_t rows, int64_t k,
                     float* out) {
  const int64_t kp = padded_k(k, kInt4Group);
  const int64_t groups = kp / kInt4Group;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const uint8_t byte = codes[r * (kp / 2) + i / 2];
      const int8_t q = int4_from_nibble((i & 1) ? byte >> 4 : byte & 0xF);
      out[r * k + i] = static_cast<float>(q) * scales[r * groups + i / kInt4Group];
    }
  }
}

void dequantize_mxfp4(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t k,
                      float* out) {
  const int64_t kp = padded_k(k, kMxfp4Group);
  const int64_t groups = kp / kMxfp4Group;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const uint8_t byte = codes[r * (kp / 2) + i / 2];
      const float v = e2m1_decode((i & 1) ? byte >> 4 : byte & 0xF);
      out[r * k + i] = v * e8m0_decode(scales[r * groups + i / kMxfp4Group]);
    }
  }
}

void dequantize_nvfp4(const uint8_t* codes, const uint8_t* scales, float global_scale,
                      int64_t rows, int64_t k, float* out) {
  const int64_t kp = padded_k(k, kNvfp4Group);
  const int64_t groups = kp / kNvfp4Group;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      const uint8_t byte = codes[r * (kp / 2) + i / 2];
      const float v = e2m1_decode((i & 1) ? byte >> 4 : byte & 0xF);
      // q·scale is exact (at most 6 significant bits); the division by G rounds once.
      out[r * k + i] = (v * e4m3_decode(scales[r * groups + i / kNvfp4Group])) / global_scale;
    }
  }
}

void dequantize_int8(const int8_t* codes, const float* scales, int64_t rows, int64_t k,
                     float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i) out[r * k + i] = static_cast<float>(codes[r * k + i]) * scales[r];
}

float amax_finite(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t a = f32_bits(x[i]) & 0x7FFFFFFFu;
    if (a < kF32InfBits && a > m) m = a;
  }
  return f32_from_bits(m);
}

int64_t find_nonfinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if ((f32_bits(x[i]) & 0x7FFFFFFFu) >= kF32InfBits) return i;
  return -1;
}

}  // namespace

const FormatKernels kFormatKernels = {
    quantize_int4,   quantize_mxfp4,   quantize_nvfp4,   quantize_int8,
    dequantize_int4, dequantize_mxfp4, dequantize_nvfp4, dequantize_int8,
    amax_finite,     find_nonfinite,
};

}  // namespace portable
}  // namespace svdq
