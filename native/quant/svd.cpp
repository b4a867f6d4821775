// Singular value decompositions for the low-rank branch (quant.h): svd_exact (Householder QR +
// one-sided Jacobi, double) and svd_topr_randomized (randomized block Krylov with Rayleigh–Ritz;
// the big products through gemm_f32).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
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

void check_shape(int64_t N, int64_t K, const char* fn) {
  if (N < 0 || K < 0) throw std::invalid_argument(std::string(fn) + ": negative shape");
}

void check_finite(const float* W, int64_t N, int64_t K, const char* fn) {
  if (N == 0 || K == 0) return;
  const int64_t bad = format_kernels().find_nonfinite(W, N * K);
  if (bad >= 0)
    throw std::invalid_argument(std::string(fn) + ": non-finite value in the weight at row " +
                                std::to_string(bad / K) + ", column " + std::to_string(bad % K));
}

// Rows of `vecs` ([count][dim], each σ_j·u_j) -> unit vectors u_j, sorted by `order`. A row whose
// norm is zero (or not a normal double) is replaced by a unit vector orthogonal to all the others
// (Gram–Schmidt of the coordinate vectors, twice), so that the set stays orthonormal.
void normalize_or_complete(int64_t count, int64_t dim, double* vecs, const double* sigma) {
  std::vector<char> ok(static_cast<size_t>(count));
  for (int64_t j = 0; j < count; ++j) {
    ok[j] = sigma[j] >= 2.3e-308;
    if (ok[j]) {
      const double inv = 1.0 / sigma[j];
      for (int64_t i = 0; i < dim; ++i) vecs[j * dim + i] *= inv;
    }
  }
  std::vector<double> v(static_cast<size_t>(dim));
  int64_t candidate = 0;
  for (int64_t j = 0; j < count; ++j) {
    if (ok[j]) continue;
    bool done = false;
    while (!done && candidate < dim) {
      std::fill(v.begin(), v.end(), 0.0);
      v[candidate++] = 1.0;
      for (int pass = 0; pass < 2; ++pass) {
        for (int64_t o = 0; o < count; ++o) {
          if (!ok[o]) continue;
          const double* u = vecs + o * dim;
          double d = 0.0;
          for (int64_t i = 0; i < dim; ++i) d += u[i] * v[i];
          for (int64_t i = 0; i < dim; ++i) v[i] -= d * u[i];
        }
      }
      double nrm = 0.0;
      for (int64_t i = 0; i < dim; ++i) nrm += v[i] * v[i];
      nrm = std::sqrt(nrm);
      if (nrm > 0.5) {
        for (int64_t i = 0; i < dim; ++i) vecs[j * dim + i] = v[i] / nrm;
        ok[j] = 1;
        done = true;
      }
    }
  }
}

// Indices sorting sigma descending (stable).
std::vector<int64_t> descending_order(const std::vector<double>& sigma) {
  std::vector<int64_t> idx(sigma.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return sigma[a] > sigma[b]; });
  return idx;
}

// Flips the sign of triplet c so that the largest-magnitude entry of its left vector is positive.
void normalize_signs(SvdResult& s) {
  for (int64_t c = 0; c < s.rank; ++c) {
    float best = 0.0f;
    int64_t at = 0;
    for (int64_t i = 0; i < s.n_rows; ++i) {
      const float a = std::fabs(s.U[i * s.rank + c]);
      if (a > best) { best = a; at = i; }
    }
    if (s.n_rows > 0 && s.U[at * s.rank + c] < 0.0f) {
      for (int64_t i = 0; i < s.n_rows; ++i) s.U[i * s.rank + c] = -s.U[i * s.rank + c];
      for (int64_t k = 0; k < s.n_cols; ++k) s.Vt[c * s.n_cols + k] = -s.Vt[c * s.n_cols + k];
    }
  }
}

