// Tests of the fp32 GEMM (gemm_f32.h) at every instruction-set level this CPU supports (a level
// it lacks is skipped with a note), against a plain double-precision reference.
//
// Tolerance: |y - ref| <= 1e-5 · S + 1e-30 per output, where
//   S = |alpha| · Σ_k |op(A)[i][k] · op(B)[k][j]| + |beta · C0[i][j]| + |bias[j]|
// (computed in double). Why: an fp32 sum whose terms and partial sums are rounded has an error of
// at most u · Σ |partial sums| <= depth · u · S (u = 2^-24 ≈ 6e-8). The kernels sum at most
// kc <= 512 terms in one chain, then add the k-blocks (<= 4 here, K <= 1712) and the epilogue
// terms. With random-signed data the partial sums stay far below S and the rounding errors partly
// cancel (typical error ~ sqrt(depth) · u · S; the largest seen here is ~5e-7 · S, printed by the
// first two tests), so 1e-5 · S leaves a 20× margin for a correct kernel, while one missing,
// doubled or misplaced term (about S / K >= 6e-4 · S for K <= 1712) exceeds it 60×. The worst-case
// bound depth · u · S (~3e-5 · S) is not used: it would only be reached by adversarially aligned
// roundings, and would let bugs of that size pass. The 1e-30 absorbs S = 0 (all-zero rows).
// Where every partial sum is exactly representable (small integers, test
// gemm_f32_exact_small_integers) any summation order is exact, and we require
// bit equality instead.
//
// Thread count: the driver's blocking depends only on the shapes, and each output element is summed
// in the same order whatever thread runs it, so results must be bit-identical for 1, 2, 3 and 4
// threads (test gemm_f32_thread_count_bit_identical).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "svdquant/gemm_f32.h"
#include "svdquant/isa.h"
#include "svdquant/thread_pool.h"

using svdq::Isa;
using svdq::ThreadPool;

namespace {

constexpr double kRelTol = 1e-5;
constexpr double kAbsTol = 1e-30;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Largest |y - ref| / S seen by compare() (reported, to show the margin below kRelTol).
double g_max_rel = 0.0;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  float normal() {
    double u = uniform();
    if (u < 1e-300) u = 1e-300;
    return static_cast<float>(std::sqrt(-2.0 * std::log(u)) *
                              std::cos(6.283185307179586 * uniform()));
  }
};

// Levels to test, with a note (once per test) for the ones this CPU lacks.
std::vector<Isa> test_isas() {
  std::vector<Isa> out;
  const Isa detected = svdq::isa_choice().detected;
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    if (static_cast<int>(isa) <= static_cast<int>(detected)) out.push_back(isa);
    else
      std::printf("# note: this CPU has no %s: its GEMM kernels are not tested here\n",
                  svdq::isa_name(isa));
  }
  return out;
}

// Random matrix with `rows` rows of `cols` values at stride ld (padding filled with NaN so that a
// kernel reading past a row shows up). Values: normal, scaled per row by 2^e, e in [-scale, scale].
std::vector<float> random_matrix(Rng& rng, int64_t rows, int64_t cols, int64_t ld, int scale = 0) {
  std::vector<float> m(static_cast<size_t>(rows > 0 ? (rows - 1) * ld + cols : 0), kNaN);
  for (int64_t i = 0; i < rows; ++i) {
    const float s = scale > 0 ? std::ldexp(1.0f, rng.below(2 * scale + 1) - scale) : 1.0f;
    for (int64_t j = 0; j < cols; ++j) m[i * ld + j] = s * rng.normal();
  }
  return m;
}

struct Problem {
  bool transA = false, transB = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  int64_t lda = 0, ldb = 0, ldc = 0;
  std::vector<float> A, B, C0, bias;  // bias empty: none
};

