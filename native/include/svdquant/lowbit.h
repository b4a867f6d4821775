// The native CPU pipeline of an SVDQuant layer (DESIGN.md §2 and §5): kernel-format weights, the
// activation quantizer that also computes the low-rank down-projection, and the low-bit GEMM whose
// epilogue adds the low-rank up-projection and the bias.
//
// ## What is computed
//
//   X̂ = X / λ                                    (per element, an fp32 division; λ absent: X̂ = X)
//   Y = Q_a(X̂) ⊗ Q_w(R) + (X̂ · L_downᵀ) · L_upᵀ + b
//
// Q_a quantizes each token row of X̂ with the row quantizers of formats.h (so the codes and scales are
// exactly those of `quantize_*` on X̂), in the scheme's activation format:
//   w4a4   INT4 group 64, s = amax/7                      weights INT4 group 64, fp32 scales
//   mxfp4  E2M1 group 32, E8M0 scale (rule: an option,    weights E2M1 + E8M0 group 32
//          `even` by default)
//   nvfp4  E2M1 group 16, E4M3 block scale, and a per-    weights E2M1 + E4M3 group 16 + fp32 G_w
//          token tensor scale G_x = nvfp4_global_scale(amax of the token's row of X̂)
//   w8a8   INT8 per token, s = amax/127                   weights INT8 per output row, fp32 scale
//   w4a16  none: X̂ in fp32                                weights INT4 group 64, fp32 scales
//
// ⊗ multiplies the codes exactly in integers, one int32 sum I per (token m, column n, group g), and
// accumulates the group terms in fp32 in group order, starting from acc = 0:
//   w4a4, w8a8: I = Σ q_x·q_w;       t = fl(float(I)·s_w);  acc = fma(t, s_x, acc)
//   nvfp4:      I = Σ (2a)(2b) (2·E2M1 ∈ Z);  t = float(I)·sf_w (exact);  acc = fma(t, sf_x, acc)
//               (sf = decoded E4M3 block scales), and the row's sum is multiplied once by
//               α_m = fl(1 / (4·G_x,m·G_w)) (rounded once from the double value), so that
//               α_m·Σ_g I_g·sf_x,g·sf_w,g = Σ_g Σ_k (a·sf_x/G_x)(b·sf_w/G_w) up to fp32 rounding
//   mxfp4:      I = Σ (2a)(2b);      t = fl(float(I)·2^(e_x + e_w − 256))  (e = E8M0 bytes; the
//               1/4 of 2·E2M1 is in the exponent; exact but for fp32 under/overflow);  acc = acc + t
//   w4a16:      P = Σ_k x̂_k·q_w,k as one fp32 fma chain in k order;  acc = fma(P, s_w, acc)
// (w8a8 has one group: the whole row.)
//
// The low-rank branch: D[m, r] = Σ_k X̂[m,k]·L_down[r,k] as one fp32 fma chain in k order;
// U[m, n] = Σ_r D[m,r]·L_up[n,r] as one fp32 fma chain in r order starting from 0; and
//   Y[m, n] = (acc·α + U) + b      (α = 1 except nvfp4; "+ U" only for rank > 0, "+ b" only when
//                                    a bias is present).
// Every instruction-set variant (portable, AVX2, AVX-512 VNNI) performs these same fp32 operations
// in the same order, so all of them — and all three low-rank modes — give bit-identical outputs.
//
// Accuracy against the exact value (DESIGN §2 evaluated in real arithmetic on the dequantized
// operands): the error is at most (K + 2·G + r + 8) · 2⁻²⁴ · S, where S is the sum of the absolute
// values of every product term (Σ_k |x̃·w̃| + Σ_r |D|·|L_up| with |D| ≤ Σ_k |x̂·L_down|, + |b|),
// barring fp32 underflow/overflow of intermediate values (the standard forward-error bound of the
// fp32 sums and products involved; native/tests/test_lowbit.cpp checks it).
//
// Non-finite activations: a group of X̂ holding NaN or ±Inf gets a NaN scale (formats.h), so the
// whole output row of that token is NaN (and so is its D row). Weights, λ, L_down, L_up and bias are
// validated at prepare time: non-finite values, NaN weight scales and zero λ are errors.
//
// ## Kernel format (LowbitLayer)
//
// Output columns are grouped in panels of 16 (N padded to 16·P; padding columns hold zero weights
// and are never written). K is padded with zero codes to kp: a multiple of the group (4-bit schemes)
// or of 64 (w8a8).
//   4-bit codes  w: [P][kp/8][64] bytes. In chunk j of panel p, byte 4c+t holds, for column 16p+c,
//                the code of k = 8j+t in its low nibble and of k = 8j+4+t in its high nibble
//                (INT4 stored as q+8 ∈ [0,15], E2M1 codes as they are). One 64-byte load gives the
//                u8 operands of two 4-deep dot-product steps after a mask and a shift.
//   8-bit codes  w: [P][kp/4][64] bytes, byte 4c+t = q(column 16p+c, k = 4j+t) + 128.
//   scales       w_scale: [P][G][16]: fp32 (INT4), E8M0 bytes (mxfp4), E4M3 bytes (nvfp4);
//                w8a8: fp32 [P][16].
//   λ            fp32 [k] (empty when absent).
//   L_down       transposed in 16-column chunks, [rp/16][kp][16] (rp = r rounded up to 16, zero
//                padding), fp32 or bf16: a chunk of D reads one contiguous stream.
//   L_up         [P][r][16], fp32 or bf16.
//   bias         fp32 [16·P] (empty when absent).
// Weights stay 4-bit (8-bit for w8a8); bytes() reports the total.
//
// ## Kernels and work split
//
// Activations are s8 codes (INT4/INT8 codes, or 2·E2M1) and weights u8 (code + offset: 8 for INT4,
// 12 for 2·E2M1, 128 for INT8), so vpdpbusd's u8×s8 products are exact; each (token, group) sum
// starts at the correction −offset·Σq_x, which quantize_act computes with the codes.
//   - More than 16 tokens: for each pair of panels the thread expands the codes into u8 operands
//     once (scratch, [kp/4][2][64]) and runs 6-token × 32-column tiles over its whole token range
//     (up to kLowbitMc rows); the tile keeps 12 int32 sums and 12 fp32 accumulators in registers
//     for the whole K loop (AVX-512: hand-written assembly), then the epilogue adds D·L_upᵀ and b
//     and writes the tile once. Work is split over (token chunk, panel range) tiles.
//   - More than 16 tokens with AMX (amx.h; AVX-512 level, SVDQUANT_AMX): the same panel-pair
//     expansion, as s8 values (no offset, no correction), feeds 16-token × 16-column tiles: one
//     tdpbssd per group (w8a8: per 64-deep chunk, summed in the tile) gives the exact int32 sums,
//     which the vector unit scales group by group in the order above while the next group's tile
//     multiply runs. Token chunks are whole 16-row blocks; LowbitActs keeps 15 rows of slack so a
//     last partial block can be read (its extra rows are dropped).
//   - Up to 16 tokens: the packed weights stream once, panel after panel, expanded in registers
//     (mask and shift; a table lookup for E2M1), up to 8 tokens per pass; work is split over long
//     contiguous panel ranges. With 4 or fewer tokens D is split over rank chunks across threads.
// quantize_act works on blocks of 8 rows: X̂ = X/λ row by row in a scratch buffer, the codes and
// scales (AVX-512: one fused pass for w4a4 and mxfp4), then D for the block from the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "svdquant/formats.h"

