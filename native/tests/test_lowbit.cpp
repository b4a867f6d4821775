// Tests of the SVDQuant low-bit layer (lowbit.h) against the plain reference of DESIGN.md §2
// (lowbit_reference.cpp), for every scheme, every instruction-set level this CPU supports, every
// low-rank mode and thread counts 1 and 2.
//
// What is checked:
// - quantize_act produces exactly the codes and scales of the formats.h row quantizers on X̂ = X/λ
//   (and the corrections −offset·Σq and D as specified), on every ISA.
// - Exact inputs (power-of-two scales, small codes: every fp32 step is exact): the output equals
//   the double-precision reference bit for bit. Any wrong integer block sum would show.
// - Random inputs (normal values, an outlier channel, all-zero rows, λ and bias present/absent,
//   K not a multiple of the group, N odd, rank 0/1/32/64): |y − ref| <= (K + 2G + r + 8)·2⁻²⁴·S
//   where S = Σ|terms| (the fp32 forward-error bound of the accumulation, lowbit.h).
// - All ISA levels, all three low-rank modes and both thread counts give bit-identical outputs.
// - A NaN in a token's activations makes exactly that token's output row NaN.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.h"
#include "lowbit_reference.h"
#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/isa.h"
#include "svdquant/amx.h"
#include "svdquant/lowbit.h"

using lowbit_ref::CanonicalLayer;
using svdq::Isa;
using svdq::LowbitScheme;
using svdq::LowRankMode;

namespace {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  int range(int lo, int hi) { return lo + below(hi - lo + 1); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u = uniform();
    if (u < 1e-300) u = 1e-300;
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * uniform());
  }
};

const LowbitScheme kSchemes[] = {LowbitScheme::W4A4, LowbitScheme::Mxfp4, LowbitScheme::Nvfp4,
                                 LowbitScheme::W8A8, LowbitScheme::W4A16};
const LowRankMode kModes[] = {LowRankMode::Fused, LowRankMode::Side, LowRankMode::Unfused};

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(svdq::isa_choice().detected); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

// The GEMM paths: every ISA level, and the AVX-512 level once more with the AMX tile unit where this
// machine has it (amx.h: the same exact block sums, so the same bits).
struct Path {
  Isa isa;
  bool amx;
};

std::vector<Path> paths() {
  std::vector<Path> v;
  for (Isa isa : isas()) {
    v.push_back({isa, false});
    if (isa == Isa::Avx512 && svdq::amx_supported()) v.push_back({isa, true});
  }
  return v;
}

std::string path_name(Path p) { return std::string(svdq::isa_name(p.isa)) + (p.amx ? "+amx" : ""); }

void note_isas_once() {
  static bool done = false;
  if (done) return;
  done = true;
  std::string s;
  for (Path p : paths()) s += std::string(s.empty() ? "" : ", ") + path_name(p);
  std::printf("    lowbit: testing ISA paths {%s} (detected %s; AMX: %s)\n", s.c_str(), svdq::isa_name(svdq::isa_choice().detected),
              svdq::amx_status().c_str());
}

int64_t kernel_groups(LowbitScheme s, int64_t k) { return lowbit_ref::canonical_groups(s, k); }

std::string label(LowbitScheme s, int64_t M, int64_t K, int64_t N, int64_t R, Path path, LowRankMode mode, int threads) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s M=%lld K=%lld N=%lld r=%lld isa=%s mode=%s threads=%d",
                svdq::lowbit_scheme_name(s), static_cast<long long>(M), static_cast<long long>(K),
                static_cast<long long>(N), static_cast<long long>(R), path_name(path).c_str(),
                svdq::lowrank_mode_name(mode), threads);
  return buf;
}

bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return svdq::f32_bits(a) == svdq::f32_bits(b);
}

std::vector<float> run(const svdq::LowbitLayer& L, const std::vector<float>& X, int64_t M, LowRankMode mode,
                       int threads, Path path) {
  std::vector<float> Y(static_cast<size_t>(M * L.n), -12345.0f);
  const bool before = svdq::amx_enabled();
  svdq::set_amx_enabled(path.amx);
  svdq::lowbit_forward(L, X.data(), M, Y.data(), mode, threads, path.isa);
  svdq::set_amx_enabled(before);
  return Y;
}

// Runs every ISA × mode × thread count; checks all outputs are bit-identical and returns the first.
// `fail_budget` limits the messages.
std::vector<float> run_all(const svdq::LowbitLayer& L, const std::vector<float>& X, int64_t M, const char* what) {
  std::vector<float> first;
  bool have = false;
  for (Path path : paths())
    for (LowRankMode mode : kModes)
      for (int threads : {1, 2}) {
        std::vector<float> Y = run(L, X, M, mode, threads, path);
        if (!have) {
          first = Y;
          have = true;
          continue;
        }
        int64_t bad = 0, first_bad = -1;
        for (size_t i = 0; i < Y.size(); ++i)
          if (!same_bits(Y[i], first[i])) {
            if (first_bad < 0) first_bad = static_cast<int64_t>(i);
            ++bad;
          }
        if (bad > 0) {
          char buf[400];
          std::snprintf(buf, sizeof buf, "%s: %s differs from portable/fused/1 in %lld outputs (first at %lld: %.9g vs %.9g)",
                        what, label(L.scheme, M, L.k, L.n, L.rank, path, mode, threads).c_str(),
                        static_cast<long long>(bad), static_cast<long long>(first_bad),
                        static_cast<double>(Y[static_cast<size_t>(first_bad)]),
                        static_cast<double>(first[static_cast<size_t>(first_bad)]));
          CHECK_MSG(false, buf);
        }
      }
  return first;
}

