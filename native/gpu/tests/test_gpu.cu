// Tests of a GPU backend (built into build-gpu/test_gpu_cuda and build-gpu/test_gpu_hip).
//
// Always (no GPU needed): the __host__ __device__ codecs of gpu_codecs.h against codecs.h, the
// repacked kernel format against the canonical codes, and the ABI's argument checks that come before
// any device call. With a GPU: for every scheme, both GEMM paths and the three low-rank modes, on
// random and adversarial shapes, the integer block sums exactly against a host computation, and the
// outputs against the double-precision reference of native/tests/lowbit_reference.cpp within
// lowbit.h's bound (K + 2G + r + 8)·2⁻²⁴·S; the three modes must agree bit for bit. Without a GPU it
// prints "no GPU: <reason> — GPU tests skipped" and exits 0. Ends with "N passed, N failed".
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "../gpu_codecs.h"
#include "../gpu_debug.h"
#include "../gpu_layer.h"
#include "lowbit_reference.h"
#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/gpu_abi.h"

namespace {

int g_passed = 0, g_failed = 0;

void check(bool cond, const std::string& what) {
  if (cond) {
    ++g_passed;
  } else {
    ++g_failed;
    printf("FAIL %s\n", what.c_str());
  }
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 11);
  }
  float uni() { return (next() & 0xFFFFFF) / 16777216.0f; }       // [0, 1)
  float sym() { return 2.0f * uni() - 1.0f; }                     // [-1, 1)
  float normalish() { return sym() + sym() + sym(); }
};

uint32_t fbits(float f) { return svdq::f32_bits(f); }
bool same_bits_or_both_nan(float a, float b) { return (a != a && b != b) || fbits(a) == fbits(b); }

// ---- host checks of gpu_codecs.h --------------------------------------------------------------------

