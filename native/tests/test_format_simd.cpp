// Differential tests of the SIMD format kernels (AVX2, AVX-512) against the portable reference:
// for every SIMD level this CPU supports, every entry of FormatKernels must give the same bits as
// portable::kFormatKernels on random inputs of many shapes and value distributions (normal and
// uniform over many decades, exact E2M1/INT4 tie points, neighbours of ties, NaN/Inf/-0/subnormal/
// FLT_MAX sprinkles, all-zero rows, outliers, random bit patterns), with at least 1,000,000
// elements per kernel and level. A level the CPU lacks is skipped with a note.
#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"
#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/isa.h"

using svdq::FormatKernels;
using svdq::Isa;
using svdq::MxScaleRule;

namespace {

constexpr int64_t kTargetElements = 1000000;  // per kernel (and MX rule) and level

// ---- deterministic randomness ----------------------------------------------------------------

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint32_t u32() { return static_cast<uint32_t>(next() >> 32); }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  bool chance(double p) { return uniform() < p; }
  double normal() {
    double u = uniform();
    if (u < 1e-300) u = 1e-300;
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * uniform());
  }
  float sign() { return (next() & 1) ? -1.0f : 1.0f; }
  float pow10(double lo, double hi) { return static_cast<float>(std::pow(10.0, lo + (hi - lo) * uniform())); }
};

float from_bits(uint32_t u) { return svdq::f32_from_bits(u); }
uint32_t bits(float x) { return svdq::f32_bits(x); }

// ---- value distributions ---------------------------------------------------------------------

enum Dist {
  kNormal,      // normal, random row scale in 1e-30..1e30
  kUniform,     // uniform in [-a, a], a in 1e-30..1e30
  kTies,        // multiples of 1/4 (every E2M1 and INT4 tie) times 2^e, with ±6 or ±7 anchors
  kNearTies,    // tie points and their neighbours (±1, ±2 ulps) times 2^e, with anchors
  kSpecials,    // normal with a sprinkling of NaN/±Inf/±0/subnormals/FLT_MIN/FLT_MAX
  kZero,        // all zero (some -0)
  kOutlier,     // small normal values and one huge outlier
  kSubnormal,   // small integer multiples of 2^-149 (INT4 codes -8 and x/s = ±7.5 occur) or random
  kRandomBits,  // uniformly random bit patterns (NaN/Inf included)
  kHuge,        // magnitudes near FLT_MAX
  kDistCount
};

const char* dist_name(int d) {
  static const char* const names[] = {"normal", "uniform",  "ties",        "near-ties", "specials",
                                      "zero",   "outlier",  "subnormal",   "random-bits", "huge"};
  return (d >= 0 && d < kDistCount) ? names[d] : "mixed";
}

float special(Rng& rng) {
  switch (rng.below(14)) {
    case 0: return from_bits(0x7FC00000u);
    case 1: return from_bits(0xFFC00000u);
    case 2: return from_bits(0x7F800001u + (rng.u32() & 0x3FFFFF));  // signalling-NaN pattern
    case 3: return INFINITY;
    case 4: return -INFINITY;
    case 5: return -0.0f;
    case 6: return 0.0f;
    case 7: return rng.sign() * from_bits(1);
    case 8: return rng.sign() * FLT_MIN;
    case 9: return rng.sign() * FLT_MAX;
    case 10: return rng.sign() * from_bits(rng.u32() & 0x7FFFFF);  // random subnormal
    case 11: return rng.sign() * from_bits(0x7F7FFFFFu - (rng.u32() & 0xFF));
    case 12: return rng.sign() * 1e30f;
    default: return rng.sign() * from_bits(0x00800000u - 1 - (rng.u32() & 0xFF));
  }
}

