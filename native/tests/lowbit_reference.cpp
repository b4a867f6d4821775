// Reference SVDQuant forward pass for the low-bit kernel tests (see lowbit_reference.h).
#include "lowbit_reference.h"

#include <cmath>
#include <cstring>

#include "svdquant/codecs.h"

using svdq::LowbitScheme;

namespace lowbit_ref {

namespace {

const svdq::FormatKernels& fk() { return svdq::portable::kFormatKernels; }

int64_t canonical_group(LowbitScheme s) {
  switch (s) {
    case LowbitScheme::W4A4:
    case LowbitScheme::W4A16: return svdq::kInt4Group;
    case LowbitScheme::Mxfp4: return svdq::kMxfp4Group;
    case LowbitScheme::Nvfp4: return svdq::kNvfp4Group;
    case LowbitScheme::W8A8: return 0;
  }
  return 0;
}

double e2m1(uint8_t code) { return static_cast<double>(svdq::e2m1_decode(code)); }

uint8_t nibble(const uint8_t* packed, int64_t i) {
  const uint8_t b = packed[i / 2];
  return (i & 1) ? static_cast<uint8_t>(b >> 4) : static_cast<uint8_t>(b & 0xF);
}

}  // namespace

int64_t canonical_groups(LowbitScheme s, int64_t k) {
  const int64_t g = canonical_group(s);
  return g == 0 ? 1 : svdq::padded_k(k, g) / g;
}

svdq::LowbitLayerDesc CanonicalLayer::desc() const {
  svdq::LowbitLayerDesc d;
  d.scheme = scheme;
  d.n = n;
  d.k = k;
  d.rank = rank;
  d.w_codes = codes.data();
  d.w_scales = (scheme == LowbitScheme::Mxfp4 || scheme == LowbitScheme::Nvfp4)
                   ? static_cast<const void*>(bscales.data())
                   : static_cast<const void*>(fscales.data());
  d.w_global_scale = global_scale;
  d.smooth = smooth.empty() ? nullptr : smooth.data();
  d.l_down = rank > 0 ? l_down.data() : nullptr;
  d.l_up = rank > 0 ? l_up.data() : nullptr;
  d.bias = bias.empty() ? nullptr : bias.data();
  return d;
}

CanonicalLayer quantize_layer(LowbitScheme scheme, int64_t n, int64_t k, int64_t rank,
                              const std::vector<float>& W, const std::vector<float>& smooth,
                              const std::vector<float>& l_down, const std::vector<float>& l_up,
                              const std::vector<float>& bias) {
  CanonicalLayer L;
  L.scheme = scheme;
  L.n = n;
  L.k = k;
  L.rank = rank;
  L.smooth = smooth;
  L.l_down = l_down;
  L.l_up = l_up;
  L.bias = bias;
  const int64_t G = canonical_groups(scheme, k);
  switch (scheme) {
    case LowbitScheme::W4A4:
    case LowbitScheme::W4A16: {
      const int64_t kp = svdq::padded_k(k, svdq::kInt4Group);
      L.codes.assign(static_cast<size_t>(n * kp / 2), 0);
      L.fscales.assign(static_cast<size_t>(n * G), 0.0f);
      fk().quantize_int4(W.data(), n, k, L.codes.data(), L.fscales.data());
      break;
    }
    case LowbitScheme::Mxfp4: {
      const int64_t kp = svdq::padded_k(k, svdq::kMxfp4Group);
      L.codes.assign(static_cast<size_t>(n * kp / 2), 0);
      L.bscales.assign(static_cast<size_t>(n * G), 0);
      fk().quantize_mxfp4(W.data(), n, k, L.codes.data(), L.bscales.data(), svdq::MxScaleRule::Even);
      break;
    }
    case LowbitScheme::Nvfp4: {
      const int64_t kp = svdq::padded_k(k, svdq::kNvfp4Group);
      L.codes.assign(static_cast<size_t>(n * kp / 2), 0);
      L.bscales.assign(static_cast<size_t>(n * G), 0);
      L.global_scale = svdq::nvfp4_global_scale(fk().amax_finite(W.data(), n * k));
      fk().quantize_nvfp4(W.data(), n, k, L.global_scale, L.codes.data(), L.bscales.data());
      break;
    }
    case LowbitScheme::W8A8: {
      L.codes.assign(static_cast<size_t>(n * k), 0);
      L.fscales.assign(static_cast<size_t>(n), 0.0f);
      fk().quantize_int8(W.data(), n, k, reinterpret_cast<int8_t*>(L.codes.data()), L.fscales.data());
      break;
    }
  }
  return L;
}

void reference_forward(const CanonicalLayer& L, svdq::MxScaleRule act_rule, const float* X, int64_t M,
                       std::vector<double>& Y, std::vector<double>& S) {
  const int64_t N = L.n, K = L.k, R = L.rank;
  const int64_t cg = canonical_group(L.scheme);
  const int64_t kp = cg == 0 ? K : svdq::padded_k(K, cg);
  const int64_t G = canonical_groups(L.scheme, K);

  // Dequantized weights, [N][K], in double.
  std::vector<double> wd(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < K; ++i) {
      double v = 0.0;
      switch (L.scheme) {
        case LowbitScheme::W4A4:
        case LowbitScheme::W4A16:
          v = svdq::int4_from_nibble(nibble(L.codes.data() + n * kp / 2, i)) *
              static_cast<double>(L.fscales[static_cast<size_t>(n * G + i / cg)]);
          break;
        case LowbitScheme::Mxfp4:
          v = e2m1(nibble(L.codes.data() + n * kp / 2, i)) *
              static_cast<double>(svdq::e8m0_decode(L.bscales[static_cast<size_t>(n * G + i / cg)]));
          break;
        case LowbitScheme::Nvfp4:
          v = e2m1(nibble(L.codes.data() + n * kp / 2, i)) *
              static_cast<double>(svdq::e4m3_decode(L.bscales[static_cast<size_t>(n * G + i / cg)])) /
              static_cast<double>(L.global_scale);
          break;
        case LowbitScheme::W8A8:
          v = static_cast<double>(static_cast<int8_t>(L.codes[static_cast<size_t>(n * K + i)])) *
              static_cast<double>(L.fscales[static_cast<size_t>(n)]);
          break;
      }
      wd[static_cast<size_t>(n * K + i)] = v;
    }

  Y.assign(static_cast<size_t>(M * N), 0.0);
  S.assign(static_cast<size_t>(M * N), 0.0);
  std::vector<float> xh(static_cast<size_t>(K));
  std::vector<double> xd(static_cast<size_t>(K));
  std::vector<uint8_t> packed(static_cast<size_t>(kp / 2 + 8));
  std::vector<float> fsc(static_cast<size_t>(G));
  std::vector<uint8_t> bsc(static_cast<size_t>(G));
  std::vector<int8_t> q8(static_cast<size_t>(K));
  std::vector<double> D(static_cast<size_t>(R)), DA(static_cast<size_t>(R));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t i = 0; i < K; ++i)
      xh[static_cast<size_t>(i)] = L.smooth.empty() ? X[m * K + i] : X[m * K + i] / L.smooth[static_cast<size_t>(i)];
    // Q_a(X̂), dequantized exactly.
    switch (L.scheme) {
      case LowbitScheme::W4A16:
        for (int64_t i = 0; i < K; ++i) xd[static_cast<size_t>(i)] = xh[static_cast<size_t>(i)];
        break;
      case LowbitScheme::W4A4:
        fk().quantize_int4(xh.data(), 1, K, packed.data(), fsc.data());
        for (int64_t i = 0; i < K; ++i)
          xd[static_cast<size_t>(i)] =
              svdq::int4_from_nibble(nibble(packed.data(), i)) * static_cast<double>(fsc[static_cast<size_t>(i / cg)]);
        break;
      case LowbitScheme::Mxfp4:
        fk().quantize_mxfp4(xh.data(), 1, K, packed.data(), bsc.data(), act_rule);
        for (int64_t i = 0; i < K; ++i)
          xd[static_cast<size_t>(i)] = e2m1(nibble(packed.data(), i)) *
                                       static_cast<double>(svdq::e8m0_decode(bsc[static_cast<size_t>(i / cg)]));
        break;
      case LowbitScheme::Nvfp4: {
        const float gx = svdq::nvfp4_global_scale(fk().amax_finite(xh.data(), K));
        fk().quantize_nvfp4(xh.data(), 1, K, gx, packed.data(), bsc.data());
        for (int64_t i = 0; i < K; ++i)
          xd[static_cast<size_t>(i)] = e2m1(nibble(packed.data(), i)) *
                                       static_cast<double>(svdq::e4m3_decode(bsc[static_cast<size_t>(i / cg)])) /
                                       static_cast<double>(gx);
        break;
      }
      case LowbitScheme::W8A8: {
        float s = 0.0f;
        fk().quantize_int8(xh.data(), 1, K, q8.data(), &s);
        for (int64_t i = 0; i < K; ++i) xd[static_cast<size_t>(i)] = q8[static_cast<size_t>(i)] * static_cast<double>(s);
        break;
      }
    }
    for (int64_t r = 0; r < R; ++r) {
      double d = 0.0, da = 0.0;
      for (int64_t i = 0; i < K; ++i) {
        const double t = static_cast<double>(xh[static_cast<size_t>(i)]) * L.l_down[static_cast<size_t>(r * K + i)];
        d += t;
        da += std::fabs(t);
      }
      D[static_cast<size_t>(r)] = d;
      DA[static_cast<size_t>(r)] = da;
    }
    for (int64_t n = 0; n < N; ++n) {
      double y = 0.0, s = 0.0;
      const double* w = wd.data() + n * K;
      for (int64_t i = 0; i < K; ++i) {
        const double t = xd[static_cast<size_t>(i)] * w[i];
        y += t;
        s += std::fabs(t);
      }
      for (int64_t r = 0; r < R; ++r) {
        const double lu = L.l_up[static_cast<size_t>(n * R + r)];
        y += D[static_cast<size_t>(r)] * lu;
        s += DA[static_cast<size_t>(r)] * std::fabs(lu);
      }
      if (!L.bias.empty()) {
        y += L.bias[static_cast<size_t>(n)];
        s += std::fabs(static_cast<double>(L.bias[static_cast<size_t>(n)]));
      }
      Y[static_cast<size_t>(m * N + n)] = y;
      S[static_cast<size_t>(m * N + n)] = s;
    }
  }
}

}  // namespace lowbit_ref
