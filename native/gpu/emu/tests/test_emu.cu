// Self-tests of the GPU emulator (build-gpu/emu-<flavour>/test_emu), in the CUDA dialect like the
// kernels:
//   - each matrix instruction of the flavour on spot vectors worked out by hand from the vendors'
//     documents (PTX ISA fragment tables; AMD's matrix instruction calculator): one non-zero element
//     of A and of B, placed in the lane/register/byte the document gives, must land in the lane and
//     register of D the document gives, and nowhere else;
//   - shuffles (the xor rule with a width), barriers, dynamic shared memory;
//   - the race guard: a kernel that reads a neighbour's shared-memory word without a barrier gives
//     the intended result in sequential order and a wrong one under random orders, while the same
//     kernel with the barrier is right in every order;
//   - findings: threads at different barriers, lanes of a warp at different collectives, and too
//     much dynamic shared memory fail the launch.
// Ends with "N passed, N failed".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "../../gpu_codecs.h"
#include "../../gpu_compat.h"
#include "../../gpu_matrix.h"
#include "../../gpu_unpack.h"

namespace svdq_emu {
void set_schedule_for_tests(const char* spec);  // scheduler.cpp: as SVDQ_EMU_SCHEDULE
void clear_errors_for_tests();                   // runtime.cpp: forget a sticky launch failure
}  // namespace svdq_emu

