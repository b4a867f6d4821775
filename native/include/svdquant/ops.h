// The non-linear ops of the tensor graph (lib/graph): normalizations, activations, row softmax,
// elementwise add and scaled dot-product attention, all fp32, row-major, spread over the engine's
// thread pool. The per-row / per-element loops are one kernel table per instruction-set level
// (OpsKernels below: ops_portable.cpp, ops_avx2.cpp, ops_avx512.cpp), chosen at run time like the
// GEMM's; the driver (threading, argument checks, attention) is native/cpu/ops.cpp. Attention uses
// the GEMM micro-kernels of gemm_f32.h directly, fused with an online softmax (key tiles).
//
// Conventions: every function takes the pool it runs on and must not be called from inside one of
// that pool's tasks (parallel_for does not nest). Outputs may alias inputs element for element
// (y == x), never partially overlap them. Sizes are >= 0; a size of 0 does nothing. Invalid
// sizes or null pointers with a non-zero size throw std::invalid_argument.
//
// Accuracy: per-row statistics (mean, variance, mean square, softmax sum) are accumulated in
// double. The transcendental functions are our own (no libm call), identical in every level up
// to fused vs separate multiply-adds:
//   - exp: x = n·ln2 + r (|r| <= ln2/2, ln2 in two parts), e^r by its degree-7 Taylor polynomial
//     (truncation < 1e-8 relative), times 2^n applied as two exact power-of-two factors so that
//     subnormal results are rounded once. Max error 1.2 ulp against the exact value over the
//     whole range (native/tests/test_ops.cpp sweeps it on every level and requires <= 3 ulp);
//     overflow gives +Inf (x > 88.72), underflow 0 (x < -103.98), NaN stays NaN.
//   - erf: |z| <= 0.5: z·P(z²), P of degree 6 fitted for relative error 1e-13; |z| > 0.5:
//     erfc(|z|) = exp(-z²)·Q(1/(1 + |z|/2)), Q of degree 9 fitted for relative error 1.7e-9 on
//     [0.5, 10.5], with z² split exactly into two floats so exp(-z²) keeps its accuracy; beyond
//     10.5 erfc is 0. Exact GELU is x·Φ(x) with Φ(x) = erfc(-x/√2)/2 taken from the erfc branch
//     in both tails (z² = x²/2 split exactly): relative error < 1e-6 wherever |GELU| > 1e-30
//     (below that: tiny or 0). erf: max abs error 2.4e-7, 4 ulp for |x| <= 1.
//   - GELU tanh form as x·sigmoid(2u) = x / (1 + exp(-2u)), u = √(2/π)·(x + 0.044715·x³)
//     (equal to 0.5·x·(1 + tanh u), without its cancellation for u < 0), SiLU as
//     x / (1 + exp(-x)): relative error a few ulp (GELU-tanh: 4e-7·(1 + |2u|), the rounding of u
//     amplified in the exponential tail, as any rounding of x would be), exact limits (x for
//     large x, -0 for very negative x), NaN stays NaN; GELU(-Inf) is NaN as in the formula.
#pragma once

#include <cstdint>

#include "svdquant/formats.h"

namespace svdq {

class ThreadPool;

// One instruction-set level's loops. Single-threaded; the driver (ops.cpp) splits rows or element
// ranges over the pool. Pointers follow the aliasing rules above (y may equal x).
struct OpsKernels {
  Isa isa;
  // y[i] = f(x[i]) for i < n.
  void (*exp)(const float* x, int64_t n, float* y);
  void (*erf)(const float* x, int64_t n, float* y);
  void (*gelu_erf)(const float* x, int64_t n, float* y);
  void (*gelu_tanh)(const float* x, int64_t n, float* y);
  void (*silu)(const float* x, int64_t n, float* y);
  void (*add)(const float* a, const float* b, int64_t n, float* y);
  // Row ops over `rows` rows of `cols` (dim) values, rows at stride cols.
  void (*softmax_rows)(const float* x, int64_t rows, int64_t cols, float* y);
  void (*layernorm_rows)(const float* x, int64_t rows, int64_t dim, const float* gamma,
                         const float* beta, float eps, float* y);
  void (*rmsnorm_rows)(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps,
                       float* y);
  // One key tile of the online softmax (attention): for each of `rows` score rows s[r·lds + j],
  // j < cols, adds bias[j] (nullable) in place, then with the row's running max m[r] and sum l[r]
  // (m = -Inf, l = 0 before the first tile): m' = max(m, max_j s), s = exp(s - m') in place,
  // alpha[r] = exp(m - m') (the factor for what was accumulated so far), l = l·alpha + Σ_j s (in
  // double), m = m'. A row still at m' = -Inf gets s = 0 and alpha = 1; a NaN score makes m NaN
  // (so the row ends NaN, as softmax_rows).
  void (*softmax_tile)(float* s, int64_t rows, int64_t cols, int64_t lds, const float* bias, float* m,
                       double* l, float* alpha);
};

namespace portable { extern const OpsKernels kOpsKernels; }
namespace avx2 { extern const OpsKernels kOpsKernels; }
namespace avx512 { extern const OpsKernels kOpsKernels; }

// Kernels for the active level (isa_choice().active) or an explicit one; throws
// std::invalid_argument for a level the CPU does not support.
const OpsKernels& ops_kernels();
const OpsKernels& ops_kernels_for(Isa isa);

// y[r, :] = (x[r, :] - mean) / sqrt(var + eps) · gamma + beta, biased variance over `dim`.
// gamma and beta are nullable ([dim] each): null means 1 and 0.
void layernorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                   float eps, float* y, ThreadPool& pool);

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · gamma; gamma nullable (1).
void rmsnorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
                 ThreadPool& pool);