void test_codecs() {
  int bad = 0;
  for (int b = 0; b < 256; ++b)
    if (!same_bits_or_both_nan(svdq_gpu::e4m3_decode(b), svdq::e4m3_decode(static_cast<uint8_t>(b)))) ++bad;
  check(bad == 0, "e4m3_decode matches codecs.h on all 256 bytes");
  bad = 0;
  for (int c = 0; c < 16; ++c) {
    if (svdq_gpu::e2m1x2_of_code(c) != static_cast<int>(2.0f * svdq::e2m1_decode(static_cast<uint8_t>(c)))) ++bad;
    if (svdq_gpu::int4_of_nibble(c) != svdq::int4_from_nibble(static_cast<uint8_t>(c))) ++bad;
  }
  check(bad == 0, "2·E2M1 and INT4 nibble decoders match codecs.h");
  bad = 0;
  for (int b = 0; b <= 254; ++b)
    if (fbits(svdq_gpu::e8m0_reciprocal(b)) != fbits(svdq::e8m0_reciprocal(static_cast<uint8_t>(b)))) ++bad;
  check(bad == 0, "e8m0_reciprocal matches codecs.h");

  // Floats: edges, every E2M1/E4M3 tie neighbourhood, random magnitudes over the whole range.
  std::vector<float> xs = {0.0f, -0.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 7.0f, 8.0f, 448.0f,
                           464.0f, 480.0f, 1e30f, 0.015625f, 0.0009765625f, 0.001953125f, 1e-40f, 1e-45f,
                           3.4e38f, 1.5f, 1.49999f, 1.75f, 1.7499999f};
  for (int e = -149; e < 128; ++e)
    for (float m : {1.0f, 1.25f, 1.5f, 1.75f, 1.875f, 1.9999999f, 1.0000001f, 1.7499999f, 1.5000001f}) {
      xs.push_back(ldexpf(m, e));
      xs.push_back(-ldexpf(m, e));
    }
  Rng r(7);
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = r.next() ^ (r.next() << 21);
    float f = svdq::f32_from_bits(u);
    if ((u & 0x7F800000u) == 0x7F800000u) continue;
    xs.push_back(f);
    xs.push_back(ldexpf(r.sym(), static_cast<int>(r.next() % 20) - 10));
  }
  int bad_e2m1 = 0, bad_e4m3 = 0, bad_e8m0 = 0, bad_g = 0, bad_int = 0;
  for (float f : xs) {
    if (svdq_gpu::e2m1_encode(f) != svdq::e2m1_encode(f)) ++bad_e2m1;
    if (svdq_gpu::e4m3_encode(f) != svdq::e4m3_encode(f)) ++bad_e4m3;
    const float a = fabsf(f);
    for (int rule = 0; rule < 3; ++rule)
      if (svdq_gpu::e8m0_scale_for_amax(a, rule) != svdq::e8m0_scale_for_amax(a, static_cast<svdq::MxScaleRule>(rule)))
        ++bad_e8m0;
    if (fbits(svdq_gpu::nvfp4_global_scale(a)) != fbits(svdq::nvfp4_global_scale(a))) ++bad_g;
    if (fabsf(f) < 1e6f && svdq_gpu::int_round_clamp(f, -8.0f, 7.0f) != svdq::int_round_clamp(f, -8.0f, 7.0f)) ++bad_int;
  }
  check(bad_e2m1 == 0, "e2m1_encode matches codecs.h (" + std::to_string(bad_e2m1) + " mismatches)");
  check(bad_e4m3 == 0, "e4m3_encode matches codecs.h (" + std::to_string(bad_e4m3) + " mismatches)");
  check(bad_e8m0 == 0, "e8m0_scale_for_amax matches codecs.h for all rules (" + std::to_string(bad_e8m0) + ")");
  check(bad_g == 0, "nvfp4_global_scale matches codecs.h");
  check(bad_int == 0, "int_round_clamp matches codecs.h");
  check(svdq_gpu::e4m3_encode(svdq::f32_from_bits(0x7FC00000u)) == 0x7F, "e4m3_encode(NaN) is 0x7F");

  // scale_pow2 against the CPU's double route: fl(double(I)·2^e).
  bad = 0;
  for (int e = -300; e <= 300; ++e)
    for (int32_t I : {0, 1, -1, 3, -7, 144, 4608, -4608, 4095, 12345, -99991}) {
      const double ref = static_cast<double>(I) * ldexp(1.0, e);
      const float want = static_cast<float>(ref);
      if (fbits(svdq_gpu::scale_pow2(I, static_cast<float>(e))) != fbits(want)) ++bad;
    }
  check(bad == 0, "scale_pow2 rounds I·2^e once (" + std::to_string(bad) + " mismatches)");
  check(svdq_gpu::scale_pow2(5, svdq::f32_from_bits(0x7FC00000u)) != svdq_gpu::scale_pow2(5, svdq::f32_from_bits(0x7FC00000u)),
        "scale_pow2 with a NaN exponent is NaN");
  // The GEMM's mxfp4 fast path: for E8M0 bytes e_x in [3, 227], e_w >= 1 and |I| < 2^14,
  // fl(fl(I·2^(e_x−129))·2^(e_w−127)) is scale_pow2(I, e_x − 256 + e_w).
  bad = 0;
  for (int ex = 3; ex <= 227; ++ex)
    for (int ew = 1; ew <= 254; ew += 3)
      for (int32_t I : {1, -1, 7, -4608, 4608, 12345, -16383}) {
        const float pa = svdq::f32_from_bits(static_cast<uint32_t>(ex - 129 + 127) << 23);
        const float pb = svdq::f32_from_bits(static_cast<uint32_t>(ew) << 23);
        const float fast = svdq_gpu::mul_rn(svdq_gpu::mul_rn(static_cast<float>(I), pa), pb);
        if (fbits(fast) != fbits(svdq_gpu::scale_pow2(I, static_cast<float>(ex - 256 + ew)))) ++bad;
      }
  check(bad == 0, "mxfp4's two-step scaling equals scale_pow2 where the GEMM takes it (" + std::to_string(bad) + ")");
}

// ---- layers -------------------------------------------------------------------------------------------