namespace svdq {

enum class LowbitScheme : int { W4A4 = 0, Mxfp4 = 1, Nvfp4 = 2, W8A8 = 3, W4A16 = 4 };
const char* lowbit_scheme_name(LowbitScheme s);

enum class LowRankMode : int {
  Fused = 0,    // D in quantize_act, D·L_upᵀ + b in the GEMM epilogue (default)
  Side = 1,     // D·L_upᵀ computed by separate pool tasks running beside the GEMM, added at the end
  Unfused = 2,  // separate passes: quantize, down-projection, GEMM, up-projection, add (benchmarks)
};
const char* lowrank_mode_name(LowRankMode m);

// Canonical layer data (formats.h layouts), read only; nothing here is modified or kept.
struct LowbitLayerDesc {
  LowbitScheme scheme = LowbitScheme::W4A4;
  int64_t n = 0;     // output features
  int64_t k = 0;     // input features
  int64_t rank = 0;  // low-rank branch rank r (0: none)
  // Weight residual Q_w(R), per output row:
  //   w4a4 / w4a16: INT4 codes uint8 [n][kp64/2], fp32 scales [n][kp64/64]
  //   mxfp4: E2M1 codes uint8 [n][kp32/2], E8M0 scales uint8 [n][kp32/32]
  //   nvfp4: E2M1 codes uint8 [n][kp16/2], E4M3 scales uint8 [n][kp16/16], tensor scale G_w
  //   w8a8:  int8 codes [n][k], fp32 scales [n]
  const void* w_codes = nullptr;
  const void* w_scales = nullptr;
  float w_global_scale = 1.0f;     // nvfp4 only
  const float* smooth = nullptr;   // λ [k], or nullptr (λ = 1)
  const float* l_down = nullptr;   // [rank][k]
  const float* l_up = nullptr;     // [n][rank]
  const float* bias = nullptr;     // [n], or nullptr
};

struct LowbitOptions {
  MxScaleRule act_mx_rule = MxScaleRule::Even;  // scale rule of the mxfp4 activation quantizer
  // Store L_down and L_up as bf16 (round to nearest even) in the kernel format: halves the branch's
  // bytes; the layer then computes exactly what the fp32 layer computes on the bf16-rounded factors.
  bool lowrank_bf16 = false;
};

// An owning, 64-byte aligned, zero-initialised byte buffer.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t bytes) { resize(bytes); }
  ~AlignedBytes();
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  AlignedBytes(AlignedBytes&& o) noexcept : p_(o.p_), n_(o.n_), cap_(o.cap_) { o.p_ = nullptr; o.n_ = o.cap_ = 0; }
  AlignedBytes& operator=(AlignedBytes&& o) noexcept;
  // Sets the size; contents are zeroed when `zero` (always for new storage). Keeps capacity.
  void resize(size_t bytes, bool zero = true);
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  template <typename T> T* as() { return reinterpret_cast<T*>(p_); }
  template <typename T> const T* as() const { return reinterpret_cast<const T*>(p_); }