// Standard normal values from splitmix64 (Box–Muller): deterministic for a seed on every platform
// whose libm log/cos/sin agree (they are only used to draw a random test subspace).
void fill_gaussian(float* out, int64_t count, uint64_t seed) {
  uint64_t state = seed;
  auto next = [&]() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  const double kTwoPi = 6.283185307179586;
  for (int64_t i = 0; i < count; i += 2) {
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0);  // (0, 1]
    const double u2 = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    const double rad = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(rad * std::cos(kTwoPi * u2));
    if (i + 1 < count) out[i + 1] = static_cast<float>(rad * std::sin(kTwoPi * u2));
  }
}

// Euclidean norms of the columns of y [m, n] (row-major), in double.
std::vector<double> column_norms(const float* y, int64_t m, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < n; ++c) out[c] += static_cast<double>(y[i * n + c]) * y[i * n + c];
  for (double& v : out) v = std::sqrt(v);
  return out;
}

// The Rayleigh–Ritz step of the randomized SVD: with Q [N, L] orthonormal (row stride L) and
// Z = Wᵀ·Q [K, L] (row stride L), W ≈ Q·Zᵀ. Zᵀ's SVD comes from Z = Q₂·R₂ (Householder, double)
// and R₂ = U'·Σ·V'ᵀ (Jacobi), so W ≈ (Q·V')·Σ·(Q₂·U')ᵀ; the top r triplets go into res.
void rayleigh_ritz(const float* Q, const float* Z, int64_t N, int64_t K, int64_t L, int64_t r,
                   ThreadPool& pool, SvdResult& res) {
  std::vector<double> bt(Z, Z + K * L), tau(static_cast<size_t>(L));
  linalg::householder_qr(K, L, bt.data(), tau.data());
  std::vector<double> rt(static_cast<size_t>(L * L), 0.0), vt(static_cast<size_t>(L * L));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = i; j < L; ++j) rt[j * L + i] = bt[i * L + j];
  linalg::jacobi_svd_columns(L, L, rt.data(), vt.data());
  std::vector<double> sigma(static_cast<size_t>(L));
  for (int64_t j = 0; j < L; ++j) {
    double s = 0.0;
    for (int64_t i = 0; i < L; ++i) s += rt[j * L + i] * rt[j * L + i];
    sigma[j] = std::sqrt(s);
  }
  const std::vector<int64_t> order = descending_order(sigma);
  std::vector<double> us(static_cast<size_t>(L * L)), vs(static_cast<size_t>(r * L)),
      ss(static_cast<size_t>(L));
  for (int64_t c = 0; c < L; ++c) {
    const int64_t j = order[c];
    ss[c] = sigma[j];
    std::copy(rt.begin() + j * L, rt.begin() + (j + 1) * L, us.begin() + c * L);
    if (c < r) std::copy(vt.begin() + j * L, vt.begin() + (j + 1) * L, vs.begin() + c * L);
  }
  normalize_or_complete(L, L, us.data(), ss.data());
  for (int64_t c = 0; c < r; ++c) res.S[c] = static_cast<float>(ss[c]);
  // Q₂·U'_r without forming Q₂: the reflectors applied to U'_r (rows c = columns, zero-padded to K).
  std::vector<double> q2u(static_cast<size_t>(r * K), 0.0);
  for (int64_t c = 0; c < r; ++c) std::copy(us.begin() + c * L, us.begin() + (c + 1) * L, q2u.begin() + c * K);
  linalg::householder_apply_q(K, L, bt.data(), tau.data(), r, q2u.data());
  // U_W[i][c] = Σ_p Q[i][p]·V'[p][c]  (V' column c = vs row c); rows in parallel chunks.
  constexpr int64_t kRows = 256;
  pool.parallel_for((N + kRows - 1) / kRows, [&](int64_t t, int) {
    const int64_t i1 = std::min(N, (t + 1) * kRows);
    for (int64_t i = t * kRows; i < i1; ++i)
      for (int64_t c = 0; c < r; ++c) {
        double s = 0.0;
        for (int64_t p = 0; p < L; ++p) s += static_cast<double>(Q[i * L + p]) * vs[c * L + p];
        res.U[i * r + c] = static_cast<float>(s);
      }
  });
  for (int64_t c = 0; c < r; ++c)
    for (int64_t k = 0; k < K; ++k) res.Vt[c * K + k] = static_cast<float>(q2u[c * K + k]);
}

}  // namespace