struct Case {
  int scheme;
  int64_t m, k, n, rank;
  bool bias, smooth, outlier, zero_row, nan_row;
  uint64_t seed;
};

std::string case_name(const Case& c) {
  char b[200];
  snprintf(b, sizeof b, "%s M=%lld K=%lld N=%lld r=%lld%s%s%s%s%s", svdq_gpu::scheme_name(c.scheme), (long long)c.m,
           (long long)c.k, (long long)c.n, (long long)c.rank, c.bias ? " bias" : "", c.smooth ? " lambda" : "",
           c.outlier ? " outlier" : "", c.zero_row ? " zero-row" : "", c.nan_row ? " nan-row" : "");
  return b;
}

struct Built {
  lowbit_ref::CanonicalLayer layer;
  std::vector<float> x;
};

Built build(const Case& c) {
  Rng r(c.seed);
  const int64_t K = c.k, N = c.n, R = c.rank, M = c.m;
  std::vector<float> W(static_cast<size_t>(N * K)), smooth, ld(static_cast<size_t>(R * K)), lu(static_cast<size_t>(N * R)), bias;
  for (float& w : W) w = 0.2f * r.normalish();
  if (c.smooth) {
    smooth.resize(static_cast<size_t>(K));
    for (float& s : smooth) s = 0.5f + 1.5f * r.uni();
  }
  for (float& v : ld) v = 0.1f * r.sym();
  for (float& v : lu) v = 0.1f * r.sym();
  if (c.bias) {
    bias.resize(static_cast<size_t>(N));
    for (float& b : bias) b = r.sym();
  }
  Built b;
  b.layer = lowbit_ref::quantize_layer(static_cast<svdq::LowbitScheme>(c.scheme), N, K, R, W, smooth, ld, lu, bias);
  b.x.resize(static_cast<size_t>(M * K));
  for (float& v : b.x) v = r.normalish();
  if (c.outlier)
    for (int64_t m = 0; m < M; ++m) b.x[static_cast<size_t>(m * K + K / 3)] *= 80.0f;
  if (c.zero_row && M > 1)
    for (int64_t i = 0; i < K; ++i) b.x[static_cast<size_t>(1 * K + i)] = 0.0f;
  if (c.nan_row && M > 2) b.x[static_cast<size_t>(2 * K + K / 2)] = svdq::f32_from_bits(0x7FC00000u);
  return b;
}

svdq_gpu_layer_desc to_gpu_desc(const lowbit_ref::CanonicalLayer& L) {
  const svdq::LowbitLayerDesc d = L.desc();
  svdq_gpu_layer_desc g;
  memset(&g, 0, sizeof g);
  g.scheme = static_cast<int>(d.scheme);
  g.n = d.n;
  g.k = d.k;
  g.rank = d.rank;
  g.w_codes = d.w_codes;
  g.w_scales = d.w_scales;
  g.w_global_scale = d.w_global_scale;
  g.smooth = d.smooth;
  g.l_down = d.l_down;
  g.l_up = d.l_up;
  g.bias = d.bias;
  g.act_mx_rule = 1;
  return g;
}

// Canonical weight operand (INT4 / INT8 code or 2·E2M1) of row n, element kk.
int32_t canonical_operand(const lowbit_ref::CanonicalLayer& L, int64_t n, int64_t kk) {
  if (L.scheme == svdq::LowbitScheme::W8A8) return static_cast<int8_t>(L.codes[static_cast<size_t>(n * L.k + kk)]);
  const int64_t g = svdq_gpu::scheme_group(static_cast<int>(L.scheme));
  const int64_t kpc = svdq::padded_k(L.k, g);
  const uint8_t b = L.codes[static_cast<size_t>(n * (kpc / 2) + kk / 2)];
  const uint32_t nib = (kk & 1) ? (b >> 4) : (b & 0xF);
  if (L.scheme == svdq::LowbitScheme::Mxfp4 || L.scheme == svdq::LowbitScheme::Nvfp4) return svdq_gpu::e2m1x2_of_code(nib);
  return svdq_gpu::int4_of_nibble(nib);
}

