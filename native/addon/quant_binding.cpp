// Bindings of the quantizer's numerics (native/include/svdquant/quant.h): top-r SVD, residual + RTN,
// GPTQ, Hessian accumulation, low-rank refinement, and the general fp32 GEMM. Every call runs off
// the JavaScript thread and returns a Promise; results go into caller-allocated typed arrays
// (argument order mirrors lib/native.ts).
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <limits>
#include <string>
#include <vector>

#include "args.h"
#include "async_task.h"
#include "bindings.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/quant.h"
#include "svdquant/thread_pool.h"

namespace svdq_addon {
namespace {

using svdq::Scheme;

constexpr int64_t kMaxDim = int64_t(1) << 31;

void check_product(Napi::Env env, int64_t a, int64_t b, const char* what) {
  if (a > 0 && b > std::numeric_limits<int64_t>::max() / 8 / a) throw_arg(env, what, "a smaller tensor");
}

// A Float32Array or null/undefined at position i (nullptr then).
float* optional_f32_array(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min_elems) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return get_array<float>(info, i, name, napi_float32_array, min_elems, "Float32Array or null");
}

int64_t codes_bytes(Scheme s, int64_t n, int64_t k) {
  if (s == Scheme::Int8) return n * k;
  return n * svdq::padded_k(k, svdq::scheme_group(s, k)) / 2;
}

int64_t scale_count(Scheme s, int64_t n, int64_t k) {
  if (s == Scheme::Int8) return n;
  const int64_t g = svdq::scheme_group(s, k);
  return n * (svdq::padded_k(k, g) / g);
}

// Where a QuantizedWeight's codes and scales go: caller-allocated arrays of the canonical sizes.
struct QuantOut {
  uint8_t* codes = nullptr;  // bytes (Int8Array for int8 is reinterpreted: same bytes)
  float* scales_f32 = nullptr;
  uint8_t* scales_u8 = nullptr;
  int64_t n_codes = 0, n_scales = 0;

  void copy_from(const svdq::QuantizedWeight& q) const {
    if (static_cast<int64_t>(q.codes.size()) != n_codes) throw std::runtime_error("internal: code count mismatch");
    std::memcpy(codes, q.codes.data(), static_cast<size_t>(n_codes));
    if (scales_f32 != nullptr) {
      if (static_cast<int64_t>(q.scales_f32.size()) != n_scales) throw std::runtime_error("internal: scale count mismatch");
      std::memcpy(scales_f32, q.scales_f32.data(), static_cast<size_t>(n_scales) * sizeof(float));
    } else {
      if (static_cast<int64_t>(q.scales_u8.size()) != n_scales) throw std::runtime_error("internal: scale count mismatch");
      std::memcpy(scales_u8, q.scales_u8.data(), static_cast<size_t>(n_scales));
    }
  }
};

QuantOut get_quant_out(const Napi::CallbackInfo& info, size_t ic, size_t is, Scheme s, int64_t n, int64_t k) {
  QuantOut o;
  o.n_codes = codes_bytes(s, n, k);
  o.n_scales = scale_count(s, n, k);
  if (s == Scheme::Int8) {
    o.codes = reinterpret_cast<uint8_t*>(get_array<int8_t>(info, ic, "codes", napi_int8_array, o.n_codes, "Int8Array"));
  } else {
    o.codes = get_array<uint8_t>(info, ic, "codes", napi_uint8_array, o.n_codes, "Uint8Array");
  }
  if (s == Scheme::Int4 || s == Scheme::Int8) {
    o.scales_f32 = get_array<float>(info, is, "scales", napi_float32_array, o.n_scales, "Float32Array");
  } else {
    o.scales_u8 = get_array<uint8_t>(info, is, "scales", napi_uint8_array, o.n_scales, "Uint8Array");
  }
  return o;
}

std::vector<Napi::Value> keep(const Napi::CallbackInfo& info, std::initializer_list<size_t> idx) {
  std::vector<Napi::Value> v;
  for (size_t i : idx) {
    if (info.Length() > i && info[i].IsObject()) v.push_back(info[i]);
  }
  return v;
}

// svdTopR(w, n, k, r, method 0 auto|1 exact|2 randomized, oversample, powerIters, seed, threads,
//         up: Float32Array [n·r], down: Float32Array [r·k], sigma: Float32Array [r]) -> Promise<void>
Napi::Value SvdTopR(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 1, kMaxDim);
  const int64_t k = get_int(info, 2, "k", 1, kMaxDim);
  check_product(env, n, k, "n*k");
  const float* w = get_array<float>(info, 0, "w", napi_float32_array, n * k, "Float32Array");
  const int64_t r = get_int(info, 3, "r", 0, std::min(n, k));
  const int method = static_cast<int>(get_int(info, 4, "method", 0, 2));
  svdq::RandomizedSvdOptions opts;
  opts.oversample = static_cast<int>(get_int(info, 5, "oversample", 0, 4096));
  opts.power_iters = static_cast<int>(get_int(info, 6, "powerIters", 0, 64));
  opts.seed = static_cast<uint64_t>(get_int(info, 7, "seed", 0, (int64_t(1) << 53)));
  const int threads = static_cast<int>(get_int(info, 8, "threads", 0, 1024));
  float* up = get_array<float>(info, 9, "up", napi_float32_array, n * r, "Float32Array");
  float* down = get_array<float>(info, 10, "down", napi_float32_array, r * k, "Float32Array");
  float* sigma = get_array<float>(info, 11, "sigma", napi_float32_array, r, "Float32Array");
  return run_job(env, false, [=] {
    if (r == 0) return;
    svdq::ThreadPool& pool = svdq::shared_pool(threads);
    svdq::SvdResult s = method == 1 ? svdq::svd_exact(w, n, k)
                      : method == 2 ? svdq::svd_topr_randomized(w, n, k, r, opts, pool)
                                    : svdq::svd_topr(w, n, k, r, opts, pool);
    svdq::LowRank lr = svdq::lowrank_from_svd(s, r);
    std::memcpy(up, lr.up.data(), sizeof(float) * static_cast<size_t>(n * r));
    std::memcpy(down, lr.down.data(), sizeof(float) * static_cast<size_t>(r * k));
    std::memcpy(sigma, lr.sigma.data(), sizeof(float) * static_cast<size_t>(r));
  }, keep(info, {0, 9, 10, 11}));
}