SvdResult svd_exact(const float* W, int64_t N, int64_t K) {
  check_shape(N, K, "svd_exact");
  check_finite(W, N, K, "svd_exact");
  SvdResult res;
  res.n_rows = N;
  res.n_cols = K;
  const bool transposed = N < K;
  const int64_t m = transposed ? K : N;  // A = W or Wᵀ: [m, n], m >= n
  const int64_t n = transposed ? N : K;
  res.rank = n;
  res.U.assign(static_cast<size_t>(N * n), 0.0f);
  res.S.assign(static_cast<size_t>(n), 0.0f);
  res.Vt.assign(static_cast<size_t>(n * K), 0.0f);
  if (n == 0) return res;

  std::vector<double> a(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < K; ++k) {
      if (transposed) a[k * n + i] = W[i * K + k];
      else a[i * n + k] = W[i * K + k];
    }
  // Jacobi works on the columns of C = R (after QR of a tall A) or of A itself (square).
  const bool use_qr = m > n;
  const int64_t cm = use_qr ? n : m;  // rows of C
  std::vector<double> q, tau;
  std::vector<double> ct(static_cast<size_t>(n * cm));  // C's columns as rows
  if (use_qr) {
    tau.resize(static_cast<size_t>(n));
    linalg::householder_qr(m, n, a.data(), tau.data());
    q.resize(static_cast<size_t>(m * n));
    linalg::householder_form_q(m, n, a.data(), tau.data(), q.data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i; j < n; ++j) ct[j * cm + i] = a[i * n + j];
  } else {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) ct[j * cm + i] = a[i * n + j];
  }
  std::vector<double> vt(static_cast<size_t>(n * n));
  linalg::jacobi_svd_columns(n, cm, ct.data(), vt.data());

  std::vector<double> sigma(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double s = 0.0;
    for (int64_t i = 0; i < cm; ++i) s += ct[j * cm + i] * ct[j * cm + i];
    sigma[j] = std::sqrt(s);
  }
  const std::vector<int64_t> order = descending_order(sigma);
  // Sorted left vectors of C (rows), normalized / completed.
  std::vector<double> uc(static_cast<size_t>(n * cm)), vs(static_cast<size_t>(n * n)),
      ss(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) {
    const int64_t j = order[c];
    ss[c] = sigma[j];
    std::copy(ct.begin() + j * cm, ct.begin() + (j + 1) * cm, uc.begin() + c * cm);
    std::copy(vt.begin() + j * n, vt.begin() + (j + 1) * n, vs.begin() + c * n);
  }
  normalize_or_complete(n, cm, uc.data(), ss.data());
  // Left vectors of A: u_c = Q·uc_c (with QR) or uc_c; right vectors: vs rows.
  std::vector<double> ua(static_cast<size_t>(n * m));  // rows = left vectors of A, length m
  if (use_qr) {
    for (int64_t c = 0; c < n; ++c)
      for (int64_t i = 0; i < m; ++i) {
        double s = 0.0;
        for (int64_t p = 0; p < n; ++p) s += q[i * n + p] * uc[c * cm + p];
        ua[c * m + i] = s;
      }
  } else {
    ua = uc;
  }
  // W = A (left: ua over N, right: vs over K) or W = Aᵀ (left: vs over N, right: ua over K).
  for (int64_t c = 0; c < n; ++c) {
    res.S[c] = static_cast<float>(ss[c]);
    const double* left = transposed ? vs.data() + c * n : ua.data() + c * m;
    const double* right = transposed ? ua.data() + c * m : vs.data() + c * n;
    for (int64_t i = 0; i < N; ++i) res.U[i * n + c] = static_cast<float>(left[i]);
    for (int64_t k = 0; k < K; ++k) res.Vt[c * K + k] = static_cast<float>(right[k]);
  }
  normalize_signs(res);
  return res;
}