// Double-precision reference and the magnitude S of the tolerance, both [M][N] row-major.
void reference(const Problem& p, std::vector<double>& ref, std::vector<double>& mag) {
  std::vector<double> a(static_cast<size_t>(p.M * p.K)), b(static_cast<size_t>(p.N * p.K));
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t k = 0; k < p.K; ++k)
      a[i * p.K + k] = p.transA ? p.A[k * p.lda + i] : p.A[i * p.lda + k];
  for (int64_t j = 0; j < p.N; ++j)
    for (int64_t k = 0; k < p.K; ++k)
      b[j * p.K + k] = p.transB ? p.B[j * p.ldb + k] : p.B[k * p.ldb + j];
  ref.assign(static_cast<size_t>(p.M * p.N), 0.0);
  mag.assign(static_cast<size_t>(p.M * p.N), 0.0);
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.N; ++j) {
      double s = 0.0, m = 0.0;
      const double* ai = a.data() + i * p.K;
      const double* bj = b.data() + j * p.K;
      for (int64_t k = 0; k < p.K; ++k) {
        const double t = ai[k] * bj[k];
        s += t;
        m += std::fabs(t);
      }
      double y = static_cast<double>(p.alpha) * s;
      m *= std::fabs(static_cast<double>(p.alpha));
      if (p.beta != 0.0f) {
        const double c = static_cast<double>(p.beta) * p.C0[i * p.ldc + j];
        y += c;
        m += std::fabs(c);
      }
      if (!p.bias.empty()) {
        y += p.bias[j];
        m += std::fabs(static_cast<double>(p.bias[j]));
      }
      ref[i * p.N + j] = y;
      mag[i * p.N + j] = m;
    }
}

// Compares C (stride ldc) with the reference; padding past N in each row must be untouched (equal
// to C0's). Returns the number of bad elements (reports the first few).
int compare(const Problem& p, const std::vector<float>& C, const std::vector<double>& ref,
            const std::vector<double>& mag, const std::string& what) {
  int bad = 0;
  for (int64_t i = 0; i < p.M; ++i) {
    for (int64_t j = 0; j < p.N; ++j) {
      const double y = C[i * p.ldc + j];
      const double r = ref[i * p.N + j];
      const double tol = kRelTol * mag[i * p.N + j] + kAbsTol;
      if (mag[i * p.N + j] > 0 && std::fabs(y - r) / mag[i * p.N + j] > g_max_rel)
        g_max_rel = std::fabs(y - r) / mag[i * p.N + j];
      if (!(std::fabs(y - r) <= tol)) {
        if (bad < 3) {
          char buf[256];
          std::snprintf(buf, sizeof buf, " at [%lld][%lld]: got %.9g, expected %.9g (tol %.3g)",
                        static_cast<long long>(i), static_cast<long long>(j), y, r, tol);
          CHECK_MSG(false, what + buf);
        }
        ++bad;
      }
    }
    for (int64_t j = p.N; j < p.ldc && i * p.ldc + j < static_cast<int64_t>(C.size()); ++j) {
      uint32_t x, y;
      std::memcpy(&x, &C[i * p.ldc + j], 4);
      std::memcpy(&y, &p.C0[i * p.ldc + j], 4);
      if (x != y) {
        if (bad < 3) CHECK_MSG(false, what + " wrote past N in row " + std::to_string(i));
        ++bad;
      }
    }
  }
  return bad;
}

std::string describe(const Problem& p, Isa isa) {
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "%s tA=%d tB=%d M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld alpha=%g beta=%g bias=%d",
      svdq::isa_name(isa), p.transA, p.transB, static_cast<long long>(p.M),
      static_cast<long long>(p.N), static_cast<long long>(p.K), static_cast<long long>(p.lda),
      static_cast<long long>(p.ldb), static_cast<long long>(p.ldc), p.alpha, p.beta,
      !p.bias.empty());
  return buf;
}