namespace {

int g_passed = 0, g_failed = 0;

void check(bool cond, const std::string& what) {
  if (cond) {
    ++g_passed;
  } else {
    ++g_failed;
    printf("FAIL %s\n", what.c_str());
  }
}

constexpr int W = SVDQ_EMU_WARP;

// One element of A and one of B: (lane, register, byte) and its value; D's expected place.
struct Spot {
  int a_lane, a_reg, a_byte, a_val;
  int b_lane, b_reg, b_byte, b_val;
  int d_lane, d_reg;
};

uint32_t put(int byte, int v) { return static_cast<uint32_t>(static_cast<uint8_t>(v)) << (8 * byte); }

// out[lane][16]: the lane's accumulators after one instruction with C = 7 everywhere.
__global__ void matrix_kernel(int which, Spot s, int32_t* out) {
  const int lane = static_cast<int>(threadIdx.x) % W;
  uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  if (lane == s.a_lane) a[s.a_reg] = put(s.a_byte, s.a_val);
  if (lane == s.b_lane) b[s.b_reg] = put(s.b_byte, s.b_val);
  int32_t c[16];
  for (int i = 0; i < 16; ++i) c[i] = 7;
#if SVDQ_DEVICE_MMA == 1
  if (which == 0) gpu_mma_m16n8k32_s8(c, a, b);
  if (which == 1) gpu_mma_m16n8k16_s8(c, a, b);
#endif
#if SVDQ_DEVICE_MMA >= 2
  const long a64 = static_cast<long>(a[0] | (static_cast<uint64_t>(a[1]) << 32));
  const long b64 = static_cast<long>(b[0] | (static_cast<uint64_t>(b[1]) << 32));
  v4i32 c4 = {7, 7, 7, 7};
#if SVDQ_DEVICE_MMA == 2
  if (which == 2) c4 = gpu_mfma_i32_16x16x16_i8(static_cast<int>(a[0]), static_cast<int>(b[0]), c4);
#else
  if (which == 3) c4 = gpu_mfma_i32_16x16x32_i8(a64, b64, c4);
  if (which == 4) {
    v16i32 c16;
    for (int i = 0; i < 16; ++i) c16[i] = 7;
    c16 = gpu_mfma_i32_32x32x16_i8(a64, b64, c16);
    for (int i = 0; i < 16; ++i) c[i] = c16[i];
  }
#endif
  if (which == 2 || which == 3)
    for (int i = 0; i < 4; ++i) c[i] = c4[i];
  (void)a64;
  (void)b64;
#endif
  for (int i = 0; i < 16; ++i) out[lane * 16 + i] = c[i];
}

void test_spot(int which, const char* name, int dregs, const Spot& s) {
  std::vector<int32_t> out(static_cast<size_t>(W * 16), -1);
  int32_t* d = nullptr;
  gpuMalloc(reinterpret_cast<void**>(&d), out.size() * 4);
  SVDQ_LAUNCH(1, W, 0, nullptr, matrix_kernel)(which, s, d);
  check(gpuGetLastError() == gpuSuccess, std::string(name) + " launches");
  memcpy(out.data(), d, out.size() * 4);
  gpuFree(d);
  int bad = 0;
  for (int lane = 0; lane < W; ++lane)
    for (int r = 0; r < dregs; ++r) {
      const int want = (lane == s.d_lane && r == s.d_reg) ? 7 + s.a_val * s.b_val : 7;
      if (out[static_cast<size_t>(lane * 16 + r)] != want) ++bad;
    }
  char what[200];
  snprintf(what, sizeof what, "%s: A(lane %d, reg %d, byte %d)·B(lane %d, reg %d, byte %d) lands in D(lane %d, reg %d) only",
           name, s.a_lane, s.a_reg, s.a_byte, s.b_lane, s.b_reg, s.b_byte, s.d_lane, s.d_reg);
  check(bad == 0, what);
}

void test_matrix() {
#if SVDQ_DEVICE_MMA == 1
  // PTX m16n8k32 .s8. A[10][21]: row 10 = groupID 2 + 8, col 21 = 16 + threadID_in_group 1·4 + 1
  // → a13 (register 3, byte 1) of lane 2·4 + 1 = 9. B[21][5]: col 5 = groupID, row 21 = 16 + 1·4 + 1
  // → b5 (register 1, byte 1) of lane 5·4 + 1 = 21. D[10][5]: row groupID 2 + 8, col 5 = 2·2 + 1 →
  // c3 of lane 2·4 + 2 = 10.
  test_spot(0, "mma.m16n8k32 A[10][21]·B[21][5]", 4, {9, 3, 1, 3, 21, 1, 1, -2, 10, 3});
  // A[7][30]: groupID 7, col 30 = 16 + 3·4 + 2 → a10 (register 2, byte 2) of lane 31. B[30][0]: b6
  // (register 1, byte 2) of lane 0·4 + 3 = 3. D[7][0]: c0 of lane 28.
  test_spot(0, "mma.m16n8k32 A[7][30]·B[30][0]", 4, {31, 2, 2, -5, 3, 1, 2, 11, 28, 0});
  // PTX m16n8k16 .s8. A[12][6]: row 12 = groupID 4 + 8, col 6 = 1·4 + 2 → a6 (register 1, byte 2) of
  // lane 17. B[6][3]: row 6 = 1·4 + 2 → b2 (register 0, byte 2) of lane 3·4 + 1 = 13. D[12][3]: row
  // groupID 4 + 8, col 3 = 1·2 + 1 → c3 of lane 17.
  test_spot(1, "mma.m16n8k16 A[12][6]·B[6][3]", 4, {17, 1, 2, 9, 13, 0, 2, 4, 17, 3});
  // A[2][5]: row groupID 2, col 5 = 1·4 + 1 → a1 (register 0, byte 1) of lane 9. B[5][1]: row 5 = 1·4 + 1
  // → b1 of lane 1·4 + 1 = 5. D[2][1]: row groupID 2, col 1 = 0·2 + 1 → c1 of lane 8.
  test_spot(1, "mma.m16n8k16 A[2][5]·B[5][1]", 4, {9, 0, 1, -4, 5, 0, 1, 6, 8, 1});
#elif SVDQ_DEVICE_MMA == 2
  // Calculator, CDNA2 v_mfma_i32_16x16x16i8. A[5][9]: lane 16·floor(9/4) + 5 = 37, bits of byte 9%4 = 1.
  // B[9][12]: lane 16·2 + 12 = 44, byte 1. D[5][12]: GPR 5%4 = 1, lane 16·floor(5/4) + 12 = 28.
  test_spot(2, "v_mfma_i32_16x16x16i8 A[5][9]·B[9][12]", 4, {37, 0, 1, 6, 44, 0, 1, -7, 28, 1});
  // A[15][3]: lane 15, byte 3. B[3][0]: lane 0, byte 3. D[15][0]: GPR 3, lane 16·3 = 48.
  test_spot(2, "v_mfma_i32_16x16x16i8 A[15][3]·B[3][0]", 4, {15, 0, 3, -128, 0, 0, 3, -128, 48, 3});
#elif SVDQ_DEVICE_MMA == 3
  // Calculator, CDNA3 v_mfma_i32_16x16x32_i8. A[5][13]: GPR floor(13/4)%2 = 1, byte 13%4 = 1, lane
  // 16·floor(13/8) + 5 = 21. B[13][2]: GPR 1, byte 1, lane 16 + 2 = 18. D[5][2]: GPR 1, lane 16 + 2 = 18.
  test_spot(3, "v_mfma_i32_16x16x32_i8 A[5][13]·B[13][2]", 4, {21, 1, 1, 3, 18, 1, 1, 5, 18, 1});
  // A[15][30]: GPR 7%2 = 1, byte 2, lane 16·3 + 15 = 63. B[30][0]: GPR 1, byte 2, lane 48. D[15][0]:
  // GPR 3, lane 48.
  test_spot(3, "v_mfma_i32_16x16x32_i8 A[15][30]·B[30][0]", 4, {63, 1, 2, -3, 48, 1, 2, 100, 48, 3});
  // v_mfma_i32_32x32x16_i8. A[20][11]: GPR floor(11/4)%2 = 0, byte 3, lane 32·floor(11/8) + 20 = 52.
  // B[11][25]: GPR 0, byte 3, lane 32 + 25 = 57. D[20][25]: GPR 4·floor(20/8) + 20%4 = 8, lane
  // (32·floor(20/4))%64 + 25 = 57.
  test_spot(4, "v_mfma_i32_32x32x16_i8 A[20][11]·B[11][25]", 16, {52, 0, 3, 2, 57, 0, 3, -9, 57, 8});
  // A[31][4]: GPR 1, byte 0, lane 31. B[4][1]: GPR 1, byte 0, lane 1. D[31][1]: GPR 4·3 + 3 = 15, lane
  // (32·7)%64 + 1 = 33.
  test_spot(4, "v_mfma_i32_32x32x16_i8 A[31][4]·B[4][1]", 16, {31, 1, 0, 12, 1, 1, 0, 12, 33, 15});
#endif
}

// ---- unpacking 4-bit codes ---------------------------------------------------------------------------

// out[2h], out[2h+1]: the INT4 and E2M1 expansions of every 16-bit h (thread t: h = t, t + stride, ...).
__global__ void unpack_kernel(uint32_t* out) {
  const uint32_t stride = blockDim.x * gridDim.x;
  for (uint32_t h = blockIdx.x * blockDim.x + threadIdx.x; h < 65536u; h += stride) {
    out[2 * h] = gpu_int4x4_to_s8(h);
    out[2 * h + 1] = gpu_e2m1x4_to_s8(h);
  }
}

void test_unpack() {
  uint32_t* d = nullptr;
  gpuMalloc(reinterpret_cast<void**>(&d), 2 * 65536 * 4);
  SVDQ_LAUNCH(64, 256, 0, nullptr, unpack_kernel)(d);
  int bad_int4 = 0, bad_e2m1 = 0;
  for (uint32_t h = 0; h < 65536u; ++h)
    for (int j = 0; j < 4; ++j) {
      const uint32_t nib = (h >> (4 * j)) & 0xFu;
      if (static_cast<int8_t>(d[2 * h] >> (8 * j)) != svdq_gpu::int4_of_nibble(nib)) ++bad_int4;
      if (static_cast<int8_t>(d[2 * h + 1] >> (8 * j)) != svdq_gpu::e2m1x2_of_code(nib)) ++bad_e2m1;
    }
  gpuFree(d);
  check(bad_int4 == 0, "INT4 nibbles unpack to their int8 values, all 65536 groups of four (" + std::to_string(bad_int4) + ")");
  check(bad_e2m1 == 0, "E2M1 codes unpack to 2·value, all 65536 groups of four (" + std::to_string(bad_e2m1) + ")");
}

// ---- shuffles, barriers, dynamic shared memory -------------------------------------------------------

__global__ void shuffle_kernel(int mask, int width, int* out) {
  const int t = static_cast<int>(threadIdx.x);
  out[t] = gpu_shfl_xor(t * 10, mask, width);
}

void test_shuffle() {
  int* d = nullptr;
  gpuMalloc(reinterpret_cast<void**>(&d), 2 * W * 4);
  std::vector<int> h(2 * W);
  SVDQ_LAUNCH(1, 2 * W, 0, nullptr, shuffle_kernel)(1, 4, d);
  memcpy(h.data(), d, h.size() * 4);
  int bad = 0;
  for (int t = 0; t < 2 * W; ++t)
    if (h[static_cast<size_t>(t)] != (t ^ 1) * 10) ++bad;
  check(bad == 0, "shfl_xor(mask 1, width 4) reads lane ^ 1 in both warps");
  // Mask 8 within groups of 8: a lane whose partner is in a later group keeps its value, one whose
  // partner is in an earlier group reads it (the CUDA and HIP rule).
  SVDQ_LAUNCH(1, 2 * W, 0, nullptr, shuffle_kernel)(8, 8, d);
  memcpy(h.data(), d, h.size() * 4);
  bad = 0;
  for (int t = 0; t < 2 * W; ++t) {
    const int lane = t % W, src = lane ^ 8;
    const int want = src >= ((lane + 8) & ~7) ? t * 10 : (t - lane + src) * 10;
    if (h[static_cast<size_t>(t)] != want) ++bad;
  }
  check(bad == 0, "shfl_xor(mask 8, width 8): own value from a later group, the partner's from an earlier one");
  gpuFree(d);
}

// Each thread writes its word, then reads its left neighbour's: with `sync` a barrier separates the
// two; without it, the read races with the neighbour's write.
__global__ void neighbour_kernel(int round, int sync, int* out) {
  __shared__ int s[256];
  const int t = static_cast<int>(threadIdx.x);
  s[t] = round * 1000 + t;
  if (sync) __syncthreads();
  out[t] = t > 0 ? s[t - 1] : round * 1000 - 1;
}

int neighbour_errors(int round, int sync) {
  int* d = nullptr;
  gpuMalloc(reinterpret_cast<void**>(&d), 256 * 4);
  SVDQ_LAUNCH(1, 256, 0, nullptr, neighbour_kernel)(round, sync, d);
  int bad = 0;
  for (int t = 0; t < 256; ++t)
    if (d[t] != round * 1000 + t - 1) ++bad;
  gpuFree(d);
  return bad;
}

void test_race_guard() {
  int round = 1;
  svdq_emu::set_schedule_for_tests("sequential");
  check(neighbour_errors(round++, 1) == 0, "with the barrier: right in sequential order");
  check(neighbour_errors(round++, 0) == 0, "without the barrier: right by luck in sequential order (lanes run in order)");
  svdq_emu::set_schedule_for_tests("reverse");
  check(neighbour_errors(round++, 1) == 0, "with the barrier: right in reverse order");
  check(neighbour_errors(round++, 0) > 0, "without the barrier: wrong in reverse order");
  int random_bad = 0, random_sync_bad = 0;
  for (int seed = 1; seed <= 4; ++seed) {
    const std::string spec = "random:" + std::to_string(seed);
    svdq_emu::set_schedule_for_tests(spec.c_str());
    random_sync_bad += neighbour_errors(round++, 1);
    if (neighbour_errors(round++, 0) > 0) ++random_bad;
  }
  check(random_sync_bad == 0, "with the barrier: right under 4 random orders");
  check(random_bad == 4, "without the barrier: wrong under each of 4 random orders (" + std::to_string(random_bad) + ")");
  svdq_emu::set_schedule_for_tests(getenv("SVDQ_EMU_SCHEDULE") != nullptr ? getenv("SVDQ_EMU_SCHEDULE") : "sequential");
}

__global__ void dynamic_smem_kernel(int n, float* out) {
  SVDQ_DYNAMIC_SHARED(float, buf);
  const int t = static_cast<int>(threadIdx.x);
  for (int i = t; i < n; i += static_cast<int>(blockDim.x)) buf[i] = static_cast<float>(i) + 0.5f * static_cast<float>(blockIdx.x);
  __syncthreads();
  if (t == 0) {
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s += buf[i];
    out[blockIdx.x] = s;
  }
}

void test_dynamic_smem() {
  float* d = nullptr;
  gpuMalloc(reinterpret_cast<void**>(&d), 3 * 4);
  const int n = 1000;
  SVDQ_LAUNCH(3, 128, n * 4, nullptr, dynamic_smem_kernel)(n, d);
  check(gpuGetLastError() == gpuSuccess, "dynamic shared memory launch");
  bool ok = true;
  for (int b = 0; b < 3; ++b) ok = ok && d[b] == static_cast<float>(n * (n - 1) / 2) + 0.5f * static_cast<float>(b * n);
  check(ok, "dynamic shared memory is per block and sized by the launch");
  const size_t big = 100 * 1024;  // over the default limit (48 KiB CUDA, 64 KiB AMD)
  SVDQ_LAUNCH(1, 128, big, nullptr, dynamic_smem_kernel)(n, d);
  check(gpuGetLastError() == gpuErrorInvalidValue, "100 KiB of dynamic shared memory without the attribute is refused");
#if defined(SVDQ_CUDA)
  check(gpuFuncSetAttribute(dynamic_smem_kernel, gpuFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(big)) == gpuSuccess,
        "the opt-in attribute raises the limit");
  SVDQ_LAUNCH(1, 128, big, nullptr, dynamic_smem_kernel)(n, d);
  check(gpuGetLastError() == gpuSuccess, "100 KiB after the opt-in");
#endif
  gpuFree(d);
}

// ---- findings ------------------------------------------------------------------------------------------

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 32) __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void mixed_collective_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x) % W;
  int v = 0;
  if (lane < W / 2)
    v = gpu_shfl_xor(lane, 1, 2);
  else
    __syncthreads();
  out[threadIdx.x] = v;
}