SvdResult svd_topr_randomized(const float* W, int64_t N, int64_t K, int64_t r,
                              const RandomizedSvdOptions& opts, ThreadPool& pool) {
  check_shape(N, K, "svd_topr_randomized");
  const int64_t mn = std::min(N, K);
  if (r < 0 || r > mn)
    throw std::invalid_argument("svd_topr_randomized: rank " + std::to_string(r) +
                                " is outside [0, min(N, K) = " + std::to_string(mn) + "]");
  if (opts.oversample < 0 || opts.power_iters < 0)
    throw std::invalid_argument("svd_topr_randomized: oversample and power_iters must be >= 0");
  check_finite(W, N, K, "svd_topr_randomized");
  SvdResult res;
  res.n_rows = N;
  res.n_cols = K;
  res.rank = r;
  res.U.assign(static_cast<size_t>(N * r), 0.0f);
  res.S.assign(static_cast<size_t>(r), 0.0f);
  res.Vt.assign(static_cast<size_t>(r * K), 0.0f);
  if (r == 0) return res;
  const int64_t l = std::min<int64_t>(r + opts.oversample, mn);
  // The Krylov space never needs more than min(N, K) dimensions.
  const int64_t depth = std::min<int64_t>(opts.power_iters, mn / l - 1);
  const int64_t L = (depth + 1) * l;
  constexpr double kDependent = 1e-3, kMostlyInside = 1e-2;

  // Block Krylov range finder: Q_0 = orth(W·Ω), Q_{j+1} = orth(W·orth(Wᵀ·Q_j)) made orthogonal to
  // Q_0..Q_j (block Gram–Schmidt: two projections and a QR, plus one more projection and QR when
  // the block was mostly inside the space already, so that Q stays orthonormal in fp32 even when
  // the space is exhausted). Z_j = Wᵀ·Q_j are the rows of B = Qᵀ·W, so the Rayleigh–Ritz step
  // needs no further product with W.
  std::vector<float> Qall(static_cast<size_t>(N * L)), Zall(static_cast<size_t>(K * L)),
      omega(static_cast<size_t>(K * l)), Y(static_cast<size_t>(N * l)), Qb(static_cast<size_t>(N * l)),
      Zb(static_cast<size_t>(K * l)), C(static_cast<size_t>(L * l));
  auto store_block = [&](int64_t j, const float* q) {  // Qb [N, l] -> columns [j·l, (j+1)·l) of Qall
    for (int64_t i = 0; i < N; ++i) std::copy(q + i * l, q + (i + 1) * l, Qall.data() + i * L + j * l);
  };
  auto project_out = [&](float* y, int64_t cols) {  // y [N, l] -= Q·(Qᵀ·y), Q = first `cols` of Qall
    gemm_f32(true, false, cols, l, N, 1.0f, Qall.data(), L, y, l, 0.0f, C.data(), l, pool);
    gemm_f32(false, false, N, l, cols, -1.0f, Qall.data(), L, C.data(), l, 1.0f, y, l, pool);
  };
  // Wᵀ once, so that both products per step run gemm_f32's non-transposed path (about twice as
  // fast here for these skinny products as reading W transposed).
  std::unique_ptr<float[]> Wt(new float[static_cast<size_t>(N * K)]);
  constexpr int64_t kT = 64;
  pool.parallel_for((K + kT - 1) / kT, [&](int64_t t, int) {
    const int64_t k0 = t * kT, k1 = std::min(K, k0 + kT);
    for (int64_t i0 = 0; i0 < N; i0 += kT) {
      const int64_t i1 = std::min(N, i0 + kT);
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t i = i0; i < i1; ++i) Wt[k * N + i] = W[i * K + k];
    }
  });
  fill_gaussian(omega.data(), K * l, opts.seed);
  gemm_f32(false, false, N, l, K, 1.0f, W, K, omega.data(), l, 0.0f, Y.data(), l, pool);
  linalg::orthonormalize(Y.data(), N, l, Qb.data());
  store_block(0, Qb.data());
  for (int64_t j = 0;; ++j) {
    gemm_f32(false, false, K, l, N, 1.0f, Wt.get(), N, Qall.data() + j * l, L, 0.0f, Zall.data() + j * l, L, pool);
    if (j == depth) break;
    for (int64_t k = 0; k < K; ++k)
      std::copy(Zall.data() + k * L + j * l, Zall.data() + k * L + (j + 1) * l, Zb.data() + k * l);
    linalg::orthonormalize(Zb.data(), K, l, omega.data());
    gemm_f32(false, false, N, l, K, 1.0f, W, K, omega.data(), l, 0.0f, Y.data(), l, pool);
    const int64_t cols = (j + 1) * l;
    const std::vector<double> before = column_norms(Y.data(), N, l);
    project_out(Y.data(), cols);
    project_out(Y.data(), cols);
    const std::vector<double> after = column_norms(Y.data(), N, l);
    double kept = 1.0;  // smallest fraction of a column's norm left outside the space so far
    for (int64_t c = 0; c < l; ++c) kept = std::min(kept, before[c] > 0.0 ? after[c] / before[c] : 0.0);
    const double independence = linalg::orthonormalize(Y.data(), N, l, Qb.data());
    if (independence < kDependent || kept < kMostlyInside) {
      // A column that was mostly inside the space already, or nearly dependent columns: what is
      // left is rounding noise, and its orthonormal directions still lean towards the space by
      // more than fp32 rounding; project them out once more.
      project_out(Qb.data(), cols);
      linalg::orthonormalize(Qb.data(), N, l, Y.data());
      std::copy(Y.begin(), Y.end(), Qb.begin());
    }
    store_block(j + 1, Qb.data());
  }
  rayleigh_ritz(Qall.data(), Zall.data(), N, K, L, r, pool, res);
  normalize_signs(res);
  return res;
}