void fill_row(Rng& rng, float* x, int64_t k, int dist) {
  switch (dist) {
    case kNormal: {
      const float s = rng.pow10(-30, 30);
      for (int64_t i = 0; i < k; ++i) x[i] = static_cast<float>(rng.normal()) * s;
      break;
    }
    case kUniform: {
      const float a = rng.pow10(-30, 30);
      for (int64_t i = 0; i < k; ++i) x[i] = static_cast<float>(2.0 * rng.uniform() - 1.0) * a;
      break;
    }
    case kTies:
    case kNearTies: {
      // A small exponent range half of the time, so that NVFP4 with a power-of-two G lands on
      // exact ties too (G·amax/6 inside the E4M3 range).
      const int e = rng.chance(0.5) ? rng.below(7) - 3 : rng.below(81) - 40;
      const float p2 = std::ldexp(1.0f, e);
      const float anchor = rng.chance(0.5) ? 7.0f : 6.0f;
      const int anchor_pos = rng.below(16);
      static const float kTiePoints[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 0.5f, 1.5f,
                                         4.5f,  5.5f,  6.5f,  7.0f,  6.0f, 3.0f, 1.0f};
      for (int64_t i = 0; i < k; ++i) {
        float v;
        if (dist == kTies) {
          v = static_cast<float>(rng.below(57) - 28) * 0.25f;
        } else {
          v = kTiePoints[rng.below(16)];
          const int steps = rng.below(5) - 2;
          for (int s = 0; s < steps; ++s) v = std::nextafter(v, INFINITY);
          for (int s = 0; s > steps; --s) v = std::nextafter(v, 0.0f);
          v *= rng.sign();
        }
        if (i % 16 == anchor_pos && rng.chance(0.8)) v = rng.sign() * anchor;
        x[i] = v * p2;
      }
      break;
    }
    case kSpecials: {
      const float s = rng.pow10(-10, 10);
      const double p = rng.chance(0.5) ? 0.003 : 0.05;
      for (int64_t i = 0; i < k; ++i) x[i] = rng.chance(p) ? special(rng) : static_cast<float>(rng.normal()) * s;
      break;
    }
    case kZero:
      for (int64_t i = 0; i < k; ++i) x[i] = rng.chance(0.3) ? -0.0f : 0.0f;
      break;
    case kOutlier: {
      const float s = rng.pow10(-6, 2);
      for (int64_t i = 0; i < k; ++i) x[i] = static_cast<float>(rng.normal()) * s;
      const float big[] = {1e30f, FLT_MAX, 1e4f * s, 1e20f * s};
      x[rng.below(static_cast<int>(k))] = rng.sign() * big[rng.below(4)];
      break;
    }
    case kSubnormal: {
      const int mode = rng.below(3);
      const int range = 1 + rng.below(60);
      for (int64_t i = 0; i < k; ++i) {
        if (mode == 0) x[i] = static_cast<float>(rng.below(2 * range + 1) - range) * from_bits(1);
        else if (mode == 1) x[i] = rng.sign() * from_bits(rng.u32() & 0x7FFFFF);
        else x[i] = rng.chance(0.1) ? rng.sign() * FLT_MIN : rng.sign() * from_bits(rng.u32() & 0x7FFFFF);
      }
      break;
    }
    case kRandomBits:
      for (int64_t i = 0; i < k; ++i) x[i] = from_bits(rng.u32());
      break;
    default: {  // kHuge
      for (int64_t i = 0; i < k; ++i) {
        x[i] = rng.chance(0.5) ? rng.sign() * static_cast<float>((1.0 - 0.5 * rng.uniform()) * FLT_MAX)
                               : static_cast<float>(rng.normal()) * 1e37f;
      }
      break;
    }
  }
}

// ---- levels and shapes -----------------------------------------------------------------------

struct Level {
  Isa isa;
  const FormatKernels* kern;
};

std::vector<Level> simd_levels() {
  std::vector<Level> out;
  const Isa cpu = svdq::detect_cpu_isa();
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (static_cast<int>(isa) > static_cast<int>(cpu)) {
      static bool noted[3] = {false, false, false};
      if (!noted[static_cast<int>(isa)]) {
        std::printf("# note: this CPU has no %s: its kernels are not tested here\n", svdq::isa_name(isa));
        noted[static_cast<int>(isa)] = true;
      }
      continue;
    }
    out.push_back({isa, &svdq::format_kernels_for(isa)});
  }
  return out;
}

const FormatKernels& portable() { return svdq::portable::kFormatKernels; }

struct Shape {
  int64_t rows, k;
};

