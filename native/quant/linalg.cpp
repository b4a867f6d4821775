// Dense linear algebra in double for the quantizer (quant.h, namespace linalg): Householder QR,
// one-sided Jacobi SVD, blocked Cholesky, triangular inverse, and the inverse Cholesky factor GPTQ
// needs. Plain loops written so that the compiler vectorizes the inner ones (contiguous rows); the
// O(n³) parts are blocked and spread over the thread pool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "svdquant/quant.h"
#include "svdquant/thread_pool.h"

namespace svdq {
namespace linalg {
namespace {

// ---- a small double GEMM: C[i][j] -= Σ_p A[i][p]·B[p][j] ---------------------------------------
// A: rows at stride lda (p contiguous). B: "k-major", B[p][j] at b[p·ldb + j]. Register tile of
// kMr rows × kNr columns; the inner loops have fixed trip counts so the compiler keeps the tile in
// vector registers.
constexpr int kMr = 4;
constexpr int kNr = 8;

inline void tile_sub(int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb,
                     double* c, int64_t ldc, int m, int n) {
  double acc[kMr][kNr] = {};
  if (m == kMr && n == kNr) {
    for (int64_t p = 0; p < k; ++p) {
      const double* bp = b + p * ldb;
      for (int r = 0; r < kMr; ++r) {
        const double av = a[r * lda + p];
        for (int j = 0; j < kNr; ++j) acc[r][j] += av * bp[j];
      }
    }
  } else {
    for (int64_t p = 0; p < k; ++p) {
      const double* bp = b + p * ldb;
      for (int r = 0; r < m; ++r) {
        const double av = a[r * lda + p];
        for (int j = 0; j < n; ++j) acc[r][j] += av * bp[j];
      }
    }
  }
  for (int r = 0; r < m; ++r)
    for (int j = 0; j < n; ++j) c[r * ldc + j] -= acc[r][j];
}

// C[m, n] -= A[m, k]·B[k, n] (B k-major, see above). Serial; callers parallelize over tiles.
// k is blocked by kKc so that the B slice stays in cache across the row tiles.
constexpr int64_t kKc = 256;

void sub_ab(int64_t m, int64_t n, int64_t k, const double* a, int64_t lda, const double* b,
            int64_t ldb, double* c, int64_t ldc) {
  // B's rows are far apart (ldb ~ n): each kc × kNr slice is copied to a contiguous panel first,
  // then reused by every row tile.
  double panel[kKc * kNr];
  for (int64_t p0 = 0; p0 < k; p0 += kKc) {
    const int64_t kc = std::min(kKc, k - p0);
    for (int64_t j0 = 0; j0 < n; j0 += kNr) {
      const int nn = static_cast<int>(std::min<int64_t>(kNr, n - j0));
      for (int64_t p = 0; p < kc; ++p)
        for (int j = 0; j < kNr; ++j) panel[p * kNr + j] = j < nn ? b[(p0 + p) * ldb + j0 + j] : 0.0;
      for (int64_t i0 = 0; i0 < m; i0 += kMr) {
        const int mm = static_cast<int>(std::min<int64_t>(kMr, m - i0));
        tile_sub(kc, a + i0 * lda + p0, lda, panel, kNr, c + i0 * ldc + j0, ldc, mm, nn);
      }
    }
  }
}

constexpr int64_t kNb = 64;  // block size of the blocked factorizations

}  // namespace

// ---- Householder QR ------------------------------------------------------------------------------

void householder_qr(int64_t m, int64_t n, double* a, double* tau) {
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    double xnorm2 = 0.0;
    for (int64_t i = k + 1; i < m; ++i) xnorm2 += a[i * n + k] * a[i * n + k];
    const double alpha = a[k * n + k];
    if (xnorm2 == 0.0) {  // already reduced: H = I
      tau[k] = 0.0;
      continue;
    }
    const double norm = std::sqrt(alpha * alpha + xnorm2);
    const double beta = alpha >= 0.0 ? -norm : norm;
    const double t = (beta - alpha) / beta;
    tau[k] = t;
    const double s = 1.0 / (alpha - beta);
    for (int64_t i = k + 1; i < m; ++i) a[i * n + k] *= s;
    a[k * n + k] = beta;
    // A[k:, k+1:] -= t·v·(vᵀ·A[k:, k+1:]), v = (1, a[k+1:, k]).
    const int64_t j0 = k + 1;
    if (j0 == n) continue;
    for (int64_t j = j0; j < n; ++j) w[j] = a[k * n + j];
    for (int64_t i = k + 1; i < m; ++i) {
      const double vi = a[i * n + k];
      const double* ai = a + i * n;
      for (int64_t j = j0; j < n; ++j) w[j] += vi * ai[j];
    }
    for (int64_t j = j0; j < n; ++j) a[k * n + j] -= t * w[j];
    for (int64_t i = k + 1; i < m; ++i) {
      const double tv = t * a[i * n + k];
      double* ai = a + i * n;
      for (int64_t j = j0; j < n; ++j) ai[j] -= tv * w[j];
    }
  }
}

void householder_form_q(int64_t m, int64_t n, const double* a, const double* tau, double* q) {
  std::fill(q, q + m * n, 0.0);
  for (int64_t j = 0; j < n; ++j) q[j * n + j] = 1.0;
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t k = n - 1; k >= 0; --k) {
    const double t = tau[k];
    if (t == 0.0) continue;
    // Q[k:, k:] = H_k·Q[k:, k:]; columns < k of rows >= k are still zero.
    for (int64_t j = k; j < n; ++j) w[j] = q[k * n + j];
    for (int64_t i = k + 1; i < m; ++i) {
      const double vi = a[i * n + k];
      const double* qi = q + i * n;
      for (int64_t j = k; j < n; ++j) w[j] += vi * qi[j];
    }
    for (int64_t j = k; j < n; ++j) q[k * n + j] -= t * w[j];
    for (int64_t i = k + 1; i < m; ++i) {
      const double tv = t * a[i * n + k];
      double* qi = q + i * n;
      for (int64_t j = k; j < n; ++j) qi[j] -= tv * w[j];
    }
  }
}

