// GPTQ on the target format's grid (quant.h): the Hessian accumulation, the inverse Cholesky
// factor, and the blocked column loop with group-aware scales fixed at each group's first column.
//
// Data layout: the working weights are held transposed and in processing order, Wt[a][n] = value
// of column order[a] in row n, so that a column is a contiguous row: the in-block updates are
// axpys over contiguous memory, and the lazy batch update is one gemm_f32,
//   Wt[i2:, :] -= U[i1:i2, i2:]ᵀ · E[i1:i2, :]   (E[a][n] = the scaled error of column a, row n).
// Rows of R are independent given U: each block is processed in chunks of kChunk rows in parallel.
// Once a column is quantized its row of Wt holds the dequantized values; at the end one tiled pass
// writes them out (untransposed) and measures ‖R' − Q‖².
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/quant.h"
#include "svdquant/thread_pool.h"

namespace svdq {
namespace {

constexpr int64_t kChunk = 256;  // rows per task in the column loop

// The formats.h rules for one group, with the scale fixed from the group's amax.
struct GroupQuantizer {
  Scheme scheme;
  MxScaleRule rule;
  float G;  // nvfp4 tensor scale

  // Scale of a group with abs-max `amax`, exactly as formats.h's quantizers compute it.
  // int4 / int8: the fp32 scale in f; mxfp4 / nvfp4: the scale byte in b.
  void scale_for(float amax, float& f, uint8_t& b) const {
    switch (scheme) {
      case Scheme::Int4: f = amax / 7.0f; break;
      case Scheme::Int8: f = amax / 127.0f; break;
      case Scheme::Mxfp4: b = e8m0_scale_for_amax(amax, rule); break;
      case Scheme::Nvfp4: b = e4m3_encode(G * amax / 6.0f); break;
    }
  }