// A general-form problem with random data; C0 is NaN where beta == 0.
Problem make_problem(Rng& rng, bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha,
                     float beta, int64_t pad_a, int64_t pad_b, int64_t pad_c, int scale = 0) {
  Problem p;
  p.transA = tA;
  p.transB = tB;
  p.M = M;
  p.N = N;
  p.K = K;
  p.alpha = alpha;
  p.beta = beta;
  p.lda = (tA ? M : K) + pad_a;
  p.ldb = (tB ? K : N) + pad_b;
  p.ldc = N + pad_c;
  p.A = tA ? random_matrix(rng, K, M, p.lda, scale) : random_matrix(rng, M, K, p.lda, scale);
  p.B = tB ? random_matrix(rng, N, K, p.ldb, scale) : random_matrix(rng, K, N, p.ldb, scale);
  p.C0 = random_matrix(rng, M, N, p.ldc);
  if (beta == 0.0f)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) p.C0[i * p.ldc + j] = kNaN;
  return p;
}

// The Linear form as a Problem: A = X [M, K], B = W [N, K] (transB), beta = accumulate, bias.
int run_linear(const Problem& p, Isa isa, ThreadPool& pool, const std::vector<double>& ref,
               const std::vector<double>& mag) {
  const svdq::PackedF32 w = svdq::pack_f32_weights(p.B.data(), p.N, p.K, p.ldb, isa, pool);
  std::vector<float> C = p.C0;
  svdq::gemm_f32_packed(p.A.data(), p.M, p.lda, w, p.bias.empty() ? nullptr : p.bias.data(),
                        C.data(), p.ldc, p.beta != 0.0f, pool);
  return compare(p, C, ref, mag, "linear " + describe(p, isa));
}

int run_general(const Problem& p, Isa isa, ThreadPool& pool, const std::vector<double>& ref,
                const std::vector<double>& mag) {
  std::vector<float> C = p.C0;
  svdq::gemm_f32(p.transA, p.transB, p.M, p.N, p.K, p.alpha, p.A.data(), p.lda, p.B.data(), p.ldb,
                 p.beta, C.data(), p.ldc, pool, isa);
  return compare(p, C, ref, mag, "gemm " + describe(p, isa));
}

const int64_t kMs[] = {1, 2, 3, 7, 17, 64, 256, 300};
const int64_t kNs[] = {1, 3, 15, 16, 17, 31, 33, 100, 257};
const int64_t kKs[] = {1, 2, 15, 16, 17, 63, 64, 65, 300, 1000};

}  // namespace

// Every (M, N, K) of the lists above in the Linear form (X·Wᵀ, the layout of an nn.Linear), with
// and without bias and accumulate (NaN in Y when not accumulating), row strides > width on a third
// of the cases.
TEST(gemm_f32_linear_all_shapes) {
  const std::vector<Isa> isas = test_isas();
  ThreadPool pool(2);
  Rng rng(1);
  int cases = 0, bad = 0;
  for (int mi = 0; mi < 8; ++mi)
    for (int ni = 0; ni < 9; ++ni)
      for (int ki = 0; ki < 10; ++ki) {
        const int64_t M = kMs[mi], N = kNs[ni], K = kKs[ki];
        const int variant = (mi + ni + ki) % 6;  // every variant meets every M, N and K
        ++cases;
        const bool accumulate = variant % 2 == 1;
        const int64_t pad = variant >= 4 ? 1 + rng.below(5) : 0;
        Problem p =
            make_problem(rng, false, true, M, N, K, 1.0f, accumulate ? 1.0f : 0.0f, pad, pad, pad);
        if (variant == 2 || variant == 3 || variant == 5) p.bias = random_matrix(rng, 1, N, N);
        std::vector<double> ref, mag;
        reference(p, ref, mag);
        for (Isa isa : isas) bad += run_linear(p, isa, pool, ref, mag);
      }
  CHECK_EQ(bad, 0);
  std::printf("# %d shapes x %zu levels; largest |y - ref| / S: %.2g (tolerance %.0e)\n", cases,
              isas.size(), g_max_rel, kRelTol);
}