void test_repack() {
  const int schemes[] = {0, 1, 2, 3, 4};
  for (int s : schemes) {
    Case c{s, 1, 200, 77, 3, true, true, false, false, false, 11u + static_cast<uint64_t>(s)};
    Built b = build(c);
    svdq_gpu::HostFormat f;
    std::string msg;
    const svdq_gpu_layer_desc d = to_gpu_desc(b.layer);
    const int rc = svdq_gpu::repack_layer(d, f, msg);
    check(rc == SVDQ_GPU_OK, std::string("repack ") + svdq_gpu::scheme_name(s) + ": " + msg);
    if (rc != SVDQ_GPU_OK) continue;
    int bad = 0;
    for (int64_t n = 0; n < f.np; ++n)
      for (int64_t kk = 0; kk < f.kp; ++kk) {
        const int32_t want = (n < c.n && kk < c.k) ? canonical_operand(b.layer, n, kk) : 0;
        if (svdq_gpu::host_weight_operand(f, n, kk) != want) ++bad;
      }
    check(bad == 0, std::string("repacked codes of ") + svdq_gpu::scheme_name(s) + " match the canonical codes");
  }
}

// Host activation operands and the expected block sums I [m][n][groups].
std::vector<int32_t> expected_sums(const Built& b, int64_t M) {
  const lowbit_ref::CanonicalLayer& L = b.layer;
  const int64_t K = L.k, N = L.n;
  const int sch = static_cast<int>(L.scheme);
  const int64_t grp = sch == svdq_gpu::kW8A8 ? K : svdq_gpu::scheme_group(sch);
  const int64_t G = sch == svdq_gpu::kW8A8 ? 1 : (K + grp - 1) / grp;
  const int64_t kpc = sch == svdq_gpu::kW8A8 ? K : svdq::padded_k(K, grp);
  const svdq::FormatKernels& fk = svdq::portable::kFormatKernels;
  std::vector<int32_t> out(static_cast<size_t>(M * N * G), 0);
  std::vector<float> xh(static_cast<size_t>(K));
  std::vector<uint8_t> packed(static_cast<size_t>(kpc / 2 + 8));
  std::vector<float> fs(static_cast<size_t>(G + 1));
  std::vector<uint8_t> bs(static_cast<size_t>(G + 1));
  std::vector<int8_t> q8(static_cast<size_t>(K));
  std::vector<int32_t> a(static_cast<size_t>(kpc));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t i = 0; i < K; ++i)
      xh[i] = L.smooth.empty() ? b.x[m * K + i] : b.x[m * K + i] / L.smooth[i];
    switch (sch) {
      case svdq_gpu::kW4A4: fk.quantize_int4(xh.data(), 1, K, packed.data(), fs.data()); break;
      case svdq_gpu::kMxfp4: fk.quantize_mxfp4(xh.data(), 1, K, packed.data(), bs.data(), svdq::MxScaleRule::Even); break;
      case svdq_gpu::kNvfp4:
        fk.quantize_nvfp4(xh.data(), 1, K, svdq::nvfp4_global_scale(fk.amax_finite(xh.data(), K)), packed.data(), bs.data());
        break;
      default: fk.quantize_int8(xh.data(), 1, K, q8.data(), fs.data()); break;
    }
    for (int64_t i = 0; i < kpc; ++i) {
      if (sch == svdq_gpu::kW8A8) {
        a[i] = q8[i];
        continue;
      }
      const uint32_t nib = (i & 1) ? (packed[i / 2] >> 4) : (packed[i / 2] & 0xF);
      a[i] = sch == svdq_gpu::kW4A4 ? svdq_gpu::int4_of_nibble(nib) : svdq_gpu::e2m1x2_of_code(nib);
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < G; ++g) {
        int32_t s = 0;
        for (int64_t i = g * grp; i < (g + 1) * grp && i < kpc; ++i) s += a[i] * canonical_operand(L, n, i);
        out[static_cast<size_t>((m * N + n) * G + g)] = s;
      }
  }
  return out;
}

