// The quantizer's heavy numerics (DESIGN.md §2): the low-rank branch (SVD), the residual and its
// round-to-nearest quantization, the low-rank refinement, and GPTQ on the target format's grid.
//
// ## Conventions
//
// - Every matrix is row-major, dense, fp32 at the interface, rows at stride = number of columns.
//   W, Ŵ, R are [N, K] (N output rows, K input channels); X̂ is [M, K]; H is [K, K].
// - Low-rank branch of Ŵ (DESIGN §2.2): with Ŵ ≈ U_r Σ_r V_rᵀ (top-r singular triplets),
//   L_up = U_r [N, r] and L_down = Σ_r V_rᵀ [r, K] (all singular values on the down side, as Quark
//   does). rank 0 is allowed: empty factors, R = Ŵ.
// - Residual R = Ŵ − L_up·L_down, quantized per output row in groups along K with the rules and
//   canonical layouts of formats.h (QuantizedWeight below): int4 g64 (s = amax/7, codes RNE clamped
//   to [−8, 7]), mxfp4 g32 (E8M0 scale by MxScaleRule, E2M1 RNE), nvfp4 g16 (E4M3 block scale,
//   tensor scale G = nvfp4_global_scale(amax R), E2M1 RNE), int8 per row (s = amax/127).
// - Heavy products go through gemm_f32 (fp32). Factorizations that need precision (Householder QR,
//   Jacobi SVD, Cholesky and the triangular inverse for GPTQ) run in double.
// - A ThreadPool is passed explicitly (shared_pool(threads) gives one). These functions call
//   pool.parallel_for themselves: never call them from inside a task of the same pool.
// - Results do not depend on the pool's thread count (bit-identical): gemm_f32 is, and the other
//   parallel loops split work into fixed pieces whose results are combined in a fixed order.
// - Non-finite values in W, R or H are errors (std::invalid_argument naming the tensor and the
//   position); bad shapes too.
//
// ## Algorithms and defaults
//
// svd_exact: one-sided Jacobi (Hestenes) in double. A tall matrix (rows > cols, after transposing
//   so that rows >= cols) is first reduced by Householder QR, A = Q·R, and Jacobi runs on R
//   (U = Q·U_R). Sweeps of cyclic pair rotations until no pair has |a_pᵀa_q| > √m·2.3e-16·‖a_p‖‖a_q‖
//   (at most 60 sweeps). Meant for small matrices (min(N, K) <= 512: about 1 s for 512×512 here);
//   cost ~ 3·m·n² per sweep. Singular vectors of σ = 0 are completed to an orthonormal set.
//   Signs: each left vector's largest-magnitude entry is made positive.
// svd_topr_randomized: randomized block Krylov (Musco & Musco 2015) with Rayleigh–Ritz. Blocks of
//   l = r + oversample columns (capped at min(N, K)): Ω [K, l] Gaussian (splitmix64 + Box–Muller,
//   from `seed`), Q_0 = qr(W·Ω); then `power_iters` times Q_{j+1} = qr(W·qr(Wᵀ·Q_j)) made
//   orthogonal to Q_0..Q_j (block Gram–Schmidt, twice; a third projection when a block was mostly
//   inside the space already, as when W's rank is exhausted). The whole space Q = [Q_0 … Q_q]
//   (L = (q+1)·l columns, capped so that L <= min(N, K)) is kept, not only the last block: this is
//   what makes slowly decaying spectra converge (subspace iteration, which keeps the last block
//   only, stalls there). Rayleigh–Ritz: Z = Wᵀ·Q [K, L] (the Wᵀ·Q_j of the iteration) = Q₂·R₂
//   (Householder, double), R₂ = U'·Σ·V'ᵀ (Jacobi), W ≈ (Q·V')·Σ·(Q₂·U')ᵀ; the top r are returned.
//   Products by gemm_f32 on W and on an explicit Wᵀ (the non-transposed path is about twice as
//   fast for these skinny products; Wᵀ costs N·K floats while the SVD runs). Each QR is Householder
//   in double with the thin Q rounded to fp32.
//   Defaults: oversample 16, power_iters 6 (L = 336 for r = 32). Cost: 2·(q+1) products of
//   2·N·K·l flops, 2q + 1 QRs of [N or K, l], the Rayleigh–Ritz O(K·L² + L³); W 12288×3072, r = 32:
//   about 1.5 s with 2 threads here (the exact SVD of that matrix: minutes).
//   Accuracy (issue 20): on slowly decaying spectra the branch's residual ‖W − W_r‖_F is within
//   ~1e-6 (power law, 512×768) to ~5e-5 (Gaussian, the worst case) of the exact SVD's, and the
//   int4 error of that residual within 2e-4 (native/tests/test_quant_svd.cpp). The previous method
//   (subspace iteration, 3 power iterations) left 1e-3–5e-3 on the same matrices.
// svd_topr: the exact SVD when min(N, K) <= 256 (about 0.1 s) or when the Krylov space would span
//   min(N, K) anyway ((power_iters + 1)·(r + oversample) >= min(N, K)); otherwise the randomized one.
// residual / RTN: R = Ŵ − L_up·L_down by one gemm_f32 (beta = 1 on a copy of Ŵ); quantize_rtn
//   calls the formats.h row quantizers (format_kernels(): the active instruction set) on row
//   chunks in parallel. dequantize calls the matching dequantizer.
// refine_lowrank (deepcompressor's iteration, weight-space objective): L₀ = SVD_r(Ŵ);
//   e_t = ‖Ŵ − L_t − Q(Ŵ − L_t)‖_F; L_{t+1} = SVD_r(Ŵ − Q(Ŵ − L_t)); it stops at the first t with
//   e_t >= e_{t−1} (or after `iters` refinements) and returns the best L and every e_t computed.
// gptq_quantize: GPTQ (Frantar et al.) on H = X̂ᵀX̂ for the residual, on the target grid:
//   1. dead inputs (H_jj == 0): H_jj = 1 and column j of R set to 0 (its codes are 0);
//   2. act-order (option): columns processed in descending diag(H) (stable: ties keep K order);
//   3. damping: δ = damp·mean(diag H) added to the diagonal (damp default 0.01); if the Cholesky
//      fails, δ is multiplied by 10 (from at least 1e-6·mean diag) up to 8 times, then an error;
//   4. U = upper Cholesky factor of H_δ⁻¹ (UᵀU = H_δ⁻¹), in double, computed without forming
//      H⁻¹: with J the order reversal, J·H_δ·J = L·Lᵀ (blocked Cholesky) and U = J·L⁻¹·J;
//   5. columns in blocks of `block_size` (default 128): in a block, column by column, q = Q(w),
//      e = (w − q)/U_ii, later columns of the block -= e·U_i,·; after the block, the remaining
//      columns get the block's update at once: W[:, i2:] -= E·U[i1:i2, i2:] (gemm_f32, the lazy
//      batch update). Rows are independent; they are processed in parallel chunks. Any block size
//      >= 1 works (it need not be a multiple of the group). Cost for 12288×3072: ~1.2 s for U
//      (double, 2/3·K³ flops), ~0.5 s for the column loop, ~0.5 s for the lazy updates (N·K² flops
//      in gemm_f32): about 2–2.5 s with 2 threads here.
//   Group-aware scales (with and without act-order): the groups are the canonical groups along the
//   original K order (formats.h). A group's scale is fixed when the first of its columns (in
//   processing order) is quantized, from the *current* values of all the group's columns at that
//   moment (the value the unblocked algorithm would hold: pending in-block updates of columns in
//   later blocks are applied for the purpose), with exactly the formats.h scale rule; every element
//   is then encoded with that fixed scale by exactly the formats.h element rule (values that grew
//   past the group's amax saturate: INT4 clamps to [−8, 7], E2M1 to ±6). nvfp4's tensor scale G is
//   computed once from the whole R (as given) before GPTQ starts. int8 (one group per row) fixes
//   the row's scale at the row's first processed column.
//   Objective: Σ e² over all columns = tr((R' − Q)·H_δ·(R' − Q)ᵀ) in exact arithmetic (R' = R with
//   dead columns zeroed), i.e. ‖X̂(R' − Q)ᵀ‖² + δ‖R' − Q‖²; output_sq_error subtracts the damping
//   term.
//
// ## Tolerances the tests hold (native/tests/test_quant_*.cpp)
//
//   svd_exact            ‖W − UΣVᵀ‖_F/‖W‖_F < 1e-6; max |UᵀU − I|, |VVᵀ − I| < 1e-6 (also for
//                        rank-deficient and zero W); σ descending and >= 0; |σ_i − σ_i,true| <=
//                        1e-5·σ_max for a known spectrum
//   svd_topr_randomized  ‖U_rΣ_rV_rᵀ − (same from svd_exact)‖_F / ‖exact‖_F < 1e-4 on decaying-
//                        spectrum and low-rank + noise matrices (square and non-square; seen:
//                        ~3e-7); orthogonality of U_r, V_r < 1e-5; |σ_i − σ_i,exact| <= 1e-4·σ_max;
//                        bit-identical for 1 and 2 threads. Slow spectra (power law 0.3, Student-t
//                        noise + spikes, Gaussian; r = 32 defaults and r = 8 with oversample 8):
//                        ‖W − W_r‖_F at most 1e-4 above the exact SVD's, int4 RTN error of the
//                        residual within 1e-3; an exactly rank-20 W keeps orthonormal factors.
//   QR / Cholesky        ‖QᵀQ − I‖_max < 1e-12, ‖QR − A‖/‖A‖ < 1e-13; ‖UᵀU·H − I‖_max < 1e-8,
//                        U upper with a positive diagonal, bit-identical for 1 and 2 threads
//   residual / RTN       R bit-equal to a copy + gemm_f32(alpha −1, beta 1); codes, scales and
//                        dequantized values bit-equal to the formats kernels on the whole matrix;
//                        refine: errors strictly falling up to `best`, then one that does not
//                        fall (or `iters` reached); the returned branch reproduces errors[best]
//   GPTQ                 ‖X(R − Q)ᵀ‖_F at least 10% below RTN's for int4, mxfp4 and nvfp4 (int8:
//                        not above), with and without act-order, also with singular H (duplicate
//                        and zero channels, damp 0 or 0.01; dead columns dequantize to 0);
//                        dequantize(codes, scales) bit-equal to the values GPTQ reports; each
//                        group's scale equal to the formats quantizer's for the group's values at
//                        its fixing time (test hook), and those values equal (to 1e-4·group amax)
//                        the ones of a block-size-1 run (every column current) for the rows whose
//                        codes agree (>= 70% of rows; seen: all); objective = ‖X(R−Q)ᵀ‖² + δ‖R−Q‖²
//                        and output_sq_error = ‖X(R−Q)ᵀ‖² to 1e-3 relative; block sizes 7 and 128
//                        within 2% of block size 1; bit-identical for 1 and 2 threads.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "svdquant/formats.h"

