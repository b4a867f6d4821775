// The SVDQuant low-bit layer (lowbit.h): kernel-format repacking, validation, per-thread work
// buffers, work splitting over the engine pool, and the three low-rank modes. The arithmetic lives
// in the per-ISA kernels (lowbit_portable.cpp, lowbit_avx2.cpp, lowbit_avx512.cpp).
#include "svdquant/lowbit.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "svdquant/amx.h"
#include "svdquant/codecs.h"
#include "svdquant/isa.h"
#include "svdquant/thread_pool.h"

namespace svdq {

// ---- AlignedBytes ------------------------------------------------------------------------------

AlignedBytes::~AlignedBytes() { std::free(p_); }

AlignedBytes& AlignedBytes::operator=(AlignedBytes&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_;
    n_ = o.n_;
    cap_ = o.cap_;
    o.p_ = nullptr;
    o.n_ = o.cap_ = 0;
  }
  return *this;
}

void AlignedBytes::resize(size_t bytes, bool zero) {
  if (bytes > cap_) {
    // 64 extra bytes: vector kernels may read (never use) up to one vector past the end.
    const size_t alloc = (bytes + 64 + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, alloc);
    if (p == nullptr) throw std::bad_alloc();
    std::free(p_);
    p_ = static_cast<uint8_t*>(p);
    cap_ = alloc - 64;
    std::memset(p_, 0, alloc);
  } else if (zero && bytes > 0) {
    std::memset(p_, 0, bytes);
  }
  n_ = bytes;
}

// ---- names -------------------------------------------------------------------------------------

const char* lowbit_scheme_name(LowbitScheme s) {
  switch (s) {
    case LowbitScheme::W4A4: return "w4a4";
    case LowbitScheme::Mxfp4: return "mxfp4";
    case LowbitScheme::Nvfp4: return "nvfp4";
    case LowbitScheme::W8A8: return "w8a8";
    case LowbitScheme::W4A16: return "w4a16";
  }
  return "unknown";
}

const char* lowrank_mode_name(LowRankMode m) {
  switch (m) {
    case LowRankMode::Fused: return "fused";
    case LowRankMode::Side: return "side";
    case LowRankMode::Unfused: return "unfused";
  }
  return "unknown";
}

const LowbitKernels& lowbit_kernels_for(Isa isa) {
#if defined(SVDQ_HAVE_X86_VARIANTS)
  if (isa == Isa::Avx512) return avx512::kLowbitKernels;
  if (isa == Isa::Avx2) return avx2::kLowbitKernels;
#else
  (void)isa;
#endif
  return portable::kLowbitKernels;
}

// ---- sizes -------------------------------------------------------------------------------------

size_t LowbitLayer::bytes() const {
  return w.size() + w_scale.size() + smooth.size() + l_down_t.size() + l_up.size() + bias.size();
}

size_t LowbitLayer::bf16_bytes() const {
  return static_cast<size_t>(n) * static_cast<size_t>(k) * 2 + (has_bias ? static_cast<size_t>(n) * 2 : 0);
}

void LowbitActs::resize(const LowbitLayer& L, int64_t rows) {
  m = rows;
  const size_t mr = static_cast<size_t>(rows);
  if (L.scheme == LowbitScheme::W4A16) {
    codes.resize(0);
    xhat.resize(mr * static_cast<size_t>(L.kp) * 4, false);
  } else {
    // 15 rows of slack: AMX tiles read 16 token rows at a time and drop those past m.
    codes.resize((mr + 15) * static_cast<size_t>(L.kp), false);
    xhat.resize(0);
  }
  scale.resize(mr * static_cast<size_t>(L.groups) * 4, false);
  corr.resize(mr * static_cast<size_t>(L.groups) * 4, false);
  row_scale.resize(L.scheme == LowbitScheme::Nvfp4 ? mr * 4 : 0, false);
  down.resize(mr * static_cast<size_t>(L.rank) * 4, false);
}