// quantizeResidual(w, n, k, up|null, down|null, r, scheme 0..3, mxRule 0..2, threads, codes, scales,
//                  out: Float64Array [1] (global scale), residual: Float32Array [n·k] | null)
//   R = w − up·down (rank 0: R = w), RTN-quantized into codes/scales; residual receives R if given.
Napi::Value QuantizeResidual(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 1, kMaxDim);
  const int64_t k = get_int(info, 2, "k", 1, kMaxDim);
  check_product(env, n, k, "n*k");
  const float* w = get_array<float>(info, 0, "w", napi_float32_array, n * k, "Float32Array");
  const int64_t r = get_int(info, 5, "r", 0, std::min(n, k));
  const float* up = optional_f32_array(info, 3, "up", n * r);
  const float* down = optional_f32_array(info, 4, "down", r * k);
  if (r > 0 && (up == nullptr || down == nullptr)) throw_arg(env, "up/down", "both factors when r > 0");
  const auto scheme = static_cast<Scheme>(get_int(info, 6, "scheme", 0, 3));
  const auto rule = static_cast<svdq::MxScaleRule>(get_int(info, 7, "mxRule", 0, 2));
  const int threads = static_cast<int>(get_int(info, 8, "threads", 0, 1024));
  const QuantOut qo = get_quant_out(info, 9, 10, scheme, n, k);
  double* out = get_array<double>(info, 11, "out", napi_float64_array, 1, "Float64Array");
  float* resid_out = optional_f32_array(info, 12, "residual", n * k);
  return run_job(env, false, [=] {
    svdq::ThreadPool& pool = svdq::shared_pool(threads);
    std::vector<float> tmp;
    float* R = resid_out;
    if (R == nullptr) {
      tmp.resize(static_cast<size_t>(n * k));
      R = tmp.data();
    }
    svdq::compute_residual(w, n, k, up, down, r, R, pool);
    svdq::QuantizedWeight q = svdq::quantize_rtn(R, n, k, scheme, rule, pool, "residual");
    qo.copy_from(q);
    out[0] = q.global_scale;
  }, keep(info, {0, 3, 4, 9, 10, 11, 12}));
}