// |y − ref| <= (K + 2G + r + 8)·2⁻²⁴·S (+ a tiny absolute floor for fp32 underflow).
// Returns the largest observed |y − ref| / (2⁻²⁴·S).
double check_against_reference(const std::vector<float>& Y, const std::vector<double>& ref, const std::vector<double>& S,
                               int64_t K, int64_t G, int64_t R, const std::string& what, bool exact) {
  const double factor = static_cast<double>(K + 2 * G + R + 8) * std::ldexp(1.0, -24);
  int reported = 0;
  double worst = 0.0;
  for (size_t i = 0; i < Y.size(); ++i) {
    const double y = Y[i], r = ref[i];
    bool ok;
    if (std::isnan(r)) ok = std::isnan(y);
    else if (exact) ok = (y == r);
    else {
      const double err = std::fabs(y - r);
      const double tol = factor * S[i] + 1e-35;
      ok = err <= tol;
      if (S[i] > 0) worst = std::max(worst, err / (std::ldexp(1.0, -24) * S[i]));
    }
    if (!ok && reported < 5) {
      char buf[400];
      std::snprintf(buf, sizeof buf, "%s: output %zu = %.9g, reference %.9g (S=%.3g)", what.c_str(), i, y, r, S[i]);
      CHECK_MSG(false, buf);
      ++reported;
    }
  }
  return worst;
}

// ---- random layers and inputs ------------------------------------------------------------------

CanonicalLayer random_layer(LowbitScheme scheme, int64_t N, int64_t K, int64_t R, bool smooth, bool bias, Rng& rng) {
  std::vector<float> W(static_cast<size_t>(N * K));
  for (auto& w : W) w = static_cast<float>(0.05 * rng.normal() * (rng.below(50) == 0 ? 8.0 : 1.0));
  std::vector<float> lam, ld, lu, b;
  if (smooth) {
    lam.resize(static_cast<size_t>(K));
    for (auto& l : lam) l = static_cast<float>(std::pow(2.0, 4.0 * rng.uniform() - 2.0));
  }
  ld.resize(static_cast<size_t>(R * K));
  for (auto& v : ld) v = static_cast<float>(0.1 * rng.normal());
  lu.resize(static_cast<size_t>(N * R));
  for (auto& v : lu) v = static_cast<float>(0.1 * rng.normal());
  if (bias) {
    b.resize(static_cast<size_t>(N));
    for (auto& v : b) v = static_cast<float>(rng.normal());
  }
  return lowbit_ref::quantize_layer(scheme, N, K, R, W, lam, ld, lu, b);
}