 private:
  uint8_t* p_ = nullptr;
  size_t n_ = 0;
  size_t cap_ = 0;
};

constexpr int kLowbitPanel = 16;  // output columns per panel

// The kernel-format layer: what prepare_lowbit_layer builds from the canonical data.
struct LowbitLayer {
  LowbitScheme scheme = LowbitScheme::W4A4;
  int64_t n = 0, k = 0, rank = 0;
  int64_t group = 0;    // K per scale group in the GEMM (w8a8: kp, one group)
  int64_t kp = 0;       // padded K
  int64_t groups = 0;   // kp / group
  int64_t panels = 0;   // ceil(n / 16)
  int64_t rank_pad = 0; // rank rounded up to 16 (0 when rank is 0)
  int offset = 0;       // u8 offset of the expanded weights (8, 12 or 128; 0 for w4a16)
  float w_global_scale = 1.0f;
  MxScaleRule act_mx_rule = MxScaleRule::Even;
  bool lowrank_bf16 = false;
  bool has_smooth = false, has_bias = false;

  AlignedBytes w;         // codes (see the header comment)
  AlignedBytes w_scale;   // scales
  AlignedBytes smooth;    // λ
  AlignedBytes l_down_t;  // [rank_pad/16][kp][16]
  AlignedBytes l_up;      // [P][rank][16]
  AlignedBytes bias;      // [16·P]

  // Bytes of the kernel-format buffers (weights, scales, λ, the low-rank factors, bias).
  size_t bytes() const;
  // Bytes of the dense layer in bf16 (N·K·2, + N·2 with a bias): the reference for memory ratios.
  size_t bf16_bytes() const;
};

// Repacks canonical weights into the kernel format. Throws std::invalid_argument on bad shapes,
// missing pointers, non-finite values (weights' scales, λ, L_down, L_up, bias) or zero λ.
std::unique_ptr<LowbitLayer> prepare_lowbit_layer(const LowbitLayerDesc& desc,
                                                  const LowbitOptions& options = LowbitOptions());

// Quantized activations of M tokens, in the form the GEMM consumes.
struct LowbitActs {
  int64_t m = 0;
  AlignedBytes codes;      // int8 [m][kp] (+15 rows of slack): INT4/INT8 codes, or 2·E2M1 values (w4a16: unused)
  AlignedBytes xhat;       // w4a16: fp32 X̂ [m][kp] (zero padded); other schemes: unused
  AlignedBytes scale;      // fp32 [G][m] (group-major, so a tile's rows are adjacent): s_x (w4a4,
                           // w8a8); decoded E4M3 sf_x (nvfp4); e_x − 256 with e_x the E8M0 byte
                           // (mxfp4); NaN for a non-finite group
  AlignedBytes corr;       // int32 [G][m]: −offset · Σ_group q_x
  AlignedBytes row_scale;  // nvfp4: fp32 [m] α_m = 1/(4·G_x,m·G_w)
  AlignedBytes down;       // fp32 [m][rank]: D = X̂·L_downᵀ
  void resize(const LowbitLayer& layer, int64_t m);
};

