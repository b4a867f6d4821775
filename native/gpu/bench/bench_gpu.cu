// GPU benchmark of the SVDQuant layer (build-gpu/bench_gpu_cuda, build-gpu/bench_gpu_hip).
//   bench_gpu_<platform> [--schemes=mxfp4,w4a4] [--rank=32] [--iters=7] [--warmup=3] [--quick]
//                        [--ms=1,256,4096] [--kn=3072x3072,3072x12288]
// Times the whole layer (quantize_act + GEMM + low-rank branch) with events on the layer's stream,
// for each scheme, M in {1, 256, 1024, 4096} and (K, N) in {(3072, 3072), (3072, 12288),
// (12288, 3072)}: low-rank modes fused / side / unfused at the given rank, and rank 0. Prints a
// Markdown table and one JSON line per measurement (median of >= 5 timed runs after warm-up), with
// the same fields as bench/gpu/torch_bf16.py (the cuBLAS / rocBLAS bf16 baseline), so a run on a GPU
// can compute the speed-up. Weights are random codes and scales (timing does not depend on values).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../gpu_debug.h"
#include "../gpu_layer.h"
#include "svdquant/gpu_abi.h"

namespace {

struct Rng {
  uint64_t s = 88172645463325252ull;
  uint32_t next() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return static_cast<uint32_t>(s >> 11); }
  float sym() { return (next() & 0xFFFFFF) / 8388608.0f - 1.0f; }
};