void householder_apply_q(int64_t m, int64_t n, const double* a, const double* tau, int64_t count,
                         double* x) {
  // Q = H_0·H_1·…·H_{n−1}: the last reflector is applied first.
  std::vector<double> v(static_cast<size_t>(m));
  for (int64_t k = n - 1; k >= 0; --k) {
    const double t = tau[k];
    if (t == 0.0) continue;
    v[k] = 1.0;
    for (int64_t i = k + 1; i < m; ++i) v[i] = a[i * n + k];
    for (int64_t c = 0; c < count; ++c) {
      double* xc = x + c * m;
      double w = 0.0;
      for (int64_t i = k; i < m; ++i) w += v[i] * xc[i];
      w *= t;
      for (int64_t i = k; i < m; ++i) xc[i] -= w * v[i];
    }
  }
}

double orthonormalize(const float* Y, int64_t m, int64_t n, float* Q) {
  std::vector<double> a(static_cast<size_t>(m * n)), q(static_cast<size_t>(m * n)),
      tau(static_cast<size_t>(n)), norm2(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < m * n; ++i) a[i] = Y[i];
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) norm2[j] += a[i * n + j] * a[i * n + j];
  householder_qr(m, n, a.data(), tau.data());
  householder_form_q(m, n, a.data(), tau.data(), q.data());
  for (int64_t i = 0; i < m * n; ++i) Q[i] = static_cast<float>(q[i]);
  double rmin = std::numeric_limits<double>::infinity(), cmax = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    rmin = std::min(rmin, std::fabs(a[j * n + j]));
    cmax = std::max(cmax, norm2[j]);
  }
  return n == 0 ? 1.0 : cmax > 0.0 ? rmin / std::sqrt(cmax) : 0.0;
}

// ---- one-sided Jacobi ----------------------------------------------------------------------------