// quantize_act: one pass over X (each row is read once): X̂ = X/λ, the activation codes and
// group scales in the GEMM's form, and (with_down) D = X̂·L_downᵀ while the row is in cache.
void quantize_act(const LowbitLayer& layer, const float* X, int64_t M, LowbitActs& acts,
                  bool with_down = true, int threads = 0);
void quantize_act(const LowbitLayer& layer, const float* X, int64_t M, LowbitActs& acts,
                  bool with_down, int threads, Isa isa);

// gemm_lowbit: Y [M][n] = Q_a ⊗ Q_w, with the epilogue D·L_upᵀ + b (acts.down must hold D).
void gemm_lowbit(const LowbitLayer& layer, const LowbitActs& acts, float* Y, int threads = 0);
void gemm_lowbit(const LowbitLayer& layer, const LowbitActs& acts, float* Y, int threads, Isa isa);

// The whole layer: Y [M][n] from X [M][k]. threads <= 0: physical cores (shared_pool). The
// instruction set is isa_choice().active, or `isa` (which must be <= the detected level).
void lowbit_forward(const LowbitLayer& layer, const float* X, int64_t M, float* Y,
                    LowRankMode mode = LowRankMode::Fused, int threads = 0);
void lowbit_forward(const LowbitLayer& layer, const float* X, int64_t M, float* Y,
                    LowRankMode mode, int threads, Isa isa);

// Frees the cached work buffers (they grow to the largest call and are kept for later calls).
void lowbit_release_workspace();

// ---- kernel interface (per instruction-set level; used by lowbit.cpp and the tests) -----------

// Per-thread scratch the kernels may use; sized by the driver.
struct LowbitScratch {
  AlignedBytes rows;    // fp32 X̂ rows for quantize (kLowbitRowBlock rows of kp)
  AlignedBytes codes;   // canonical packed codes + scales of one row
  AlignedBytes wexp;    // expanded u8 weights of up to kLowbitNv panels, [kp/4][NV][64]
                        // (w4a16: fp32 weights, [kp][NV][16])
  AlignedBytes wscale;  // fp32 scales of the expanded panels, [G][NV][16]
  AlignedBytes amx_acc; // AMX: fp32 accumulators of a task's 16-row blocks × NV panels, [blocks][NV][16][16]
};

constexpr int kLowbitRowBlock = 8;  // rows per quantize_act block (and per down-projection pass)
constexpr int kLowbitNv = 2;        // panels per GEMM micro-tile (32 columns)
constexpr int kLowbitMr = 6;        // token rows per GEMM micro-tile
constexpr int kLowbitMc = 256 / kLowbitMr * kLowbitMr;  // token rows per GEMM task at most (252)

struct LowbitKernels {
  // Rows [m0, m1) (at most kLowbitRowBlock): X̂, codes, scales, corrections, and D if with_down.
  void (*quantize_rows)(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1,
                        LowbitActs& A, bool with_down, LowbitScratch& s);
  // Rows [m0, m1) (at most kLowbitRowBlock), rank columns [r0, r1) (r0 a multiple of 16): D only,
  // from X (the unfused mode's separate pass, and D split over threads for a few tokens).
  void (*down_rows)(const LowbitLayer& L, const float* X, int64_t m0, int64_t m1, int64_t r0,
                    int64_t r1, float* D, LowbitScratch& s);
  // Token rows [m0, m1) × panels [p0, p1): Y = Q_a ⊗ Q_w, and with `epilogue` (acc·α + U) + b,
  // else acc·α only. Y has row stride ldy.
  void (*gemm)(const LowbitLayer& L, const LowbitActs& A, int64_t m0, int64_t m1, int64_t p0,
               int64_t p1, float* Y, int64_t ldy, bool epilogue, LowbitScratch& s);
  // U [m0, m1) × panels [p0, p1) = D·L_upᵀ (fma chain in r from 0), row stride ldu.
  void (*lowrank_up)(const LowbitLayer& L, const float* D, int64_t m0, int64_t m1, int64_t p0,
                     int64_t p1, float* U, int64_t ldu);
  // Y = (Y + U) + b on the same tile (U may be null for rank 0).
  void (*finish)(const LowbitLayer& L, const float* U, int64_t ldu, int64_t m0, int64_t m1,
                 int64_t p0, int64_t p1, float* Y, int64_t ldy);
};

namespace portable { extern const LowbitKernels kLowbitKernels; }
namespace avx2 { extern const LowbitKernels kLowbitKernels; }
namespace avx512 { extern const LowbitKernels kLowbitKernels; }

const LowbitKernels& lowbit_kernels_for(Isa isa);

}  // namespace svdq
