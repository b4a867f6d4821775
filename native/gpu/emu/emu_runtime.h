// The GPU emulator's side of the portability header (gpu_compat.h includes this when SVDQ_EMU is
// defined): the kernels' sources, unchanged, compile for the host with g++ and run on the CPU.
//
// - A flavour is one GPU target: -DSVDQ_EMU_SM=800 / 900 (CUDA: warp 32, the CUDA backend's code
//   paths) or -DSVDQ_EMU_GFX=0x90a / 0x940 / 0x942 (HIP: wavefront 64). The flavour sets the target
//   macros gpu_compat.h derives the matrix path from, exactly as __CUDA_ARCH__ / __gfx942__ would.
// - Each thread of a block is a cooperative fiber (fiber.h); a block runs to completion before the
//   next. Fibers switch only at __syncthreads and at warp collectives (shuffles, matrix
//   instructions), so the code between two of them runs as one piece: SVDQ_EMU_SCHEDULE=random[:seed]
//   (or reverse) changes which thread's piece runs first, and a race inside a barrier phase shows up
//   as a different result.
// - __shared__ variables become function statics (one block runs at a time, and launches are
//   serialised process-wide); dynamic shared memory is a per-launch buffer filled with a poison
//   pattern, as real shared memory starts with garbage.
// - Device memory is host memory (gpuMalloc is an aligned allocation); streams run their work at
//   once, in call order; events read the host clock.
// - Errors a real launch would report (block too large, grid too large, dynamic shared memory over
//   the limit) and emulator findings (threads stuck at different barriers, lanes of a warp at
//   different collectives) make the launch fail with gpuErrorLaunchFailure and a line on stderr.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <utility>

#if defined(SVDQ_EMU_SM)
#define SVDQ_CUDA 1
#define SVDQ_PLATFORM "cuda"
#define SVDQ_EMU_WARP 32
#elif defined(SVDQ_EMU_GFX)
#define SVDQ_HIP 1
#define SVDQ_PLATFORM "hip"
#define SVDQ_EMU_WARP 64
#else
#error "an emulator build needs -DSVDQ_EMU_SM=<e.g. 800> or -DSVDQ_EMU_GFX=<e.g. 0x942>"
#endif

// ---- device keywords ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
// (__restrict__ is a GNU extension g++ already has.)

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned int x, y, z;
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }
inline uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }

namespace svdq_emu {

struct ThreadCtx {
  uint3 thread_idx;
  int tid;   // linear index in the block
  int lane;  // index in its warp
  int warp;
};
struct BlockCtx {
  uint3 block_idx;
  dim3 block_dim, grid_dim;
  unsigned char* dynamic_smem;
};
extern thread_local ThreadCtx* t_thread;
extern thread_local BlockCtx* t_block;

// __syncthreads: waits until every thread of the block arrives here.
void sync_block(const char* file, int line);

// A warp collective: every lane of the current warp calls it with the same op; the last to arrive
// runs op(slots, lanes) over the lanes' slots (index = lane), then every lane continues.
using WarpOp = void (*)(void* const* slots, int lanes);
void warp_collective(WarpOp op, void* slot, const char* what);

// The kernel body, as every thread runs it.
using KernelBody = void (*)(void* ctx);
struct LaunchConfig {
  const char* name;
  dim3 grid, block;
  size_t dynamic_smem;
  const void* kernel;  // identity for the dynamic shared memory attribute
};
void run_kernel(const LaunchConfig& cfg, KernelBody body, void* ctx);

// cp.async: a copy of `bytes` from global to shared memory of which the first src_bytes come from
// `src` and the rest are zero; it lands only when the issuing thread waits for its group (so a read
// before the wait sees the old contents, as it may on the device).
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending_groups);  // until at most that many committed groups are in flight

// What the emulator was asked to do wrong on purpose (SVDQ_EMU_FAULT): the guards' switch.
enum Fault : int { kFaultNone = 0, kFaultLayout = 1, kFaultNoBarrier = 2 };
int fault();

template <typename... P>
class Launcher {
 public:
  Launcher(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem)
      : kernel_(kernel), cfg_{name, grid, block, smem, reinterpret_cast<const void*>(kernel)} {}
  template <typename... A>
  void operator()(A&&... args) const {
    std::tuple<P...> params(std::forward<A>(args)...);
    struct Ctx {
      void (*k)(P...);
      std::tuple<P...>* p;
    } ctx{kernel_, &params};
    run_kernel(cfg_, [](void* c) {
      Ctx* x = static_cast<Ctx*>(c);
      std::apply(x->k, *x->p);  // each thread gets its own copies of the parameters
    }, &ctx);
  }

 private:
  void (*kernel_)(P...);
  LaunchConfig cfg_;
};

template <typename... P, typename S>
Launcher<P...> launcher(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem, S /*stream*/) {
  return Launcher<P...>(kernel, name, grid, block, smem);
}

// XOR shuffle with the CUDA/HIP rule: lane l reads lane l ^ mask, or keeps its own value when that
// lane lies in a later group of `width` lanes.
struct ShuffleSlot {
  uint64_t in, out;
  int mask, width;
};
void shuffle_xor_op(void* const* slots, int lanes);
template <typename T>
T shfl_xor(T v, int mask, int width) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes here");
  ShuffleSlot s{0, 0, mask, width};
  memcpy(&s.in, &v, sizeof(T));
  warp_collective(&shuffle_xor_op, &s, "shfl_xor");
  T r;
  memcpy(&r, &s.out, sizeof(T));
  return r;
}

}  // namespace svdq_emu