// The general form: both transposes, strides > width, alpha and beta combinations (beta = 0 with
// NaN in C), shapes from the lists and random ones (some with K > 512: several k-blocks), row
// scales over 2^±20 on some cases.
TEST(gemm_f32_general_random) {
  const std::vector<Isa> isas = test_isas();
  ThreadPool pool(2);
  Rng rng(2);
  const float alphas[] = {1.0f, -0.5f, 2.5f};
  const float betas[] = {0.0f, 1.0f, -1.5f, 0.25f};
  int bad = 0;
  const int kCases = 400;
  for (int c = 0; c < kCases; ++c) {
    const bool tA = (c & 1) != 0, tB = (c & 2) != 0;
    int64_t M, N, K;
    if (c % 3 == 0) {
      M = 1 + rng.below(40);
      N = 1 + rng.below(80);
      K = 1 + rng.below(150);
    } else if (c % 7 == 1) {  // several k-blocks
      M = 1 + rng.below(20);
      N = 1 + rng.below(40);
      K = 513 + rng.below(1200);
    } else {
      M = kMs[rng.below(6)];  // up to 64
      N = kNs[rng.below(9)];
      K = kKs[rng.below(9)];  // up to 300
    }
    const int64_t pa = rng.below(3) == 0 ? rng.below(7) : 0;
    const int64_t pb = rng.below(3) == 0 ? rng.below(7) : 0;
    const int64_t pc = rng.below(3) == 0 ? rng.below(7) : 0;
    const Problem p = make_problem(rng, tA, tB, M, N, K, alphas[rng.below(3)], betas[(c >> 2) % 4],
                                   pa, pb, pc, c % 5 == 0 ? 20 : 0);
    std::vector<double> ref, mag;
    reference(p, ref, mag);
    for (Isa isa : isas) bad += run_general(p, isa, pool, ref, mag);
  }
  CHECK_EQ(bad, 0);
  std::printf("# %d problems x %zu levels; largest |y - ref| / S so far: %.2g\n", kCases,
              isas.size(), g_max_rel);
}

// Larger shapes: several row chunks of packed X (M·K > 2^21 floats), several k-blocks, M tails,
// and (general form) several column chunks of packed B (N·K > 2^22 floats).
TEST(gemm_f32_chunked_shapes) {
  const std::vector<Isa> isas = test_isas();
  ThreadPool pool(2);
  Rng rng(3);
  int bad = 0;
  {
    Problem p = make_problem(rng, false, true, 2203, 37, 1000, 1.0f, 0.0f, 3, 0, 2);
    p.bias = random_matrix(rng, 1, p.N, p.N);
    std::vector<double> ref, mag;
    reference(p, ref, mag);
    for (Isa isa : isas) bad += run_linear(p, isa, pool, ref, mag);
  }
  {
    const Problem p = make_problem(rng, true, false, 2203, 37, 1000, 0.75f, -1.0f, 0, 5, 0);
    std::vector<double> ref, mag;
    reference(p, ref, mag);
    for (Isa isa : isas) bad += run_general(p, isa, pool, ref, mag);
  }
  for (bool tB : {false, true}) {
    const Problem p = make_problem(rng, false, tB, 3, 1100, 4001, 1.0f, 0.5f, 0, 1, 0);
    std::vector<double> ref, mag;
    reference(p, ref, mag);
    for (Isa isa : isas) bad += run_general(p, isa, pool, ref, mag);
  }
  CHECK_EQ(bad, 0);
}