// Normal activations with one huge outlier channel; every 5th row (from row 2) all zero.
std::vector<float> random_input(int64_t M, int64_t K, Rng& rng) {
  std::vector<float> X(static_cast<size_t>(M * K));
  const int64_t outlier = rng.below(static_cast<int>(K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < K; ++i) {
      float v = static_cast<float>(rng.normal());
      if (i == outlier) v *= 3000.0f;
      if (m % 5 == 2) v = 0.0f;
      X[static_cast<size_t>(m * K + i)] = v;
    }
  return X;
}

struct Shape {
  int64_t M, K, N, R;
  bool smooth, bias;
};

const Shape kRandomShapes[] = {
    {1, 100, 37, 0, false, true},    {3, 129, 33, 1, true, false},   {17, 3105, 19, 32, true, true},
    {256, 129, 51, 64, true, true},  {17, 100, 131, 32, false, false}, {256, 3105, 17, 32, true, true},
    {1, 3105, 67, 64, true, false},  {5, 257, 45, 0, true, true},
    // Token counts whose last 6-row tile has 1, 2 or 4 rows; even and odd panel counts.
    {7, 200, 64, 32, true, true},    {8, 130, 97, 1, false, true},   {10, 64, 33, 64, true, false},
};

void random_suite(LowbitScheme scheme, uint64_t seed) {
  note_isas_once();
  Rng rng(seed);
  double worst = 0.0, bound = 0.0;
  for (const Shape& s : kRandomShapes) {
    const CanonicalLayer C = random_layer(scheme, s.N, s.K, s.R, s.smooth, s.bias, rng);
    const auto L = svdq::prepare_lowbit_layer(C.desc());
    const std::vector<float> X = random_input(s.M, s.K, rng);
    std::vector<double> ref, S;
    lowbit_ref::reference_forward(C, svdq::MxScaleRule::Even, X.data(), s.M, ref, S);
    const std::string what = label(scheme, s.M, s.K, s.N, s.R, Path{Isa::Portable, false}, LowRankMode::Fused, 1);
    const std::vector<float> Y = run_all(*L, X, s.M, what.c_str());
    worst = std::max(worst, check_against_reference(Y, ref, S, s.K, kernel_groups(scheme, s.K), s.R, what, false));
    bound = std::max(bound, static_cast<double>(s.K + 2 * kernel_groups(scheme, s.K) + s.R + 8));
  }
  std::printf("    lowbit: %s random suite: worst |y - ref| = %.2f x 2^-24 x S (bound used: up to %.0f x)\n",
              svdq::lowbit_scheme_name(scheme), worst, bound);
}

// ---- exact inputs ------------------------------------------------------------------------------
// Power-of-two scales and small codes: every product and partial sum is exact in fp32, so the
// kernels must reproduce the double reference exactly.

uint8_t int4_nib(int q) { return static_cast<uint8_t>(q & 0xF); }
const float kE2m1Vals[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

void set_nib(std::vector<uint8_t>& packed, int64_t idx, uint8_t v) {
  uint8_t& b = packed[static_cast<size_t>(idx / 2)];
  if (idx & 1) b = static_cast<uint8_t>((b & 0x0F) | (v << 4));
  else b = static_cast<uint8_t>((b & 0xF0) | (v & 0xF));
}

CanonicalLayer exact_layer(LowbitScheme scheme, int64_t N, int64_t K, int64_t R, bool smooth, bool bias, Rng& rng) {
  CanonicalLayer C;
  C.scheme = scheme;
  C.n = N;
  C.k = K;
  C.rank = R;
  const int64_t G = lowbit_ref::canonical_groups(scheme, K);
  switch (scheme) {
    case LowbitScheme::W4A4:
    case LowbitScheme::W4A16: {
      const int64_t kp = svdq::padded_k(K, 64);
      C.codes.assign(static_cast<size_t>(N * kp / 2), 0);
      C.fscales.resize(static_cast<size_t>(N * G));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < K; ++i) set_nib(C.codes, n * kp + i, int4_nib(rng.range(-7, 7)));
      for (auto& s : C.fscales) s = std::ldexp(1.0f, rng.range(-1, 1));
      break;
    }
    case LowbitScheme::Mxfp4:
    case LowbitScheme::Nvfp4: {
      const int64_t grp = scheme == LowbitScheme::Mxfp4 ? 32 : 16;
      const int64_t kp = svdq::padded_k(K, grp);
      C.codes.assign(static_cast<size_t>(N * kp / 2), 0);
      C.bscales.resize(static_cast<size_t>(N * G));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < K; ++i) set_nib(C.codes, n * kp + i, static_cast<uint8_t>(rng.below(16)));
      for (auto& s : C.bscales)
        s = scheme == LowbitScheme::Mxfp4 ? static_cast<uint8_t>(127 + rng.range(-1, 1))
                                          : svdq::e4m3_encode(std::ldexp(1.0f, rng.range(-1, 1)));
      C.global_scale = 4.0f;
      break;
    }
    case LowbitScheme::W8A8: {
      C.codes.resize(static_cast<size_t>(N * K));
      C.fscales.resize(static_cast<size_t>(N));
      for (auto& q : C.codes) q = static_cast<uint8_t>(static_cast<int8_t>(rng.range(-8, 8)));
      for (auto& s : C.fscales) s = std::ldexp(1.0f, rng.range(-1, 1));
      break;
    }
  }
  if (smooth) {
    C.smooth.resize(static_cast<size_t>(K));
    for (auto& l : C.smooth) l = std::ldexp(1.0f, rng.range(-1, 1));
  }
  C.l_down.resize(static_cast<size_t>(R * K));
  for (auto& v : C.l_down) v = 0.5f * static_cast<float>(rng.range(-1, 1));
  C.l_up.resize(static_cast<size_t>(N * R));
  for (auto& v : C.l_up) v = 0.5f * static_cast<float>(rng.range(-1, 1));
  if (bias) {
    C.bias.resize(static_cast<size_t>(N));
    for (auto& v : C.bias) v = 0.125f * static_cast<float>(rng.range(-8, 8));
  }
  return C;
}

// X̂ values whose quantization is exact (codes recovered exactly, power-of-two scales), then
// X = X̂·λ (exact for power-of-two λ). Every 4th row (from row 1) is all zero.
std::vector<float> exact_input(const CanonicalLayer& C, int64_t M, Rng& rng) {
  const int64_t K = C.k;
  std::vector<float> xh(static_cast<size_t>(M * K), 0.0f);
  for (int64_t m = 0; m < M; ++m) {
    float* row = xh.data() + m * K;
    if (m % 4 == 1) continue;
    switch (C.scheme) {
      case LowbitScheme::W4A4:
      case LowbitScheme::W4A16:
        for (int64_t g0 = 0; g0 < K; g0 += 64) {
          const int64_t g1 = std::min<int64_t>(K, g0 + 64);
          const float s = std::ldexp(1.0f, rng.range(-1, 1));
          for (int64_t i = g0; i < g1; ++i) row[i] = static_cast<float>(rng.range(-7, 7)) * s;
          row[g0 + rng.below(static_cast<int>(g1 - g0))] = (rng.below(2) ? 7.0f : -7.0f) * s;
        }
        break;
      case LowbitScheme::Mxfp4:
        for (int64_t g0 = 0; g0 < K; g0 += 32) {
          const int64_t g1 = std::min<int64_t>(K, g0 + 32);
          const float s = std::ldexp(1.0f, rng.range(-1, 1));
          for (int64_t i = g0; i < g1; ++i) row[i] = kE2m1Vals[rng.below(8)] * (rng.below(2) ? s : -s);
          row[g0 + rng.below(static_cast<int>(g1 - g0))] = (rng.below(2) ? 4.0f : -6.0f) * s;
        }
        break;
      case LowbitScheme::Nvfp4: {
        // Row amax 21 (G_x = 2688/21 = 128 exactly), held by an anchor block of step 3.5;
        // other blocks have amax 6·2^a (block scale 2^(7+a), step 2^a).
        const int64_t nb = (K + 15) / 16;
        const int64_t anchor = rng.below(static_cast<int>(nb));
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t g0 = b * 16, g1 = std::min<int64_t>(K, g0 + 16);
          const float step = b == anchor ? 3.5f : std::ldexp(1.0f, rng.range(-1, 1));
          for (int64_t i = g0; i < g1; ++i) row[i] = kE2m1Vals[rng.below(8)] * (rng.below(2) ? step : -step);
          row[g0 + rng.below(static_cast<int>(g1 - g0))] = (rng.below(2) ? 6.0f : -6.0f) * step;
        }
        break;
      }
      case LowbitScheme::W8A8: {
        const float s = std::ldexp(1.0f, rng.range(-1, 1));
        for (int64_t i = 0; i < K; ++i) row[i] = static_cast<float>(rng.range(-7, 7)) * s;
        row[rng.below(static_cast<int>(K))] = (rng.below(2) ? 127.0f : -127.0f) * s;
        break;
      }
    }
  }
  std::vector<float> X(xh);
  if (!C.smooth.empty())
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < K; ++i) X[static_cast<size_t>(m * K + i)] *= C.smooth[static_cast<size_t>(i)];
  return X;
}

