// Portable low-bit layer kernels (lowbit.h): plain loops that spell out the arithmetic every SIMD
// variant repeats bit for bit — the same integer sums and the same fp32 operations in the same
// order. Built without any -m flag (this is also the aarch64 path).
#include <math.h>

#include <cstring>

#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/lowbit.h"

// The fp32 operations below are the definition: no contraction of a*b+c into an fma (which GCC
// does by default on targets that have one) where the definition has two roundings.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace svdq {
namespace portable {
namespace {

const float kNanF = f32_from_bits(0x7FC00000u);

// 2·E2M1 value of a code, as the int8 the GEMM multiplies.
const int8_t kE2m1x2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline float ldown(const LowbitLayer& L, int64_t k, int64_t r) {
  const int64_t i = ((r / 16) * L.kp + k) * 16 + r % 16;  // [rank_pad/16][kp][16]
  return L.lowrank_bf16 ? bf16_to_f32(L.l_down_t.as<uint16_t>()[i]) : L.l_down_t.as<float>()[i];
}

inline float lup(const LowbitLayer& L, int64_t p, int64_t r, int c) {
  const int64_t i = (p * L.rank + r) * 16 + c;
  return L.lowrank_bf16 ? bf16_to_f32(L.l_up.as<uint16_t>()[i]) : L.l_up.as<float>()[i];
}

// X̂ row: X/λ (or X), zero padded to kp.
void xhat_row(const LowbitLayer& L, const float* x, float* out) {
  if (L.has_smooth) {
    const float* lam = L.smooth.as<float>();
    for (int64_t i = 0; i < L.k; ++i) out[i] = x[i] / lam[i];
  } else {
    for (int64_t i = 0; i < L.k; ++i) out[i] = x[i];
  }
  for (int64_t i = L.k; i < L.kp; ++i) out[i] = 0.0f;
}

// D rows: one fma chain in k order per (row, r).
void down_block(const LowbitLayer& L, const float* xh, int64_t rows, float* D, int64_t r0, int64_t r1) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t r = r0; r < r1; ++r) {
      float acc = 0.0f;
      for (int64_t k = 0; k < L.k; ++k) acc = ::fmaf(xh[i * L.kp + k], ldown(L, k, r), acc);
      D[i * L.rank + r] = acc;
    }
}

// Quantizes one X̂ row (length kp, zero padded) into row m of A, using the format kernels `fk`.
// Shared with the SIMD variants' reference behaviour: codes and scales are those of formats.h.
void quantize_row(const LowbitLayer& L, const FormatKernels& fk, const float* xr, int64_t m,
                  LowbitActs& A, uint8_t* tmp) {
  const int64_t K = L.k, kp = L.kp, G = L.groups;
  // Group-major [G][M]: element g of row m at g·M + m.
  float* scale = A.scale.as<float>() + m;
  int32_t* corr = A.corr.as<int32_t>() + m;
  const int64_t gs = A.m;
  switch (L.scheme) {
    case LowbitScheme::W4A16: {
      std::memcpy(A.xhat.as<float>() + m * kp, xr, static_cast<size_t>(kp) * 4);
      return;
    }
    case LowbitScheme::W8A8: {
      int8_t* codes = A.codes.as<int8_t>() + m * kp;
      float s = 0.0f;
      fk.quantize_int8(xr, 1, K, codes, &s);
      for (int64_t i = K; i < kp; ++i) codes[i] = 0;
      int32_t sum = 0;
      for (int64_t i = 0; i < K; ++i) sum += codes[i];
      scale[0] = s;
      corr[0] = -L.offset * sum;
      (void)gs;
      return;
    }
    default: break;
  }
  // 4-bit schemes: canonical packed codes, then the int8 form.
  uint8_t* packed = tmp;
  uint8_t* sbytes = tmp + kp / 2;  // mxfp4 / nvfp4 scale bytes (G), or fp32 scales (int4)
  int8_t* codes = A.codes.as<int8_t>() + m * kp;
  const int64_t group = L.group;
  if (L.scheme == LowbitScheme::W4A4) {
    float* s = reinterpret_cast<float*>(sbytes);
    fk.quantize_int4(xr, 1, K, packed, s);
    for (int64_t g = 0; g < G; ++g) scale[g * gs] = s[g];
  } else if (L.scheme == LowbitScheme::Mxfp4) {
    fk.quantize_mxfp4(xr, 1, K, packed, sbytes, L.act_mx_rule);
    for (int64_t g = 0; g < G; ++g)
      scale[g * gs] = sbytes[g] == kE8M0Nan ? kNanF : static_cast<float>(static_cast<int>(sbytes[g]) - 256);
  } else {  // Nvfp4
    const float gx = nvfp4_global_scale(fk.amax_finite(xr, K));
    fk.quantize_nvfp4(xr, 1, K, gx, packed, sbytes);
    for (int64_t g = 0; g < G; ++g) scale[g * gs] = e4m3_decode(sbytes[g]);
    A.row_scale.as<float>()[m] =
        static_cast<float>(1.0 / (4.0 * static_cast<double>(gx) * static_cast<double>(L.w_global_scale)));
  }
  const bool int4 = L.scheme == LowbitScheme::W4A4;
  for (int64_t g = 0; g < G; ++g) {
    int32_t sum = 0;
    for (int64_t i = g * group; i < (g + 1) * group; ++i) {
      const uint8_t byte = packed[i / 2];
      const uint8_t nib = (i & 1) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0xF);
      const int8_t q = int4 ? int4_from_nibble(nib) : kE2m1x2[nib];
      codes[i] = q;
      sum += q;
    }
    corr[g * gs] = -L.offset * sum;
  }
}