// Small integers: every product and partial sum is an exactly representable integer (|sum| <= 64·K
// < 2^24), so any summation order gives the exact result: bit equality with the reference.
TEST(gemm_f32_exact_small_integers) {
  const std::vector<Isa> isas = test_isas();
  ThreadPool pool(2);
  Rng rng(4);
  int bad = 0;
  const int64_t shapes[][3] = {
      {1, 1, 1}, {17, 33, 1000}, {300, 100, 65}, {29, 257, 300}, {64, 31, 17}};
  for (const auto& s : shapes) {
    for (int tr = 0; tr < 4; ++tr) {
      Problem p =
          make_problem(rng, tr & 1, tr & 2, s[0], s[1], s[2], 1.0f, tr == 3 ? 1.0f : 0.0f, 0, 0, 0);
      for (auto* v : {&p.A, &p.B})
        for (float& x : *v) x = static_cast<float>(rng.below(17) - 8);
      if (p.beta != 0.0f)
        for (float& x : p.C0) x = static_cast<float>(rng.below(201) - 100);
      std::vector<double> ref, mag;
      reference(p, ref, mag);
      for (Isa isa : isas) {
        std::vector<float> C = p.C0;
        svdq::gemm_f32(p.transA, p.transB, p.M, p.N, p.K, 1.0f, p.A.data(), p.lda, p.B.data(),
                       p.ldb, p.beta, C.data(), p.ldc, pool, isa);
        for (int64_t i = 0; i < p.M * p.N; ++i)
          if (C[i] != static_cast<float>(ref[i])) {
            if (bad < 3)
              CHECK_MSG(false, "inexact " + describe(p, isa) + " at " + std::to_string(i));
            ++bad;
          }
      }
    }
  }
  CHECK_EQ(bad, 0);
}

// 1, 2, 3 and 4 threads give the same bits (the work split never changes the summation order).
TEST(gemm_f32_thread_count_bit_identical) {
  const std::vector<Isa> isas = test_isas();
  Rng rng(5);
  ThreadPool p1(1), p2(2), p3(3), p4(4);
  ThreadPool* pools[] = {&p1, &p2, &p3, &p4};
  const int64_t shapes[][3] = {
      {300, 257, 1000}, {1, 3000, 65}, {5, 1001, 300}, {257, 100, 17}, {2203, 37, 600}};
  int bad = 0;
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    const std::vector<float> X = random_matrix(rng, M, K, K);
    const std::vector<float> W = random_matrix(rng, N, K, K);
    const std::vector<float> bias = random_matrix(rng, 1, N, N);
    for (Isa isa : isas) {
      const svdq::PackedF32 w = svdq::pack_f32_weights(W.data(), N, K, isa);
      std::vector<float> first;
      for (ThreadPool* pool : pools) {
        std::vector<float> Y(static_cast<size_t>(M * N), kNaN);
        svdq::gemm_f32_packed(X.data(), M, K, w, bias.data(), Y.data(), N, false, *pool);
        std::vector<float> G(static_cast<size_t>(M * N), 1.0f);
        svdq::gemm_f32(false, true, M, N, K, 0.5f, X.data(), K, W.data(), K, 2.0f, G.data(), N,
                       *pool, isa);
        Y.insert(Y.end(), G.begin(), G.end());
        if (first.empty()) first = Y;
        else if (std::memcmp(first.data(), Y.data(), Y.size() * sizeof(float)) != 0) {
          CHECK_MSG(false, std::string("results differ with ") + std::to_string(pool->size()) +
                               " threads, " + svdq::isa_name(isa) + " M=" + std::to_string(M));
          ++bad;
        }
      }
    }
  }
  CHECK_EQ(bad, 0);
}