void exact_suite(LowbitScheme scheme, uint64_t seed) {
  note_isas_once();
  Rng rng(seed);
  const bool nv = scheme == LowbitScheme::Nvfp4;
  const Shape shapes[] = {
      {1, 100, 37, 0, false, false}, {3, 129, 33, 1, true, true},    {17, nv ? 300 : 3105, 21, 32, true, true},
      {256, 129, 19, 64, false, true}, {9, 64, 16, 32, true, false}, {33, nv ? 257 : 1000, 53, 0, true, true},
  };
  for (const Shape& s : shapes) {
    const CanonicalLayer C = exact_layer(scheme, s.N, s.K, s.R, s.smooth, s.bias, rng);
    const auto L = svdq::prepare_lowbit_layer(C.desc());
    const std::vector<float> X = exact_input(C, s.M, rng);
    std::vector<double> ref, S;
    lowbit_ref::reference_forward(C, svdq::MxScaleRule::Even, X.data(), s.M, ref, S);
    const std::string what = "exact " + label(scheme, s.M, s.K, s.N, s.R, Path{Isa::Portable, false}, LowRankMode::Fused, 1);
    const std::vector<float> Y = run_all(*L, X, s.M, what.c_str());
    check_against_reference(Y, ref, S, s.K, kernel_groups(scheme, s.K), s.R, what, true);
  }
}