// ---- prepare -----------------------------------------------------------------------------------

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("prepare_lowbit_layer: " + what); }

bool finite(float x) { return (f32_bits(x) & 0x7FFFFFFFu) < kF32InfBits; }

void check_finite(const float* p, int64_t count, const char* name) {
  for (int64_t i = 0; i < count; ++i)
    if (!finite(p[i]))
      bad(std::string(name) + " holds a non-finite value at index " + std::to_string(i) +
          ": expected finite values");
}

uint16_t bf16_rne(float x) {
  uint32_t u = f32_bits(x);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace

std::unique_ptr<LowbitLayer> prepare_lowbit_layer(const LowbitLayerDesc& d, const LowbitOptions& opt) {
  const int scheme_id = static_cast<int>(d.scheme);
  if (scheme_id < 0 || scheme_id > 4) bad("unknown scheme " + std::to_string(scheme_id));
  if (d.n < 1 || d.k < 1) bad("n and k must be >= 1 (got n=" + std::to_string(d.n) + ", k=" + std::to_string(d.k) + ")");
  if (d.rank < 0) bad("rank must be >= 0 (got " + std::to_string(d.rank) + ")");
  if (d.n > (int64_t(1) << 31) || d.k > (int64_t(1) << 20) || d.rank > (int64_t(1) << 16))
    bad("shape too large (n=" + std::to_string(d.n) + ", k=" + std::to_string(d.k) + ", rank=" + std::to_string(d.rank) + ")");
  if (d.scheme == LowbitScheme::W8A8 && d.k > 65536)
    bad("w8a8 supports k <= 65536 (one int32 sum per row), got k=" + std::to_string(d.k));
  if (d.w_codes == nullptr) bad("w_codes is null");
  if (d.w_scales == nullptr) bad("w_scales is null");
  if (d.rank > 0 && (d.l_down == nullptr || d.l_up == nullptr)) bad("rank > 0 needs l_down and l_up");
  if (d.scheme == LowbitScheme::Nvfp4 && !(finite(d.w_global_scale) && d.w_global_scale > 0.0f))
    bad("w_global_scale must be finite and > 0 for nvfp4");

  auto L = std::make_unique<LowbitLayer>();
  L->scheme = d.scheme;
  L->n = d.n;
  L->k = d.k;
  L->rank = d.rank;
  L->act_mx_rule = opt.act_mx_rule;
  L->lowrank_bf16 = opt.lowrank_bf16;
  L->w_global_scale = d.scheme == LowbitScheme::Nvfp4 ? d.w_global_scale : 1.0f;
  L->panels = (d.n + kLowbitPanel - 1) / kLowbitPanel;
  L->rank_pad = (d.rank + 15) / 16 * 16;
  const int64_t P = L->panels;
  const int64_t N = d.n, K = d.k;

  int64_t cgroup = 0;  // canonical group
  switch (d.scheme) {
    case LowbitScheme::W4A4:
    case LowbitScheme::W4A16: cgroup = kInt4Group; L->offset = d.scheme == LowbitScheme::W4A4 ? 8 : 0; break;
    case LowbitScheme::Mxfp4: cgroup = kMxfp4Group; L->offset = 12; break;
    case LowbitScheme::Nvfp4: cgroup = kNvfp4Group; L->offset = 12; break;
    case LowbitScheme::W8A8: cgroup = 0; L->offset = 128; break;
  }
  if (d.scheme == LowbitScheme::W8A8) {
    L->kp = padded_k(K, 64);
    L->group = L->kp;
    L->groups = 1;
  } else {
    L->kp = padded_k(K, cgroup);
    L->group = cgroup;
    L->groups = L->kp / cgroup;
  }
  const int64_t kp = L->kp, G = L->groups;

  // Weights and scales.
  if (d.scheme == LowbitScheme::W8A8) {
    const int8_t* q = static_cast<const int8_t*>(d.w_codes);
    const float* s = static_cast<const float*>(d.w_scales);
    check_finite(s, N, "w_scales");
    L->w.resize(static_cast<size_t>(P * kp * 16));
    uint8_t* w = L->w.as<uint8_t>();
    std::memset(w, 128, static_cast<size_t>(P * kp * 16));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t p = n / 16, c = n % 16;
      for (int64_t kk = 0; kk < K; ++kk) {
        const int64_t j = kk / 4, t = kk % 4;
        w[(p * (kp / 4) + j) * 64 + 4 * c + t] = static_cast<uint8_t>(q[n * K + kk] + 128);
      }
    }
    L->w_scale.resize(static_cast<size_t>(P * 16 * 4));
    float* ws = L->w_scale.as<float>();
    for (int64_t n = 0; n < N; ++n) ws[n] = s[n];
  } else {
    const uint8_t* q = static_cast<const uint8_t*>(d.w_codes);
    const int64_t row_bytes = kp / 2;
    L->w.resize(static_cast<size_t>(P * kp * 8));
    uint8_t* w = L->w.as<uint8_t>();
    const bool int4 = d.scheme == LowbitScheme::W4A4 || d.scheme == LowbitScheme::W4A16;
    // Padding (columns past n): INT4 zero is stored as 8 (q+8); E2M1 zero is code 0.
    std::memset(w, int4 ? 0x88 : 0x00, static_cast<size_t>(P * kp * 8));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t p = n / 16, c = n % 16;
      const uint8_t* qr = q + n * row_bytes;
      uint8_t* wp = w + p * kp * 8;
      for (int64_t kk = 0; kk < kp; ++kk) {
        const uint8_t byte = qr[kk / 2];
        uint8_t code = (kk & 1) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0xF);
        if (int4) code ^= 8;  // two's complement nibble -> q + 8
        const int64_t j = kk / 8, t = kk % 8;
        uint8_t& dst = wp[j * 64 + 4 * c + (t & 3)];
        if (t < 4) dst = static_cast<uint8_t>((dst & 0xF0) | code);
        else dst = static_cast<uint8_t>((dst & 0x0F) | (code << 4));
      }
    }
    if (int4) {
      const float* s = static_cast<const float*>(d.w_scales);
      check_finite(s, N * G, "w_scales");
      L->w_scale.resize(static_cast<size_t>(P * G * 16 * 4));
      float* ws = L->w_scale.as<float>();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t g = 0; g < G; ++g) ws[((n / 16) * G + g) * 16 + n % 16] = s[n * G + g];
    } else {
      const uint8_t* s = static_cast<const uint8_t*>(d.w_scales);
      L->w_scale.resize(static_cast<size_t>(P * G * 16));
      uint8_t* ws = L->w_scale.as<uint8_t>();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t g = 0; g < G; ++g) {
          const uint8_t b = s[n * G + g];
          const bool nan = d.scheme == LowbitScheme::Mxfp4 ? b == kE8M0Nan : (b & 0x7F) == kE4M3Nan;
          if (nan)
            bad(std::string("w_scales holds a NaN scale (row ") + std::to_string(n) + ", group " +
                std::to_string(g) + "): expected finite scales");
          ws[((n / 16) * G + g) * 16 + n % 16] = b;
        }
    }
  }

  // λ.
  if (d.smooth != nullptr) {
    check_finite(d.smooth, K, "smooth");
    for (int64_t i = 0; i < K; ++i)
      if (d.smooth[i] == 0.0f) bad("smooth holds a zero at index " + std::to_string(i) + ": expected non-zero values");
    L->has_smooth = true;
    L->smooth.resize(static_cast<size_t>(K * 4));
    std::memcpy(L->smooth.as<float>(), d.smooth, static_cast<size_t>(K * 4));
  }

  // Low-rank factors.
  if (d.rank > 0) {
    const int64_t R = d.rank, RP = L->rank_pad;
    check_finite(d.l_down, R * K, "l_down");
    check_finite(d.l_up, N * R, "l_up");
    const size_t esz = opt.lowrank_bf16 ? 2 : 4;
    L->l_down_t.resize(static_cast<size_t>(kp * RP) * esz);
    L->l_up.resize(static_cast<size_t>(P * R * 16) * esz);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t kk = 0; kk < K; ++kk) {
        const float v = d.l_down[r * K + kk];
        // Chunk-major: [RP/16][kp][16], so a 16-column chunk of D reads one contiguous stream.
        const int64_t idx = ((r / 16) * kp + kk) * 16 + r % 16;
        if (opt.lowrank_bf16) L->l_down_t.as<uint16_t>()[idx] = bf16_rne(v);
        else L->l_down_t.as<float>()[idx] = v;
      }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t r = 0; r < R; ++r) {
        const float v = d.l_up[n * R + r];
        const int64_t idx = ((n / 16) * R + r) * 16 + n % 16;
        if (opt.lowrank_bf16) L->l_up.as<uint16_t>()[idx] = bf16_rne(v);
        else L->l_up.as<float>()[idx] = v;
      }
  }

  if (d.bias != nullptr) {
    check_finite(d.bias, N, "bias");
    L->has_bias = true;
    L->bias.resize(static_cast<size_t>(P * 16 * 4));
    std::memcpy(L->bias.as<float>(), d.bias, static_cast<size_t>(N * 4));
  }
  return L;
}

