// Tensor ops of the model graph (tensor_ops.h): strided copies, broadcasting elementwise arithmetic,
// LayerNorm + modulation, GroupNorm and 2-D convolution. The loops are plain C++ written so that the
// compiler vectorizes the contiguous inner loops; they are memory-bound, so one baseline build serves
// every instruction-set level (LayerNorm's row kernel and the GEMM come from the active level).
#include "svdquant/tensor_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/ops.h"
#include "svdquant/thread_pool.h"

namespace svdq {
namespace {

// Elements per task: large enough that scheduling costs nothing, small enough to balance.
constexpr int64_t kGrain = 32768;

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Runs fn(r0, r1) over [0, rows) in chunks of about kGrain elements (rows of `width`).
template <typename Fn>
void for_rows(int64_t rows, int64_t width, ThreadPool& pool, Fn fn) {
  if (rows <= 0) return;
  const int64_t per = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, width));
  const int64_t tasks = ceil_div(rows, per);
  if (tasks == 1 || pool.size() == 1) {
    fn(int64_t(0), rows);
    return;
  }
  pool.parallel_for(tasks, [&](int64_t t, int) { fn(t * per, std::min(rows, (t + 1) * per)); });
}

// A shape with its operands' strides, adjacent axes merged where every operand allows it (so that a
// contiguous copy becomes one long inner loop) and size-1 axes dropped.
struct Layout {
  int ndim = 0;
  int64_t shape[kMaxTensorDims];
  int64_t strides[4][kMaxTensorDims];  // per operand
};

Layout collapse(const int64_t* shape, const int64_t* const* strides, int operands, int ndim) {
  require(ndim >= 0 && ndim <= kMaxTensorDims, "tensor ops: at most 8 dimensions");
  Layout l;
  for (int d = 0; d < ndim; ++d) {
    require(shape[d] >= 0, "tensor ops: dimensions must be >= 0");
    for (int k = 0; k < operands; ++k) require(strides[k][d] >= 0, "tensor ops: strides must be >= 0");
    if (shape[d] == 1) continue;
    if (l.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < operands; ++k) {
        if (strides[k][d] * shape[d] != l.strides[k][l.ndim - 1]) {
          merge = false;
          break;
        }
      }
      if (merge) {
        l.shape[l.ndim - 1] *= shape[d];
        for (int k = 0; k < operands; ++k) l.strides[k][l.ndim - 1] = strides[k][d];
        continue;
      }
    }
    l.shape[l.ndim] = shape[d];
    for (int k = 0; k < operands; ++k) l.strides[k][l.ndim] = strides[k][d];
    ++l.ndim;
  }
  if (l.ndim == 0) {  // a scalar (or all size-1 axes)
    l.ndim = 1;
    l.shape[0] = 1;
    for (int k = 0; k < operands; ++k) l.strides[k][0] = 1;
  }
  return l;
}

// The offsets of row `row` (all axes but the last) for each operand.
void row_offsets(const Layout& l, int operands, int64_t row, int64_t* off) {
  for (int k = 0; k < operands; ++k) off[k] = 0;
  for (int d = l.ndim - 2; d >= 0; --d) {
    const int64_t i = row % l.shape[d];
    row /= l.shape[d];
    for (int k = 0; k < operands; ++k) off[k] += i * l.strides[k][d];
  }
}

int64_t numel(const int64_t* shape, int ndim) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

// The inner loop of one elementwise op with each operand's inner stride fixed at compile time to
// 1 (contiguous) or 0 (broadcast), so that the loop vectorizes; S < 0 means a runtime stride.
template <ElementwiseOp Op>
inline float apply(float a, float b, float c) {
  if constexpr (Op == ElementwiseOp::Add) return a + b;
  if constexpr (Op == ElementwiseOp::Sub) return a - b;
  if constexpr (Op == ElementwiseOp::Mul) return a * b;
  if constexpr (Op == ElementwiseOp::Div) return a / b;
  if constexpr (Op == ElementwiseOp::Modulate) return a * (1.0f + b) + c;
  if constexpr (Op == ElementwiseOp::GatedAdd) return a + b * c;
  return 0.0f;
}

