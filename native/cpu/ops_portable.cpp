// Portable loops of the graph ops (ops.h): the algorithms of ops_simd.inc in plain C++ (no fused
// multiply-add; x² split exactly through double), for machines without AVX2 and as the reference
// level. Written branch-free per element so that GCC can vectorize them with SSE2 (or NEON); that
// needs -fno-trapping-math for the compare-and-select clamps, set below for this file only (the
// kernels never rely on floating-point traps).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "svdquant/ops.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

namespace svdq {
namespace portable {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;
constexpr float kLn2Lo = 1.428606765330187045e-06f;
constexpr float kExpLo = -110.0f;
constexpr float kExpHi = 89.0f;
constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer (|v| < 2^22)
constexpr float kErfP[7] = {1.1283791670954118f, -0.3761263889916041f, 0.1128379141407936f,
                            -0.02686610902426983f, 0.0052232717424180505f, -0.0008506625682668543f,
                            0.00010820938633404828f};
constexpr float kErfcQ[10] = {3.4981432682494155e-06f, 0.28198552357898177f, 0.28358358832772457f,
                              0.23519518173769588f, 0.2339736542746267f, -0.10452303757417551f,
                              0.400677995014169f, -0.6053890833927803f, 0.34816874828138716f,
                              -0.07368299185722736f};
constexpr float kErfcMaxZ = 10.5f;
constexpr float kSmallZ = 0.5f;  // |z| up to here: the odd polynomial; beyond: through erfc

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float exp1(float x) {
  x = x < kExpLo ? kExpLo : x;  // NaN passes both clamps
  x = x > kExpHi ? kExpHi : x;
  const float t = x * kLog2e + kRound;
  const float n = t - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t ni = static_cast<int32_t>(bits_of(t) - bits_of(kRound));  // n as an integer
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float s1 = float_of(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = float_of(static_cast<uint32_t>(n2 + 127) << 23);
  return p * s1 * s2;
}

// x² = hi + lo exactly (the product of two floats is exact in double).
inline void sqr_split(float x, float& hi, float& lo) {
  const double d = static_cast<double>(x) * x;
  hi = static_cast<float>(d);
  lo = static_cast<float>(d - hi);
}

inline float erf_small(float z) {
  const float s = z * z;
  float p = kErfP[6];
  p = p * s + kErfP[5];
  p = p * s + kErfP[4];
  p = p * s + kErfP[3];
  p = p * s + kErfP[2];
  p = p * s + kErfP[1];
  p = p * s + kErfP[0];
  return z * p;
}

inline float erfc_large(float a, float hi, float lo) {
  const float t = 1.0f / (0.5f * a + 1.0f);
  float q = kErfcQ[9];
  q = q * t + kErfcQ[8];
  q = q * t + kErfcQ[7];
  q = q * t + kErfcQ[6];
  q = q * t + kErfcQ[5];
  q = q * t + kErfcQ[4];
  q = q * t + kErfcQ[3];
  q = q * t + kErfcQ[2];
  q = q * t + kErfcQ[1];
  q = q * t + kErfcQ[0];
  const float e = exp1(-hi);
  return (e - e * lo) * q;
}

inline float erf1(float x) {
  const float a = std::fabs(x);
  const float small = erf_small(x);
  const float ac = a > kErfcMaxZ ? kErfcMaxZ : a;  // NaN passes
  float hi, lo;
  sqr_split(ac, hi, lo);
  const float big = std::copysign(1.0f - erfc_large(ac, hi, lo), x);
  return a <= kSmallZ ? small : big;
}

inline float gelu_erf1(float x) {
  const float z = x * 0.70710678118654752f;
  const float a = std::fabs(z);
  const float phi_small = 0.5f * erf_small(z) + 0.5f;
  const float xa = std::fabs(x);
  const float xc = xa > kErfcMaxZ * 1.41421356f ? kErfcMaxZ * 1.41421356f : xa;
  float hi, lo;
  sqr_split(xc, hi, lo);
  const float ac = a > kErfcMaxZ ? kErfcMaxZ : a;
  const float tail = 0.5f * erfc_large(ac, 0.5f * hi, 0.5f * lo);
  const float phi_big = x < 0.0f ? tail : 1.0f - tail;
  return x * (a <= kSmallZ ? phi_small : phi_big);
}

inline float gelu_tanh1(float x) {
  const float m2u = x * (-2.0f * 0.79788456080286536f) * (0.044715f * x * x + 1.0f);
  return x / (1.0f + exp1(m2u));
}

void exp_n(const float* __restrict x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp1(x[i]);
}
void erf_n(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = erf1(x[i]);
}
void gelu_erf_n(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_erf1(x[i]);
}
void gelu_tanh_n(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh1(x[i]);
}
void silu_n(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + exp1(-x[i]));
}
void add_n(const float* a, const float* b, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void softmax_tile(float* s, int64_t rows, int64_t cols, int64_t lds, const float* bias, float* m, double* l,
                  float* alpha) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * lds;
    if (bias != nullptr)
      for (int64_t j = 0; j < cols; ++j) sr[j] += bias[j];
    float mx = ninf;
    bool nan = false;
    for (int64_t j = 0; j < cols; ++j) {
      mx = sr[j] > mx ? sr[j] : mx;
      nan |= sr[j] != sr[j];
    }
    const float old = m[r];
    const float mnew = nan ? std::numeric_limits<float>::quiet_NaN() : (mx > old ? mx : old);
    if (mnew == ninf) {  // every key so far at -Inf: nothing to weigh yet
      for (int64_t j = 0; j < cols; ++j) sr[j] = 0.0f;
      alpha[r] = 1.0f;
      continue;
    }
    for (int64_t j = 0; j < cols; ++j) sr[j] = exp1(sr[j] - mnew);  // vectorized
    double s4[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4)
      for (int q = 0; q < 4; ++q) s4[q] += sr[j + q];
    for (; j < cols; ++j) s4[0] += sr[j];
    const float a = exp1(old - mnew);  // old = -Inf: 0
    alpha[r] = a;
    l[r] = l[r] * static_cast<double>(a) + ((s4[0] + s4[1]) + (s4[2] + s4[3]));
    m[r] = mnew;
  }
}

void softmax_rows(const float* x, int64_t rows, int64_t cols, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -std::numeric_limits<float>::infinity();
    bool nan = false;
    for (int64_t j = 0; j < cols; ++j) {
      mx = xr[j] > mx ? xr[j] : mx;
      nan |= xr[j] != xr[j];
    }
    if (nan || mx == -std::numeric_limits<float>::infinity()) {
      for (int64_t j = 0; j < cols; ++j) yr[j] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    for (int64_t j = 0; j < cols; ++j) yr[j] = exp1(xr[j] - mx);  // vectorized
    double s4[4] = {0.0, 0.0, 0.0, 0.0};  // four chains: the double sum is not vectorized
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4)
      for (int l = 0; l < 4; ++l) s4[l] += yr[j + l];
    for (; j < cols; ++j) s4[0] += yr[j];
    const double sum = (s4[0] + s4[1]) + (s4[2] + s4[3]);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
  }
}