// The listed shapes (rows x k over the two lists), then random ones until `target` elements.
void for_each_shape(Rng& rng, int64_t target, const std::function<void(const Shape&)>& fn) {
  static const int64_t kRows[] = {1, 2, 3, 7, 17, 64};
  static const int64_t kKs[] = {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 1000, 3072};
  int64_t done = 0;
  for (int64_t r : kRows) {
    for (int64_t k : kKs) {
      fn({r, k});
      done += r * k;
    }
  }
  while (done < target) {
    Shape s;
    s.rows = 1 + rng.below(rng.chance(0.5) ? 8 : 40);
    s.k = 1 + rng.below(rng.chance(0.6) ? 300 : 4200);
    fn(s);
    done += s.rows * s.k;
  }
}

// Input matrix of a shape: per-matrix or per-row distributions; sometimes an unaligned start.
struct Input {
  std::vector<float> storage;
  const float* x = nullptr;
  std::string desc;
};

void make_input(Rng& rng, const Shape& s, Input& in) {
  const int64_t off = rng.chance(0.3) ? 1 + rng.below(3) : 0;
  in.storage.assign(static_cast<size_t>(s.rows * s.k + off), 0.0f);
  float* x = in.storage.data() + off;
  const bool per_row = rng.chance(0.5);
  const int whole = rng.below(kDistCount);
  for (int64_t r = 0; r < s.rows; ++r) fill_row(rng, x + r * s.k, s.k, per_row ? rng.below(kDistCount) : whole);
  in.x = x;
  in.desc = std::to_string(s.rows) + "x" + std::to_string(s.k) + " " + (per_row ? "mixed" : dist_name(whole)) +
            (off ? " offset " + std::to_string(off) : "");
}

// ---- comparison helpers ----------------------------------------------------------------------

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// Bytes must match exactly; reports the first difference.
bool same_bytes(const void* got, const void* want, size_t n, const std::string& what) {
  if (std::memcmp(got, want, n) == 0) return true;
  const uint8_t* g = static_cast<const uint8_t*>(got);
  const uint8_t* w = static_cast<const uint8_t*>(want);
  size_t i = 0;
  while (g[i] == w[i]) ++i;
  CHECK_MSG(false, what + ": byte " + std::to_string(i) + " got " + hex(g[i]) + ", expected " + hex(w[i]));
  return false;
}

// Floats must match bit for bit (NaN payloads and the sign of zero included).
bool same_floats(const float* got, const float* want, size_t n, const std::string& what) {
  for (size_t i = 0; i < n; ++i) {
    if (bits(got[i]) != bits(want[i])) {
      CHECK_MSG(false, what + ": element " + std::to_string(i) + " got " + hex(bits(got[i])) + ", expected " +
                           hex(bits(want[i])));
      return false;
    }
  }
  return true;
}

std::string label(const Level& lv, const char* kernel, const std::string& desc) {
  return std::string(svdq::isa_name(lv.isa)) + " " + kernel + " " + desc;
}

// NVFP4 tensor scale of a case: the usual one from the tensor amax, a power of two, or an unusual
// value (the kernels must agree on every input).
float pick_global_scale(Rng& rng, const float* x, int64_t n) {
  const int mode = rng.below(10);
  if (mode < 6) return svdq::nvfp4_global_scale(portable().amax_finite(x, n));
  if (mode < 9) return std::ldexp(1.0f, rng.below(9) - 4 + (mode == 8 ? rng.below(61) - 30 : 0));
  static const float kOdd[] = {0.0f, -1.0f, INFINITY, NAN, FLT_MAX, 1.4e-45f, 1e-30f, 3.3f, -0.0f, 1e30f};
  return kOdd[rng.below(10)];
}

}  // namespace

// ---- tests -----------------------------------------------------------------------------------

