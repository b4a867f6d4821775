// Conformance vectors for DESIGN.md §3, written out by hand from the rules (not produced by the
// code under test). Codec vectors test the scalar codecs; row vectors run through the quantizer
// kernels of every ISA level this CPU supports (portable, AVX2, AVX-512).
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "harness.h"
#include "svdquant/codecs.h"
#include "svdquant/formats.h"
#include "svdquant/isa.h"

using namespace svdq;

namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<Isa> levels() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(detect_cpu_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

bool same_bits(float a, float b) { return f32_bits(a) == f32_bits(b); }

}  // namespace

TEST(e2m1_encode_ties_and_saturation) {
  struct V { float x; uint8_t code; };
  const V vectors[] = {
      {0.0f, 0x0}, {-0.0f, 0x0}, {0.1f, 0x0}, {-0.1f, 0x0},
      {0.25f, 0x0}, {0.2500001f, 0x1}, {0.5f, 0x1}, {0.7499999f, 0x1}, {0.75f, 0x2}, {1.0f, 0x2},
      {1.25f, 0x2}, {1.2500001f, 0x3}, {1.5f, 0x3}, {1.75f, 0x4}, {2.0f, 0x4}, {2.5f, 0x4},
      {2.5000002f, 0x5}, {3.0f, 0x5}, {3.5f, 0x6}, {4.0f, 0x6}, {5.0f, 0x6}, {5.0000005f, 0x7},
      {6.0f, 0x7}, {6.5f, 0x7}, {7.9f, 0x7}, {1e30f, 0x7}, {kInf, 0x7}, {FLT_MAX, 0x7},
      {-0.25f, 0x0}, {-0.75f, 0xA}, {-1.25f, 0xA}, {-1.75f, 0xC}, {-2.5f, 0xC}, {-3.5f, 0xE},
      {-5.0f, 0xE}, {-6.0f, 0xF}, {-6.5f, 0xF}, {-kInf, 0xF}, {-0.5f, 0x9}, {-3.0f, 0xD},
  };
  for (const V& v : vectors) CHECK_MSG(e2m1_encode(v.x) == v.code, "e2m1_encode(" + std::to_string(v.x) + ")");
}

TEST(e2m1_decode_table) {
  const float want[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) CHECK(same_bits(e2m1_decode(static_cast<uint8_t>(c)), want[c]));
}

TEST(e8m0_decode_extremes) {
  CHECK_EQ(f32_bits(e8m0_decode(0x00)), 0x00400000u);  // 2^-127, an fp32 subnormal
  CHECK(e8m0_decode(0x01) == std::ldexp(1.0f, -126));
  CHECK(e8m0_decode(0x7F) == 1.0f);
  CHECK(e8m0_decode(0x80) == 2.0f);
  CHECK(e8m0_decode(0xFE) == std::ldexp(1.0f, 127));
  CHECK(std::isnan(e8m0_decode(0xFF)));
}

TEST(e8m0_scale_rules) {
  struct V { float amax; MxScaleRule rule; uint8_t byte; };
  const V vectors[] = {
      // floor: 2^(floor(log2 amax) - 2)
      {6.0f, MxScaleRule::Floor, 127}, {7.9f, MxScaleRule::Floor, 127}, {8.0f, MxScaleRule::Floor, 128},
      {1.0f, MxScaleRule::Floor, 125}, {1.75f, MxScaleRule::Floor, 125}, {0.0f, MxScaleRule::Floor, 0},
      // even: one step up when the mantissa is >= 1.75
      {6.0f, MxScaleRule::Even, 127}, {6.99f, MxScaleRule::Even, 127}, {7.0f, MxScaleRule::Even, 128},
      {1.75f, MxScaleRule::Even, 126}, {1.7499999f, MxScaleRule::Even, 125}, {0.0f, MxScaleRule::Even, 0},
      // ceil: smallest 2^s with 6·2^s >= amax
      {6.0f, MxScaleRule::Ceil, 127}, {6.0000005f, MxScaleRule::Ceil, 128}, {3.0f, MxScaleRule::Ceil, 126},
      {3.1f, MxScaleRule::Ceil, 127}, {1.0f, MxScaleRule::Ceil, 125}, {7.9f, MxScaleRule::Ceil, 128},
      {0.0f, MxScaleRule::Ceil, 0},
      // extremes: FLT_MAX = (2 - 2^-23)·2^127; the smallest subnormals clamp to 2^-127 (byte 0)
      {FLT_MAX, MxScaleRule::Floor, 252}, {FLT_MAX, MxScaleRule::Even, 253}, {FLT_MAX, MxScaleRule::Ceil, 253},
      {std::ldexp(1.0f, -149), MxScaleRule::Floor, 0}, {std::ldexp(1.0f, -149), MxScaleRule::Ceil, 0},
      {std::ldexp(1.0f, -125), MxScaleRule::Floor, 0}, {std::ldexp(1.0f, -124), MxScaleRule::Floor, 1},
  };
  for (const V& v : vectors) {
    CHECK_MSG(e8m0_scale_for_amax(v.amax, v.rule) == v.byte,
              "e8m0_scale_for_amax(" + std::to_string(v.amax) + ", rule " + std::to_string(static_cast<int>(v.rule)) +
                  ") = " + std::to_string(e8m0_scale_for_amax(v.amax, v.rule)) + ", expected " + std::to_string(v.byte));
  }
}