// ---- driver ------------------------------------------------------------------------------------

namespace {

struct Workspace {
  LowbitActs acts;
  AlignedBytes u;  // U = D·L_upᵀ for the side and unfused modes, [M][16·P]
  std::vector<LowbitScratch> scratch;
};

// Work buffers kept for reuse by later calls: one free list for every calling thread (the libuv
// workers that run forwards take turns), so the buffers are sized and faulted in once rather than
// once per worker thread; concurrent calls each take their own.
class WorkspacePool {
 public:
  std::unique_ptr<Workspace> acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) return std::make_unique<Workspace>();
    std::unique_ptr<Workspace> w = std::move(free_.back());
    free_.pop_back();
    return w;
  }
  void release(std::unique_ptr<Workspace> w) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(w));
  }
  void clear() {
    std::vector<std::unique_ptr<Workspace>> drop;
    std::lock_guard<std::mutex> lock(mutex_);
    drop.swap(free_);
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Workspace>> free_;
};

WorkspacePool& workspace_pool() {
  static WorkspacePool* pool = new WorkspacePool();  // never destroyed: usable until exit
  return *pool;
}

// A workspace for the duration of one call.
class WorkspaceLease {
 public:
  WorkspaceLease() : w_(workspace_pool().acquire()) {}
  ~WorkspaceLease() { workspace_pool().release(std::move(w_)); }
  WorkspaceLease(const WorkspaceLease&) = delete;
  WorkspaceLease& operator=(const WorkspaceLease&) = delete;
  Workspace& operator*() const { return *w_; }