TEST(simd_kernel_tables_are_their_own) {
  const FormatKernels& p = portable();
  for (const Level& lv : simd_levels()) {
    const FormatKernels& k = *lv.kern;
    const std::string n = svdq::isa_name(lv.isa);
    CHECK_MSG(k.quantize_int4 && k.quantize_int4 != p.quantize_int4, n + " quantize_int4");
    CHECK_MSG(k.quantize_mxfp4 && k.quantize_mxfp4 != p.quantize_mxfp4, n + " quantize_mxfp4");
    CHECK_MSG(k.quantize_nvfp4 && k.quantize_nvfp4 != p.quantize_nvfp4, n + " quantize_nvfp4");
    CHECK_MSG(k.quantize_int8 && k.quantize_int8 != p.quantize_int8, n + " quantize_int8");
    CHECK_MSG(k.dequantize_int4 && k.dequantize_int4 != p.dequantize_int4, n + " dequantize_int4");
    CHECK_MSG(k.dequantize_mxfp4 && k.dequantize_mxfp4 != p.dequantize_mxfp4, n + " dequantize_mxfp4");
    CHECK_MSG(k.dequantize_nvfp4 && k.dequantize_nvfp4 != p.dequantize_nvfp4, n + " dequantize_nvfp4");
    CHECK_MSG(k.dequantize_int8 && k.dequantize_int8 != p.dequantize_int8, n + " dequantize_int8");
    CHECK_MSG(k.amax_finite && k.amax_finite != p.amax_finite, n + " amax_finite");
    CHECK_MSG(k.find_nonfinite && k.find_nonfinite != p.find_nonfinite, n + " find_nonfinite");
  }
}

TEST(simd_quantize_int4_matches_portable) {
  const std::vector<Level> levels = simd_levels();
  Rng rng(0x1A7E4001);
  Input in;
  int64_t elements = 0, cases = 0;
  for_each_shape(rng, kTargetElements, [&](const Shape& s) {
    make_input(rng, s, in);
    const int64_t kp = svdq::padded_k(s.k, svdq::kInt4Group);
    const size_t nc = static_cast<size_t>(s.rows * kp / 2), ns = static_cast<size_t>(s.rows * kp / svdq::kInt4Group);
    std::vector<uint8_t> wc(nc, 0xAA), gc(nc);
    std::vector<float> ws(ns, 1.0f), gs(ns);
    portable().quantize_int4(in.x, s.rows, s.k, wc.data(), ws.data());
    for (const Level& lv : levels) {
      std::fill(gc.begin(), gc.end(), 0x55);
      std::fill(gs.begin(), gs.end(), -1.0f);
      lv.kern->quantize_int4(in.x, s.rows, s.k, gc.data(), gs.data());
      same_bytes(gc.data(), wc.data(), nc, label(lv, "int4 codes", in.desc));
      same_floats(gs.data(), ws.data(), ns, label(lv, "int4 scales", in.desc));
    }
    elements += s.rows * s.k;
    ++cases;
  });
  std::printf("#   %lld cases, %lld elements per level\n", static_cast<long long>(cases), static_cast<long long>(elements));
}

TEST(simd_quantize_mxfp4_matches_portable) {
  const std::vector<Level> levels = simd_levels();
  const MxScaleRule rules[] = {MxScaleRule::Floor, MxScaleRule::Even, MxScaleRule::Ceil};
  const char* rule_names[] = {"floor", "even", "ceil"};
  for (int ri = 0; ri < 3; ++ri) {
    Rng rng(0x3F4A0000u + static_cast<uint64_t>(ri));
    Input in;
    int64_t elements = 0, cases = 0;
    for_each_shape(rng, kTargetElements, [&](const Shape& s) {
      make_input(rng, s, in);
      const int64_t kp = svdq::padded_k(s.k, svdq::kMxfp4Group);
      const size_t nc = static_cast<size_t>(s.rows * kp / 2), ns = static_cast<size_t>(s.rows * kp / svdq::kMxfp4Group);
      std::vector<uint8_t> wc(nc, 0xAA), gc(nc), ws(ns, 0x11), gs(ns);
      portable().quantize_mxfp4(in.x, s.rows, s.k, wc.data(), ws.data(), rules[ri]);
      const std::string desc = in.desc + " rule " + rule_names[ri];
      for (const Level& lv : levels) {
        std::fill(gc.begin(), gc.end(), 0x55);
        std::fill(gs.begin(), gs.end(), 0x22);
        lv.kern->quantize_mxfp4(in.x, s.rows, s.k, gc.data(), gs.data(), rules[ri]);
        same_bytes(gc.data(), wc.data(), nc, label(lv, "mxfp4 codes", desc));
        same_bytes(gs.data(), ws.data(), ns, label(lv, "mxfp4 scales", desc));
      }
      elements += s.rows * s.k;
      ++cases;
    });
    std::printf("#   rule %s: %lld cases, %lld elements per level\n", rule_names[ri], static_cast<long long>(cases),
                static_cast<long long>(elements));
  }
}