TEST(e4m3_encode_rounding_and_saturation) {
  struct V { float x; uint8_t code; };
  const V vectors[] = {
      {0.0f, 0x00}, {1.0f, 0x38}, {-1.0f, 0xB8}, {1.0625f, 0x38} /* tie -> even mantissa 0 */,
      {1.0625001f, 0x39}, {1.1875f, 0x3A} /* tie between m=1 and m=2 -> 2 */, {2.0f, 0x40},
      {240.0f, 0x77}, {256.0f, 0x78}, {416.0f, 0x7D}, {432.0f, 0x7E} /* tie 416|448 -> even 448 */,
      {448.0f, 0x7E}, {449.0f, 0x7E}, {464.0f, 0x7E}, {1e9f, 0x7E}, {kInf, 0x7E}, {-448.0f, 0xFE},
      {-1e9f, 0xFE}, {-kInf, 0xFE}, {kNaN, 0x7F},
      // subnormals: multiples of 2^-9 below 2^-6
      {std::ldexp(1.0f, -6), 0x08}, {std::ldexp(1.0f, -9), 0x01}, {std::ldexp(1.0f, -10), 0x00} /* tie -> 0 */,
      {std::ldexp(1.5f, -10), 0x01}, {std::ldexp(3.0f, -10), 0x02} /* 1.5·2^-9: tie -> 2 */,
      {std::ldexp(7.5f, -9), 0x08} /* tie 7|8 -> 8 = 2^-6 */, {std::ldexp(1.0f, -20), 0x00},
  };
  for (const V& v : vectors) {
    CHECK_MSG(e4m3_encode(v.x) == v.code, "e4m3_encode(" + std::to_string(v.x) + ") = " +
                                              std::to_string(e4m3_encode(v.x)) + ", expected " + std::to_string(v.code));
  }
}

TEST(e4m3_decode_values) {
  CHECK(e4m3_decode(0x00) == 0.0f);
  CHECK(e4m3_decode(0x01) == std::ldexp(1.0f, -9));
  CHECK(e4m3_decode(0x07) == std::ldexp(7.0f, -9));
  CHECK(e4m3_decode(0x08) == std::ldexp(1.0f, -6));
  CHECK(e4m3_decode(0x38) == 1.0f);
  CHECK(e4m3_decode(0xB8) == -1.0f);
  CHECK(e4m3_decode(0x76) == 224.0f);
  CHECK(e4m3_decode(0x7E) == 448.0f);
  CHECK(e4m3_decode(0xFE) == -448.0f);
  CHECK(std::isnan(e4m3_decode(0x7F)));
  CHECK(std::isnan(e4m3_decode(0xFF)));
}

TEST(int_rounding_ties_and_clamp) {
  CHECK_EQ(int_round_clamp(2.5f, -8, 7), 2);
  CHECK_EQ(int_round_clamp(3.5f, -8, 7), 4);
  CHECK_EQ(int_round_clamp(-2.5f, -8, 7), -2);
  CHECK_EQ(int_round_clamp(0.5f, -8, 7), 0);
  CHECK_EQ(int_round_clamp(1.5f, -8, 7), 2);
  CHECK_EQ(int_round_clamp(7.5f, -8, 7), 7);    // rounds to 8, clamps to 7
  CHECK_EQ(int_round_clamp(-7.5f, -8, 7), -8);  // rounds to -8, in range
  CHECK_EQ(int_round_clamp(-8.5f, -8, 7), -8);
  CHECK_EQ(int_round_clamp(100.0f, -8, 7), 7);
  CHECK_EQ(int4_from_nibble(0x9), -7);
  CHECK_EQ(int4_from_nibble(0x8), -8);
  CHECK_EQ(int4_from_nibble(0x7), 7);
  CHECK_EQ(pack_nibbles(0x7, 0x9), 0x97);
}