void test_findings() {
  printf("(the emulator's findings printed next are expected: this test provokes them)\n");
  fflush(stdout);
  int* d = nullptr;
  gpuMalloc(reinterpret_cast<void**>(&d), 256 * 4);
  SVDQ_LAUNCH(1, 128, 0, nullptr, divergent_barrier_kernel)(d);
  check(gpuGetLastError() == gpuErrorLaunchFailure, "a barrier only some threads reach fails the launch");
  check(gpuDeviceSynchronize() == gpuErrorLaunchFailure, "the failure is sticky, as on a real device");
  svdq_emu::clear_errors_for_tests();
  SVDQ_LAUNCH(1, W, 0, nullptr, mixed_collective_kernel)(d);
  check(gpuGetLastError() == gpuErrorLaunchFailure, "half a warp at a shuffle, half at a barrier, fails the launch");
  svdq_emu::clear_errors_for_tests();
  SVDQ_LAUNCH(1, 2048, 0, nullptr, divergent_barrier_kernel)(d);
  check(gpuGetLastError() == gpuErrorInvalidValue, "a block of 2048 threads is refused");
  svdq_emu::clear_errors_for_tests();
  check(gpuDeviceSynchronize() == gpuSuccess, "cleared for the next test");
  gpuFree(d);
}

}  // namespace

int main() {
  gpuDeviceProp_t p;
  gpuGetDeviceProperties(&p, 0);
  printf("svdquant GPU emulator self-tests: %s, warp %d, matrix path %d\n", p.name, W, SVDQ_DEVICE_MMA);
  test_matrix();
  test_unpack();
  test_shuffle();
  test_dynamic_smem();
  test_race_guard();
  test_findings();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
