// Tensor ops of the model graph that move or combine every element (lib/graph/tensor-ops.ts):
// strided copies (permute, slice, concatenation, broadcast/expand, nearest upsampling), broadcasting
// elementwise arithmetic (add, sub, mul, div and the two fused forms of adaLN models), LayerNorm fused
// with its modulation, GroupNorm, and 2-D convolution as im2col + the fp32 GEMM.
//
// Shapes and strides are in elements. Every op splits its work into whole ranges over the engine's
// thread pool, each output element is computed by exactly one task in a fixed order: results are
// bit-identical for any thread count. Inputs and outputs are contiguous fp32 unless a stride says
// otherwise; outputs never overlap inputs. Invalid arguments throw std::invalid_argument.
#pragma once

#include <cstdint>

namespace svdq {

class ThreadPool;
struct PackedF32;

constexpr int kMaxTensorDims = 8;

// out (contiguous, `shape`) = the view of `src` with `strides` (any sign is not allowed: >= 0; a
// stride 0 repeats, i.e. broadcasts/expands). Covers permute, slice, expand and nearest upsampling
// (an upsampled view has shape [.., H, f, W, f] with stride 0 on the f axes). ndim in [0, 8].
void strided_copy_f32(const float* src, const int64_t* shape, const int64_t* strides, int ndim, float* out,
                      ThreadPool& pool);

// Concatenation along one axis: input i is [outer, widths[i]] (its axis and everything after it
// flattened), out is [outer, Σ widths] with the inputs side by side in order.
void concat_f32(const float* const* inputs, const int64_t* widths, int count, int64_t outer, float* out,
                ThreadPool& pool);

// Elementwise ops with broadcasting: each operand is read through its own strides over the output
// shape (stride 0 on broadcast axes).
enum class ElementwiseOp : int {
  Add = 0,       // a + b
  Sub = 1,       // a - b
  Mul = 2,       // a * b
  Div = 3,       // a / b
  Modulate = 4,  // a * (1 + b) + c   (adaLN: x·(1 + scale) + shift)
  GatedAdd = 5,  // a + b * c         (gated residual: x + gate·y)
};
int elementwise_arity(ElementwiseOp op);

// out[i] = op(in_0[i], in_1[i], ...) over `shape`; strides[k] holds operand k's ndim strides.
void elementwise_f32(ElementwiseOp op, const float* const* in, const int64_t* const* strides, const int64_t* shape,
                     int ndim, float* out, ThreadPool& pool);

// y = LayerNorm(x)·(1 + scale) + shift per row (the adaLN modulation fused with the norm, one pass
// over each row): x [rows, dim]; row r belongs to sample b = r / rows_per_sample and uses scale[b, :],
// shift[b, :] (each [rows / rows_per_sample, dim]); gamma/beta nullable (1/0), applied before the
// modulation as nn.LayerNorm does. Same arithmetic as layernorm_f32 followed by elementwise Modulate.
void layernorm_modulate_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                            float eps, const float* scale, const float* shift, int64_t rows_per_sample, float* y,
                            ThreadPool& pool);

// GroupNorm as torch.nn.GroupNorm: x [n, channels, spatial] (spatial = H·W, or 1), channels split
// into `groups` equal groups; mean and biased variance over each (sample, group) accumulated in
// double; y = (x - mean) / sqrt(var + eps) · gamma[c] + beta[c] (gamma/beta nullable: 1/0).
void group_norm_f32(const float* x, int64_t n, int64_t channels, int64_t spatial, int64_t groups, float eps,
                    const float* gamma, const float* beta, float* y, ThreadPool& pool);

// 2-D convolution (torch.nn.Conv2d with dilation 1, groups 1): x [n, cin, h, w], weight packed by
// pack_f32_weights as [cout, cin·kh·kw] (the torch layout [cout, cin, kh, kw] flattened), bias
// nullable [cout]; out [n, cout, ho, wo] with ho = (h + 2·pad_h - kh) / stride_h + 1 (likewise wo).
// Runs im2col on chunks of output pixels (bounded scratch) and the packed fp32 GEMM.
void conv2d_f32(const float* x, int64_t n, int64_t cin, int64_t h, int64_t w, const PackedF32& weight, int64_t kh,
                int64_t kw, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, const float* bias,
                float* out, ThreadPool& pool);

}  // namespace svdq