TEST(simd_quantize_nvfp4_matches_portable) {
  const std::vector<Level> levels = simd_levels();
  Rng rng(0x2F4B0001);
  Input in;
  int64_t elements = 0, cases = 0;
  for_each_shape(rng, kTargetElements, [&](const Shape& s) {
    make_input(rng, s, in);
    const float g = pick_global_scale(rng, in.x, s.rows * s.k);
    const int64_t kp = svdq::padded_k(s.k, svdq::kNvfp4Group);
    const size_t nc = static_cast<size_t>(s.rows * kp / 2), ns = static_cast<size_t>(s.rows * kp / svdq::kNvfp4Group);
    std::vector<uint8_t> wc(nc, 0xAA), gc(nc), ws(ns, 0x11), gs(ns);
    portable().quantize_nvfp4(in.x, s.rows, s.k, g, wc.data(), ws.data());
    const std::string desc = in.desc + " G " + hex(bits(g));
    for (const Level& lv : levels) {
      std::fill(gc.begin(), gc.end(), 0x55);
      std::fill(gs.begin(), gs.end(), 0x22);
      lv.kern->quantize_nvfp4(in.x, s.rows, s.k, g, gc.data(), gs.data());
      same_bytes(gc.data(), wc.data(), nc, label(lv, "nvfp4 codes", desc));
      same_bytes(gs.data(), ws.data(), ns, label(lv, "nvfp4 scales", desc));
    }
    elements += s.rows * s.k;
    ++cases;
  });
  std::printf("#   %lld cases, %lld elements per level\n", static_cast<long long>(cases), static_cast<long long>(elements));
}

TEST(simd_quantize_int8_matches_portable) {
  const std::vector<Level> levels = simd_levels();
  Rng rng(0x18B80001);
  Input in;
  int64_t elements = 0, cases = 0;
  for_each_shape(rng, kTargetElements, [&](const Shape& s) {
    make_input(rng, s, in);
    const size_t nc = static_cast<size_t>(s.rows * s.k), ns = static_cast<size_t>(s.rows);
    std::vector<int8_t> wc(nc, 0x2A), gc(nc);
    std::vector<float> ws(ns, 1.0f), gs(ns);
    portable().quantize_int8(in.x, s.rows, s.k, wc.data(), ws.data());
    for (const Level& lv : levels) {
      std::fill(gc.begin(), gc.end(), static_cast<int8_t>(0x55));
      std::fill(gs.begin(), gs.end(), -1.0f);
      lv.kern->quantize_int8(in.x, s.rows, s.k, gc.data(), gs.data());
      same_bytes(gc.data(), wc.data(), nc, label(lv, "int8 codes", in.desc));
      same_floats(gs.data(), ws.data(), ns, label(lv, "int8 scales", in.desc));
    }
    elements += s.rows * s.k;
    ++cases;
  });
  std::printf("#   %lld cases, %lld elements per level\n", static_cast<long long>(cases), static_cast<long long>(elements));
}