void quantize_rows(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1, LowbitActs& A,
                   bool with_down, LowbitScratch& s) {
  float* rows = s.rows.as<float>();
  for (int64_t m = m0; m < m1; ++m) {
    float* xr = rows + (m - m0) * L.kp;
    xhat_row(L, X + m * L.k, xr);
    quantize_row(L, kFormatKernels, xr, m, A, s.codes.as<uint8_t>());
  }
  if (with_down && L.rank > 0) down_block(L, rows, m1 - m0, A.down.as<float>() + m0 * L.rank, 0, L.rank);
}

void down_rows(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1, int64_t r0, int64_t r1, float* D,
               LowbitScratch& s) {
  float* rows = s.rows.as<float>();
  for (int64_t m = m0; m < m1; ++m) xhat_row(L, X + m * L.k, rows + (m - m0) * L.kp);
  down_block(L, rows, m1 - m0, D + m0 * L.rank, r0, r1 < L.rank ? r1 : L.rank);
}

// u8 operand (code + offset) of column c, element kk, of panel p.
inline int32_t wcode_u8(const LowbitLayer& L, int64_t p, int c, int64_t kk) {
  if (L.scheme == LowbitScheme::W8A8) return L.w.as<uint8_t>()[(p * (L.kp / 4) + kk / 4) * 64 + 4 * c + (kk & 3)];
  const uint8_t byte = L.w.as<uint8_t>()[(p * (L.kp / 8) + kk / 8) * 64 + 4 * c + (kk & 3)];
  const uint8_t nib = (kk & 4) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0xF);
  if (L.scheme == LowbitScheme::W4A4 || L.scheme == LowbitScheme::W4A16) return nib;  // q + 8
  return kE2m1x2[nib] + 12;
}

// fl(I · 2^e) with one rounding (what vscalefps computes); NaN when e is NaN.
inline float scale_pow2(int32_t I, float e) {
  if (e != e) return kNanF;
  const int64_t ei = static_cast<int64_t>(e);
  uint64_t bits = static_cast<uint64_t>(ei + 1023) << 52;
  double p;
  std::memcpy(&p, &bits, 8);
  return static_cast<float>(static_cast<double>(I) * p);
}