// gptqQuantize(r: Float32Array [n·k], n, k, h: Float32Array [k·k], scheme, mxRule, damp, blockSize,
//              actOrder, threads, codes, scales, out: Float64Array [6], dequant: Float32Array|null)
//   out = [objective, outputSqError, dampAdded, deadColumns, globalScale, minPivotRatio]
Napi::Value GptqQuantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 1, kMaxDim);
  const int64_t k = get_int(info, 2, "k", 1, int64_t(1) << 20);
  check_product(env, n, k, "n*k");
  check_product(env, k, k, "k*k");
  const float* R = get_array<float>(info, 0, "r", napi_float32_array, n * k, "Float32Array");
  const float* H = get_array<float>(info, 3, "h", napi_float32_array, k * k, "Float32Array");
  svdq::GptqOptions opts;
  opts.scheme = static_cast<Scheme>(get_int(info, 4, "scheme", 0, 3));
  opts.mx_rule = static_cast<svdq::MxScaleRule>(get_int(info, 5, "mxRule", 0, 2));
  opts.damp = get_number(info, 6, "damp");
  if (!(opts.damp >= 0.0) || !(opts.damp < 1e6)) throw_arg(env, "damp", "a finite number >= 0");
  opts.block_size = static_cast<int>(get_int(info, 7, "blockSize", 1, 1 << 20));
  if (info.Length() <= 8 || !info[8].IsBoolean()) throw_arg(env, "actOrder", "a boolean");
  opts.act_order = info[8].As<Napi::Boolean>().Value();
  const int threads = static_cast<int>(get_int(info, 9, "threads", 0, 1024));
  const QuantOut qo = get_quant_out(info, 10, 11, opts.scheme, n, k);
  double* out = get_array<double>(info, 12, "out", napi_float64_array, 6, "Float64Array");
  float* dq = optional_f32_array(info, 13, "dequant", n * k);
  return run_job(env, false, [=] {
    svdq::ThreadPool& pool = svdq::shared_pool(threads);
    svdq::GptqResult g = svdq::gptq_quantize(R, n, k, H, opts, pool, dq);
    qo.copy_from(g.q);
    out[0] = g.objective;
    out[1] = g.output_sq_error;
    out[2] = g.damp_added;
    out[3] = static_cast<double>(g.dead_columns);
    out[4] = g.q.global_scale;
    out[5] = g.min_pivot_ratio;
  }, keep(info, {0, 3, 10, 11, 12, 13}));
}

// hessianAccumulate(h: Float32Array [k·k], x: Float32Array [m·k], m, k, alpha, threads)
//   h += alpha·xᵀx
Napi::Value HessianAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t m = get_int(info, 2, "m", 0, kMaxDim);
  const int64_t k = get_int(info, 3, "k", 1, int64_t(1) << 20);
  check_product(env, m, k, "m*k");
  check_product(env, k, k, "k*k");
  float* H = get_array<float>(info, 0, "h", napi_float32_array, k * k, "Float32Array");
  const float* X = get_array<float>(info, 1, "x", napi_float32_array, m * k, "Float32Array");
  const float alpha = static_cast<float>(get_number(info, 4, "alpha"));
  const int threads = static_cast<int>(get_int(info, 5, "threads", 0, 1024));
  return run_job(env, false, [=] {
    if (m == 0) return;
    svdq::hessian_accumulate(H, X, m, k, svdq::shared_pool(threads), alpha);
  }, keep(info, {0, 1}));
}