template <ElementwiseOp Op, int S0, int S1, int S2>
void inner(const float* a, const float* b, const float* c, int64_t sa, int64_t sb, int64_t sc, int64_t n,
           float* y) {
  const int64_t ja = S0 >= 0 ? S0 : sa, jb = S1 >= 0 ? S1 : sb, jc = S2 >= 0 ? S2 : sc;
  for (int64_t i = 0; i < n; ++i) y[i] = apply<Op>(a[i * ja], b[i * jb], c == nullptr ? 0.0f : c[i * jc]);
}

using InnerFn = void (*)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, float*);

template <ElementwiseOp Op>
InnerFn pick_inner(int64_t sa, int64_t sb, int64_t sc) {
  auto cls = [](int64_t s) { return s == 1 ? 1 : s == 0 ? 0 : -1; };
  const int a = cls(sa), b = cls(sb), c = cls(sc);
  // The common cases in models: all contiguous, or one operand broadcast along the inner axis.
  if (a == 1 && b == 1 && c == 1) return inner<Op, 1, 1, 1>;
  if (a == 1 && b == 0 && c == 0) return inner<Op, 1, 0, 0>;
  if (a == 1 && b == 1 && c == 0) return inner<Op, 1, 1, 0>;
  if (a == 1 && b == 0 && c == 1) return inner<Op, 1, 0, 1>;
  if (a == 0 && b == 1 && c == 1) return inner<Op, 0, 1, 1>;
  if (a == 0 && b == 1 && c == 0) return inner<Op, 0, 1, 0>;
  return inner<Op, -1, -1, -1>;
}

template <ElementwiseOp Op>
void run_elementwise(const float* const* in, const Layout& l, int operands, float* out, ThreadPool& pool) {
  const int64_t cols = l.shape[l.ndim - 1];
  const int64_t rows = numel(l.shape, l.ndim) / std::max<int64_t>(1, cols);
  const int64_t sa = l.strides[0][l.ndim - 1], sb = l.strides[1][l.ndim - 1];
  const int64_t sc = operands > 2 ? l.strides[2][l.ndim - 1] : 0;
  const InnerFn fn = pick_inner<Op>(sa, sb, sc);
  for_rows(rows, cols, pool, [&](int64_t r0, int64_t r1) {
    int64_t off[4];
    for (int64_t r = r0; r < r1; ++r) {
      row_offsets(l, operands, r, off);
      fn(in[0] + off[0], in[1] + off[1], operands > 2 ? in[2] + off[2] : nullptr, sa, sb, sc, cols, out + r * cols);
    }
  });
}

// A 64-byte aligned float buffer.
class Buffer {
 public:
  explicit Buffer(size_t count)
      : p_(count == 0 ? nullptr
                      : static_cast<float*>(::operator new(count * sizeof(float), std::align_val_t(64)))) {}
  ~Buffer() {
    if (p_ != nullptr) ::operator delete(p_, std::align_val_t(64));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* get() const { return p_; }

 private:
  float* p_;
};

}  // namespace

int elementwise_arity(ElementwiseOp op) {
  return op == ElementwiseOp::Modulate || op == ElementwiseOp::GatedAdd ? 3 : 2;
}

void strided_copy_f32(const float* src, const int64_t* shape, const int64_t* strides, int ndim, float* out,
                      ThreadPool& pool) {
  const int64_t* const per[2] = {strides, nullptr};
  std::vector<int64_t> unit(static_cast<size_t>(std::max(ndim, 0)));
  // The output's own (contiguous) strides, so that merging also respects the output order.
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    unit[static_cast<size_t>(d)] = s;
    s *= std::max<int64_t>(shape[d], 1);
  }
  const int64_t* const both[2] = {per[0], unit.data()};
  const Layout l = collapse(shape, both, 2, ndim);
  const int64_t total = numel(l.shape, l.ndim);
  if (total == 0) return;
  require(src != nullptr && out != nullptr, "strided_copy_f32: null pointer");
  const int64_t cols = l.shape[l.ndim - 1];
  const int64_t rows = total / cols;
  const int64_t inner = l.strides[0][l.ndim - 1];
  for_rows(rows, cols, pool, [&](int64_t r0, int64_t r1) {
    int64_t off[2];
    for (int64_t r = r0; r < r1; ++r) {
      row_offsets(l, 2, r, off);
      const float* p = src + off[0];
      float* q = out + r * cols;
      if (inner == 1) {
        std::memcpy(q, p, static_cast<size_t>(cols) * sizeof(float));
      } else if (inner == 0) {
        std::fill(q, q + cols, *p);
      } else {
        for (int64_t i = 0; i < cols; ++i) q[i] = p[i * inner];
      }
    }
  });
}