TEST(int4_row_vectors_every_isa) {
  // One group of 64 with amax 7 -> scale exactly 1, so codes are RNE(x) clamped.
  std::vector<float> x(64, 0.0f);
  const float head[8] = {7, -7, 2.5f, 3.5f, -2.5f, 0.5f, 1.5f, -0.4f};
  std::memcpy(x.data(), head, sizeof head);
  const uint8_t want_head[4] = {0x97, 0x42, 0x0E, 0x02};  // (7,-7) (2,4) (-2,0) (2,0)
  for (Isa isa : levels()) {
    const FormatKernels& k = format_kernels_for(isa);
    std::vector<uint8_t> codes(32, 0xAA);
    float scale = -1;
    k.quantize_int4(x.data(), 1, 64, codes.data(), &scale);
    CHECK_MSG(scale == 1.0f, std::string("scale on ") + isa_name(isa));
    CHECK_MSG(std::memcmp(codes.data(), want_head, 4) == 0, std::string("codes on ") + isa_name(isa));
    for (int i = 4; i < 32; ++i) CHECK(codes[i] == 0);
    std::vector<float> back(64);
    k.dequantize_int4(codes.data(), &scale, 1, 64, back.data());
    const float want_back[8] = {7, -7, 2, 4, -2, 0, 2, 0};
    for (int i = 0; i < 8; ++i) CHECK_EQ(back[i], want_back[i]);
  }
}

TEST(k_tails_every_format_every_isa) {
  // Rows of all-ones with k in the tail lengths: every real element gets the top code, every padded
  // element code 0, and each tail group's scale uses only the real elements.
  // int4: scale 1/7, 1/(1/7) rounds to 7 -> nibble 0x7.  mxfp4 (even): amax 1 -> 2^-2 (byte 125),
  // 1·4 = 4 -> code 6.  nvfp4: G = 2688, block scale E4M3(448) = 0x7E, step 448/2688 = 1/6, 1/(1/6)
  // -> 6 -> code 7.  int8: 1/(1/127) -> 127.
  const int64_t tails[] = {1, 31, 33, 63, 65};
  for (Isa isa : levels()) {
    const FormatKernels& k = format_kernels_for(isa);
    for (int64_t n : tails) {
      std::vector<float> x(n, 1.0f);
      const std::string where = std::string(isa_name(isa)) + " k=" + std::to_string(n);
      {
        const int64_t kp = padded_k(n, 64);
        std::vector<uint8_t> codes(kp / 2, 0xAA);
        std::vector<float> scales(kp / 64, -1.0f);
        k.quantize_int4(x.data(), 1, n, codes.data(), scales.data());
        for (int64_t e = 0; e < kp; ++e) {
          const uint8_t nib = (codes[e / 2] >> ((e & 1) * 4)) & 0xF;
          CHECK_MSG(nib == (e < n ? 0x7 : 0x0), "int4 " + where + " element " + std::to_string(e));
        }
        for (float s : scales) CHECK_MSG(s == 1.0f / 7.0f, "int4 scale " + where);
      }
      {
        const int64_t kp = padded_k(n, 32);
        std::vector<uint8_t> codes(kp / 2, 0xAA), scales(kp / 32, 0xAA);
        k.quantize_mxfp4(x.data(), 1, n, codes.data(), scales.data(), MxScaleRule::Even);
        for (int64_t e = 0; e < kp; ++e) {
          const uint8_t nib = (codes[e / 2] >> ((e & 1) * 4)) & 0xF;
          CHECK_MSG(nib == (e < n ? 0x6 : 0x0), "mxfp4 " + where + " element " + std::to_string(e));
        }
        for (uint8_t s : scales) CHECK_MSG(s == 125, "mxfp4 scale " + where);
      }
      {
        const int64_t kp = padded_k(n, 16);
        std::vector<uint8_t> codes(kp / 2, 0xAA), scales(kp / 16, 0xAA);
        k.quantize_nvfp4(x.data(), 1, n, 2688.0f, codes.data(), scales.data());
        for (int64_t e = 0; e < kp; ++e) {
          const uint8_t nib = (codes[e / 2] >> ((e & 1) * 4)) & 0xF;
          CHECK_MSG(nib == (e < n ? 0x7 : 0x0), "nvfp4 " + where + " element " + std::to_string(e));
        }
        for (uint8_t s : scales) CHECK_MSG(s == 0x7E, "nvfp4 scale " + where);
      }
      {
        std::vector<int8_t> codes(n, 99);
        float scale = -1;
        k.quantize_int8(x.data(), 1, n, codes.data(), &scale);
        for (int64_t e = 0; e < n; ++e) CHECK_MSG(codes[e] == 127, "int8 " + where);
        CHECK(scale == 1.0f / 127.0f);
      }
    }
  }
}