 private:
  std::unique_ptr<Workspace> w_;
};

void size_scratch(const LowbitLayer& L, std::vector<LowbitScratch>& s, int threads) {
  if (static_cast<int>(s.size()) < threads) s.resize(static_cast<size_t>(threads));
  const size_t kp = static_cast<size_t>(L.kp), G = static_cast<size_t>(L.groups);
  for (int t = 0; t < threads; ++t) {
    LowbitScratch& x = s[static_cast<size_t>(t)];
    x.rows.resize(kLowbitRowBlock * kp * 4, false);
    x.codes.resize(kp + G * 4 + 64, false);
    x.wexp.resize(kLowbitNv * kp * (L.scheme == LowbitScheme::W4A16 ? 64 : 16), false);  // w4a16: fp32
    x.wscale.resize(kLowbitNv * G * 16 * 4, false);
    x.amx_acc.resize(static_cast<size_t>((kLowbitMc + 15) / 16 + 1) * kLowbitNv * 256 * 4, false);
  }
}

Isa checked_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(isa_choice().detected))
    throw std::invalid_argument(std::string("lowbit: instruction set ") + isa_name(isa) +
                                " is not supported by this CPU (" + isa_name(isa_choice().detected) + ")");
  return isa;
}

void check_call(const LowbitLayer& L, const float* X, int64_t M, const float* Y) {
  if (M < 0) throw std::invalid_argument("lowbit_forward: M must be >= 0, got " + std::to_string(M));
  if (M > 0 && (X == nullptr || Y == nullptr)) throw std::invalid_argument("lowbit_forward: X and Y must not be null");
  (void)L;
}

