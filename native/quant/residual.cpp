// The residual R = Ŵ − L_up·L_down, its round-to-nearest quantization with the formats.h row
// quantizers, dequantization, and the low-rank refinement L ← SVD_r(Ŵ − Q(Ŵ − L)) (quant.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/quant.h"
#include "svdquant/thread_pool.h"

namespace svdq {
namespace {

constexpr int64_t kRowsPerTask = 64;

int64_t row_tasks(int64_t n) { return (n + kRowsPerTask - 1) / kRowsPerTask; }

// Bytes of codes and number of scales per row of a QuantizedWeight.
int64_t code_bytes_per_row(Scheme s, int64_t k) {
  if (s == Scheme::Int8) return k;
  return padded_k(k, scheme_group(s, k)) / 2;
}
int64_t scales_per_row(Scheme s, int64_t k) {
  if (s == Scheme::Int8) return 1;
  return padded_k(k, scheme_group(s, k)) / scheme_group(s, k);
}

void check_scheme(Scheme s, const char* fn) {
  if (s != Scheme::Int4 && s != Scheme::Mxfp4 && s != Scheme::Nvfp4 && s != Scheme::Int8)
    throw std::invalid_argument(std::string(fn) + ": unknown scheme");
}

}  // namespace

void compute_residual(const float* W, int64_t N, int64_t K, const float* up, const float* down,
                      int64_t r, float* R, ThreadPool& pool) {
  if (N < 0 || K < 0 || r < 0) throw std::invalid_argument("compute_residual: negative shape");
  if (N * K > 0) std::memcpy(R, W, static_cast<size_t>(N * K) * sizeof(float));
  if (r > 0 && N > 0 && K > 0)
    gemm_f32(false, false, N, K, r, -1.0f, up, r, down, K, 1.0f, R, K, pool);
}

void compute_residual(const float* W, const LowRank& lr, float* R, ThreadPool& pool) {
  compute_residual(W, lr.n, lr.k, lr.up.data(), lr.down.data(), lr.rank, R, pool);
}

QuantizedWeight quantize_rtn(const float* R, int64_t N, int64_t K, Scheme scheme,
                             MxScaleRule mx_rule, ThreadPool& pool, const char* what) {
  check_scheme(scheme, "quantize_rtn");
  if (N < 0 || K < 0) throw std::invalid_argument("quantize_rtn: negative shape");
  const FormatKernels& fk = format_kernels();
  if (N * K > 0) {
    const int64_t bad = fk.find_nonfinite(R, N * K);
    if (bad >= 0)
      throw std::invalid_argument(std::string("quantize_rtn: non-finite value in the ") + what +
                                  " at row " + std::to_string(bad / K) + ", column " +
                                  std::to_string(bad % K));
  }
  QuantizedWeight q;
  q.scheme = scheme;
  q.mx_rule = mx_rule;
  q.n = N;
  q.k = K;
  q.group = scheme_group(scheme, K);
  const int64_t cb = code_bytes_per_row(scheme, K), sc = scales_per_row(scheme, K);
  q.codes.assign(static_cast<size_t>(N * cb), 0);
  if (scheme == Scheme::Int4 || scheme == Scheme::Int8) q.scales_f32.assign(static_cast<size_t>(N * sc), 0.0f);
  else q.scales_u8.assign(static_cast<size_t>(N * sc), 0);
  if (scheme == Scheme::Nvfp4) q.global_scale = nvfp4_global_scale(N * K > 0 ? fk.amax_finite(R, N * K) : 0.0f);
  if (K == 0) return q;
  pool.parallel_for(row_tasks(N), [&](int64_t t, int) {
    const int64_t r0 = t * kRowsPerTask, rows = std::min(N, r0 + kRowsPerTask) - r0;
    const float* x = R + r0 * K;
    uint8_t* codes = q.codes.data() + r0 * cb;
    switch (scheme) {
      case Scheme::Int4: fk.quantize_int4(x, rows, K, codes, q.scales_f32.data() + r0 * sc); break;
      case Scheme::Mxfp4: fk.quantize_mxfp4(x, rows, K, codes, q.scales_u8.data() + r0 * sc, mx_rule); break;
      case Scheme::Nvfp4:
        fk.quantize_nvfp4(x, rows, K, q.global_scale, codes, q.scales_u8.data() + r0 * sc);
        break;
      case Scheme::Int8:
        fk.quantize_int8(x, rows, K, reinterpret_cast<int8_t*>(codes), q.scales_f32.data() + r0 * sc);
        break;
    }
  });
  return q;
}

void dequantize(const QuantizedWeight& q, float* out, ThreadPool& pool) {
  check_scheme(q.scheme, "dequantize");
  const int64_t N = q.n, K = q.k;
  const int64_t cb = code_bytes_per_row(q.scheme, K), sc = scales_per_row(q.scheme, K);
  const bool f32 = q.scheme == Scheme::Int4 || q.scheme == Scheme::Int8;
  if (static_cast<int64_t>(q.codes.size()) != N * cb ||
      static_cast<int64_t>(f32 ? q.scales_f32.size() : q.scales_u8.size()) != N * sc)
    throw std::invalid_argument("dequantize: codes or scales do not match the weight's shape");
  if (K == 0) return;
  const FormatKernels& fk = format_kernels();
  pool.parallel_for(row_tasks(N), [&](int64_t t, int) {
    const int64_t r0 = t * kRowsPerTask, rows = std::min(N, r0 + kRowsPerTask) - r0;
    const uint8_t* codes = q.codes.data() + r0 * cb;
    float* y = out + r0 * K;
    switch (q.scheme) {
      case Scheme::Int4: fk.dequantize_int4(codes, q.scales_f32.data() + r0 * sc, rows, K, y); break;
      case Scheme::Mxfp4: fk.dequantize_mxfp4(codes, q.scales_u8.data() + r0 * sc, rows, K, y); break;
      case Scheme::Nvfp4:
        fk.dequantize_nvfp4(codes, q.scales_u8.data() + r0 * sc, q.global_scale, rows, K, y);
        break;
      case Scheme::Int8:
        fk.dequantize_int8(reinterpret_cast<const int8_t*>(codes), q.scales_f32.data() + r0 * sc, rows, K, y);
        break;
    }
  });
}

RefineResult refine_lowrank(const float* W, int64_t N, int64_t K, int64_t r,
                            const RefineOptions& opts, ThreadPool& pool) {
  check_scheme(opts.scheme, "refine_lowrank");
  if (opts.iters < 0) throw std::invalid_argument("refine_lowrank: iters must be >= 0");
  RefineResult out;
  const size_t size = static_cast<size_t>(N * K);
  std::vector<float> residual(size), deq(size), target(W, W + size);
  LowRank cur = lowrank_from_svd(svd_topr(target.data(), N, K, r, opts.svd, pool), r);
  for (int t = 0;; ++t) {
    compute_residual(W, cur, residual.data(), pool);
    const QuantizedWeight q = quantize_rtn(residual.data(), N, K, opts.scheme, opts.mx_rule, pool);
    dequantize(q, deq.data(), pool);
    double e2 = 0.0;
    for (size_t i = 0; i < size; ++i) {
      const double d = static_cast<double>(residual[i]) - deq[i];
      e2 += d * d;
    }
    const double err = std::sqrt(e2);
    out.errors.push_back(err);
    if (t > 0 && !(err < out.errors[t - 1])) break;  // no longer falling: keep the previous L
    out.best = t;
    out.branch = cur;
    if (t == opts.iters) break;
    // Next target: Ŵ − Q(Ŵ − L).
    for (size_t i = 0; i < size; ++i) target[i] = W[i] - deq[i];
    cur = lowrank_from_svd(svd_topr(target.data(), N, K, r, opts.svd, pool), r);
  }
  return out;
}

}  // namespace svdq