// Checks quantize_act's codes, scales, corrections, α and D against the portable quantizers of
// formats.h on X̂ = X/λ, for every ISA level.
void check_quantize_act(const CanonicalLayer& C, svdq::MxScaleRule rule, const std::vector<float>& X, int64_t M,
                        const std::string& what_base) {
  const svdq::FormatKernels& fk = svdq::portable::kFormatKernels;
  const LowbitScheme scheme = C.scheme;
  const int64_t K = C.k, R = C.rank;
  svdq::LowbitOptions opt;
  opt.act_mx_rule = rule;
  const auto L = svdq::prepare_lowbit_layer(C.desc(), opt);
  const int64_t kp = L->kp, G = L->groups;
  std::vector<float> xh(static_cast<size_t>(K));
  std::vector<uint8_t> packed(static_cast<size_t>(kp));
  std::vector<float> fs(static_cast<size_t>(G));
  std::vector<uint8_t> bs(static_cast<size_t>(G));
  std::vector<int8_t> q8(static_cast<size_t>(K));
  std::vector<int8_t> ecodes(static_cast<size_t>(M * kp), 0);
  std::vector<float> escale(static_cast<size_t>(M * G)), erow(static_cast<size_t>(M), 0.0f);
  std::vector<int32_t> ecorr(static_cast<size_t>(M * G));
  std::vector<float> edown(static_cast<size_t>(M * R));
  auto nib = [&](int64_t i) { return static_cast<uint8_t>((i & 1) ? packed[static_cast<size_t>(i / 2)] >> 4 : packed[static_cast<size_t>(i / 2)] & 15); };
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t i = 0; i < K; ++i)
      xh[static_cast<size_t>(i)] = C.smooth.empty() ? X[static_cast<size_t>(m * K + i)] : X[static_cast<size_t>(m * K + i)] / C.smooth[static_cast<size_t>(i)];
    for (int64_t r = 0; r < R; ++r) {
      float acc = 0.0f;
      for (int64_t i = 0; i < K; ++i) acc = ::fmaf(xh[static_cast<size_t>(i)], C.l_down[static_cast<size_t>(r * K + i)], acc);
      edown[static_cast<size_t>(m * R + r)] = acc;
    }
    int8_t* cr = ecodes.data() + m * kp;
    switch (scheme) {
      case LowbitScheme::W4A4:
        fk.quantize_int4(xh.data(), 1, K, packed.data(), fs.data());
        for (int64_t i = 0; i < kp; ++i) cr[i] = svdq::int4_from_nibble(nib(i));
        for (int64_t g = 0; g < G; ++g) escale[static_cast<size_t>(m * G + g)] = fs[static_cast<size_t>(g)];
        break;
      case LowbitScheme::Mxfp4:
        fk.quantize_mxfp4(xh.data(), 1, K, packed.data(), bs.data(), rule);
        for (int64_t i = 0; i < kp; ++i) cr[i] = static_cast<int8_t>(2.0f * svdq::e2m1_decode(nib(i)));
        for (int64_t g = 0; g < G; ++g)
          escale[static_cast<size_t>(m * G + g)] = bs[static_cast<size_t>(g)] == 0xFF ? std::nanf("") : static_cast<float>(bs[static_cast<size_t>(g)] - 256);
        break;
      case LowbitScheme::Nvfp4: {
        const float gx = svdq::nvfp4_global_scale(fk.amax_finite(xh.data(), K));
        fk.quantize_nvfp4(xh.data(), 1, K, gx, packed.data(), bs.data());
        for (int64_t i = 0; i < kp; ++i) cr[i] = static_cast<int8_t>(2.0f * svdq::e2m1_decode(nib(i)));
        for (int64_t g = 0; g < G; ++g) escale[static_cast<size_t>(m * G + g)] = svdq::e4m3_decode(bs[static_cast<size_t>(g)]);
        erow[static_cast<size_t>(m)] = static_cast<float>(1.0 / (4.0 * gx * static_cast<double>(C.global_scale)));
        break;
      }
      case LowbitScheme::W8A8: {
        float sc = 0;
        fk.quantize_int8(xh.data(), 1, K, q8.data(), &sc);
        for (int64_t i = 0; i < K; ++i) cr[i] = q8[static_cast<size_t>(i)];
        escale[static_cast<size_t>(m)] = sc;
        break;
      }
      case LowbitScheme::W4A16: break;
    }
    for (int64_t g = 0; g < G; ++g) {
      int32_t sum = 0;
      for (int64_t i = g * L->group; i < (g + 1) * L->group; ++i) sum += cr[i];
      ecorr[static_cast<size_t>(m * G + g)] = -L->offset * sum;
    }
  }
  for (Isa isa : isas()) {
    svdq::LowbitActs A;
    svdq::quantize_act(*L, X.data(), M, A, true, 2, isa);
    const std::string what = what_base + " isa=" + svdq::isa_name(isa);
    int bad = 0;
    for (int64_t m = 0; m < M; ++m) {
      if (scheme == LowbitScheme::W4A16) {
        for (int64_t i = 0; i < kp; ++i) {
          const float want = i >= K ? 0.0f : C.smooth.empty() ? X[static_cast<size_t>(m * K + i)] : X[static_cast<size_t>(m * K + i)] / C.smooth[static_cast<size_t>(i)];
          if (!same_bits(A.xhat.as<float>()[m * kp + i], want)) ++bad;
        }
      } else {
        for (int64_t i = 0; i < kp; ++i)
          if (A.codes.as<int8_t>()[m * kp + i] != ecodes[static_cast<size_t>(m * kp + i)]) {
            if (bad < 3)
              std::fprintf(stderr, "    %s: row %lld code %lld = %d, expected %d (x̂ = %.9g)\n", what.c_str(), static_cast<long long>(m),
                           static_cast<long long>(i), A.codes.as<int8_t>()[m * kp + i], ecodes[static_cast<size_t>(m * kp + i)],
                           i < K ? static_cast<double>(X[static_cast<size_t>(m * K + i)]) : 0.0);
            ++bad;
          }
        for (int64_t g = 0; g < G; ++g) {
          if (!same_bits(A.scale.as<float>()[g * M + m], escale[static_cast<size_t>(m * G + g)])) ++bad;
          if (A.corr.as<int32_t>()[g * M + m] != ecorr[static_cast<size_t>(m * G + g)]) ++bad;
        }
        if (scheme == LowbitScheme::Nvfp4 && !same_bits(A.row_scale.as<float>()[m], erow[static_cast<size_t>(m)])) ++bad;
      }
      for (int64_t r = 0; r < R; ++r)
        if (!same_bits(A.down.as<float>()[m * R + r], edown[static_cast<size_t>(m * R + r)])) ++bad;
    }
    CHECK_MSG(bad == 0, what + ": " + std::to_string(bad) + " mismatches");
  }
}

// Values that stress the quantizers: exact rounding ties and their neighbours at group scales that
// make them ties, subnormal and huge groups, signed zeros, NaN/Inf sprinkles, random bit patterns.
std::vector<float> adversarial_input(int64_t M, int64_t K, Rng& rng) {
  std::vector<float> X(static_cast<size_t>(M * K));
  for (int64_t m = 0; m < M; ++m) {
    const int kind = static_cast<int>(m % 8);
    const float scale = std::ldexp(1.0f, rng.range(-20, 20));
    for (int64_t i = 0; i < K; ++i) {
      float v = 0.0f;
      switch (kind) {
        case 0: v = static_cast<float>(rng.range(-32, 32)) * 0.25f * scale; break;  // E2M1 / INT4 ties
        case 1: {                                                                   // near ties
          const float t = static_cast<float>(rng.range(-32, 32)) * 0.25f * scale;
          uint32_t u = svdq::f32_bits(t);
          if (t != 0.0f) u += static_cast<uint32_t>(rng.range(-2, 2));
          v = svdq::f32_from_bits(u);
          break;
        }
        case 2: v = static_cast<float>(rng.range(-7, 7)) * 0.5f * scale; break;  // INT4 .5 ties at s = 2^k
        case 3: v = svdq::f32_from_bits(static_cast<uint32_t>(rng.next()) & 0x807FFFFFu); break;  // subnormal
        case 4: v = static_cast<float>(rng.normal()) * 1e37f; break;                           // huge
        case 5: v = (rng.below(2) ? -0.0f : 0.0f); break;                                      // signed zeros
        case 6: {
          const uint32_t u = static_cast<uint32_t>(rng.next());
          v = svdq::f32_from_bits((u & 0x7F800000u) == 0x7F800000u ? u & 0xBFFFFFFFu : u);  // finite random bits
          break;
        }
        default: v = static_cast<float>(rng.normal()); break;
      }
      if (kind == 2 && i % 64 == 0) v = 7.0f * scale;  // anchors make s = amax/7 a power of two
      if (kind == 0 && i % 32 == 0) v = 4.0f * scale;  // and the E8M0 scale exactly `scale`
      X[static_cast<size_t>(m * K + i)] = v;
    }
    if (m % 5 == 4) X[static_cast<size_t>(m * K + rng.below(static_cast<int>(K)))] = rng.below(2) ? std::nanf("") : -INFINITY;
  }
  return X;
}

}  // namespace