const char* arg(int argc, char** argv, const char* name) {
  const size_t n = strlen(name);
  for (int i = 1; i < argc; ++i)
    if (strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const svdq_gpu_api* api = svdq_gpu_get_api();
  svdq_gpu_status st;
  int count = 0;
  if (api->device_count(&count, &st) != SVDQ_GPU_OK || count == 0) {
    printf("no GPU: %s — GPU benchmark skipped\n", count == 0 && st.code == SVDQ_GPU_OK ? "the driver reports no device" : st.message);
    return 0;
  }
  svdq_gpu_device_info info;
  api->device_info(0, &info, &st);
  const std::string schemes = arg(argc, argv, "--schemes") ? arg(argc, argv, "--schemes") : "mxfp4,w4a4";
  const int rank = arg(argc, argv, "--rank") ? atoi(arg(argc, argv, "--rank")) : 32;
  const int iters = std::max(5, arg(argc, argv, "--iters") ? atoi(arg(argc, argv, "--iters")) : 7);
  const int warmup = arg(argc, argv, "--warmup") ? atoi(arg(argc, argv, "--warmup")) : 3;
  bool quick = false;
  for (int i = 1; i < argc; ++i) quick = quick || strcmp(argv[i], "--quick") == 0;
  std::vector<int64_t> Ms = {1, 256, 1024, 4096};
  std::vector<std::pair<int64_t, int64_t>> KN = {{3072, 3072}, {3072, 12288}, {12288, 3072}};
  if (quick) { Ms = {1, 256}; KN = {{3072, 3072}}; }
  if (const char* v = arg(argc, argv, "--ms")) {
    Ms.clear();
    for (const char* p = v; *p != '\0';) {
      Ms.push_back(strtoll(p, const_cast<char**>(&p), 10));
      if (*p == ',') ++p; else break;
    }
  }
  if (const char* v = arg(argc, argv, "--kn")) {
    KN.clear();
    for (const char* p = v; *p != '\0';) {
      const int64_t k = strtoll(p, const_cast<char**>(&p), 10);
      if (*p != 'x') break;
      const int64_t n = strtoll(p + 1, const_cast<char**>(&p), 10);
      KN.push_back({k, n});
      if (*p == ',') ++p; else break;
    }
  }
  printf("# svdquant GPU layer benchmark — %s (%s), %s backend, matrix path %d\n\n", info.name, info.arch, api->platform,
         info.matrix_path);
  printf("| scheme | M | K | N | rank | mode | median ms | TOPS |\n|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> json;
  Rng rng;
  for (const char* sname : {"w4a4", "mxfp4", "nvfp4", "w8a8", "w4a16"}) {
    if (schemes.find(sname) == std::string::npos) continue;
    int scheme = 0;
    while (strcmp(svdq_gpu::scheme_name(scheme), sname) != 0) ++scheme;
    for (auto [K, N] : KN) {
      for (int r : {rank, 0}) {
        const int grp = scheme == 3 ? 0 : svdq_gpu::scheme_group(scheme);
        const int64_t G = grp == 0 ? 1 : (K + grp - 1) / grp;
        const int64_t kpc = grp == 0 ? K : G * grp;
        std::vector<uint8_t> codes(static_cast<size_t>(scheme == 3 ? N * K : N * kpc / 2));
        for (auto& c : codes) c = static_cast<uint8_t>(rng.next());
        std::vector<float> fs(static_cast<size_t>(N * G));
        std::vector<uint8_t> bs(static_cast<size_t>(N * G));
        for (auto& v : fs) v = 0.01f + 0.001f * rng.sym();
        for (auto& v : bs) v = static_cast<uint8_t>(scheme == 1 ? 120 + rng.next() % 8 : 0x30 + rng.next() % 8);
        std::vector<float> lam(static_cast<size_t>(K)), ld(static_cast<size_t>(r * K)), lu(static_cast<size_t>(N * r)), bias(static_cast<size_t>(N));
        for (auto& v : lam) v = 1.0f + 0.5f * rng.sym();
        for (auto& v : ld) v = 0.01f * rng.sym();
        for (auto& v : lu) v = 0.01f * rng.sym();
        for (auto& v : bias) v = rng.sym();
        svdq_gpu_layer_desc d;
        memset(&d, 0, sizeof d);
        d.scheme = scheme; d.n = N; d.k = K; d.rank = r;
        d.w_codes = codes.data();
        d.w_scales = (scheme == 1 || scheme == 2) ? static_cast<const void*>(bs.data()) : static_cast<const void*>(fs.data());
        d.w_global_scale = 1.0f; d.smooth = lam.data(); d.l_down = r ? ld.data() : nullptr; d.l_up = r ? lu.data() : nullptr;
        d.bias = bias.data(); d.act_mx_rule = 1;
        svdq_gpu_layer* layer = nullptr;
        if (api->layer_create(0, &d, &layer, &st) != SVDQ_GPU_OK) {
          printf("layer_create failed: %s\n", st.message);
          return 1;
        }
        for (int64_t M : Ms) {
          svdq_gpu_buffer *xb = nullptr, *yb = nullptr;
          if (api->buffer_alloc(0, static_cast<size_t>(M * K) * 4, &xb, &st) != SVDQ_GPU_OK ||
              api->buffer_alloc(0, static_cast<size_t>(M * N) * 4, &yb, &st) != SVDQ_GPU_OK) {
            printf("buffer_alloc failed: %s\n", st.message);
            return 1;
          }
          std::vector<float> x(static_cast<size_t>(M * K));
          for (auto& v : x) v = rng.sym();
          api->buffer_upload(xb, 0, x.data(), x.size() * 4, &st);
          const int modes = r == 0 ? 1 : 3;
          for (int mode = 0; mode < modes; ++mode) {
            std::vector<float> ms(static_cast<size_t>(iters));
            if (svdq_gpu_debug_time_forward(layer, xb, M, yb, mode, warmup, iters, ms.data(), &st) != SVDQ_GPU_OK) {
              printf("forward failed: %s\n", st.message);
              return 1;
            }
            std::sort(ms.begin(), ms.end());
            const double med = ms[ms.size() / 2];
            const double tops = 2.0 * M * K * N / (med * 1e-3) / 1e12;
            const char* mname = mode == 0 ? "fused" : (mode == 1 ? "side" : "unfused");
            printf("| %s | %lld | %lld | %lld | %d | %s | %.4f | %.1f |\n", sname, (long long)M, (long long)K,
                   (long long)N, r, mname, med, tops);
            char j[512];
            snprintf(j, sizeof j,
                     "{\"bench\":\"svdquant_gpu\",\"platform\":\"%s\",\"device\":\"%s\",\"scheme\":\"%s\",\"m\":%lld,"
                     "\"k\":%lld,\"n\":%lld,\"rank\":%d,\"mode\":\"%s\",\"median_ms\":%.5f,\"runs\":%d,\"tops\":%.3f}",
                     api->platform, info.name, sname, (long long)M, (long long)K, (long long)N, r, mname, med, iters, tops);
            json.push_back(j);
          }
          api->buffer_free(xb);
          api->buffer_free(yb);
        }
        api->layer_destroy(layer);
      }
    }
  }
  printf("\n");
  for (const auto& j : json) printf("%s\n", j.c_str());
  return 0;
}