#define threadIdx (::svdq_emu::t_thread->thread_idx)
#define blockIdx (::svdq_emu::t_block->block_idx)
#define blockDim (::svdq_emu::t_block->block_dim)
#define gridDim (::svdq_emu::t_block->grid_dim)
#define __syncthreads() ::svdq_emu::sync_block(__FILE__, __LINE__)

// Fibers never run at the same time, so a read-modify-write is atomic as written.
inline unsigned int atomicMax(unsigned int* p, unsigned int v) {
  const unsigned int old = *p;
  if (v > old) *p = v;
  return old;
}
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}

#if defined(SVDQ_EMU_SM)
// CUDA __byte_perm(x, y, s): byte n of the result is byte (s >> 4n) & 7 of the 8 bytes {y:x} (x bytes
// 0-3, y bytes 4-7).
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  const uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
  unsigned int r = 0;
  for (int n = 0; n < 4; ++n) r |= static_cast<unsigned int>((v >> (8 * ((s >> (4 * n)) & 7u))) & 0xFFu) << (8 * n);
  return r;
}
#endif

#if defined(SVDQ_EMU_SM) && SVDQ_EMU_SM >= 610
// dp4a (PTX dp4a.s32.s32): c + the sum of the four products of the signed bytes of a and b.
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += static_cast<int8_t>(a >> (8 * i)) * static_cast<int8_t>(b >> (8 * i));
  return c;
}
#endif

// ---- host runtime -----------------------------------------------------------------------------------

enum gpuError_t {
  gpuSuccess = 0,
  gpuErrorInvalidValue = 1,
  gpuErrorMemoryAllocation = 2,
  gpuErrorInsufficientDriver = 35,
  gpuErrorNoDevice = 100,
  gpuErrorInvalidDevice = 101,
  gpuErrorInvalidKernelImage = 200,
  gpuErrorNoKernelImage = 209,
  gpuErrorLaunchOutOfResources = 701,
  gpuErrorLaunchFailure = 719,
};
typedef struct svdq_emu_stream* gpuStream_t;
typedef struct svdq_emu_event* gpuEvent_t;
struct gpuDeviceProp_t {
  char name[256];
  char gcnArchName[256];
  int major, minor;
  int multiProcessorCount;
  int warpSize;
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
};
enum gpuMemcpyKind { gpuMemcpyHostToDevice = 1, gpuMemcpyDeviceToHost = 2, gpuMemcpyDeviceToDevice = 3 };
enum gpuFuncAttribute { gpuFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define gpuStreamNonBlocking 1u
#define gpuEventDisableTiming 2u
#define gpuEventDefault 0u

gpuError_t gpuMalloc(void** p, size_t bytes);
gpuError_t gpuFree(void* p);
gpuError_t gpuMemcpy(void* dst, const void* src, size_t bytes, gpuMemcpyKind kind);
gpuError_t gpuMemcpyAsync(void* dst, const void* src, size_t bytes, gpuMemcpyKind kind, gpuStream_t s);
gpuError_t gpuMemsetAsync(void* dst, int value, size_t bytes, gpuStream_t s);
gpuError_t gpuMemGetInfo(size_t* free_bytes, size_t* total_bytes);
gpuError_t gpuStreamCreateWithFlags(gpuStream_t* s, unsigned int flags);
gpuError_t gpuStreamDestroy(gpuStream_t s);
gpuError_t gpuStreamSynchronize(gpuStream_t s);
gpuError_t gpuStreamWaitEvent(gpuStream_t s, gpuEvent_t e, unsigned int flags);
gpuError_t gpuEventCreateWithFlags(gpuEvent_t* e, unsigned int flags);
gpuError_t gpuEventRecord(gpuEvent_t e, gpuStream_t s);
gpuError_t gpuEventSynchronize(gpuEvent_t e);
gpuError_t gpuEventElapsedTime(float* ms, gpuEvent_t a, gpuEvent_t b);
gpuError_t gpuEventDestroy(gpuEvent_t e);
const char* gpuGetErrorString(gpuError_t e);
const char* gpuGetErrorName(gpuError_t e);
gpuError_t gpuGetLastError();
gpuError_t gpuPeekAtLastError();
gpuError_t gpuGetDeviceCount(int* n);
gpuError_t gpuSetDevice(int d);
gpuError_t gpuGetDevice(int* d);
gpuError_t gpuGetDeviceProperties(gpuDeviceProp_t* p, int d);
gpuError_t gpuDriverGetVersion(int* v);
gpuError_t gpuRuntimeGetVersion(int* v);
gpuError_t gpuDeviceSynchronize();
gpuError_t svdq_emu_func_set_attribute(const void* kernel, gpuFuncAttribute a, int value);
#define gpuFuncSetAttribute(f, a, v) svdq_emu_func_set_attribute(reinterpret_cast<const void*>(f), a, v)

// SVDQ_LAUNCH(grid, block, smem, stream, kernel)(args...): the kernel last, so that template
// arguments with commas need no parentheses.
#define SVDQ_LAUNCH(grid, block, smem, stream, ...) \
  ::svdq_emu::launcher(__VA_ARGS__, #__VA_ARGS__, grid, block, smem, stream)
#define SVDQ_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::svdq_emu::t_block->dynamic_smem)