// Work split of the GEMM: a list of (row range, panel range) tiles.
struct Tile {
  int64_t m0, m1, p0, p1;
};

constexpr int64_t kSmallM = 4;  // up to this many tokens: one row block, split over panels only

// Token rows per micro-tile of the GEMM for `isa`: AMX tiles hold 16 rows, the VNNI tile kLowbitMr.
int64_t tile_rows(const LowbitLayer& L, Isa isa) {
  return isa == Isa::Avx512 && L.scheme != LowbitScheme::W4A16 && amx_enabled() ? 16 : kLowbitMr;
}

std::vector<Tile> plan_tiles(const LowbitLayer& L, int64_t M, int threads, int64_t mr) {
  std::vector<Tile> tiles;
  const int64_t P = L.panels;
  if (M <= kSmallM) {
    // GEMV-like: stream the weights once, split over columns into long contiguous panel ranges
    // (4 per thread, for balance).
    const int64_t chunk = std::max<int64_t>(1, (P + 4 * threads - 1) / (4 * threads));
    for (int64_t p = 0; p < P; p += chunk) tiles.push_back({0, M, p, std::min(P, p + chunk)});
    return tiles;
  }
  // Token chunks of at most kLowbitMc rows, balanced (M = 1024 gives 4 × 210 + 184 rather than
  // 4 × 252 + 16: every chunk pays one weight expansion per panel pair), in whole micro-tiles.
  const int64_t nmc = (M + kLowbitMc - 1) / kLowbitMc;
  const int64_t mc = ((M + nmc - 1) / nmc + mr - 1) / mr * mr;
  const int64_t mchunks = (M + mc - 1) / mc;
  const int64_t pgroups = (P + kLowbitNv - 1) / kLowbitNv;
  // Aim at >= 8 tiles per thread (dynamic balancing), each at least one NV group wide.
  const int64_t want = 8 * static_cast<int64_t>(threads);
  int64_t gpt = std::max<int64_t>(1, (pgroups * mchunks) / std::max<int64_t>(1, want));
  gpt = std::min<int64_t>(gpt, 8);
  for (int64_t mi = 0; mi < mchunks; ++mi) {
    const int64_t m0 = mi * mc, m1 = std::min(M, m0 + mc);
    for (int64_t g = 0; g < pgroups; g += gpt) {
      const int64_t p0 = g * kLowbitNv, p1 = std::min(P, (g + gpt) * kLowbitNv);
      tiles.push_back({m0, m1, p0, p1});
    }
  }
  return tiles;
}

// Row blocks for quantize_act / the down pass.
int64_t row_blocks(int64_t M) { return (M + kLowbitRowBlock - 1) / kLowbitRowBlock; }

void run_quantize(const LowbitKernels& kern, ThreadPool& pool, const LowbitLayer& L, const float* X,
                  int64_t M, LowbitActs& A, bool with_down, std::vector<LowbitScratch>& scratch) {
  pool.parallel_for(row_blocks(M), [&](int64_t b, int thread) {
    const int64_t m0 = b * kLowbitRowBlock, m1 = std::min(M, m0 + kLowbitRowBlock);
    kern.quantize_rows(L, X, m0, m1, A, with_down, scratch[static_cast<size_t>(thread)]);
  });
}