TEST(mxfp4_row_vectors_every_isa) {
  // Block 0: amax 6 (even rule: mantissa 1.5 -> 2^0, byte 127), the tie points and saturation.
  // Block 1: amax 3 -> 2^-1 (byte 126): x/0.5.  Block 2: all zero.  Block 3: holds a NaN.
  std::vector<float> x(128, 0.0f);
  const float b0[16] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f,
                        -0.25f, -0.75f, -1.25f, -1.75f, -2.5f, -3.5f, -5.0f, -6.0f};
  std::memcpy(&x[0], b0, sizeof b0);
  x[32] = 3.0f; x[33] = 0.125f; x[34] = 0.375f; x[35] = -1.25f;  // /0.5: 6, 0.25->0, 0.75->1, -2.5->-2
  x[96] = 1.0f; x[97] = kNaN;
  const uint8_t want_b0[8] = {0x20, 0x42, 0x64, 0x76, 0xA0, 0xCA, 0xEC, 0xFE};
  const uint8_t want_b1[2] = {0x07, 0xC2};
  for (Isa isa : levels()) {
    const FormatKernels& k = format_kernels_for(isa);
    std::vector<uint8_t> codes(64, 0xAA), scales(4, 0xAA);
    k.quantize_mxfp4(x.data(), 1, 128, codes.data(), scales.data(), MxScaleRule::Even);
    const std::string where = isa_name(isa);
    CHECK_MSG(scales[0] == 127 && scales[1] == 126 && scales[2] == 0 && scales[3] == 0xFF, "mxfp4 scales on " + where);
    CHECK_MSG(std::memcmp(&codes[0], want_b0, 8) == 0, "mxfp4 block 0 codes on " + where);
    CHECK_MSG(std::memcmp(&codes[16], want_b1, 2) == 0, "mxfp4 block 1 codes on " + where);
    for (int i = 32; i < 64; ++i) CHECK_MSG(codes[i] == 0, "mxfp4 zero/NaN block codes on " + where);
    std::vector<float> back(128);
    k.dequantize_mxfp4(codes.data(), scales.data(), 1, 128, back.data());
    CHECK(back[0] == 0.0f && back[1] == 1.0f && back[7] == 6.0f && back[15] == -6.0f);
    CHECK(back[32] == 3.0f && back[34] == 0.5f && back[35] == -1.0f);
    CHECK(back[64] == 0.0f);
    for (int i = 96; i < 128; ++i) CHECK_MSG(std::isnan(back[i]), "NaN block dequantizes to NaN on " + where);
    // Floor clips 7.9 to 6 (scale 2^0); ceil picks 2^1 and 7.9/2 = 3.95 rounds to 4.
    std::vector<float> y(32, 0.0f);
    y[0] = 7.9f;
    k.quantize_mxfp4(y.data(), 1, 32, codes.data(), scales.data(), MxScaleRule::Floor);
    CHECK_MSG(scales[0] == 127 && (codes[0] & 0xF) == 0x7, "floor rule on " + where);
    k.quantize_mxfp4(y.data(), 1, 32, codes.data(), scales.data(), MxScaleRule::Ceil);
    CHECK_MSG(scales[0] == 128 && (codes[0] & 0xF) == 0x6, "ceil rule on " + where);
    // Inf makes the block NaN too.
    y[5] = -kInf;
    k.quantize_mxfp4(y.data(), 1, 32, codes.data(), scales.data(), MxScaleRule::Even);
    CHECK_MSG(scales[0] == 0xFF && codes[0] == 0, "Inf block on " + where);
  }
}