TEST(simd_quantize_clamp_ties_and_negative_zero) {
  // INT4: amax = 15·2^-149 gives s = 15/7 rounded to 2·2^-149, so x/s hits ±7.5 exactly: RNE to
  // ±8, then the clamp gives 7 and -8. ±6.5 -> ±6, 2.5 -> 2, -1.5 -> -2, ±0.5 -> 0 (code 0).
  const float d = from_bits(1);
  std::vector<float> xi(64, 0.0f);
  const float vi[8] = {15 * d, -15 * d, 13 * d, -13 * d, 5 * d, -3 * d, d, -d};
  std::copy(vi, vi + 8, xi.begin());
  // MXFP4: amax 6 -> scale 2^0 (byte 127 under every rule); -0, -0.1 and -0.25 encode to code 0
  // (never 0x8), 6 -> 7, -6 -> 0xF, just below -0.25 -> 0x9.
  std::vector<float> xm(32, 0.0f);
  const float vm[6] = {-0.0f, -0.1f, 6.0f, -6.0f, -0.25f, -0.25000003f};
  std::copy(vm, vm + 6, xm.begin());
  std::vector<Level> all = {{Isa::Portable, &portable()}};
  for (const Level& lv : simd_levels()) all.push_back(lv);
  for (const Level& lv : all) {
    uint8_t ci[32], cm[16], sm = 0;
    float si = 0.0f;
    lv.kern->quantize_int4(xi.data(), 1, 64, ci, &si);
    const uint8_t want_i[4] = {0x87, 0xA6, 0xE2, 0x00};
    same_bytes(ci, want_i, 4, label(lv, "int4 ±7.5 codes", ""));
    CHECK_MSG(bits(si) == 2u, label(lv, "int4 ±7.5 scale", hex(bits(si))));
    for (int i = 4; i < 32; ++i) CHECK(ci[i] == 0);
    for (MxScaleRule rule : {MxScaleRule::Floor, MxScaleRule::Even, MxScaleRule::Ceil}) {
      lv.kern->quantize_mxfp4(xm.data(), 1, 32, cm, &sm, rule);
      const uint8_t want_m[3] = {0x00, 0xF7, 0x90};
      same_bytes(cm, want_m, 3, label(lv, "mxfp4 -0 codes", ""));
      CHECK_EQ(sm, 127);
      for (int i = 3; i < 16; ++i) CHECK(cm[i] == 0);
    }
  }
}

TEST(simd_quantize_degenerate_shapes) {
  // rows = 0 or k = 0 must touch nothing (int8 with k = 0 still writes its scale: amax 0 -> 0).
  for (const Level& lv : simd_levels()) {
    uint8_t c[4] = {7, 7, 7, 7}, s8[4] = {7, 7, 7, 7};
    float sf[4] = {5, 5, 5, 5}, pf[4] = {5, 5, 5, 5};
    int8_t c8[4] = {7, 7, 7, 7};
    const float x[4] = {1, 2, 3, 4};
    lv.kern->quantize_int4(x, 0, 64, c, sf);
    lv.kern->quantize_int4(x, 3, 0, c, sf);
    lv.kern->quantize_mxfp4(x, 0, 32, c, s8, MxScaleRule::Even);
    lv.kern->quantize_mxfp4(x, 2, 0, c, s8, MxScaleRule::Even);
    lv.kern->quantize_nvfp4(x, 0, 16, 1.0f, c, s8);
    lv.kern->quantize_nvfp4(x, 2, 0, 1.0f, c, s8);
    for (int i = 0; i < 4; ++i) CHECK(c[i] == 7 && s8[i] == 7 && sf[i] == 5.0f);
    lv.kern->quantize_int8(x, 2, 0, c8, sf);
    portable().quantize_int8(x, 2, 0, c8, pf);
    same_floats(sf, pf, 4, label(lv, "int8 k=0 scales", ""));
    CHECK_EQ(lv.kern->amax_finite(x, 0), 0.0f);
    CHECK_EQ(lv.kern->find_nonfinite(x, 0), int64_t{-1});
  }
}

// ---- dequantization --------------------------------------------------------------------------

namespace {

uint8_t random_e8m0(Rng& rng) {
  static const uint8_t kEdge[] = {0x00, 0xFF, 0x01, 0xFE, 0x7F, 0x80};
  return rng.chance(0.15) ? kEdge[rng.below(6)] : static_cast<uint8_t>(rng.u32());
}

uint8_t random_e4m3(Rng& rng) {
  static const uint8_t kEdge[] = {0x7F, 0xFF, 0x00, 0x80, 0x01, 0x07, 0x08, 0x81, 0x87, 0x7E, 0xFE};
  return rng.chance(0.15) ? kEdge[rng.below(11)] : static_cast<uint8_t>(rng.u32());
}

float random_scale(Rng& rng) {
  switch (rng.below(8)) {
    case 0: return special(rng);
    case 1: return from_bits(rng.u32());
    case 2: return rng.sign() * from_bits(rng.u32() & 0x7FFFFF);
    default: return rng.pow10(-30, 30) * (rng.chance(0.1) ? -1.0f : 1.0f);
  }
}

void random_bytes(Rng& rng, uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(rng.u32());
}

}  // namespace