void concat_f32(const float* const* inputs, const int64_t* widths, int count, int64_t outer, float* out,
                ThreadPool& pool) {
  require(count >= 0 && outer >= 0, "concat_f32: count and outer must be >= 0");
  int64_t total = 0;
  for (int i = 0; i < count; ++i) {
    require(widths[i] >= 0, "concat_f32: widths must be >= 0");
    require(widths[i] == 0 || inputs[i] != nullptr, "concat_f32: null input");
    total += widths[i];
  }
  if (outer == 0 || total == 0) return;
  require(out != nullptr, "concat_f32: null output");
  for_rows(outer, total, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = out + r * total;
      for (int i = 0; i < count; ++i) {
        std::memcpy(dst, inputs[i] + r * widths[i], static_cast<size_t>(widths[i]) * sizeof(float));
        dst += widths[i];
      }
    }
  });
}

void elementwise_f32(ElementwiseOp op, const float* const* in, const int64_t* const* strides, const int64_t* shape,
                     int ndim, float* out, ThreadPool& pool) {
  const int operands = elementwise_arity(op);
  const Layout l = collapse(shape, strides, operands, ndim);
  if (numel(l.shape, l.ndim) == 0) return;
  for (int k = 0; k < operands; ++k) require(in[k] != nullptr, "elementwise_f32: null operand");
  require(out != nullptr, "elementwise_f32: null output");
  switch (op) {
    case ElementwiseOp::Add: return run_elementwise<ElementwiseOp::Add>(in, l, operands, out, pool);
    case ElementwiseOp::Sub: return run_elementwise<ElementwiseOp::Sub>(in, l, operands, out, pool);
    case ElementwiseOp::Mul: return run_elementwise<ElementwiseOp::Mul>(in, l, operands, out, pool);
    case ElementwiseOp::Div: return run_elementwise<ElementwiseOp::Div>(in, l, operands, out, pool);
    case ElementwiseOp::Modulate: return run_elementwise<ElementwiseOp::Modulate>(in, l, operands, out, pool);
    case ElementwiseOp::GatedAdd: return run_elementwise<ElementwiseOp::GatedAdd>(in, l, operands, out, pool);
  }
  throw std::invalid_argument("elementwise_f32: unknown op");
}

void layernorm_modulate_f32(const float* x, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                            float eps, const float* scale, const float* shift, int64_t rows_per_sample, float* y,
                            ThreadPool& pool) {
  require(rows >= 0 && dim >= 0, "layernorm_modulate_f32: rows and dim must be >= 0");
  require(rows_per_sample >= 1 && rows % rows_per_sample == 0,
          "layernorm_modulate_f32: rows must be a multiple of rows_per_sample >= 1");
  if (rows == 0 || dim == 0) return;
  require(x != nullptr && y != nullptr && scale != nullptr && shift != nullptr, "layernorm_modulate_f32: null pointer");
  const OpsKernels& k = ops_kernels();
  for_rows(rows, dim, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * dim;
      k.layernorm_rows(x + r * dim, 1, dim, gamma, beta, eps, yr);
      const float* sc = scale + (r / rows_per_sample) * dim;
      const float* sh = shift + (r / rows_per_sample) * dim;
      for (int64_t j = 0; j < dim; ++j) yr[j] = yr[j] * (1.0f + sc[j]) + sh[j];
    }
  });
}