void gemm(const LowbitLayer& L, const LowbitActs& A, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
          float* Y, int64_t ldy, bool epilogue, LowbitScratch&) {
  const int64_t kp = L.kp, G = L.groups, group = L.group;
  const float* bias = L.has_bias ? L.bias.as<float>() : nullptr;
  for (int64_t m = m0; m < m1; ++m) {
    const int8_t* xq = A.codes.as<int8_t>() + m * kp;
    const float* xh = A.xhat.as<float>() + m * kp;
    const float* sx = A.scale.as<float>() + m;  // element g at g·M
    const int32_t* cx = A.corr.as<int32_t>() + m;
    const int64_t gs = A.m;
    for (int64_t p = p0; p < p1; ++p) {
      for (int c = 0; c < 16; ++c) {
        const int64_t n = p * 16 + c;
        if (n >= L.n) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < G; ++g) {
          if (L.scheme == LowbitScheme::W4A16) {
            float dot = 0.0f;
            for (int64_t kk = g * group; kk < (g + 1) * group; ++kk)
              dot = ::fmaf(xh[kk], static_cast<float>(wcode_u8(L, p, c, kk) - 8), dot);
            acc = ::fmaf(dot, L.w_scale.as<float>()[(p * G + g) * 16 + c], acc);
            continue;
          }
          int32_t I = cx[g * gs];
          for (int64_t kk = g * group; kk < (g + 1) * group; ++kk) I += wcode_u8(L, p, c, kk) * xq[kk];
          switch (L.scheme) {
            case LowbitScheme::W4A4: {
              const float t = static_cast<float>(I) * L.w_scale.as<float>()[(p * G + g) * 16 + c];
              acc = ::fmaf(t, sx[g * gs], acc);
              break;
            }
            case LowbitScheme::W8A8: {
              const float t = static_cast<float>(I) * L.w_scale.as<float>()[p * 16 + c];
              acc = ::fmaf(t, sx[g * gs], acc);
              break;
            }
            case LowbitScheme::Nvfp4: {
              const float t = static_cast<float>(I) * e4m3_decode(L.w_scale.as<uint8_t>()[(p * G + g) * 16 + c]);
              acc = ::fmaf(t, sx[g * gs], acc);
              break;
            }
            case LowbitScheme::Mxfp4: {
              const float e = sx[g * gs] + static_cast<float>(L.w_scale.as<uint8_t>()[(p * G + g) * 16 + c]);
              acc = acc + scale_pow2(I, e);
              break;
            }
            default: break;
          }
        }
        if (L.scheme == LowbitScheme::Nvfp4) acc = acc * A.row_scale.as<float>()[m];
        float y = acc;
        if (epilogue) {
          if (L.rank > 0) {
            const float* d = A.down.as<float>() + m * L.rank;
            float u = 0.0f;
            for (int64_t r = 0; r < L.rank; ++r) u = ::fmaf(d[r], lup(L, p, r, c), u);
            y = y + u;
          }
          if (bias != nullptr) y = y + bias[n];
        }
        Y[m * ldy + n] = y;
      }
    }
  }
}

void lowrank_up(const LowbitLayer& L, const float* D, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                float* U, int64_t ldu) {
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t p = p0; p < p1; ++p)
      for (int c = 0; c < 16; ++c) {
        float u = 0.0f;
        for (int64_t r = 0; r < L.rank; ++r) u = ::fmaf(D[m * L.rank + r], lup(L, p, r, c), u);
        U[m * ldu + p * 16 + c] = u;
      }
}

void finish(const LowbitLayer& L, const float* U, int64_t ldu, int64_t m0, int64_t m1, int64_t p0,
            int64_t p1, float* Y, int64_t ldy) {
  const float* bias = L.has_bias ? L.bias.as<float>() : nullptr;
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t n = p0 * 16; n < p1 * 16 && n < L.n; ++n) {
      float y = Y[m * ldy + n];
      if (U != nullptr && L.rank > 0) y = y + U[m * ldu + n];
      if (bias != nullptr) y = y + bias[n];
      Y[m * ldy + n] = y;
    }
}

}  // namespace

const LowbitKernels kLowbitKernels = {quantize_rows, down_rows, gemm, lowrank_up, finish};

}  // namespace portable
}  // namespace svdq