void test_layer(const svdq_gpu_api* api, const Case& c) {
  const std::string name = case_name(c);
  Built b = build(c);
  const svdq_gpu_layer_desc d = to_gpu_desc(b.layer);
  svdq_gpu_status st;
  svdq_gpu_layer* layer = nullptr;
  int rc = api->layer_create(0, &d, &layer, &st);
  check(rc == SVDQ_GPU_OK, "layer_create " + name + ": " + st.message);
  if (rc != SVDQ_GPU_OK) return;
  std::vector<double> ref, S;
  lowbit_ref::reference_forward(b.layer, svdq::MxScaleRule::Even, b.x.data(), c.m, ref, S);
  const int64_t G = lowbit_ref::canonical_groups(b.layer.scheme, c.k);
  const double unit = ldexp(1.0, -24) * static_cast<double>(c.k + 2 * G + c.rank + 8);
  std::vector<int32_t> want_sums;
  if (c.scheme != svdq_gpu::kW4A16) want_sums = expected_sums(b, c.m);
  for (int path = 0; path < 2; ++path) {
    svdq_gpu_debug_set_path(layer, path);
    const std::string pn = name + (path == 0 ? " [dot]" : " [matrix]");
    if (c.scheme != svdq_gpu::kW4A16) {
      std::vector<int32_t> sums(want_sums.size(), -1);
      rc = svdq_gpu_debug_block_sums(layer, b.x.data(), c.m, sums.data(), &st);
      check(rc == SVDQ_GPU_OK, "block sums " + pn + ": " + st.message);
      int64_t bad = 0, first = -1;
      for (size_t i = 0; i < sums.size(); ++i)
        if (sums[i] != want_sums[i]) {
          if (first < 0) first = static_cast<int64_t>(i);
          ++bad;
        }
      check(bad == 0, "integer block sums exact " + pn + " (" + std::to_string(bad) + " differ, first at " +
                          std::to_string(first) + ")");
    }
    std::vector<float> y0;
    for (int mode = 0; mode < 3; ++mode) {
      std::vector<float> y(static_cast<size_t>(c.m * c.n), 12345.0f);
      rc = api->layer_forward_host(layer, b.x.data(), c.m, y.data(), mode, &st);
      check(rc == SVDQ_GPU_OK, "forward " + pn + " mode " + std::to_string(mode) + ": " + st.message);
      if (rc != SVDQ_GPU_OK) continue;
      int64_t bad = 0;
      double worst = 0.0;
      for (size_t i = 0; i < y.size(); ++i) {
        const double r = ref[i];
        if (r != r) {
          if (y[i] == y[i]) ++bad;
          continue;
        }
        const double err = fabs(static_cast<double>(y[i]) - r);
        const double tol = unit * S[i] + 1e-30;
        if (!(err <= tol)) ++bad;
        if (tol > 0 && err / tol > worst) worst = err / tol;
      }
      char w[64];
      snprintf(w, sizeof w, "%.3g", worst);
      check(bad == 0, "outputs within the bound " + pn + " mode " + std::to_string(mode) + " (" +
                          std::to_string(bad) + " outside, worst err/bound " + w + ")");
      if (mode == 0) {
        y0 = y;
      } else {
        bool same = y.size() == y0.size();
        for (size_t i = 0; same && i < y.size(); ++i) same = same_bits_or_both_nan(y[i], y0[i]);
        check(same, "mode " + std::to_string(mode) + " is bit-identical to fused " + pn);
      }
    }
  }
  // Device-buffer forward on the same layer.
  svdq_gpu_buffer *xb = nullptr, *yb = nullptr;
  const size_t xbytes = static_cast<size_t>(c.m * c.k) * 4, ybytes = static_cast<size_t>(c.m * c.n) * 4;
  if (api->buffer_alloc(0, xbytes, &xb, &st) == SVDQ_GPU_OK && api->buffer_alloc(0, ybytes, &yb, &st) == SVDQ_GPU_OK) {
    std::vector<float> yh(static_cast<size_t>(c.m * c.n)), yd(yh.size());
    bool okk = api->buffer_upload(xb, 0, b.x.data(), xbytes, &st) == SVDQ_GPU_OK;
    okk = okk && api->layer_forward_device(layer, xb, c.m, yb, 0, &st) == SVDQ_GPU_OK;
    okk = okk && api->buffer_download(yb, 0, yd.data(), ybytes, &st) == SVDQ_GPU_OK;
    okk = okk && api->layer_forward_host(layer, b.x.data(), c.m, yh.data(), 0, &st) == SVDQ_GPU_OK;
    for (size_t i = 0; okk && i < yh.size(); ++i) okk = same_bits_or_both_nan(yh[i], yd[i]);
    check(okk, "forward_device equals forward_host " + name + " " + st.message);
  } else {
    check(false, "buffer_alloc for " + name + ": " + st.message);
  }
  api->buffer_free(xb);
  api->buffer_free(yb);
  api->layer_destroy(layer);
}