void forward_impl(const LowbitLayer& L, const float* X, int64_t M, float* Y, LowRankMode mode,
                  int threads, Isa isa) {
  check_call(L, X, M, Y);
  if (M == 0) return;
  const LowbitKernels& kern = lowbit_kernels_for(checked_isa(isa));
  ThreadPool& pool = shared_pool(threads);
  const int nthreads = pool.size();
  const WorkspaceLease lease;
  Workspace& ws = *lease;
  size_scratch(L, ws.scratch, nthreads);
  LowbitActs& A = ws.acts;
  A.resize(L, M);
  const bool branch = L.rank > 0;
  const std::vector<Tile> tiles = plan_tiles(L, M, nthreads, tile_rows(L, isa));
  const int64_t ntiles = static_cast<int64_t>(tiles.size());

  if (mode == LowRankMode::Fused || !branch) {
    if (branch && M <= kSmallM && nthreads > 1 && L.rank_pad > 16) {
      // A few tokens: the codes on one task, D split into 16-column chunks over the others (each
      // D element is still one k-ordered chain, so the result does not depend on the split).
      const int64_t chunks = L.rank_pad / 16;
      float* Dw = A.down.as<float>();
      pool.parallel_for(1 + chunks, [&](int64_t t, int thread) {
        LowbitScratch& sc = ws.scratch[static_cast<size_t>(thread)];
        if (t == 0) kern.quantize_rows(L, X, 0, M, A, false, sc);
        else kern.down_rows(L, X, 0, M, (t - 1) * 16, t * 16, Dw, sc);
      });
    } else {
      run_quantize(kern, pool, L, X, M, A, branch, ws.scratch);
    }
    pool.parallel_for(ntiles, [&](int64_t t, int thread) {
      const Tile& tl = tiles[static_cast<size_t>(t)];
      kern.gemm(L, A, tl.m0, tl.m1, tl.p0, tl.p1, Y, L.n, true, ws.scratch[static_cast<size_t>(thread)]);
    });
    return;
  }

  const int64_t ldu = L.panels * kLowbitPanel;
  ws.u.resize(static_cast<size_t>(M * ldu) * 4, false);
  float* U = ws.u.as<float>();
  const float* D = A.down.as<float>();
  // Branch tiles: rows in blocks of 64, panels in chunks of 16 (U is written once per element).
  std::vector<Tile> up_tiles;
  for (int64_t m0 = 0; m0 < M; m0 += 64)
    for (int64_t p0 = 0; p0 < L.panels; p0 += 16)
      up_tiles.push_back({m0, std::min(M, m0 + 64), p0, std::min(L.panels, p0 + 16)});
  const int64_t nup = static_cast<int64_t>(up_tiles.size());

  if (mode == LowRankMode::Side) {
    run_quantize(kern, pool, L, X, M, A, true, ws.scratch);
    // The branch tasks come first: the first threads to take tasks start on them while the others
    // start on the GEMM; all of them continue with whatever remains.
    pool.parallel_for(nup + ntiles, [&](int64_t t, int thread) {
      if (t < nup) {
        const Tile& u = up_tiles[static_cast<size_t>(t)];
        kern.lowrank_up(L, D, u.m0, u.m1, u.p0, u.p1, U, ldu);
      } else {
        const Tile& tl = tiles[static_cast<size_t>(t - nup)];
        kern.gemm(L, A, tl.m0, tl.m1, tl.p0, tl.p1, Y, L.n, false, ws.scratch[static_cast<size_t>(thread)]);
      }
    });
  } else {  // Unfused: quantize, down-projection, GEMM, up-projection: separate passes.
    run_quantize(kern, pool, L, X, M, A, false, ws.scratch);
    float* Dw = A.down.as<float>();
    pool.parallel_for(row_blocks(M), [&](int64_t b, int thread) {
      const int64_t m0 = b * kLowbitRowBlock, m1 = std::min(M, m0 + kLowbitRowBlock);
      kern.down_rows(L, X, m0, m1, 0, L.rank_pad, Dw, ws.scratch[static_cast<size_t>(thread)]);
    });
    pool.parallel_for(ntiles, [&](int64_t t, int thread) {
      const Tile& tl = tiles[static_cast<size_t>(t)];
      kern.gemm(L, A, tl.m0, tl.m1, tl.p0, tl.p1, Y, L.n, false, ws.scratch[static_cast<size_t>(thread)]);
    });
    pool.parallel_for(nup, [&](int64_t t, int) {
      const Tile& u = up_tiles[static_cast<size_t>(t)];
      kern.lowrank_up(L, D, u.m0, u.m1, u.p0, u.p1, U, ldu);
    });
  }
  pool.parallel_for(nup, [&](int64_t t, int) {
    const Tile& u = up_tiles[static_cast<size_t>(t)];
    kern.finish(L, U, ldu, u.m0, u.m1, u.p0, u.p1, Y, L.n);
  });
}

}  // namespace