// ---- quantize_act ------------------------------------------------------------------------------

TEST(lowbit_quantize_act_matches_formats) {
  note_isas_once();
  Rng rng(101);
  for (LowbitScheme scheme : kSchemes)
    for (int64_t K : {100, 129, 3105})
      for (svdq::MxScaleRule rule : {svdq::MxScaleRule::Even, svdq::MxScaleRule::Floor, svdq::MxScaleRule::Ceil}) {
        if (rule != svdq::MxScaleRule::Even && scheme != LowbitScheme::Mxfp4) continue;
        const int64_t M = 11, N = 20, R = 32;
        const CanonicalLayer C = random_layer(scheme, N, K, R, true, false, rng);
        std::vector<float> X = random_input(M, K, rng);
        X[static_cast<size_t>(7 * K + K / 2)] = std::nanf("");  // row 7: one NaN group
        char what[120];
        std::snprintf(what, sizeof what, "quantize_act %s K=%lld rule=%d", svdq::lowbit_scheme_name(scheme),
                      static_cast<long long>(K), static_cast<int>(rule));
        check_quantize_act(C, rule, X, M, what);
      }
}

TEST(lowbit_quantize_act_adversarial) {
  Rng rng(102);
  for (LowbitScheme scheme : kSchemes)
    for (int64_t K : {64, 200, 1000})
      for (svdq::MxScaleRule rule : {svdq::MxScaleRule::Even, svdq::MxScaleRule::Floor, svdq::MxScaleRule::Ceil}) {
        if (rule != svdq::MxScaleRule::Even && scheme != LowbitScheme::Mxfp4) continue;
        for (bool smooth : {false, true}) {
          const int64_t M = 40, N = 3, R = 1;
          const CanonicalLayer C = random_layer(scheme, N, K, R, smooth, false, rng);
          const std::vector<float> X = adversarial_input(M, K, rng);
          char what[140];
          std::snprintf(what, sizeof what, "adversarial quantize_act %s K=%lld rule=%d smooth=%d",
                        svdq::lowbit_scheme_name(scheme), static_cast<long long>(K), static_cast<int>(rule), smooth ? 1 : 0);
          check_quantize_act(C, rule, X, M, what);
        }
      }
}


// ---- exact and random suites per scheme --------------------------------------------------------

TEST(lowbit_exact_w4a4) { exact_suite(LowbitScheme::W4A4, 1); }
TEST(lowbit_exact_mxfp4) { exact_suite(LowbitScheme::Mxfp4, 2); }
TEST(lowbit_exact_nvfp4) { exact_suite(LowbitScheme::Nvfp4, 3); }
TEST(lowbit_exact_w8a8) { exact_suite(LowbitScheme::W8A8, 4); }
TEST(lowbit_exact_w4a16) { exact_suite(LowbitScheme::W4A16, 5); }

TEST(lowbit_random_w4a4) { random_suite(LowbitScheme::W4A4, 11); }
TEST(lowbit_random_mxfp4) { random_suite(LowbitScheme::Mxfp4, 12); }
TEST(lowbit_random_nvfp4) { random_suite(LowbitScheme::Nvfp4, 13); }
TEST(lowbit_random_w8a8) { random_suite(LowbitScheme::W8A8, 14); }
TEST(lowbit_random_w4a16) { random_suite(LowbitScheme::W4A16, 15); }

// ---- non-finite activations --------------------------------------------------------------------

TEST(lowbit_nan_rows) {
  Rng rng(21);
  for (LowbitScheme scheme : kSchemes) {
    const int64_t M = 6, K = 200, N = 35, R = 32;
    const CanonicalLayer C = random_layer(scheme, N, K, R, true, true, rng);
    const auto L = svdq::prepare_lowbit_layer(C.desc());
    std::vector<float> X = random_input(M, K, rng);
    X[static_cast<size_t>(1 * K + 150)] = std::nanf("");
    X[static_cast<size_t>(4 * K + 3)] = std::nanf("");
    std::vector<double> ref, S;
    lowbit_ref::reference_forward(C, svdq::MxScaleRule::Even, X.data(), M, ref, S);
    const std::string what = std::string("nan rows ") + svdq::lowbit_scheme_name(scheme);
    const std::vector<float> Y = run_all(*L, X, M, what.c_str());
    for (int64_t m = 0; m < M; ++m) {
      int nans = 0;
      for (int64_t n = 0; n < N; ++n) nans += std::isnan(Y[static_cast<size_t>(m * N + n)]) ? 1 : 0;
      const bool nan_row = m == 1 || m == 4;
      CHECK_MSG(nans == (nan_row ? N : 0), what + ": row " + std::to_string(m) + " has " + std::to_string(nans) + " NaN outputs");
    }
    check_against_reference(Y, ref, S, K, kernel_groups(scheme, K), R, what, false);
  }
}

// ---- bf16 low-rank storage ---------------------------------------------------------------------