// Argument checks that need no device.
void test_abi_arguments(const svdq_gpu_api* api) {
  svdq_gpu_status st;
  check(api->abi_version == SVDQ_GPU_ABI_VERSION, "abi_version");
  check(strcmp(api->platform, "cuda") == 0 || strcmp(api->platform, "hip") == 0, "platform name");
  svdq_gpu_layer* layer = nullptr;
  check(api->layer_create(0, nullptr, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT, "layer_create(NULL desc)");
  Case c{0, 1, 100, 9, 2, true, true, false, false, false, 5};
  Built b = build(c);
  svdq_gpu_layer_desc d = to_gpu_desc(b.layer);
  d.scheme = 9;
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT && st.message[0] != '\0', "bad scheme");
  d = to_gpu_desc(b.layer);
  d.n = 0;
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT, "n = 0");
  d = to_gpu_desc(b.layer);
  d.l_down = nullptr;
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT, "rank without l_down");
  std::vector<float> lam(b.layer.smooth);
  lam[3] = 0.0f;
  d = to_gpu_desc(b.layer);
  d.smooth = lam.data();
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT, "zero lambda");
  lam[3] = svdq::f32_from_bits(0x7FC00000u);
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT, "NaN lambda");
  d = to_gpu_desc(b.layer);
  d.act_mx_rule = 5;
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_INVALID_ARGUMENT, "bad mx rule");
  d = to_gpu_desc(b.layer);
  d.rank = 5000;
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_UNSUPPORTED, "rank above the kernel limit");
  float x = 0, y = 0;
  check(api->layer_forward_host(nullptr, &x, 1, &y, 0, &st) == SVDQ_GPU_INVALID_ARGUMENT, "forward on a NULL layer");
  check(api->buffer_upload(nullptr, 0, &x, 4, &st) == SVDQ_GPU_INVALID_ARGUMENT, "upload to a NULL buffer");
  check(api->buffer_download(nullptr, 0, &x, 4, &st) == SVDQ_GPU_INVALID_ARGUMENT, "download from a NULL buffer");
  check(api->device_count(nullptr, &st) == SVDQ_GPU_INVALID_ARGUMENT, "device_count(NULL)");
  api->buffer_free(nullptr);
  api->layer_destroy(nullptr);
  check(api->buffer_bytes(nullptr) == 0 && api->layer_bytes(nullptr) == 0, "NULL handles report 0 bytes");
}