void quantize_act(const LowbitLayer& L, const float* X, int64_t M, LowbitActs& acts, bool with_down,
                  int threads, Isa isa) {
  if (M < 0) throw std::invalid_argument("quantize_act: M must be >= 0");
  if (M > 0 && X == nullptr) throw std::invalid_argument("quantize_act: X must not be null");
  const LowbitKernels& kern = lowbit_kernels_for(checked_isa(isa));
  ThreadPool& pool = shared_pool(threads);
  const WorkspaceLease lease;
  Workspace& ws = *lease;
  size_scratch(L, ws.scratch, pool.size());
  acts.resize(L, M);
  if (M == 0) return;
  run_quantize(kern, pool, L, X, M, acts, with_down && L.rank > 0, ws.scratch);
}

void quantize_act(const LowbitLayer& L, const float* X, int64_t M, LowbitActs& acts, bool with_down,
                  int threads) {
  quantize_act(L, X, M, acts, with_down, threads, isa_choice().active);
}

void gemm_lowbit(const LowbitLayer& L, const LowbitActs& A, float* Y, int threads, Isa isa) {
  if (A.m > 0 && Y == nullptr) throw std::invalid_argument("gemm_lowbit: Y must not be null");
  if (A.m == 0) return;
  const LowbitKernels& kern = lowbit_kernels_for(checked_isa(isa));
  ThreadPool& pool = shared_pool(threads);
  const WorkspaceLease lease;
  Workspace& ws = *lease;
  size_scratch(L, ws.scratch, pool.size());
  const std::vector<Tile> tiles = plan_tiles(L, A.m, pool.size(), tile_rows(L, isa));
  pool.parallel_for(static_cast<int64_t>(tiles.size()), [&](int64_t t, int thread) {
    const Tile& tl = tiles[static_cast<size_t>(t)];
    kern.gemm(L, A, tl.m0, tl.m1, tl.p0, tl.p1, Y, L.n, true, ws.scratch[static_cast<size_t>(thread)]);
  });
}

void gemm_lowbit(const LowbitLayer& L, const LowbitActs& A, float* Y, int threads) {
  gemm_lowbit(L, A, Y, threads, isa_choice().active);
}

void lowbit_forward(const LowbitLayer& L, const float* X, int64_t M, float* Y, LowRankMode mode,
                    int threads, Isa isa) {
  forward_impl(L, X, M, Y, mode, threads, isa);
}

void lowbit_forward(const LowbitLayer& L, const float* X, int64_t M, float* Y, LowRankMode mode,
                    int threads) {
  forward_impl(L, X, M, Y, mode, threads, isa_choice().active);
}

void lowbit_release_workspace() { workspace_pool().clear(); }

}  // namespace svdq