TEST(lowbit_bf16_lowrank_equals_fp32_on_rounded_factors) {
  Rng rng(31);
  for (LowbitScheme scheme : {LowbitScheme::W4A4, LowbitScheme::Mxfp4}) {
    const int64_t M = 19, K = 300, N = 41, R = 32;
    CanonicalLayer C = random_layer(scheme, N, K, R, true, true, rng);
    svdq::LowbitOptions opt;
    opt.lowrank_bf16 = true;
    const auto Lb = svdq::prepare_lowbit_layer(C.desc(), opt);
    auto round_bf16 = [](float x) {
      uint32_t u = svdq::f32_bits(x);
      u += 0x7FFFu + ((u >> 16) & 1u);
      return svdq::f32_from_bits(u & 0xFFFF0000u);
    };
    for (auto& v : C.l_down) v = round_bf16(v);
    for (auto& v : C.l_up) v = round_bf16(v);
    const auto Lf = svdq::prepare_lowbit_layer(C.desc());
    CHECK(Lb->bytes() < Lf->bytes());
    const std::vector<float> X = random_input(M, K, rng);
    const std::vector<float> Yb = run_all(*Lb, X, M, "bf16 layer");
    const std::vector<float> Yf = run(*Lf, X, M, LowRankMode::Fused, 1, Path{Isa::Portable, false});
    int bad = 0;
    for (size_t i = 0; i < Yb.size(); ++i) bad += same_bits(Yb[i], Yf[i]) ? 0 : 1;
    CHECK_MSG(bad == 0, std::string("bf16 vs rounded fp32 ") + svdq::lowbit_scheme_name(scheme) + ": " + std::to_string(bad) + " differ");
  }
}

// ---- the MX scale rule option reaches the activation quantizer ---------------------------------

TEST(lowbit_mx_rule_option) {
  Rng rng(41);
  const int64_t M = 4, K = 96, N = 17;
  const CanonicalLayer C = random_layer(LowbitScheme::Mxfp4, N, K, 0, false, false, rng);
  std::vector<float> X(static_cast<size_t>(M * K));
  for (auto& v : X) v = static_cast<float>(rng.normal());
  for (int64_t m = 0; m < M; ++m) X[static_cast<size_t>(m * K)] = 7.5f;  // amax mantissa 1.875: floor clips
  for (svdq::MxScaleRule rule : {svdq::MxScaleRule::Floor, svdq::MxScaleRule::Even, svdq::MxScaleRule::Ceil}) {
    svdq::LowbitOptions opt;
    opt.act_mx_rule = rule;
    const auto L = svdq::prepare_lowbit_layer(C.desc(), opt);
    std::vector<double> ref, S;
    lowbit_ref::reference_forward(C, rule, X.data(), M, ref, S);
    const std::vector<float> Y = run_all(*L, X, M, "mx rule");
    check_against_reference(Y, ref, S, K, 3, 0, std::string("mx rule ") + std::to_string(static_cast<int>(rule)), false);
  }
}

// ---- validation --------------------------------------------------------------------------------