// min(N, K) up to which svd_topr always takes the exact SVD (about 0.1 s for 256×256 here).
constexpr int64_t kExactMaxDim = 256;

SvdResult svd_topr(const float* W, int64_t N, int64_t K, int64_t r,
                   const RandomizedSvdOptions& opts, ThreadPool& pool) {
  check_shape(N, K, "svd_topr");
  const int64_t mn = std::min(N, K);
  if (r < 0 || r > mn)
    throw std::invalid_argument("svd_topr: rank " + std::to_string(r) +
                                " is outside [0, min(N, K) = " + std::to_string(mn) + "]");
  const int64_t krylov_columns = (static_cast<int64_t>(opts.power_iters) + 1) * (r + opts.oversample);
  if (mn > kExactMaxDim && krylov_columns < mn) return svd_topr_randomized(W, N, K, r, opts, pool);
  SvdResult full = svd_exact(W, N, K);
  SvdResult res;
  res.n_rows = N;
  res.n_cols = K;
  res.rank = r;
  res.U.resize(static_cast<size_t>(N * r));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < r; ++c) res.U[i * r + c] = full.U[i * full.rank + c];
  res.S.assign(full.S.begin(), full.S.begin() + r);
  res.Vt.assign(full.Vt.begin(), full.Vt.begin() + r * K);
  return res;
}

LowRank lowrank_from_svd(const SvdResult& svd, int64_t r) {
  if (r < 0 || r > svd.rank)
    throw std::invalid_argument("lowrank_from_svd: rank " + std::to_string(r) + " exceeds the " +
                                std::to_string(svd.rank) + " triplets held");
  LowRank lr;
  lr.n = svd.n_rows;
  lr.k = svd.n_cols;
  lr.rank = r;
  lr.up.resize(static_cast<size_t>(lr.n * r));
  lr.down.resize(static_cast<size_t>(r * lr.k));
  lr.sigma.assign(svd.S.begin(), svd.S.begin() + r);
  for (int64_t i = 0; i < lr.n; ++i)
    for (int64_t c = 0; c < r; ++c) lr.up[i * r + c] = svd.U[i * svd.rank + c];
  for (int64_t c = 0; c < r; ++c)
    for (int64_t k = 0; k < lr.k; ++k) lr.down[c * lr.k + k] = svd.S[c] * svd.Vt[c * lr.k + k];
  return lr;
}

}  // namespace svdq