int jacobi_svd_columns(int64_t n, int64_t m, double* at, double* vt) {
  std::fill(vt, vt + n * n, 0.0);
  for (int64_t j = 0; j < n; ++j) vt[j * n + j] = 1.0;
  // Stop when every pair is orthogonal to about the rounding of its dot product.
  const double tol = 2.3e-16 * std::sqrt(static_cast<double>(std::max<int64_t>(m, 1)));
  constexpr int kMaxSweeps = 60;
  int sweep = 0;
  for (; sweep < kMaxSweeps; ++sweep) {
    bool rotated = false;
    for (int64_t p = 0; p + 1 < n; ++p) {
      for (int64_t q = p + 1; q < n; ++q) {
        double* ap = at + p * m;
        double* aq = at + q * m;
        double alpha = 0.0, beta = 0.0, gamma = 0.0;
        for (int64_t i = 0; i < m; ++i) {
          alpha += ap[i] * ap[i];
          beta += aq[i] * aq[i];
          gamma += ap[i] * aq[i];
        }
        if (!(std::fabs(gamma) > tol * std::sqrt(alpha * beta))) continue;
        rotated = true;
        const double zeta = (beta - alpha) / (2.0 * gamma);
        const double t = (zeta >= 0.0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::sqrt(1.0 + zeta * zeta));
        const double c = 1.0 / std::sqrt(1.0 + t * t);
        const double s = c * t;
        for (int64_t i = 0; i < m; ++i) {
          const double x = ap[i], y = aq[i];
          ap[i] = c * x - s * y;
          aq[i] = s * x + c * y;
        }
        double* vp = vt + p * n;
        double* vq = vt + q * n;
        for (int64_t i = 0; i < n; ++i) {
          const double x = vp[i], y = vq[i];
          vp[i] = c * x - s * y;
          vq[i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  return sweep + 1;
}

// ---- Cholesky and triangular inverse -------------------------------------------------------------

bool cholesky_lower(int64_t n, double* a, ThreadPool& pool) {
  // A pivot at the rounding level of its diagonal entry means A is singular to working precision.
  const double pivot_floor = 4.0 * static_cast<double>(n) * 2.220446049250313e-16;
  std::vector<double> diag(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) diag[j] = a[j * n + j];
  for (int64_t k0 = 0; k0 < n; k0 += kNb) {
    const int64_t k1 = std::min(n, k0 + kNb);
    // 1. The diagonal block (already holds every earlier block's update).
    for (int64_t j = k0; j < k1; ++j) {
      double d = a[j * n + j];
      for (int64_t p = k0; p < j; ++p) d -= a[j * n + p] * a[j * n + p];
      if (!(d > pivot_floor * diag[j]) || !std::isfinite(d)) return false;
      const double ljj = std::sqrt(d);
      a[j * n + j] = ljj;
      for (int64_t i = j + 1; i < k1; ++i) {
        double x = a[i * n + j];
        for (int64_t p = k0; p < j; ++p) x -= a[i * n + p] * a[j * n + p];
        a[i * n + j] = x / ljj;
      }
    }
    if (k1 == n) break;
    // 2. The panel below it: row i of L21 solves L11·x = a[i, k0:k1] (forward substitution).
    const int64_t rows = n - k1;
    const int64_t row_tasks = (rows + kNb - 1) / kNb;
    pool.parallel_for(row_tasks, [&](int64_t t, int) {
      const int64_t r0 = k1 + t * kNb, r1 = std::min(n, r0 + kNb);
      for (int64_t i = r0; i < r1; ++i) {
        double* ai = a + i * n;
        for (int64_t j = k0; j < k1; ++j) {
          double x = ai[j];
          const double* lj = a + j * n;
          for (int64_t p = k0; p < j; ++p) x -= ai[p] * lj[p];
          ai[j] = x / lj[j];
        }
      }
    });
    // 3. The trailing lower triangle: A22 -= L21·L21ᵀ, in tiles of kNb rows × kNb columns.
    // Task (bi, bj) with bj <= bi; the panel's transpose is packed once.
    const int64_t kb = k1 - k0;
    std::vector<double> panel_t(static_cast<size_t>(kb * rows));  // [kb, rows]: L21ᵀ
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t p = 0; p < kb; ++p) panel_t[p * rows + i] = a[(k1 + i) * n + k0 + p];
    const int64_t tiles = row_tasks * (row_tasks + 1) / 2;
    pool.parallel_for(tiles, [&](int64_t t, int) {
      // t -> (bi, bj), bj <= bi, row-major over the lower triangle of tiles.
      int64_t bi = static_cast<int64_t>((std::sqrt(8.0 * static_cast<double>(t) + 1.0) - 1.0) / 2.0);
      while (bi * (bi + 1) / 2 > t) --bi;
      while ((bi + 1) * (bi + 2) / 2 <= t) ++bi;
      const int64_t bj = t - bi * (bi + 1) / 2;
      const int64_t i0 = bi * kNb, i1 = std::min(rows, i0 + kNb);
      const int64_t j0 = bj * kNb, j1 = std::min(rows, j0 + kNb);
      sub_ab(i1 - i0, j1 - j0, kb, a + (k1 + i0) * n + k0, n, panel_t.data() + j0, rows,
             a + (k1 + i0) * n + k1 + j0, n);
    });
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = 0.0;
  return true;
}

void invert_lower(int64_t n, const double* l, double* linv, ThreadPool& pool) {
  std::fill(linv, linv + n * n, 0.0);
  const int64_t blocks = (n + kNb - 1) / kNb;
  // Column block jb of L⁻¹ is L⁻¹·E_jb: forward substitution over row blocks, independent of the
  // other column blocks. Task order: the heaviest (first) blocks first.
  pool.parallel_for(blocks, [&](int64_t jb, int) {
    const int64_t j0 = jb * kNb, j1 = std::min(n, j0 + kNb), w = j1 - j0;
    for (int64_t i0 = j0; i0 < n; i0 += kNb) {
      const int64_t i1 = std::min(n, i0 + kNb);
      double* x = linv + i0 * n + j0;  // rows [i0, i1), columns [j0, j1), stride n
      // T = E − L[i0:i1, j0:i0]·X[j0:i0, :]  (E = identity part when i0 == j0)
      if (i0 == j0)
        for (int64_t i = i0; i < i1; ++i) linv[i * n + i] = 1.0;
      if (i0 > j0) sub_ab(i1 - i0, w, i0 - j0, l + i0 * n + j0, n, linv + j0 * n + j0, n, x, n);
      // Solve L[i0:i1, i0:i1]·Y = T in place.
      for (int64_t i = i0; i < i1; ++i) {
        double* xi = linv + i * n + j0;
        const double* li = l + i * n;
        for (int64_t p = i0; p < i; ++p) {
          const double lip = li[p];
          const double* xp = linv + p * n + j0;
          for (int64_t c = 0; c < w; ++c) xi[c] -= lip * xp[c];
        }
        const double inv = 1.0 / li[i];
        for (int64_t c = 0; c < w; ++c) xi[c] *= inv;
      }
    }
  });
  // Rows above the diagonal of each column block were never written (zero); entries of the
  // diagonal blocks above the diagonal come out zero from the substitution.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) linv[i * n + j] = 0.0;
}

bool inverse_cholesky_upper(int64_t n, const double* h, double* u, ThreadPool& pool) {
  // A = J·H·J in u's storage: A[i][j] = H[n−1−i][n−1−j], read from H's lower triangle.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) u[i * n + j] = j <= i ? h[(n - 1 - j) * n + (n - 1 - i)] : 0.0;
  if (!cholesky_lower(n, u, pool)) return false;
  std::vector<double> linv(static_cast<size_t>(n * n));
  invert_lower(n, u, linv.data(), pool);
  // U = J·L⁻¹·J.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) u[i * n + j] = linv[(n - 1 - i) * n + (n - 1 - j)];
  return true;
}

}  // namespace linalg
}  // namespace svdq