TEST(nvfp4_row_vectors_every_isa) {
  // G = 2688/6 = 448 (tensor amax 6). Block 0: amax 6 -> scale E4M3(448) = 0x7E, step 1.
  // Block 1: amax 3 -> E4M3(224) = 0x76, step 0.5.  Block 2: zeros -> scale 0.
  // Block 3: amax 1e-6 -> 448e-6/6 rounds to E4M3 0 -> flushed to zero codes.
  // Block 4: amax 4.875 -> 364 rounds to E4M3 352 (0x7B), step 352/448; 4.875/step = 6.2 saturates to 6.
  std::vector<float> x(80, 0.0f);
  x[0] = 6.0f; x[1] = -0.75f; x[2] = 2.5f; x[3] = -5.0f;
  x[16] = 3.0f; x[17] = 1.0f; x[18] = -0.25f; x[19] = 1.75f;  // /0.5: 6, 2, -0.5, 3.5->4
  x[48] = 1e-6f;
  x[64] = 4.875f;
  for (Isa isa : levels()) {
    const FormatKernels& k = format_kernels_for(isa);
    std::vector<uint8_t> codes(40, 0xAA), scales(5, 0xAA);
    k.quantize_nvfp4(x.data(), 1, 80, 448.0f, codes.data(), scales.data());
    const std::string where = isa_name(isa);
    CHECK_MSG(scales[0] == 0x7E && scales[1] == 0x76 && scales[2] == 0 && scales[3] == 0 && scales[4] == 0x7B,
              "nvfp4 scales on " + where);
    CHECK_MSG(codes[0] == 0xA7 && codes[1] == 0xE4, "nvfp4 block 0 codes on " + where);   // (6,-1) (2,-4)
    CHECK_MSG(codes[8] == 0x47 && codes[9] == 0x69, "nvfp4 block 1 codes on " + where);   // (6,2) (-0.5,4)
    CHECK_MSG(codes[24] == 0 && codes[32] == 0x07, "nvfp4 blocks 3-4 codes on " + where);
    std::vector<float> back(80);
    k.dequantize_nvfp4(codes.data(), scales.data(), 448.0f, 1, 80, back.data());
    CHECK(back[0] == 6.0f && back[1] == -1.0f && back[16] == 3.0f && back[18] == -0.25f && back[19] == 2.0f);
    CHECK(back[48] == 0.0f);
    CHECK(back[64] == 6.0f * 352.0f / 448.0f);
    x[70] = kNaN;
    k.quantize_nvfp4(x.data(), 1, 80, 448.0f, codes.data(), scales.data());
    CHECK_MSG(scales[4] == 0x7F && codes[32] == 0 && scales[0] == 0x7E, "nvfp4 NaN block on " + where);
    x[70] = 0.0f;
  }
}

TEST(int8_row_vectors_every_isa) {
  // Row 0: amax 127 -> scale 1: RNE ties.  Row 1: zeros -> scale 0.  Row 2: holds +Inf -> NaN scale.
  std::vector<float> x(3 * 5, 0.0f);
  const float r0[5] = {127.0f, -63.5f, 0.5f, 1.5f, -127.0f};
  std::memcpy(&x[0], r0, sizeof r0);
  x[10] = 1.0f; x[11] = kInf;
  for (Isa isa : levels()) {
    const FormatKernels& k = format_kernels_for(isa);
    std::vector<int8_t> codes(15, 99);
    float scales[3] = {-1, -1, -1};
    k.quantize_int8(x.data(), 3, 5, codes.data(), scales);
    const std::string where = isa_name(isa);
    const int8_t want0[5] = {127, -64, 0, 2, -127};
    CHECK_MSG(std::memcmp(codes.data(), want0, 5) == 0 && scales[0] == 1.0f, "int8 row 0 on " + where);
    for (int i = 5; i < 15; ++i) CHECK_MSG(codes[i] == 0, "int8 zero/NaN rows on " + where);
    CHECK(scales[1] == 0.0f && std::isnan(scales[2]));
    float back[15];
    k.dequantize_int8(codes.data(), scales, 3, 5, back);
    CHECK(back[1] == -64.0f && back[5] == 0.0f && std::isnan(back[10]));
  }
}

TEST(nonfinite_scan_and_amax) {
  for (Isa isa : levels()) {
    const FormatKernels& k = format_kernels_for(isa);
    std::vector<float> x(37, 1.0f);
    x[3] = -9.0f;
    CHECK_EQ(k.find_nonfinite(x.data(), 37), -1);
    CHECK(k.amax_finite(x.data(), 37) == 9.0f);
    x[36] = kNaN;
    x[20] = -kInf;
    CHECK_EQ(k.find_nonfinite(x.data(), 37), 20);
    CHECK(k.amax_finite(x.data(), 37) == 9.0f);
    CHECK(k.amax_finite(x.data(), 0) == 0.0f);
  }
}