TEST(lowbit_prepare_rejects_bad_input) {
  Rng rng(51);
  auto throws = [](const svdq::LowbitLayerDesc& d, const char* what) {
    bool threw = false;
    try {
      svdq::prepare_lowbit_layer(d);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK_MSG(threw, std::string("expected an error: ") + what);
  };
  CanonicalLayer C = random_layer(LowbitScheme::W4A4, 20, 70, 2, true, true, rng);
  svdq::LowbitLayerDesc d = C.desc();
  { auto e = d; e.n = 0; throws(e, "n = 0"); }
  { auto e = d; e.k = -1; throws(e, "k < 0"); }
  { auto e = d; e.rank = -1; throws(e, "rank < 0"); }
  { auto e = d; e.w_codes = nullptr; throws(e, "null codes"); }
  { auto e = d; e.l_up = nullptr; throws(e, "rank without l_up"); }
  { auto e = d; e.scheme = static_cast<LowbitScheme>(9); throws(e, "bad scheme"); }
  {
    CanonicalLayer c2 = C;
    c2.smooth[3] = 0.0f;
    throws(c2.desc(), "zero lambda");
    c2 = C;
    c2.l_down[5] = std::nanf("");
    throws(c2.desc(), "NaN l_down");
    c2 = C;
    c2.fscales[1] = INFINITY;
    throws(c2.desc(), "Inf weight scale");
    c2 = C;
    c2.bias[0] = std::nanf("");
    throws(c2.desc(), "NaN bias");
  }
  {
    CanonicalLayer m = random_layer(LowbitScheme::Mxfp4, 5, 40, 0, false, false, rng);
    m.bscales[2] = 0xFF;
    throws(m.desc(), "NaN E8M0 weight scale");
    CanonicalLayer v = random_layer(LowbitScheme::Nvfp4, 5, 40, 0, false, false, rng);
    auto e = v.desc();
    e.w_global_scale = 0.0f;
    throws(e, "zero nvfp4 global scale");
  }
  // A valid layer still works, and bad calls are errors, not crashes.
  const auto L = svdq::prepare_lowbit_layer(d);
  bool threw = false;
  try {
    svdq::lowbit_forward(*L, nullptr, 3, nullptr);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  svdq::lowbit_forward(*L, nullptr, 0, nullptr);  // M = 0: nothing to do
}

// ---- kernel-format size ------------------------------------------------------------------------

TEST(lowbit_kernel_format_bytes) {
  // Kernel-format bytes of FLUX-sized layers relative to the dense bf16 layer (printed), and the
  // exact byte count of a small layer.
  Rng rng(61);
  const CanonicalLayer C = random_layer(LowbitScheme::W4A4, 33, 130, 3, true, true, rng);
  const auto L = svdq::prepare_lowbit_layer(C.desc());
  // P = 3 panels, kp = 192, G = 3, rp = 16.
  const size_t want = 3 * 192 * 8 + 3 * 3 * 16 * 4 + 130 * 4 + 192 * 16 * 4 + 3 * 3 * 16 * 4 + 48 * 4;
  CHECK_EQ(L->bytes(), want);
  for (LowbitScheme scheme : {LowbitScheme::W4A4, LowbitScheme::Mxfp4, LowbitScheme::Nvfp4})
    for (int64_t N : {3072, 12288})
      for (bool bf16 : {false, true}) {
        const int64_t K = 3072, R = 32;
        CanonicalLayer c;
        c.scheme = scheme;
        c.n = N;
        c.k = K;
        c.rank = R;
        const int64_t G = lowbit_ref::canonical_groups(scheme, K);
        c.codes.assign(static_cast<size_t>(N * K / 2), 0);
        c.fscales.assign(static_cast<size_t>(N * G), 1.0f);
        c.bscales.assign(static_cast<size_t>(N * G), scheme == LowbitScheme::Mxfp4 ? 127 : 0x38);
        c.l_down.assign(static_cast<size_t>(R * K), 0.5f);
        c.l_up.assign(static_cast<size_t>(N * R), 0.5f);
        c.smooth.assign(static_cast<size_t>(K), 1.0f);
        c.bias.assign(static_cast<size_t>(N), 0.0f);
        svdq::LowbitOptions opt;
        opt.lowrank_bf16 = bf16;
        const auto l = svdq::prepare_lowbit_layer(c.desc(), opt);
        std::printf("    lowbit: %s N=%lld K=3072 r=32 %s factors: kernel format %.2f MB = %.3f x bf16 layer\n",
                    svdq::lowbit_scheme_name(scheme), static_cast<long long>(N), bf16 ? "bf16" : "fp32",
                    static_cast<double>(l->bytes()) / 1e6, static_cast<double>(l->bytes()) / static_cast<double>(l->bf16_bytes()));
      }
}

// ---- the two-step API and the default instruction set -----------------------------------------

TEST(lowbit_two_step_api_equals_forward) {
  Rng rng(71);
  for (LowbitScheme scheme : kSchemes) {
    const int64_t M = 13, K = 160, N = 50, R = 32;
    const CanonicalLayer C = random_layer(scheme, N, K, R, true, true, rng);
    const auto L = svdq::prepare_lowbit_layer(C.desc());
    const std::vector<float> X = random_input(M, K, rng);
    // Default ISA (isa_choice().active) and default thread count.
    std::vector<float> Yf(static_cast<size_t>(M * N));
    svdq::lowbit_forward(*L, X.data(), M, Yf.data());
    svdq::LowbitActs A;
    svdq::quantize_act(*L, X.data(), M, A);
    std::vector<float> Yg(static_cast<size_t>(M * N));
    svdq::gemm_lowbit(*L, A, Yg.data());
    const std::vector<float> Yp = run(*L, X, M, LowRankMode::Fused, 1, Path{Isa::Portable, false});
    int bad = 0;
    for (size_t i = 0; i < Yf.size(); ++i) bad += (same_bits(Yf[i], Yg[i]) && same_bits(Yf[i], Yp[i])) ? 0 : 1;
    CHECK_MSG(bad == 0, std::string("two-step API ") + svdq::lowbit_scheme_name(scheme) + ": " + std::to_string(bad) + " outputs differ");
  }
}

// ---- extreme scales: fp32 under/overflow of the group terms ---------------------------------------

TEST(lowbit_extreme_scales_agree_across_isas) {
  // Tiny activations × tiny weights put the mxfp4 exponent sums below -126 (subnormal or zero
  // products: vscalefps, the AVX2 double path and the portable code must round alike); huge ones
  // overflow to ±Inf alike. Every scheme is run; outputs must be bit-identical across ISAs, modes
  // and thread counts, and (tiny case) match the reference within the bound plus an absolute floor.
  Rng rng(81);
  for (LowbitScheme scheme : kSchemes)
    for (int variant = 0; variant < 2; ++variant) {
      const int64_t M = 37, K = 96, N = 21;  // > 16 tokens: the tiled GEMM (AMX where present), with a tail
      const float wscale = variant == 0 ? 1e-20f : 1e18f, xscale = variant == 0 ? 1e-22f : 1e20f;
      std::vector<float> W(static_cast<size_t>(N * K));
      for (auto& w : W) w = wscale * static_cast<float>(rng.normal());
      const CanonicalLayer C = lowbit_ref::quantize_layer(scheme, N, K, 0, W, {}, {}, {}, {});
      const auto L = svdq::prepare_lowbit_layer(C.desc());
      std::vector<float> X(static_cast<size_t>(M * K));
      for (auto& x : X) x = xscale * static_cast<float>(rng.normal()) * std::ldexp(1.0f, rng.range(-12, 12));
      const std::string what = std::string("extreme scales ") + svdq::lowbit_scheme_name(scheme) + (variant ? " huge" : " tiny");
      const std::vector<float> Y = run_all(*L, X, M, what.c_str());
      if (variant == 0) {
        std::vector<double> ref, S;
        lowbit_ref::reference_forward(C, svdq::MxScaleRule::Even, X.data(), M, ref, S);
        check_against_reference(Y, ref, S, K, kernel_groups(scheme, K), 0, what, false);
      }
    }
}
