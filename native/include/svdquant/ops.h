// The non-linear ops of the tensor graph (lib/graph): normalizations, activations, row softmax,
// elementwise add and scaled dot-product attention, all fp32, row-major, spread over the engine's
// thread pool. Portable C++ that the compiler vectorizes (native/cpu/ops.cpp); the products of
// attention use gemm_f32 (gemm_f32.h).
//
// Conventions: every function takes the pool it runs on and must not be called from inside one of
// that pool's tasks (parallel_for does not nest). Outputs may alias inputs element for element
// (y == x), never partially overlap them. Sizes are >= 0; a size of 0 does nothing. Invalid
// sizes or null pointers with a non-zero size throw std::invalid_argument.
//
// Accuracy: per-row statistics (mean, variance, mean square, softmax sum) are accumulated in
// double; each output is then a few correctly rounded fp32 operations away from the exact value
// (erf, tanh, exp from the C library).
#pragma once

#include <cstdint>

namespace svdq {

class ThreadPool;

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
// overlap q, k or v. Queries are processed in blocks so that the score scratch stays within
// max(tokens, 4 Mi) floats per call.
void attention_f32(const float* q, const float* k, const float* v, int64_t batch, int64_t tokens,
                   int64_t heads, int64_t head_dim, float scale, float* out, ThreadPool& pool);

}  // namespace svdq