  // Code and dequantized value of x under a fixed scale (formats.h element rule and dequantizer).
  float quantize(float x, float f, uint8_t b, uint8_t& code) const {
    switch (scheme) {
      case Scheme::Int4: {
        if (f == 0.0f) { code = 0; return 0.0f; }
        const int8_t q = int_round_clamp(x / f, -8.0f, 7.0f);
        code = static_cast<uint8_t>(q & 0xF);
        return static_cast<float>(q) * f;
      }
      case Scheme::Int8: {
        if (f == 0.0f) { code = 0; return 0.0f; }
        const int8_t q = int_round_clamp(x / f, -128.0f, 127.0f);
        code = static_cast<uint8_t>(q);
        return static_cast<float>(q) * f;
      }
      case Scheme::Mxfp4: {
        code = e2m1_encode(x * e8m0_reciprocal(b));
        return e2m1_decode(code) * e8m0_decode(b);
      }
      case Scheme::Nvfp4: {
        if (b == 0) { code = 0; return 0.0f; }
        const float d = e4m3_decode(b) / G;
        code = e2m1_encode(x / d);
        return (e2m1_decode(code) * e4m3_decode(b)) / G;
      }
    }
    code = 0;
    return 0.0f;
  }
};

void check_finite(const float* x, int64_t rows, int64_t cols, const char* fn, const char* what) {
  if (rows * cols == 0) return;
  const int64_t bad = format_kernels().find_nonfinite(x, rows * cols);
  if (bad >= 0)
    throw std::invalid_argument(std::string(fn) + ": non-finite value in " + what + " at row " +
                                std::to_string(bad / cols) + ", column " + std::to_string(bad % cols));
}

}  // namespace

void hessian_accumulate(float* H, const float* X, int64_t M, int64_t K, ThreadPool& pool,
                        float alpha) {
  if (M < 0 || K < 0) throw std::invalid_argument("hessian_accumulate: negative shape");
  if (M == 0 || K == 0) return;
  check_finite(X, M, K, "hessian_accumulate", "the activations");
  gemm_f32(true, false, K, K, M, alpha, X, K, X, K, 1.0f, H, K, pool);
}

GptqResult gptq_quantize(const float* R, int64_t N, int64_t K, const float* H,
                         const GptqOptions& opts, ThreadPool& pool, float* dequant) {
  const Scheme scheme = opts.scheme;
  if (scheme != Scheme::Int4 && scheme != Scheme::Mxfp4 && scheme != Scheme::Nvfp4 &&
      scheme != Scheme::Int8)
    throw std::invalid_argument("gptq_quantize: unknown scheme");
  if (N < 0 || K < 0) throw std::invalid_argument("gptq_quantize: negative shape");
  if (opts.block_size < 1) throw std::invalid_argument("gptq_quantize: block_size must be >= 1");
  if (!(opts.damp >= 0.0) || !std::isfinite(opts.damp))
    throw std::invalid_argument("gptq_quantize: damp must be a finite value >= 0");
  check_finite(R, N, K, "gptq_quantize", "the residual");
  check_finite(H, K, K, "gptq_quantize", "the Hessian");

  GptqResult res;
  QuantizedWeight& q = res.q;
  q.scheme = scheme;
  q.mx_rule = opts.mx_rule;
  q.n = N;
  q.k = K;
  q.group = scheme_group(scheme, K);
  const int64_t G = q.group;
  const int64_t kp = scheme == Scheme::Int8 ? K : padded_k(K, G);
  const int64_t cb = scheme == Scheme::Int8 ? K : kp / 2;  // code bytes per row
  const int64_t sc = scheme == Scheme::Int8 ? 1 : kp / G;  // scales per row
  const bool f32_scales = scheme == Scheme::Int4 || scheme == Scheme::Int8;
  q.codes.assign(static_cast<size_t>(N * cb), 0);
  if (f32_scales) q.scales_f32.assign(static_cast<size_t>(N * sc), 0.0f);
  else q.scales_u8.assign(static_cast<size_t>(N * sc), 0);
  if (scheme == Scheme::Nvfp4)
    q.global_scale = nvfp4_global_scale(N * K > 0 ? format_kernels().amax_finite(R, N * K) : 0.0f);
  res.order.resize(static_cast<size_t>(K));
  std::iota(res.order.begin(), res.order.end(), 0);
  if (N == 0 || K == 0) return res;
  const GroupQuantizer gq{scheme, opts.mx_rule, q.global_scale};

  // 1. Hessian in double (symmetric, from the lower triangle); dead inputs.
  std::vector<char> dead(static_cast<size_t>(K), 0);
  std::vector<double> diag(static_cast<size_t>(K));
  for (int64_t j = 0; j < K; ++j) {
    diag[j] = H[j * K + j];
    if (diag[j] == 0.0) {
      dead[j] = 1;
      diag[j] = 1.0;
      ++res.dead_columns;
    }
  }
  // 2. Processing order.
  std::vector<int64_t>& order = res.order;
  if (opts.act_order)
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
  std::vector<int64_t> pos(static_cast<size_t>(K));
  for (int64_t a = 0; a < K; ++a) pos[order[a]] = a;

  // 3.–4. Damping and U = upper Cholesky factor of H_δ⁻¹ (in processing order).
  std::vector<float> Uf(static_cast<size_t>(K * K));
  std::vector<float> Ud(static_cast<size_t>(K));
  {
    std::vector<double> hp(static_cast<size_t>(K * K), 0.0), u(static_cast<size_t>(K * K));
    for (int64_t a = 0; a < K; ++a) {
      const int64_t ja = order[a];
      for (int64_t b = 0; b < a; ++b) {
        const int64_t jb = order[b];
        const bool d = dead[ja] || dead[jb];
        hp[a * K + b] = d ? 0.0 : static_cast<double>(ja > jb ? H[ja * K + jb] : H[jb * K + ja]);
      }
    }
    double mean = 0.0;
    for (int64_t j = 0; j < K; ++j) mean += diag[j];
    mean /= static_cast<double>(K);
    double delta = opts.damp * mean;
    bool ok = false;
    for (int attempt = 0; attempt <= 8 && !ok; ++attempt) {
      if (attempt > 0) delta = std::max(delta * 10.0, 1e-6 * mean);
      for (int64_t a = 0; a < K; ++a) hp[a * K + a] = diag[order[a]] + delta;
      ok = linalg::inverse_cholesky_upper(K, hp.data(), u.data(), pool);
    }
    if (!ok)
      throw std::runtime_error("gptq_quantize: the Hessian is not positive definite even with damping " +
                               std::to_string(delta));
    res.damp_added = delta;
    // U's diagonal is 1/pivot of the reversed Cholesky: pivot²/(H_δ)_aa is the part of column a's
    // damped variance that the columns processed after it do not explain.
    res.min_pivot_ratio = 1.0;
    for (int64_t a = 0; a < K; ++a) {
      const double ratio = 1.0 / (u[a * K + a] * u[a * K + a] * (diag[order[a]] + delta));
      res.min_pivot_ratio = std::min(res.min_pivot_ratio, ratio);
    }
    for (int64_t i = 0; i < K * K; ++i) Uf[i] = static_cast<float>(u[i]);
    for (int64_t a = 0; a < K; ++a) Ud[a] = Uf[a * K + a];
  }

  // Working weights, transposed and permuted: Wt[a][n] = R'[n][order[a]] (dead columns zero).
  std::vector<float> Wt(static_cast<size_t>(K * N));
  constexpr int64_t kT = 64;
  pool.parallel_for((K + kT - 1) / kT, [&](int64_t t, int) {
    const int64_t a0 = t * kT, a1 = std::min(K, a0 + kT);
    for (int64_t n0 = 0; n0 < N; n0 += kT) {
      const int64_t n1 = std::min(N, n0 + kT);
      for (int64_t a = a0; a < a1; ++a) {
        const int64_t j = order[a];
        float* dst = Wt.data() + a * N;
        if (dead[j]) {
          for (int64_t n = n0; n < n1; ++n) dst[n] = 0.0f;
        } else {
          for (int64_t n = n0; n < n1; ++n) dst[n] = R[n * K + j];
        }
      }
    }
  });

  // Group bookkeeping: the processing index at which each group's scale is fixed.
  const int64_t ngroups = scheme == Scheme::Int8 ? 1 : (K + G - 1) / G;
  std::vector<int64_t> fix_group(static_cast<size_t>(K), -1);
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t c0 = g * G, c1 = std::min(K, c0 + G);
    int64_t first = K;
    for (int64_t j = c0; j < c1; ++j) first = std::min(first, pos[j]);
    fix_group[first] = g;
  }