TEST(simd_dequantize_matches_portable) {
  const std::vector<Level> levels = simd_levels();
  const char* names[] = {"int4", "mxfp4", "nvfp4", "int8"};
  for (int scheme = 0; scheme < 4; ++scheme) {
    Rng rng(0xDE0000u + static_cast<uint64_t>(scheme));
    int64_t elements = 0, cases = 0;
    for_each_shape(rng, kTargetElements, [&](const Shape& s) {
      const int64_t group = scheme == 0 ? svdq::kInt4Group : scheme == 1 ? svdq::kMxfp4Group
                          : scheme == 2 ? svdq::kNvfp4Group : s.k;
      const int64_t kp = svdq::padded_k(s.k, group);
      const size_t nc = static_cast<size_t>(scheme == 3 ? s.rows * s.k : s.rows * kp / 2);
      const size_t ns = static_cast<size_t>(scheme == 3 ? s.rows : s.rows * kp / group);
      const size_t n = static_cast<size_t>(s.rows * s.k);
      std::vector<uint8_t> codes(nc), s8(ns);
      std::vector<float> sf(ns), want(n, 1.0f), got(n);
      random_bytes(rng, codes.data(), nc);
      for (size_t i = 0; i < ns; ++i) {
        s8[i] = scheme == 1 ? random_e8m0(rng) : random_e4m3(rng);
        sf[i] = random_scale(rng);
      }
      float g = 1.0f;
      if (scheme == 2) {
        const int mode = rng.below(4);
        g = mode == 0 ? std::ldexp(1.0f, rng.below(41) - 20) : mode == 1 ? random_scale(rng) : rng.pow10(-3, 6);
      }
      const std::string desc = std::to_string(s.rows) + "x" + std::to_string(s.k);
      const auto run = [&](const FormatKernels& k, float* out) {
        switch (scheme) {
          case 0: k.dequantize_int4(codes.data(), sf.data(), s.rows, s.k, out); break;
          case 1: k.dequantize_mxfp4(codes.data(), s8.data(), s.rows, s.k, out); break;
          case 2: k.dequantize_nvfp4(codes.data(), s8.data(), g, s.rows, s.k, out); break;
          default:
            k.dequantize_int8(reinterpret_cast<const int8_t*>(codes.data()), sf.data(), s.rows, s.k, out);
            break;
        }
      };
      run(portable(), want.data());
      for (const Level& lv : levels) {
        std::fill(got.begin(), got.end(), -7.0f);
        run(*lv.kern, got.data());
        same_floats(got.data(), want.data(), n, label(lv, names[scheme], "dequantize " + desc));
      }
      elements += static_cast<int64_t>(n);
      ++cases;
    });
    std::printf("#   %s: %lld cases, %lld elements per level\n", names[scheme], static_cast<long long>(cases),
                static_cast<long long>(elements));
  }
}

// ---- scans -----------------------------------------------------------------------------------

TEST(simd_amax_finite_and_find_nonfinite_match_portable) {
  const std::vector<Level> levels = simd_levels();
  Rng rng(0x5CA40001);
  int64_t elements = 0, cases = 0;
  std::vector<float> buf;
  const auto check = [&](const float* x, int64_t n, const std::string& desc) {
    const float want_amax = portable().amax_finite(x, n);
    const int64_t want_idx = portable().find_nonfinite(x, n);
    for (const Level& lv : levels) {
      const float got = lv.kern->amax_finite(x, n);
      CHECK_MSG(bits(got) == bits(want_amax),
                label(lv, "amax_finite", desc) + ": got " + hex(bits(got)) + ", expected " + hex(bits(want_amax)));
      const int64_t idx = lv.kern->find_nonfinite(x, n);
      CHECK_MSG(idx == want_idx, label(lv, "find_nonfinite", desc) + ": got " + std::to_string(idx) + ", expected " +
                                     std::to_string(want_idx));
    }
    elements += n;
    ++cases;
  };
  int64_t n = 0;
  while (elements < kTargetElements) {
    // Every length up to 300, then random ones (many not a multiple of any vector width).
    n = n < 300 ? n + 1 : 1 + rng.below(rng.chance(0.5) ? 5000 : 600);
    const int64_t off = rng.below(4);
    buf.assign(static_cast<size_t>(n + off), 0.0f);
    float* x = buf.data() + off;
    const int dist = rng.below(kDistCount);
    fill_row(rng, x, n, dist);
    // Non-finite values: none, at random positions, or at the very end.
    const int mode = rng.below(5);
    if (mode == 0 || dist == kSpecials || dist == kRandomBits) {
      // as generated
    } else if (mode == 1) {
      x[n - 1] = rng.chance(0.5) ? INFINITY : from_bits(0xFFC00000u);
    } else if (mode == 2) {
      const int count = 1 + rng.below(3);
      for (int c = 0; c < count; ++c) x[rng.below(static_cast<int>(n))] = special(rng);
    } else if (mode == 3) {
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) x[i] = 1.0f;  // all finite
    } else {
      x[rng.below(static_cast<int>(n))] = rng.chance(0.5) ? -INFINITY : from_bits(0x7F800001u);
      x[n - 1] = from_bits(0x7FC00000u);
    }
    check(x, n, "n=" + std::to_string(n) + " " + dist_name(dist) + " mode " + std::to_string(mode));
  }
  std::printf("#   %lld arrays, %lld elements per level\n", static_cast<long long>(cases), static_cast<long long>(elements));
}

