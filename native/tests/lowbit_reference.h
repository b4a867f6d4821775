// A plain reference of the SVDQuant layer forward pass (DESIGN.md §2) for the low-bit kernel tests:
// X̂ = X / λ in fp32; Q_a with the portable row quantizers of formats.h on X̂ (nvfp4: a per-token
// tensor scale G = nvfp4_global_scale(amax of the row)); both operands dequantized exactly and
// multiplied and accumulated in double; the low-rank branch (X̂·L_downᵀ)·L_upᵀ and the bias in
// double. It also returns S, the sum of the absolute values of every term, for error bounds.
#pragma once

#include <cstdint>
#include <vector>

#include "svdquant/formats.h"
#include "svdquant/lowbit.h"

namespace lowbit_ref {

// A layer in canonical form (what a checkpoint holds), owning its data.
struct CanonicalLayer {
  svdq::LowbitScheme scheme = svdq::LowbitScheme::W4A4;
  int64_t n = 0, k = 0, rank = 0;
  std::vector<uint8_t> codes;   // int4 / E2M1 packed, or int8 bytes (w8a8)
  std::vector<float> fscales;   // int4 / w8a8 scales
  std::vector<uint8_t> bscales; // E8M0 / E4M3 scale bytes
  float global_scale = 1.0f;    // nvfp4 G_w
  std::vector<float> smooth, l_down, l_up, bias;  // empty when absent (smooth, bias)
  svdq::LowbitLayerDesc desc() const;
};

// Quantizes a dense weight W [n][k] with the portable quantizers into a canonical layer.
CanonicalLayer quantize_layer(svdq::LowbitScheme scheme, int64_t n, int64_t k, int64_t rank,
                              const std::vector<float>& W, const std::vector<float>& smooth,
                              const std::vector<float>& l_down, const std::vector<float>& l_up,
                              const std::vector<float>& bias);

// Reference forward: Y [M][n] and S [M][n] (Σ|terms|) in double.
void reference_forward(const CanonicalLayer& L, svdq::MxScaleRule act_rule, const float* X, int64_t M,
                       std::vector<double>& Y, std::vector<double>& S);

// Row group count of the canonical layout.
int64_t canonical_groups(svdq::LowbitScheme scheme, int64_t k);

}  // namespace lowbit_ref