// refineLowrank(w, n, k, r, scheme, mxRule, iters, oversample, powerIters, seed, threads,
//               up [n·r], down [r·k], errors: Float64Array [iters + 1], out: Float64Array [2])
//   out = [best, number of errors written]
Napi::Value RefineLowrank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = get_int(info, 1, "n", 1, kMaxDim);
  const int64_t k = get_int(info, 2, "k", 1, kMaxDim);
  check_product(env, n, k, "n*k");
  const float* w = get_array<float>(info, 0, "w", napi_float32_array, n * k, "Float32Array");
  const int64_t r = get_int(info, 3, "r", 1, std::min(n, k));
  svdq::RefineOptions opts;
  opts.scheme = static_cast<Scheme>(get_int(info, 4, "scheme", 0, 3));
  opts.mx_rule = static_cast<svdq::MxScaleRule>(get_int(info, 5, "mxRule", 0, 2));
  opts.iters = static_cast<int>(get_int(info, 6, "iters", 0, 10000));
  opts.svd.oversample = static_cast<int>(get_int(info, 7, "oversample", 0, 4096));
  opts.svd.power_iters = static_cast<int>(get_int(info, 8, "powerIters", 0, 64));
  opts.svd.seed = static_cast<uint64_t>(get_int(info, 9, "seed", 0, (int64_t(1) << 53)));
  const int threads = static_cast<int>(get_int(info, 10, "threads", 0, 1024));
  float* up = get_array<float>(info, 11, "up", napi_float32_array, n * r, "Float32Array");
  float* down = get_array<float>(info, 12, "down", napi_float32_array, r * k, "Float32Array");
  double* errors = get_array<double>(info, 13, "errors", napi_float64_array, opts.iters + 1, "Float64Array");
  double* out = get_array<double>(info, 14, "out", napi_float64_array, 2, "Float64Array");
  return run_job(env, false, [=] {
    svdq::RefineResult res = svdq::refine_lowrank(w, n, k, r, opts, svdq::shared_pool(threads));
    std::memcpy(up, res.branch.up.data(), sizeof(float) * static_cast<size_t>(n * r));
    std::memcpy(down, res.branch.down.data(), sizeof(float) * static_cast<size_t>(r * k));
    const size_t ne = std::min(res.errors.size(), static_cast<size_t>(opts.iters + 1));
    for (size_t i = 0; i < ne; i++) errors[i] = res.errors[i];
    out[0] = res.best;
    out[1] = static_cast<double>(ne);
  }, keep(info, {0, 11, 12, 13, 14}));
}

// gemmF32(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads) -> Promise<void>
//   C[m, n] = alpha·op(A)·op(B) + beta·C (row-major, gemm_f32.h)
Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBoolean() || !info[1].IsBoolean()) throw_arg(env, "transA/transB", "booleans");
  const bool ta = info[0].As<Napi::Boolean>().Value();
  const bool tb = info[1].As<Napi::Boolean>().Value();
  const int64_t m = get_int(info, 2, "m", 0, kMaxDim);
  const int64_t n = get_int(info, 3, "n", 0, kMaxDim);
  const int64_t k = get_int(info, 4, "k", 0, kMaxDim);
  check_product(env, m, k, "m*k");
  check_product(env, n, k, "n*k");
  check_product(env, m, n, "m*n");
  const float alpha = static_cast<float>(get_number(info, 5, "alpha"));
  // op(A) [m, k]: A is [m, k] (stride lda >= k) or [k, m] (stride lda >= m).
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t lda = get_int(info, 7, "lda", std::max<int64_t>(a_cols, 1), kMaxDim);
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int64_t ldb = get_int(info, 9, "ldb", std::max<int64_t>(b_cols, 1), kMaxDim);
  const float beta = static_cast<float>(get_number(info, 10, "beta"));
  const int64_t ldc = get_int(info, 12, "ldc", std::max<int64_t>(n, 1), kMaxDim);
  check_product(env, a_rows, lda, "a");
  check_product(env, b_rows, ldb, "b");
  check_product(env, m, ldc, "c");
  auto need = [](int64_t rows, int64_t ld, int64_t cols) { return rows == 0 ? 0 : (rows - 1) * ld + cols; };
  const float* A = get_array<float>(info, 6, "a", napi_float32_array, need(a_rows, lda, a_cols), "Float32Array");
  const float* B = get_array<float>(info, 8, "b", napi_float32_array, need(b_rows, ldb, b_cols), "Float32Array");
  float* C = get_array<float>(info, 11, "c", napi_float32_array, need(m, ldc, n), "Float32Array");
  const int threads = static_cast<int>(get_int(info, 13, "threads", 0, 1024));
  return run_job(env, false, [=] {
    if (m == 0 || n == 0) return;
    svdq::gemm_f32(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, svdq::shared_pool(threads));
  }, keep(info, {6, 8, 11}));
}

}  // namespace

void register_quant(Napi::Env env, Napi::Object exports) {
  exports.Set("svdTopR", Napi::Function::New(env, SvdTopR, "svdTopR"));
  exports.Set("quantizeResidual", Napi::Function::New(env, QuantizeResidual, "quantizeResidual"));
  exports.Set("gptqQuantize", Napi::Function::New(env, GptqQuantize, "gptqQuantize"));
  exports.Set("hessianAccumulate", Napi::Function::New(env, HessianAccumulate, "hessianAccumulate"));
  exports.Set("refineLowrank", Napi::Function::New(env, RefineLowrank, "refineLowrank"));
  exports.Set("gemmF32", Napi::Function::New(env, GemmF32, "gemmF32"));
}

}  // namespace svdq_addon