void test_abi_device_errors(const svdq_gpu_api* api) {
  svdq_gpu_status st;
  svdq_gpu_buffer* buf = nullptr;
  check(api->buffer_alloc(0, size_t(1) << 60, &buf, &st) == SVDQ_GPU_OUT_OF_MEMORY && buf == nullptr,
        std::string("huge allocation is OUT_OF_MEMORY: ") + st.message);
  check(api->buffer_alloc(9999, 16, &buf, &st) == SVDQ_GPU_NO_DEVICE, "allocation on a missing device");
  svdq_gpu_device_info info;
  check(api->device_info(-1, &info, &st) == SVDQ_GPU_NO_DEVICE, "device_info(-1)");
  check(api->buffer_alloc(0, 64, &buf, &st) == SVDQ_GPU_OK, "small allocation");
  float tmp[32] = {0};
  check(api->buffer_upload(buf, 32, tmp, 64, &st) == SVDQ_GPU_INVALID_ARGUMENT, "upload past the end");
  check(api->buffer_download(buf, 65, tmp, 0, &st) == SVDQ_GPU_INVALID_ARGUMENT, "download offset past the end");
  Case c{0, 4, 100, 9, 2, true, true, false, false, false, 5};
  Built b = build(c);
  const svdq_gpu_layer_desc d = to_gpu_desc(b.layer);
  svdq_gpu_layer* layer = nullptr;
  check(api->layer_create(0, &d, &layer, &st) == SVDQ_GPU_OK, "layer_create");
  if (layer != nullptr) {
    std::vector<float> y(static_cast<size_t>(4 * 9));
    check(api->layer_forward_host(layer, b.x.data(), 4, y.data(), 7, &st) == SVDQ_GPU_INVALID_ARGUMENT, "bad mode");
    check(api->layer_forward_host(layer, b.x.data(), -1, y.data(), 0, &st) == SVDQ_GPU_INVALID_ARGUMENT, "m < 0");
    check(api->layer_forward_host(layer, nullptr, 4, y.data(), 0, &st) == SVDQ_GPU_INVALID_ARGUMENT, "x NULL");
    check(api->layer_forward_host(layer, b.x.data(), 0, y.data(), 0, &st) == SVDQ_GPU_OK, "m = 0 is a no-op");
    check(api->layer_forward_device(layer, buf, 4, buf, 0, &st) == SVDQ_GPU_INVALID_ARGUMENT, "too small device buffers");
    check(api->layer_bytes(layer) > 0, "layer_bytes");
    api->layer_destroy(layer);
  }
  api->buffer_free(buf);
}

}  // namespace

int main() {
  const svdq_gpu_api* api = svdq_gpu_get_api();
  printf("svdquant GPU backend tests (%s, built for %s)\n", api->platform, api->built_archs);
  test_codecs();
  test_repack();
  test_abi_arguments(api);

  svdq_gpu_status st;
  int count = 0;
  const int rc = api->device_count(&count, &st);
  if (rc != SVDQ_GPU_OK || count == 0) {
    printf("no GPU: %s — GPU tests skipped\n", rc != SVDQ_GPU_OK ? st.message : "the driver reports no device");
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
  }
  svdq_gpu_device_info info;
  if (api->device_info(0, &info, &st) == SVDQ_GPU_OK)
    printf("device 0: %s (%s), %d multiprocessors, matrix path %d\n", info.name, info.arch, info.multiprocessors,
           info.matrix_path);
  test_abi_device_errors(api);

  // SVDQ_GPU_TEST_SMALL=1: two small cases per scheme (for compute-sanitizer, which is slow).
  const bool small = getenv("SVDQ_GPU_TEST_SMALL") != nullptr && strcmp(getenv("SVDQ_GPU_TEST_SMALL"), "1") == 0;
  std::vector<Case> cases;
  uint64_t seed = 100;
  for (int s = 0; s < 5 && small; ++s) {
    cases.push_back({s, 3, 100, 33, 1, true, true, true, true, true, seed++});
    cases.push_back({s, 17, 200, 130, 8, true, false, true, true, false, seed++});
  }
  for (int s = 0; s < 5 && !small; ++s) {
    cases.push_back({s, 1, 200, 77, 0, false, false, false, false, false, seed++});
    cases.push_back({s, 3, 100, 33, 1, true, true, true, true, true, seed++});
    cases.push_back({s, 17, 333, 65, 32, true, false, true, true, false, seed++});
    cases.push_back({s, 256, 520, 131, 64, false, true, true, false, true, seed++});
    cases.push_back({s, 64, 1024, 128, 32, true, true, false, false, false, seed++});
  }
  for (const Case& c : cases) test_layer(api, c);

  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