void norm_out(const float* x, int64_t dim, float meanf, float rstd, const float* gamma,
              const float* beta, float* y) {
  for (int64_t j = 0; j < dim; ++j) {
    float d = (x[j] - meanf) * rstd;
    if (gamma != nullptr) d *= gamma[j];
    if (beta != nullptr) d += beta[j];
    y[j] = d;
  }
}

void layernorm_rows(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                    float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sum = 0.0;
    for (int64_t j = 0; j < dim; ++j) sum += xr[j];
    const double mean = sum / static_cast<double>(dim);
    const float meanf = static_cast<float>(mean);
    double sq = 0.0;
    for (int64_t j = 0; j < dim; ++j) {
      const double d = xr[j] - meanf;
      sq += d * d;
    }
    const double dm = mean - static_cast<double>(meanf);
    double var = sq / static_cast<double>(dim) - dm * dm;
    if (var < 0) var = 0;
    const float rstd = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
    norm_out(xr, dim, meanf, rstd, gamma, beta, y + r * dim);
  }
}

void rmsnorm_rows(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sq = 0.0;
    for (int64_t j = 0; j < dim; ++j) sq += static_cast<double>(xr[j]) * xr[j];
    const float rs = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(dim) + static_cast<double>(eps)));
    norm_out(xr, dim, 0.0f, rs, gamma, nullptr, y + r * dim);
  }
}

}  // namespace

const OpsKernels kOpsKernels = {Isa::Portable, exp_n,        erf_n,          gelu_erf_n,  gelu_tanh_n,
                                silu_n,        add_n,        softmax_rows,   layernorm_rows, rmsnorm_rows, softmax_tile};

}  // namespace portable
}  // namespace svdq
