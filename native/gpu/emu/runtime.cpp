// The emulator's host runtime: one device (the flavour compiled in), device memory in host memory,
// streams that run their work at once, events on the host clock, CUDA-style sticky launch errors
// reported by gpuGetLastError and the next synchronisation.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <map>
#include <mutex>

#include "emu_runtime.h"

struct svdq_emu_stream {
  int unused;
};
struct svdq_emu_event {
  double ms;
};

namespace svdq_emu {

namespace {

thread_local gpuError_t t_last_error = gpuSuccess;  // what gpuGetLastError returns
thread_local gpuError_t t_pending = gpuSuccess;     // what the next synchronisation returns
thread_local int t_device = 0;
std::mutex g_attr_mutex;
std::map<const void*, int> g_max_dynamic_smem;  // gpuFuncAttributeMaxDynamicSharedMemorySize per kernel

struct Flavour {
  const char* name;
  const char* arch;
  int major, minor, sms;
  size_t default_smem, max_smem;  // dynamic shared memory: without and with the opt-in attribute
};

constexpr Flavour flavour() {
#if defined(SVDQ_EMU_SM)
#if SVDQ_EMU_SM >= 900
  return {"svdquant GPU emulator (sm_90a, H100-like)", "", 9, 0, 132, 48 * 1024, 227 * 1024};
#else
  return {"svdquant GPU emulator (sm_80, A100-like)", "", 8, 0, 108, 48 * 1024, 163 * 1024};
#endif
#else
#if SVDQ_EMU_GFX == 0x90a
  return {"svdquant GPU emulator (gfx90a, MI250X-like)", "gfx90a:sramecc+:xnack-", 9, 0, 110, 64 * 1024, 64 * 1024};
#elif SVDQ_EMU_GFX == 0x940
  return {"svdquant GPU emulator (gfx940)", "gfx940:sramecc+:xnack-", 9, 4, 304, 64 * 1024, 64 * 1024};
#elif SVDQ_EMU_GFX == 0x942
  return {"svdquant GPU emulator (gfx942, MI300X-like)", "gfx942:sramecc+:xnack-", 9, 4, 304, 64 * 1024, 64 * 1024};
#else
  return {"svdquant GPU emulator (gfx)", "gfx000", 9, 0, 64, 64 * 1024, 64 * 1024};
#endif
#endif
}

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

gpuError_t take_pending() {
  const gpuError_t e = t_pending;
  return e;  // sticky, as a failed CUDA context: every later synchronisation reports it
}

}  // namespace

void record_launch_error(gpuError_t e) {
  t_last_error = e;
  if (e == gpuErrorLaunchFailure) t_pending = e;
}

void clear_errors_for_tests() {
  t_last_error = gpuSuccess;
  t_pending = gpuSuccess;
}

size_t max_dynamic_smem(const void* kernel) {
  const Flavour f = flavour();
  std::lock_guard<std::mutex> lock(g_attr_mutex);
  auto it = g_max_dynamic_smem.find(kernel);
  if (it == g_max_dynamic_smem.end()) return f.default_smem;
  return static_cast<size_t>(it->second);
}

}  // namespace svdq_emu

using svdq_emu::t_device;