// GELU: exact 0.5·x·(1 + erf(x/√2)), or with tanh_approx the tanh form
// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
void gelu_f32(const float* x, int64_t n, float* y, bool tanh_approx, ThreadPool& pool);

// SiLU: y = x · sigmoid(x) = x / (1 + exp(-x)).
void silu_f32(const float* x, int64_t n, float* y, ThreadPool& pool);

// Softmax over each row of `cols` values: y = exp(x - max) / Σ exp(x - max). A row that is all
// -Inf (or holds NaN) gives NaN.
void softmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* y, ThreadPool& pool);

// y = a + b, n elements.
void add_f32(const float* a, const float* b, int64_t n, float* y, ThreadPool& pool);

// Scaled dot-product attention. q, k, v and out are [batch, tokens, heads·head_dim] row-major
// (the outputs of the q/k/v projections, head h in columns [h·head_dim, (h+1)·head_dim)). For each
// batch and head: out_h = softmax(q_h · k_hᵀ · scale) · v_h, softmax over the keys. `out` must not
// overlap q, k or v. Key-tiled (flash-attention style): a task takes one (batch, head, run of
// query tiles of ~192 rows), packs the head's K and V once into the GEMM's panel layout, and for
// each query tile walks the keys in tiles of 256: S = scale·Q_tile·K_tileᵀ (GEMM micro-kernel),
// the online softmax step (running max and sum per row, P = exp(S - max), the output so far
// rescaled by exp(old max - new max)), O += P·V_tile (micro-kernel, accumulated in `out`), and
// O / Σ at the end. K and V are read once per query tile instead of once per few rows, and no
// score row of all keys is ever stored. Numerically this is the plain softmax up to rounding
// (native/tests/test_ops.cpp: within 1e-5·(1 + max|v|) of a double reference, several key tiles,
// masks, -Inf and NaN). Every output is summed in a fixed order: bit-identical results for any
// thread count.
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t tokens,
                   int64_t heads, int64_t head_dim, float scale, float* out, ThreadPool& pool);

// The general form: q and out are [batch, q_tokens, heads·head_dim], k and v [batch, kv_tokens,
// heads·head_dim] (cross-attention), and key_bias (nullable, [batch, kv_tokens]) is added to every
// score row of its batch before the softmax (a key padding mask: 0 to keep, a large negative value
// to drop a key, as diffusers' (1 - mask)·-10000). Same order of operations as above.
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t q_tokens,
                   int64_t kv_tokens, int64_t heads, int64_t head_dim, float scale, const float* key_bias,
                   float* out, ThreadPool& pool);

// The same ops on an explicit instruction-set level (the ones above use the active level): for
// tests and benchmarks of every variant on one machine.
void layernorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                   float eps, float* y, ThreadPool& pool, Isa isa);
void rmsnorm_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, float eps, float* y,
                 ThreadPool& pool, Isa isa);
void gelu_f32(const float* x, int64_t n, float* y, bool tanh_approx, ThreadPool& pool, Isa isa);
void silu_f32(const float* x, int64_t n, float* y, ThreadPool& pool, Isa isa);
void softmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* y, ThreadPool& pool, Isa isa);
void add_f32(const float* a, const float* b, int64_t n, float* y, ThreadPool& pool, Isa isa);
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t tokens,
                   int64_t heads, int64_t head_dim, float scale, float* out, ThreadPool& pool, Isa isa);
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t q_tokens,
                   int64_t kv_tokens, int64_t heads, int64_t head_dim, float scale, const float* key_bias,
                   float* out, ThreadPool& pool, Isa isa);

}  // namespace svdq