// ---- throughput report (prints only; no timing assertions) -----------------------------------

TEST(simd_throughput_report) {
  const int64_t rows = 256, k = 3072, n = rows * k;
  Rng rng(0x5EED);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = static_cast<float>(rng.normal());  // activation-like: one scale throughout
  std::vector<uint8_t> codes(static_cast<size_t>(n)), s8(static_cast<size_t>(n / 16));
  std::vector<float> sf(static_cast<size_t>(n / 16)), out(static_cast<size_t>(n));
  const float g = svdq::nvfp4_global_scale(portable().amax_finite(x.data(), n));

  std::vector<Level> all = {{Isa::Portable, &portable()}};
  for (const Level& lv : simd_levels()) all.push_back(lv);
  struct Op {
    const char* name;
    std::function<void(const FormatKernels&)> run;
  };
  const Op ops[] = {
      {"quantize_int4", [&](const FormatKernels& kk) { kk.quantize_int4(x.data(), rows, k, codes.data(), sf.data()); }},
      {"quantize_mxfp4", [&](const FormatKernels& kk) {
         kk.quantize_mxfp4(x.data(), rows, k, codes.data(), s8.data(), MxScaleRule::Even);
       }},
      {"quantize_nvfp4", [&](const FormatKernels& kk) { kk.quantize_nvfp4(x.data(), rows, k, g, codes.data(), s8.data()); }},
      {"quantize_int8", [&](const FormatKernels& kk) {
         kk.quantize_int8(x.data(), rows, k, reinterpret_cast<int8_t*>(codes.data()), sf.data());
       }},
      {"dequantize_int4", [&](const FormatKernels& kk) { kk.dequantize_int4(codes.data(), sf.data(), rows, k, out.data()); }},
      {"dequantize_mxfp4", [&](const FormatKernels& kk) { kk.dequantize_mxfp4(codes.data(), s8.data(), rows, k, out.data()); }},
      {"dequantize_nvfp4", [&](const FormatKernels& kk) { kk.dequantize_nvfp4(codes.data(), s8.data(), g, rows, k, out.data()); }},
      {"amax_finite", [&](const FormatKernels& kk) { volatile float a = kk.amax_finite(x.data(), n); (void)a; }},
  };
  std::printf("#   elements/s at rows=%lld, k=%lld (best of a few runs; figures only, not checked)\n",
              static_cast<long long>(rows), static_cast<long long>(k));
  for (const Op& op : ops) {
    std::string line = "#   " + std::string(op.name) + ":";
    for (const Level& lv : all) {
      double best = 1e30;
      double spent = 0.0;
      for (int rep = 0; rep < 20 && (rep < 3 || spent < 0.05); ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        op.run(*lv.kern);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        spent += dt;
        if (dt < best) best = dt;
      }
      char buf[96];
      std::snprintf(buf, sizeof buf, "  %s %.3g/s", svdq::isa_name(lv.isa), static_cast<double>(n) / best);
      line += buf;
    }
    std::printf("%s\n", line.c_str());
  }
}