void group_norm_f32(const float* x, int64_t n, int64_t channels, int64_t spatial, int64_t groups, float eps,
                    const float* gamma, const float* beta, float* y, ThreadPool& pool) {
  require(n >= 0 && channels >= 0 && spatial >= 0, "group_norm_f32: sizes must be >= 0");
  require(groups >= 1 && channels % groups == 0, "group_norm_f32: groups must divide channels");
  if (n == 0 || channels == 0 || spatial == 0) return;
  require(x != nullptr && y != nullptr, "group_norm_f32: null pointer");
  const int64_t per_group = channels / groups;
  const int64_t len = per_group * spatial;
  pool.parallel_for(n * groups, [&](int64_t t, int) {
    const int64_t c0 = (t % groups) * per_group;
    const float* xs = x + t * len;
    float* ys = y + t * len;
    double sum = 0.0;
    for (int64_t i = 0; i < len; ++i) sum += xs[i];
    const double mean = sum / static_cast<double>(len);
    double sq = 0.0;
    for (int64_t i = 0; i < len; ++i) {
      const double d = xs[i] - mean;
      sq += d * d;
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(len) + eps));
    const float m = static_cast<float>(mean);
    for (int64_t c = 0; c < per_group; ++c) {
      const float g = gamma == nullptr ? 1.0f : gamma[c0 + c];
      const float b = beta == nullptr ? 0.0f : beta[c0 + c];
      const float* xc = xs + c * spatial;
      float* yc = ys + c * spatial;
      for (int64_t i = 0; i < spatial; ++i) yc[i] = (xc[i] - m) * rstd * g + b;
    }
  });
}

void conv2d_f32(const float* x, int64_t n, int64_t cin, int64_t h, int64_t w, const PackedF32& weight, int64_t kh,
                int64_t kw, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, const float* bias,
                float* out, ThreadPool& pool) {
  require(n >= 0 && cin >= 1 && h >= 1 && w >= 1 && kh >= 1 && kw >= 1, "conv2d_f32: sizes must be positive");
  require(stride_h >= 1 && stride_w >= 1 && pad_h >= 0 && pad_w >= 0, "conv2d_f32: stride >= 1 and padding >= 0");
  require(weight.k == cin * kh * kw, "conv2d_f32: the packed weight must be [cout, cin·kh·kw]");
  require(h + 2 * pad_h >= kh && w + 2 * pad_w >= kw, "conv2d_f32: the kernel is larger than the padded input");
  const int64_t ho = (h + 2 * pad_h - kh) / stride_h + 1, wo = (w + 2 * pad_w - kw) / stride_w + 1;
  const int64_t cout = weight.n, kdim = weight.k, pixels = ho * wo;
  if (n == 0) return;
  require(x != nullptr && out != nullptr, "conv2d_f32: null pointer");
  // Chunks of output pixels: the im2col rows (kdim floats each) and the GEMM result of a chunk stay
  // within a few MiB whatever the image size.
  const int64_t chunk = std::max<int64_t>(64, std::min<int64_t>(pixels, (int64_t(1) << 20) / std::max(kdim, cout)));
  Buffer cols(static_cast<size_t>(chunk * kdim));
  Buffer res(static_cast<size_t>(chunk * cout));
  for (int64_t b = 0; b < n; ++b) {
    const float* xb = x + b * cin * h * w;
    float* ob = out + b * cout * pixels;
    for (int64_t p0 = 0; p0 < pixels; p0 += chunk) {
      const int64_t m = std::min(chunk, pixels - p0);
      // im2col: row = output pixel, columns ordered (c, ky, kx) as the flattened torch weight.
      for_rows(m, kdim, pool, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t p = p0 + r, oy = p / wo, ox = p % wo;
          float* row = cols.get() + r * kdim;
          for (int64_t c = 0; c < cin; ++c) {
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = oy * stride_h - pad_h + ky;
              float* dst = row + (c * kh + ky) * kw;
              if (iy < 0 || iy >= h) {
                std::fill(dst, dst + kw, 0.0f);
                continue;
              }
              const float* srow = xb + (c * h + iy) * w;
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t ix = ox * stride_w - pad_w + kx;
                dst[kx] = ix < 0 || ix >= w ? 0.0f : srow[ix];
              }
            }
          }
        }
      });
      gemm_f32_packed(cols.get(), m, kdim, weight, bias, res.get(), cout, false, pool);
      // [m, cout] -> the chunk's columns of out [cout, pixels].
      for_rows(cout, m, pool, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          float* dst = ob + c * pixels + p0;
          const float* s = res.get() + c;
          for (int64_t r = 0; r < m; ++r) dst[r] = s[r * cout];
        }
      });
    }
  }
}

}  // namespace svdq
