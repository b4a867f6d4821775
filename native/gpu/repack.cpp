// Canonical layer (formats.h / lowbit.h layouts) → GPU kernel format (gpu_layer.h), on the host,
// once at layer creation. Also validates everything the kernels rely on.
#include <math.h>
#include <string.h>

#include <cstdio>

#include "gpu_codecs.h"
#include "gpu_layer.h"

namespace svdq_gpu {

const char* scheme_name(int scheme) {
  switch (scheme) {
    case kW4A4: return "w4a4";
    case kMxfp4: return "mxfp4";
    case kNvfp4: return "nvfp4";
    case kW8A8: return "w8a8";
    case kW4A16: return "w4a16";
  }
  return "unknown";
}

namespace {

bool finite(float v) { return (bits_of(v) & 0x7FFFFFFFu) < kInfBits; }

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int bad(std::string& message, int code, const char* fmt, long long a = 0, long long b = 0) {
  char buf[400];
  snprintf(buf, sizeof buf, fmt, a, b);
  message = buf;
  return code;
}

}  // namespace

int repack_layer(const svdq_gpu_layer_desc& d, HostFormat& f, std::string& message) {
  const int INV = SVDQ_GPU_INVALID_ARGUMENT;
  if (d.scheme < 0 || d.scheme > 4)
    return bad(message, INV, "layer_create: scheme %lld is not one of 0 w4a4, 1 mxfp4, 2 nvfp4, 3 w8a8, 4 w4a16", d.scheme);
  if (d.n <= 0 || d.k <= 0)
    return bad(message, INV, "layer_create: n = %lld and k = %lld must both be positive", d.n, d.k);
  if (d.n > (int64_t(1) << 24) || d.k > (int64_t(1) << 24))
    return bad(message, INV, "layer_create: n = %lld or k = %lld is larger than 2^24", d.n, d.k);
  if (d.rank < 0) return bad(message, INV, "layer_create: rank %lld is negative", d.rank);
  if (d.rank > kMaxRank)
    return bad(message, SVDQ_GPU_UNSUPPORTED, "layer_create: rank %lld is larger than the GPU kernels' limit %lld",
               d.rank, kMaxRank);
  if (d.w_codes == nullptr || d.w_scales == nullptr)
    return bad(message, INV, "layer_create: w_codes and w_scales must not be NULL");
  if (d.rank > 0 && (d.l_down == nullptr || d.l_up == nullptr))
    return bad(message, INV, "layer_create: rank %lld needs l_down [rank][k] and l_up [n][rank]", d.rank);
  if (d.act_mx_rule < 0 || d.act_mx_rule > 2)
    return bad(message, INV, "layer_create: act_mx_rule %lld is not 0 floor, 1 even or 2 ceil", d.act_mx_rule);
  if (d.scheme == kNvfp4 && !(finite(d.w_global_scale) && d.w_global_scale > 0.0f))
    return bad(message, INV, "layer_create: nvfp4 w_global_scale must be finite and positive");

  f = HostFormat();
  f.scheme = d.scheme;
  f.n = d.n;
  f.k = d.k;
  f.rank = d.rank;
  f.group = scheme_group(d.scheme);
  f.kp = round_up(d.k, kChunkK);
  f.np = round_up(d.n, kBlockN);
  f.act_rule = d.act_mx_rule;
  f.w_global_scale = d.scheme == kNvfp4 ? d.w_global_scale : 1.0f;
  const int64_t n = d.n, k = d.k, kp = f.kp, np = f.np, R = d.rank;
  if (d.scheme == kW8A8) {
    f.groups = f.groups_pad = 1;
  } else {
    f.groups = (k + f.group - 1) / f.group;
    f.groups_pad = kp / f.group;
  }
  const int64_t G = f.groups, Gp = f.groups_pad;
  const int64_t kpc = d.scheme == kW8A8 ? k : round_up(k, f.group);  // canonical row length

  // Weight scales: validated, then group-major [Gp][np].
  if (d.scheme == kMxfp4 || d.scheme == kNvfp4) {
    const uint8_t* s = static_cast<const uint8_t*>(d.w_scales);
    f.w_scale.assign(static_cast<size_t>(Gp * np), 0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t b = s[i * G + g];
        if ((d.scheme == kMxfp4 && b == kE8M0Nan) || (d.scheme == kNvfp4 && (b & 0x7F) == kE4M3Nan))
          return bad(message, INV, "layer_create: weight scale of row %lld, group %lld is NaN", i, g);
        f.w_scale[static_cast<size_t>(g * np + i)] = b;
      }
  } else {
    const float* s = static_cast<const float*>(d.w_scales);
    f.w_scale.assign(static_cast<size_t>(Gp * np * 4), 0);
    float* o = reinterpret_cast<float*>(f.w_scale.data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t g = 0; g < G; ++g) {
        const float v = s[i * G + g];
        if (!finite(v)) return bad(message, INV, "layer_create: weight scale of row %lld, group %lld is not finite", i, g);
        o[g * np + i] = v;
      }
  }

  // Codes: tile order.
  const int64_t chunks = kp / kChunkK;
  if (d.scheme == kW8A8) {
    const int8_t* c = static_cast<const int8_t*>(d.w_codes);
    f.w.assign(static_cast<size_t>(np * kp), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = i / kTileN, col = i % kTileN;
      for (int64_t kk = 0; kk < k; ++kk) {
        const int64_t ch = kk / kChunkK;
        f.w[static_cast<size_t>(((t * chunks + ch) * kTileN + col) * kChunkK + kk % kChunkK)] =
            static_cast<uint8_t>(c[i * k + kk]);
      }
    }
  } else {
    const uint8_t* c = static_cast<const uint8_t*>(d.w_codes);
    f.w.assign(static_cast<size_t>(np * kp / 2), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = i / kTileN, col = i % kTileN;
      for (int64_t ch = 0; ch < chunks; ++ch) {
        uint8_t* dst = f.w.data() + ((t * chunks + ch) * kTileN + col) * (kChunkK / 2);
        for (int64_t b = 0; b < kChunkK / 2; ++b) {
          const int64_t e = ch * kChunkK + 2 * b;  // element index of the low nibble
          if (e >= kpc) break;                    // canonical padding ends at kpc (zero codes)
          dst[b] = c[i * (kpc / 2) + e / 2];
        }
      }
    }
  }

  if (d.smooth != nullptr) {
    f.has_smooth = true;
    f.smooth.assign(d.smooth, d.smooth + k);
    for (int64_t i = 0; i < k; ++i)
      if (!finite(f.smooth[i]) || f.smooth[i] == 0.0f)
        return bad(message, INV, "layer_create: smooth[%lld] (lambda) must be finite and non-zero", i);
  }
  if (R > 0) {
    f.l_down_t.assign(static_cast<size_t>(k * R), 0.0f);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < k; ++i) {
        const float v = d.l_down[r * k + i];
        if (!finite(v)) return bad(message, INV, "layer_create: l_down[%lld][%lld] is not finite", r, i);
        f.l_down_t[static_cast<size_t>(i * R + r)] = v;
      }
    f.l_up.assign(static_cast<size_t>(np * R), 0.0f);
    for (int64_t i = 0; i < n * R; ++i) {
      if (!finite(d.l_up[i])) return bad(message, INV, "layer_create: l_up[%lld][%lld] is not finite", i / R, i % R);
      f.l_up[static_cast<size_t>(i)] = d.l_up[i];
    }
  }
  if (d.bias != nullptr) {
    f.has_bias = true;
    f.bias.assign(static_cast<size_t>(np), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      if (!finite(d.bias[i])) return bad(message, INV, "layer_create: bias[%lld] is not finite", i);
      f.bias[static_cast<size_t>(i)] = d.bias[i];
    }
  }
  message.clear();
  return SVDQ_GPU_OK;
}

int32_t host_weight_operand(const HostFormat& f, int64_t n, int64_t kk) {
  const int64_t chunks = f.kp / kChunkK, t = n / kTileN, col = n % kTileN, ch = kk / kChunkK, e = kk % kChunkK;
  if (f.scheme == kW8A8)
    return static_cast<int8_t>(f.w[static_cast<size_t>(((t * chunks + ch) * kTileN + col) * kChunkK + e)]);
  const uint8_t b = f.w[static_cast<size_t>(((t * chunks + ch) * kTileN + col) * (kChunkK / 2) + e / 2)];
  const uint32_t nib = (e & 1) ? (b >> 4) : (b & 0xF);
  if (f.scheme == kMxfp4 || f.scheme == kNvfp4) return e2m1x2_of_code(nib);
  return int4_of_nibble(nib);
}

}  // namespace svdq_gpu