namespace svdq {

class ThreadPool;

// ---- SVD -------------------------------------------------------------------------------------

// Singular triplets of an [n_rows, n_cols] matrix, σ descending: W ≈ U·diag(S)·Vt.
struct SvdResult {
  int64_t n_rows = 0, n_cols = 0, rank = 0;  // rank = number of triplets held
  std::vector<float> U;                      // [n_rows, rank]
  std::vector<float> S;                      // [rank], descending, >= 0
  std::vector<float> Vt;                     // [rank, n_cols]
};

// The low-rank branch: L_up = U_r [n, rank], L_down = Σ_r V_rᵀ [rank, k].
struct LowRank {
  int64_t n = 0, k = 0, rank = 0;
  std::vector<float> up;    // [n, rank]
  std::vector<float> down;  // [rank, k]
  std::vector<float> sigma; // [rank], the singular values moved into `down`
};

// All min(N, K) singular triplets (exact up to double rounding, then fp32). N, K >= 0.
SvdResult svd_exact(const float* W, int64_t N, int64_t K);

struct RandomizedSvdOptions {
  int oversample = 16;  // block = r + oversample columns
  int power_iters = 6;  // Krylov depth: blocks added by products with W·Wᵀ
  uint64_t seed = 0x5D0E5EEDull;
};

// The top r (<= min(N, K)) triplets by the randomized range finder (see the header comment).
SvdResult svd_topr_randomized(const float* W, int64_t N, int64_t K, int64_t r,
                              const RandomizedSvdOptions& opts, ThreadPool& pool);

// Top-r triplets by whichever method fits: svd_exact when min(N, K) <= 256 or when the Krylov space
// would span min(N, K) anyway, else svd_topr_randomized (see the header comment).
SvdResult svd_topr(const float* W, int64_t N, int64_t K, int64_t r,
                   const RandomizedSvdOptions& opts, ThreadPool& pool);

// L_up = U[:, :r], L_down = diag(S[:r])·Vt[:r, :]. r <= svd.rank.
LowRank lowrank_from_svd(const SvdResult& svd, int64_t r);

// ---- residual and RTN ------------------------------------------------------------------------

// A weight in the canonical format of formats.h (per row; rows consecutive; kp = padded_k(k, group)):
//   int4  : codes n·kp/2 (nibbles, element 2i low), scales_f32 n·kp/64
//   mxfp4 : codes n·kp/2 (E2M1 nibbles),            scales_u8  n·kp/32 (E8M0), mx_rule
//   nvfp4 : codes n·kp/2 (E2M1 nibbles),            scales_u8  n·kp/16 (E4M3), global_scale G
//   int8  : codes n·k (int8 bytes),                 scales_f32 n
struct QuantizedWeight {
  Scheme scheme = Scheme::Int4;
  MxScaleRule mx_rule = MxScaleRule::Even;
  int64_t n = 0, k = 0;
  int group = kInt4Group;  // scheme_group(scheme, k)
  std::vector<uint8_t> codes;
  std::vector<float> scales_f32;
  std::vector<uint8_t> scales_u8;
  float global_scale = 1.0f;
};

// R = W − up·down. up [N, r], down [r, K] (ignored when r == 0), R [N, K] (may not alias W).
void compute_residual(const float* W, int64_t N, int64_t K, const float* up, const float* down,
                      int64_t r, float* R, ThreadPool& pool);
void compute_residual(const float* W, const LowRank& lr, float* R, ThreadPool& pool);

// Round-to-nearest with the formats.h row quantizers (active instruction set). `what` names the
// tensor in the error for a non-finite value.
QuantizedWeight quantize_rtn(const float* R, int64_t N, int64_t K, Scheme scheme,
                             MxScaleRule mx_rule, ThreadPool& pool, const char* what = "residual");
// Dequantize with the formats.h kernels: out [n, k].
void dequantize(const QuantizedWeight& q, float* out, ThreadPool& pool);

struct RefineOptions {
  Scheme scheme = Scheme::Int4;
  MxScaleRule mx_rule = MxScaleRule::Even;
  int iters = 100;  // most refinements after the initial SVD
  RandomizedSvdOptions svd;
};
struct RefineResult {
  LowRank branch;              // the best L found
  std::vector<double> errors;  // errors[t] = ‖Ŵ − L_t − Q(Ŵ − L_t)‖_F, t = 0 (plain SVD), 1, ...
  int best = 0;                // index of the returned L in `errors`
};
// L ← best rank-r of (Ŵ − Q(Ŵ − L)) while the weight error falls (see the header comment).
RefineResult refine_lowrank(const float* W, int64_t N, int64_t K, int64_t r,
                            const RefineOptions& opts, ThreadPool& pool);

// ---- GPTQ ------------------------------------------------------------------------------------

// H[K, K] += alpha·X̂ᵀX̂ for X̂ [M, K] (gemm_f32, fp32 accumulation).
void hessian_accumulate(float* H, const float* X, int64_t M, int64_t K, ThreadPool& pool,
                        float alpha = 1.0f);

struct GptqOptions {
  Scheme scheme = Scheme::Int4;
  MxScaleRule mx_rule = MxScaleRule::Even;
  double damp = 0.01;   // fraction of mean(diag H) added to the diagonal
  int block_size = 128; // >= 1
  bool act_order = false;
  // Test hook (may be empty): called once per (row, group) when the group's scale is fixed, with
  // the group's current values in original K order (`count` of them: the group size, less in the
  // last group when K is not a multiple of it). Called from the pool's threads, concurrently.
  std::function<void(int64_t row, int64_t group, const float* values, int count)> on_group_fixed;
};

struct GptqResult {
  QuantizedWeight q;
  double objective = 0.0;        // Σ e² = tr((R'−Q)·H_δ·(R'−Q)ᵀ) (see the header comment)
  double output_sq_error = 0.0;  // objective − δ·‖R' − Q‖²_F (clamped at 0): ‖X̂(R'−Q)ᵀ‖² estimate
  double damp_added = 0.0;       // δ actually added to the diagonal
  // min over columns of pivot²/(H_δ)_jj in the Cholesky that GPTQ runs (columns in reverse
  // processing order): the smallest fraction of a column's damped variance that the columns
  // processed after it do not explain. Near δ/(H_jj + δ) when a column is a combination of later
  // ones (a rank-deficient or ill-conditioned H): the case where GPTQ can overfit.
  double min_pivot_ratio = 1.0;
  int64_t dead_columns = 0;
  std::vector<int64_t> order;    // processing order of the columns (identity without act-order)
};

// GPTQ of R [N, K] against H [K, K] (symmetric; only the lower triangle is read). dequant
// (nullable, [N, K]) receives the quantized weights exactly as dequantize(result.q) gives them.
GptqResult gptq_quantize(const float* R, int64_t N, int64_t K, const float* H,
                         const GptqOptions& opts, ThreadPool& pool, float* dequant = nullptr);

// ---- dense linear algebra building blocks (double, row-major), exposed for the tests -------------
namespace linalg {

// Householder QR of A [m, n], m >= n, in place: R in the upper triangle, the reflectors'
// vectors (unit first entry implied) below it, their factors in tau [n].
void householder_qr(int64_t m, int64_t n, double* a, double* tau);
// The thin Q [m, n] of a householder_qr result.
void householder_form_q(int64_t m, int64_t n, const double* a, const double* tau, double* q);
// x ← Q·x for `count` vectors of length m stored one after another (x[c·m + i]), Q [m, m] the full
// product of a householder_qr result's reflectors (a vector with zeros after its first n entries
// becomes the thin Q times its head).
void householder_apply_q(int64_t m, int64_t n, const double* a, const double* tau, int64_t count,
                         double* x);
// Q [m, n] (fp32) with orthonormal columns spanning Y [m, n] (m >= n): Householder QR in double.
// Returns min |R_jj| / max_j ‖y_j‖ (0 for Y = 0): near 0 when Y's columns are (nearly) dependent,
// and then Q's extra columns are arbitrary orthonormal directions.
double orthonormalize(const float* Y, int64_t m, int64_t n, float* Q);

// One-sided Jacobi SVD of A [m, n] (m >= n) given as its columns: at [n][m] (row j = column j).
// On return at's row j is σ_j·u_j and vt [n][n] holds V's columns as rows (row j = v_j), unsorted.
// Returns the sweeps used.
int jacobi_svd_columns(int64_t n, int64_t m, double* at, double* vt);

// Blocked Cholesky A = L·Lᵀ of a symmetric positive definite [n, n] (lower triangle read; L
// written to the lower triangle, the strict upper triangle zeroed). false if not positive definite
// to working precision: a pivot <= 4·n·2⁻⁵² times its original diagonal entry (or not finite).
bool cholesky_lower(int64_t n, double* a, ThreadPool& pool);
// Inverse of a lower-triangular L [n, n] (strict upper triangle ignored) into linv (lower; strict
// upper zeroed).
void invert_lower(int64_t n, const double* l, double* linv, ThreadPool& pool);
// U upper triangular [n, n] with Uᵀ·U = H⁻¹ for symmetric positive definite H (lower triangle read):
// reversed Cholesky and a triangular inverse (no explicit H⁻¹). false if H is not positive definite.
bool inverse_cholesky_upper(int64_t n, const double* h, double* u, ThreadPool& pool);

}  // namespace linalg

}  // namespace svdq