// K = 0, M = 0, N = 0, alpha = 0 (A and B not read), PackedF32 bookkeeping, argument errors.
TEST(gemm_f32_edge_cases_and_errors) {
  const std::vector<Isa> isas = test_isas();
  ThreadPool pool(2);
  for (Isa isa : isas) {
    const svdq::GemmF32Kernels& kt = svdq::gemm_f32_kernels_for(isa);
    CHECK(kt.isa == isa);
    CHECK(kt.mc % kt.mr == 0 && kt.nc % kt.nr == 0 && kt.kc > 0);

    // K = 0: Y = bias (+ Y).
    const float bias[3] = {1.0f, -2.0f, 3.5f};
    svdq::PackedF32 w0 = svdq::pack_f32_weights(nullptr, 3, 0, isa);
    CHECK(w0.data == nullptr && w0.bytes == 0 && w0.n == 3 && w0.k == 0);
    std::vector<float> Y(6, kNaN);
    svdq::gemm_f32_packed(nullptr, 2, 0, w0, bias, Y.data(), 3, false, pool);
    for (int i = 0; i < 6; ++i) CHECK_EQ(Y[i], bias[i % 3]);
    svdq::gemm_f32_packed(nullptr, 2, 0, w0, bias, Y.data(), 3, true, pool);
    for (int i = 0; i < 6; ++i) CHECK_EQ(Y[i], 2 * bias[i % 3]);
    std::vector<float> C(6, kNaN);
    svdq::gemm_f32(false, false, 2, 3, 0, 1.0f, nullptr, 0, nullptr, 3, 0.0f, C.data(), 3, pool,
                   isa);
    for (float c : C) CHECK_EQ(c, 0.0f);

    // alpha = 0: A and B are not read (NaN there does not matter), C = beta·C.
    const std::vector<float> nan_ab(12, kNaN);
    std::vector<float> C2 = {1, 2, 3, 4, 5, 6};
    svdq::gemm_f32(false, false, 2, 3, 2, 0.0f, nan_ab.data(), 2, nan_ab.data(), 3, 2.0f, C2.data(),
                   3, pool, isa);
    for (int i = 0; i < 6; ++i) CHECK_EQ(C2[i], 2.0f * (i + 1));

    // M = 0 and N = 0 touch nothing.
    std::vector<float> C3 = {7.0f};
    svdq::gemm_f32(false, false, 0, 1, 5, 1.0f, nullptr, 5, nullptr, 1, 0.0f, C3.data(), 1, pool,
                   isa);
    svdq::gemm_f32(false, false, 1, 0, 5, 1.0f, nullptr, 5, nullptr, 0, 0.0f, C3.data(), 0, pool,
                   isa);
    CHECK_EQ(C3[0], 7.0f);

    // PackedF32: size, alignment, zero padding, moves.
    Rng rng(6);
    const std::vector<float> W = random_matrix(rng, 37, 5, 5);
    svdq::PackedF32 w = svdq::pack_f32_weights(W.data(), 37, 5, isa);
    const int64_t padded = (37 + kt.nr - 1) / kt.nr * kt.nr;
    CHECK_EQ(w.bytes, static_cast<size_t>(padded * 5) * sizeof(float));
    CHECK_EQ(reinterpret_cast<uintptr_t>(w.data) % 64, 0u);
    CHECK(w.isa == isa && w.nr == kt.nr && w.n == 37 && w.k == 5);
    const int64_t last = (padded / kt.nr - 1) * kt.nr * 5;  // last panel
    for (int64_t p = 0; p < 5; ++p)
      for (int64_t j = 37 - (padded - kt.nr); j < kt.nr; ++j)
        CHECK_EQ(w.data[last + p * kt.nr + j], 0.0f);
    svdq::PackedF32 moved = std::move(w);
    CHECK(w.data == nullptr && moved.data != nullptr);
    w = std::move(moved);
    CHECK(w.data != nullptr && moved.data == nullptr);
    const std::vector<float> X = random_matrix(rng, 2, 5, 5);
    std::vector<float> Y2(2 * 37);
    bool threw = false;
    try {
      svdq::gemm_f32_packed(X.data(), 2, 5, moved, nullptr, Y2.data(), 37, false, pool);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw || moved.n == 0);  // a moved-from PackedF32 is either rejected or empty
  }

  // Argument errors are typed exceptions, never crashes.
  auto throws = [](auto&& fn) {
    try {
      fn();
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  std::vector<float> buf(64, 1.0f);
  float* b = buf.data();
  CHECK(
      throws([&] { svdq::gemm_f32(false, false, -1, 2, 2, 1.0f, b, 2, b, 2, 0.0f, b, 2, pool); }));
  CHECK(throws([&] {
    svdq::gemm_f32(false, false, 2, 2, 3, 1.0f, b, 2, b, 2, 0.0f, b, 2, pool);
  }));  // lda < K
  CHECK(throws([&] {
    svdq::gemm_f32(true, false, 3, 2, 2, 1.0f, b, 2, b, 2, 0.0f, b, 2, pool);
  }));  // lda < M
  CHECK(throws([&] {
    svdq::gemm_f32(false, true, 2, 2, 3, 1.0f, b, 3, b, 2, 0.0f, b, 2, pool);
  }));  // ldb < K
  CHECK(throws([&] {
    svdq::gemm_f32(false, false, 2, 3, 2, 1.0f, b, 2, b, 3, 0.0f, b, 2, pool);
  }));  // ldc < N
  CHECK(throws(
      [&] { svdq::gemm_f32(false, false, 2, 2, 2, 1.0f, nullptr, 2, b, 2, 0.0f, b, 2, pool); }));
  CHECK(throws([&] { svdq::pack_f32_weights(b, -1, 2); }));
  CHECK(throws([&] { svdq::pack_f32_weights(nullptr, 2, 2); }));
  const svdq::PackedF32 w = svdq::pack_f32_weights(b, 4, 4);
  CHECK(throws([&] { svdq::gemm_f32_packed(b, 2, 3, w, nullptr, b, 4, false, pool); }));  // ldx < K
  CHECK(throws([&] { svdq::gemm_f32_packed(b, 2, 4, w, nullptr, b, 3, false, pool); }));  // ldy < N
  CHECK(throws([&] { svdq::gemm_f32_packed(b, -2, 4, w, nullptr, b, 4, false, pool); }));
  if (svdq::isa_choice().detected != Isa::Avx512) {
    CHECK(throws([&] { svdq::gemm_f32_kernels_for(Isa::Avx512); }));
    CHECK(throws([&] { svdq::pack_f32_weights(b, 4, 4, Isa::Avx512); }));
  }
}

// Several threads calling at once, each with its own pool (the scratch buffers are shared through
// a cache): every call gives the single-threaded result.
TEST(gemm_f32_concurrent_callers) {
  Rng rng(7);
  const int64_t M = 70, N = 45, K = 600;
  const std::vector<float> X = random_matrix(rng, M, K, K);
  const std::vector<float> W = random_matrix(rng, N, K, K);
  const svdq::PackedF32 w = svdq::pack_f32_weights(W.data(), N, K);
  ThreadPool solo(1);
  std::vector<float> expect(static_cast<size_t>(M * N));
  svdq::gemm_f32_packed(X.data(), M, K, w, nullptr, expect.data(), N, false, solo);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&, c] {
      ThreadPool pool(1 + c % 2);
      for (int round = 0; round < 10; ++round) {
        std::vector<float> Y(static_cast<size_t>(M * N), kNaN);
        if (round % 2 == 0)
          svdq::gemm_f32_packed(X.data(), M, K, w, nullptr, Y.data(), N, false, pool);
        else
          svdq::gemm_f32(false, true, M, N, K, 1.0f, X.data(), K, W.data(), K, 0.0f, Y.data(), N,
                         pool);
        if (std::memcmp(Y.data(), expect.data(), Y.size() * sizeof(float)) != 0) ++mismatches[c];
      }
    });
  for (auto& t : callers) t.join();
  for (int c = 0; c < 4; ++c) CHECK_EQ(mismatches[c], 0);
}