gpuError_t gpuMalloc(void** p, size_t bytes) {
  *p = nullptr;
  // Larger than any device: fail like cudaMalloc instead of asking the host for it.
  if (bytes > (size_t(1) << 38)) return svdq_emu::t_last_error = gpuErrorMemoryAllocation;
  // Exactly `bytes` (256-aligned like cudaMalloc), so that a sanitizer build sees any access past the end.
  void* q = nullptr;
  if (posix_memalign(&q, 256, bytes == 0 ? 1 : bytes) != 0) return svdq_emu::t_last_error = gpuErrorMemoryAllocation;
  *p = q;
  return gpuSuccess;
}
gpuError_t gpuFree(void* p) {
  free(p);
  return gpuSuccess;
}
gpuError_t gpuMemcpy(void* dst, const void* src, size_t bytes, gpuMemcpyKind) {
  if (bytes > 0) memmove(dst, src, bytes);
  return svdq_emu::take_pending();
}
gpuError_t gpuMemcpyAsync(void* dst, const void* src, size_t bytes, gpuMemcpyKind k, gpuStream_t) {
  return gpuMemcpy(dst, src, bytes, k);
}
gpuError_t gpuMemsetAsync(void* dst, int value, size_t bytes, gpuStream_t) {
  memset(dst, value, bytes);
  return gpuSuccess;
}
gpuError_t gpuMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = size_t(80) << 30;
  *free_bytes = size_t(79) << 30;
  return gpuSuccess;
}
gpuError_t gpuStreamCreateWithFlags(gpuStream_t* s, unsigned int) {
  *s = new svdq_emu_stream();
  return gpuSuccess;
}
gpuError_t gpuStreamDestroy(gpuStream_t s) {
  delete s;
  return gpuSuccess;
}
gpuError_t gpuStreamSynchronize(gpuStream_t) { return svdq_emu::take_pending(); }
gpuError_t gpuStreamWaitEvent(gpuStream_t, gpuEvent_t, unsigned int) { return gpuSuccess; }
gpuError_t gpuEventCreateWithFlags(gpuEvent_t* e, unsigned int) {
  *e = new svdq_emu_event();
  return gpuSuccess;
}
gpuError_t gpuEventRecord(gpuEvent_t e, gpuStream_t) {
  e->ms = svdq_emu::now_ms();
  return gpuSuccess;
}
gpuError_t gpuEventSynchronize(gpuEvent_t) { return svdq_emu::take_pending(); }
gpuError_t gpuEventElapsedTime(float* ms, gpuEvent_t a, gpuEvent_t b) {
  *ms = static_cast<float>(b->ms - a->ms);
  return gpuSuccess;
}
gpuError_t gpuEventDestroy(gpuEvent_t e) {
  delete e;
  return gpuSuccess;
}
const char* gpuGetErrorName(gpuError_t e) {
  switch (e) {
    case gpuSuccess: return "gpuSuccess";
    case gpuErrorInvalidValue: return "gpuErrorInvalidValue";
    case gpuErrorMemoryAllocation: return "gpuErrorMemoryAllocation";
    case gpuErrorInsufficientDriver: return "gpuErrorInsufficientDriver";
    case gpuErrorNoDevice: return "gpuErrorNoDevice";
    case gpuErrorInvalidDevice: return "gpuErrorInvalidDevice";
    case gpuErrorInvalidKernelImage: return "gpuErrorInvalidKernelImage";
    case gpuErrorNoKernelImage: return "gpuErrorNoKernelImage";
    case gpuErrorLaunchOutOfResources: return "gpuErrorLaunchOutOfResources";
    case gpuErrorLaunchFailure: return "gpuErrorLaunchFailure";
  }
  return "gpuErrorUnknown";
}
const char* gpuGetErrorString(gpuError_t e) {
  switch (e) {
    case gpuSuccess: return "no error";
    case gpuErrorInvalidValue: return "invalid argument";
    case gpuErrorMemoryAllocation: return "out of memory";
    case gpuErrorInvalidDevice: return "invalid device ordinal";
    case gpuErrorLaunchFailure: return "unspecified launch failure (see the emulator's message on stderr)";
    default: return "emulator error";
  }
}
gpuError_t gpuGetLastError() {
  const gpuError_t e = svdq_emu::t_last_error;
  svdq_emu::t_last_error = svdq_emu::t_pending;  // a sticky failure stays visible
  return e;
}
gpuError_t gpuPeekAtLastError() { return svdq_emu::t_last_error; }
gpuError_t gpuGetDeviceCount(int* n) {
  *n = 1;
  return gpuSuccess;
}
gpuError_t gpuSetDevice(int d) {
  if (d != 0) return svdq_emu::t_last_error = gpuErrorInvalidDevice;
  t_device = d;
  return gpuSuccess;
}
gpuError_t gpuGetDevice(int* d) {
  *d = t_device;
  return gpuSuccess;
}
gpuError_t gpuGetDeviceProperties(gpuDeviceProp_t* p, int d) {
  if (d != 0) return svdq_emu::t_last_error = gpuErrorInvalidDevice;
  const svdq_emu::Flavour f = svdq_emu::flavour();
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", f.name);
  snprintf(p->gcnArchName, sizeof p->gcnArchName, "%s", f.arch);
  p->major = f.major;
  p->minor = f.minor;
  p->multiProcessorCount = f.sms;
  p->warpSize = SVDQ_EMU_WARP;
  p->totalGlobalMem = size_t(80) << 30;
  p->sharedMemPerBlock = f.default_smem;
  // SVDQ_EMU_DEVICE_ARCH=sm_75 / gfx950: the device claims another target than the library's (tests of
  // the refusal of a device a library holds no code for).
  const char* other = getenv("SVDQ_EMU_DEVICE_ARCH");
  if (other != nullptr && strncmp(other, "sm_", 3) == 0 && strlen(other) >= 5) {
    const int v = atoi(other + 3);
    p->major = v / 10;
    p->minor = v % 10;
  } else if (other != nullptr && strncmp(other, "gfx", 3) == 0) {
    snprintf(p->gcnArchName, sizeof p->gcnArchName, "%s:sramecc+:xnack-", other);
  }
  return gpuSuccess;
}
gpuError_t gpuDriverGetVersion(int* v) {
  *v = 1;
  return gpuSuccess;
}
gpuError_t gpuRuntimeGetVersion(int* v) {
  *v = 1;
  return gpuSuccess;
}
gpuError_t gpuDeviceSynchronize() { return svdq_emu::take_pending(); }
gpuError_t svdq_emu_func_set_attribute(const void* kernel, gpuFuncAttribute a, int value) {
  const svdq_emu::Flavour f = svdq_emu::flavour();
  if (a != gpuFuncAttributeMaxDynamicSharedMemorySize || value < 0 || static_cast<size_t>(value) > f.max_smem)
    return svdq_emu::t_last_error = gpuErrorInvalidValue;
  std::lock_guard<std::mutex> lock(svdq_emu::g_attr_mutex);
  svdq_emu::g_max_dynamic_smem[kernel] = value;
  return gpuSuccess;
}