  const int64_t B = std::min<int64_t>(opts.block_size, K);
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  std::vector<float> E(static_cast<size_t>(B * N));  // scaled errors of the current block
  std::vector<double> chunk_obj(static_cast<size_t>(chunks), 0.0);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));

  for (int64_t i1 = 0; i1 < K; i1 += B) {
    const int64_t i2 = std::min(K, i1 + B);
    pool.parallel_for(chunks, [&](int64_t c, int thread) {
      const int64_t n0 = c * kChunk, n1 = std::min(N, n0 + kChunk), w = n1 - n0;
      std::vector<float>& vals = scratch[static_cast<size_t>(thread)];
      double obj = 0.0;
      for (int64_t a = i1; a < i2; ++a) {
        const int64_t j = order[a];
        const int64_t g = scheme == Scheme::Int8 ? 0 : j / G;
        // Fix the group's scale from the current values of all its columns.
        if (fix_group[a] >= 0) {
          const int64_t c0 = g * G, c1 = std::min(K, c0 + G);
          const int64_t count = scheme == Scheme::Int8 ? K : c1 - c0;
          const int64_t cbase = scheme == Scheme::Int8 ? 0 : c0;
          vals.resize(static_cast<size_t>(count * w));
          for (int64_t ci = 0; ci < count; ++ci) {
            const int64_t p = pos[cbase + ci];
            float* v = vals.data() + ci * w;
            std::memcpy(v, Wt.data() + p * N + n0, static_cast<size_t>(w) * sizeof(float));
            if (p >= i2) {  // a later block: apply this block's pending updates from [i1, a)
              for (int64_t t = i1; t < a; ++t) {
                const float u = Uf[t * K + p];
                const float* e = E.data() + (t - i1) * N + n0;
                for (int64_t n = 0; n < w; ++n) v[n] -= u * e[n];
              }
            }
          }
          std::vector<float> row(opts.on_group_fixed ? static_cast<size_t>(count) : 0);
          for (int64_t n = 0; n < w; ++n) {
            float amax = 0.0f;
            for (int64_t ci = 0; ci < count; ++ci) amax = std::max(amax, std::fabs(vals[ci * w + n]));
            float f = 0.0f;
            uint8_t b = 0;
            gq.scale_for(amax, f, b);
            if (f32_scales) q.scales_f32[(n0 + n) * sc + g] = f;
            else q.scales_u8[(n0 + n) * sc + g] = b;
            if (opts.on_group_fixed) {
              for (int64_t ci = 0; ci < count; ++ci) row[ci] = vals[ci * w + n];
              opts.on_group_fixed(n0 + n, g, row.data(), static_cast<int>(count));
            }
          }
        }
        // Quantize column a with its group's fixed scale; scaled errors into E.
        float* wa = Wt.data() + a * N + n0;
        float* ea = E.data() + (a - i1) * N + n0;
        const float ud = Ud[a];
        for (int64_t n = 0; n < w; ++n) {
          const int64_t row = n0 + n;
          const float f = f32_scales ? q.scales_f32[row * sc + g] : 0.0f;
          const uint8_t b = f32_scales ? 0 : q.scales_u8[row * sc + g];
          uint8_t code = 0;
          const float x = wa[n];
          const float deq = gq.quantize(x, f, b, code);
          const float e = (x - deq) / ud;
          ea[n] = e;
          wa[n] = deq;  // column a is final: Wt now holds Q there
          obj += static_cast<double>(e) * e;
          if (scheme == Scheme::Int8) {
            q.codes[row * cb + j] = code;
          } else {
            q.codes[row * cb + j / 2] |= static_cast<uint8_t>((code & 0xF) << ((j & 1) * 4));
          }
        }
        // In-block update of the columns after a.
        for (int64_t t = a + 1; t < i2; ++t) {
          const float u = Uf[a * K + t];
          float* wt = Wt.data() + t * N + n0;
          for (int64_t n = 0; n < w; ++n) wt[n] -= u * ea[n];
        }
      }
      chunk_obj[c] += obj;
    });
    // Lazy batch update of the later blocks: Wt[i2:, :] -= U[i1:i2, i2:]ᵀ · E.
    if (i2 < K)
      gemm_f32(true, false, K - i2, N, i2 - i1, -1.0f, Uf.data() + i1 * K + i2, K, E.data(), N,
               1.0f, Wt.data() + i2 * N, N, pool);
  }
  // Wt holds Q (transposed, in processing order): write it out and measure ‖R' − Q‖², in tiles of
  // kT rows (one task each, summed in task order).
  const int64_t row_tiles = (N + kT - 1) / kT;
  std::vector<double> tile_sq(static_cast<size_t>(row_tiles), 0.0);
  pool.parallel_for(row_tiles, [&](int64_t t, int) {
    const int64_t n0 = t * kT, n1 = std::min(N, n0 + kT);
    double s = 0.0;
    for (int64_t a0 = 0; a0 < K; a0 += kT) {
      const int64_t a1 = std::min(K, a0 + kT);
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t a = a0; a < a1; ++a) {
          const int64_t j = order[a];
          const float d = Wt[a * N + n];
          if (dequant != nullptr) dequant[n * K + j] = d;
          const double diff = (dead[j] ? 0.0 : static_cast<double>(R[n * K + j])) - d;
          s += diff * diff;
        }
    }
    tile_sq[t] = s;
  });
  double sq = 0.0;
  for (int64_t t = 0; t < row_tiles; ++t) sq += tile_sq[t];
  for (int64_t c = 0; c < chunks; ++c) res.objective += chunk_obj[c];
  res.output_sq_error = std::max(0.0, res.objective - res.damp_added * sq);
  return res;
}

}  // namespace svdq
