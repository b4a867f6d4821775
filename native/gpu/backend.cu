// The C ABI of a GPU backend library (svdquant/gpu_abi.h): devices, buffers, layers, forward passes.
// Every CUDA/HIP error becomes a status code with a one-line message; C++ exceptions are caught at
// the boundary; nothing here aborts the process.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <new>
#include <string>

#include "gpu_debug.h"
#include "gpu_kernels.h"
#include "svdquant/gpu_abi.h"

#ifndef SVDQ_BUILT_ARCHS
#define SVDQ_BUILT_ARCHS "unknown"
#endif

#define SVDQ_EXPORT extern "C" __attribute__((visibility("default")))

using namespace svdq_gpu;

namespace {

int set_status(svdq_gpu_status* st, int code, const char* fmt, ...) {
  if (st != nullptr) {
    st->code = code;
    st->message[0] = '\0';
    if (code != SVDQ_GPU_OK && fmt != nullptr) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(st->message, sizeof st->message, fmt, ap);
      va_end(ap);
    }
  }
  return code;
}

int ok(svdq_gpu_status* st) { return set_status(st, SVDQ_GPU_OK, nullptr); }

int code_of(gpuError_t e) {
  if (e == gpuSuccess) return SVDQ_GPU_OK;
  if (e == gpuErrorMemoryAllocation) return SVDQ_GPU_OUT_OF_MEMORY;
  if (e == gpuErrorNoDevice || e == gpuErrorInvalidDevice) return SVDQ_GPU_NO_DEVICE;
  if (e == gpuErrorInsufficientDriver || e == gpuErrorNoKernelImage || e == gpuErrorInvalidKernelImage)
    return SVDQ_GPU_DRIVER_MISMATCH;
#if defined(SVDQ_CUDA) && !defined(SVDQ_EMU)
  if (e == cudaErrorUnsupportedPtxVersion || e == cudaErrorSystemDriverMismatch ||
      e == cudaErrorCompatNotSupportedOnDevice)
    return SVDQ_GPU_DRIVER_MISMATCH;
#endif
  return SVDQ_GPU_RUNTIME;
}

// Turns a runtime error into a status: "<what>: <name>: <description>".
int gpu_fail(svdq_gpu_status* st, gpuError_t e, const char* what) {
  return set_status(st, code_of(e), "%s: %s (%s: %s)", what, SVDQ_PLATFORM, gpuGetErrorName(e), gpuGetErrorString(e));
}

#define GPU_TRY(call, what)                         \
  do {                                              \
    const gpuError_t err_ = (call);                 \
    if (err_ != gpuSuccess) {                       \
      (void)gpuGetLastError();                      \
      return gpu_fail(status, err_, what);          \
    }                                               \
  } while (0)

// Runs `body` (returning an svdq_gpu_code) with C++ exceptions turned into codes.
template <typename F>
int guarded(svdq_gpu_status* status, const char* fn, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return set_status(status, SVDQ_GPU_OUT_OF_MEMORY, "%s: host memory allocation failed", fn);
  } catch (const std::exception& e) {
    return set_status(status, SVDQ_GPU_RUNTIME, "%s: %s", fn, e.what());
  } catch (...) {
    return set_status(status, SVDQ_GPU_RUNTIME, "%s: unknown C++ exception", fn);
  }
}

int device_path(int device) {
  gpuDeviceProp_t p;
  if (gpuGetDeviceProperties(&p, device) != gpuSuccess) {
    (void)gpuGetLastError();
    return kPathDot;
  }
#if defined(SVDQ_HIP)
  const char* a = p.gcnArchName;
  if (strncmp(a, "gfx908", 6) == 0 || strncmp(a, "gfx90a", 6) == 0 || strncmp(a, "gfx940", 6) == 0 ||
      strncmp(a, "gfx941", 6) == 0 || strncmp(a, "gfx942", 6) == 0)
    return kPathMfma;
  return kPathDot;
#else
  return p.major >= 8 ? kPathMma : kPathDot;
#endif
}

// The device's target as the build names it: "sm_90", "gfx942" (the HIP name without its feature
// suffixes such as ":sramecc+:xnack-").
std::string device_target(const gpuDeviceProp_t& p) {
#if defined(SVDQ_HIP)
  std::string a(p.gcnArchName);
  return a.substr(0, a.find(':'));
#else
  return "sm_" + std::to_string(p.major) + std::to_string(p.minor);
#endif
}

// Whether this library holds code the device can run (SVDQ_BUILT_ARCHS, as build-gpu.mjs wrote it).
//   NVIDIA: a cubin sm_XY runs on devices of the same major version and a minor >= Y (sm_XYa: on
//           sm_XY only); PTX compute_XY is compiled by the driver for any device >= XY.
//   AMD:    a code object runs only on its own gfx target.
bool library_runs_on(const gpuDeviceProp_t& p) {
  const std::string built = SVDQ_BUILT_ARCHS;
  const std::string dev = device_target(p);
  size_t start = 0;
  while (start <= built.size()) {
    size_t end = built.find(',', start);
    if (end == std::string::npos) end = built.size();
    std::string t = built.substr(start, end - start);
    start = end + 1;
    while (!t.empty() && t.front() == ' ') t.erase(0, 1);
    while (!t.empty() && t.back() == ' ') t.pop_back();
#if defined(SVDQ_HIP)
    if (t == dev) return true;
#else
    const int have = p.major * 10 + p.minor;
    const bool ptx = t.rfind("compute_", 0) == 0, cubin = t.rfind("sm_", 0) == 0;
    if (!ptx && !cubin) continue;
    const std::string digits = t.substr(ptx ? 8 : 3);
    const bool specific = !digits.empty() && digits.back() == 'a';
    const int v = atoi(digits.c_str());
    if (v <= 0) continue;
    if (ptx && v <= have) return true;
    if (cubin && v / 10 == p.major && (specific ? v % 10 == p.minor : v % 10 <= p.minor)) return true;
#endif
  }
  return false;
}

// SVDQ_GPU_DRIVER_MISMATCH naming the device's target and the library's when the library cannot run
// on the device (no kernel could launch there); SVDQ_GPU_OK otherwise.
int check_runnable(int device, const char* fn, svdq_gpu_status* status) {
  gpuDeviceProp_t p;
  GPU_TRY(gpuGetDeviceProperties(&p, device), "reading device properties");
  if (library_runs_on(p)) return SVDQ_GPU_OK;
  return set_status(status, SVDQ_GPU_DRIVER_MISMATCH,
                    "%s: device %d is %s, but this %s library holds code for %s only (rebuild it with --arch=%s)", fn,
                    device, device_target(p).c_str(), SVDQ_PLATFORM, SVDQ_BUILT_ARCHS, device_target(p).c_str());
}

int check_device(int device, svdq_gpu_status* status) {
  int count = 0;
  const gpuError_t e = gpuGetDeviceCount(&count);
  if (e != gpuSuccess) {
    (void)gpuGetLastError();
    return gpu_fail(status, e, "no usable GPU");
  }
  if (device < 0 || device >= count)
    return set_status(status, SVDQ_GPU_NO_DEVICE, "device %d does not exist (%d %s device%s)", device, count,
                      SVDQ_PLATFORM, count == 1 ? "" : "s");
  GPU_TRY(gpuSetDevice(device), "selecting the device");
  return SVDQ_GPU_OK;
}

}  // namespace

struct svdq_gpu_buffer {
  int device = 0;
  void* ptr = nullptr;
  size_t bytes = 0;
  gpuStream_t stream = nullptr;
};

// A device allocation that grows to the largest request and is kept.
struct Scratch {
  void* ptr = nullptr;
  size_t bytes = 0;
  gpuError_t ensure(size_t want) {
    if (want <= bytes) return gpuSuccess;
    if (ptr != nullptr) (void)gpuFree(ptr);
    ptr = nullptr;
    bytes = 0;
    const gpuError_t e = gpuMalloc(&ptr, want);
    if (e == gpuSuccess) bytes = want;
    else ptr = nullptr;
    return e;
  }
  void release() {
    if (ptr != nullptr) (void)gpuFree(ptr);
    ptr = nullptr;
    bytes = 0;
  }
  template <typename T> T* as() const { return static_cast<T*>(ptr); }
};

struct svdq_gpu_layer {
  int device = 0;
  int path = kPathDot;
  HostFormat meta;  // shape and flags (its host vectors are released after the upload)
  LayerView view{};
  size_t device_bytes = 0;
  void* w = nullptr;
  void* w_scale = nullptr;
  void* smooth = nullptr;
  void* l_down_t = nullptr;
  void* l_up = nullptr;
  void* bias = nullptr;
  gpuStream_t stream = nullptr, side = nullptr;
  gpuEvent_t ev_q = nullptr, ev_u = nullptr;
  std::mutex mu;
  Scratch x, y, codes, scale, row_scale, down, xhat, u, sums;
};

namespace {

void destroy_layer(svdq_gpu_layer* L) {
  if (L == nullptr) return;
  if (gpuSetDevice(L->device) == gpuSuccess) {
    if (L->stream != nullptr) (void)gpuStreamSynchronize(L->stream);
    if (L->side != nullptr) (void)gpuStreamSynchronize(L->side);
    for (void* p : {L->w, L->w_scale, L->smooth, L->l_down_t, L->l_up, L->bias})
      if (p != nullptr) (void)gpuFree(p);
    for (Scratch* s : {&L->x, &L->y, &L->codes, &L->scale, &L->row_scale, &L->down, &L->xhat, &L->u, &L->sums})
      s->release();
    if (L->ev_q != nullptr) (void)gpuEventDestroy(L->ev_q);
    if (L->ev_u != nullptr) (void)gpuEventDestroy(L->ev_u);
    if (L->stream != nullptr) (void)gpuStreamDestroy(L->stream);
    if (L->side != nullptr) (void)gpuStreamDestroy(L->side);
  }
  (void)gpuGetLastError();
  delete L;
}

template <typename T>
gpuError_t upload(const std::vector<T>& v, void** out, size_t& total) {
  *out = nullptr;
  if (v.empty()) return gpuSuccess;
  const size_t bytes = v.size() * sizeof(T);
  gpuError_t e = gpuMalloc(out, bytes);
  if (e != gpuSuccess) {
    *out = nullptr;
    return e;
  }
  total += bytes;
  return gpuMemcpy(*out, v.data(), bytes, gpuMemcpyHostToDevice);
}

// Scratch for m tokens; fills A.
int prepare_acts(svdq_gpu_layer* L, int64_t m, bool need_u, ActsView& A, svdq_gpu_status* status) {
  const HostFormat& f = L->meta;
  const int64_t mp = (m + kTileM - 1) / kTileM * kTileM;
  GPU_TRY(L->codes.ensure(static_cast<size_t>(mp * f.kp)), "allocating activation codes");
  GPU_TRY(L->scale.ensure(static_cast<size_t>(f.groups_pad * mp) * 4), "allocating activation scales");
  GPU_TRY(L->row_scale.ensure(static_cast<size_t>(mp) * 4), "allocating row scales");
  if (f.rank > 0) GPU_TRY(L->down.ensure(static_cast<size_t>(mp * f.rank) * 4), "allocating the down-projection");
  if (f.scheme == kW4A16) GPU_TRY(L->xhat.ensure(static_cast<size_t>(m * f.kp) * 4), "allocating X-hat");
  if (need_u) GPU_TRY(L->u.ensure(static_cast<size_t>(m * f.n) * 4), "allocating the up-projection");
  A.m = m;
  A.mp = mp;
  A.codes = L->codes.as<int8_t>();
  A.scale = L->scale.as<float>();
  A.row_scale = L->row_scale.as<float>();
  A.down = L->down.as<float>();
  A.xhat = L->xhat.as<float>();
  return SVDQ_GPU_OK;
}

// The pipeline on device X and Y (the layer's lock held, its device current). Enqueues only.
int enqueue_forward(svdq_gpu_layer* L, const float* X, int64_t m, float* Y, int mode, int32_t* sums,
                    svdq_gpu_status* status) {
  const LayerView& V = L->view;
  const bool rank = V.rank > 0;
  ActsView A{};
  const int rc = prepare_acts(L, m, rank && mode != 0, A, status);
  if (rc != SVDQ_GPU_OK) return rc;
  gpuStream_t s = L->stream;
  if (mode == 0) {
    GPU_TRY(launch_quantize_act(V, X, A, true, true, s), "quantize_act launch");
    GPU_TRY(launch_gemm(V, A, Y, true, sums, L->path, s), "gemm_lowbit launch");
  } else if (mode == 1) {
    GPU_TRY(launch_quantize_act(V, X, A, true, true, s), "quantize_act launch");
    float* U = rank ? L->u.as<float>() : nullptr;
    if (rank) {
      GPU_TRY(gpuEventRecord(L->ev_q, s), "recording an event");
      GPU_TRY(gpuStreamWaitEvent(L->side, L->ev_q, 0), "joining the side stream");
      GPU_TRY(launch_lowrank_up(V, A.down, m, U, L->side), "lowrank_up launch");
      GPU_TRY(gpuEventRecord(L->ev_u, L->side), "recording an event");
    }
    GPU_TRY(launch_gemm(V, A, Y, false, sums, L->path, s), "gemm_lowbit launch");
    if (rank) GPU_TRY(gpuStreamWaitEvent(s, L->ev_u, 0), "joining the side stream");
    GPU_TRY(launch_finish(V, U, m, Y, s), "finish launch");
  } else {
    float* U = rank ? L->u.as<float>() : nullptr;
    GPU_TRY(launch_quantize_act(V, X, A, true, false, s), "quantize_act launch");
    if (rank) GPU_TRY(launch_quantize_act(V, X, A, false, true, s), "down-projection launch");
    GPU_TRY(launch_gemm(V, A, Y, false, sums, L->path, s), "gemm_lowbit launch");
    if (rank) GPU_TRY(launch_lowrank_up(V, A.down, m, U, s), "lowrank_up launch");
    GPU_TRY(launch_finish(V, U, m, Y, s), "finish launch");
  }
  return SVDQ_GPU_OK;
}

int check_layer_call(svdq_gpu_layer* L, int64_t m, int mode, const char* fn, svdq_gpu_status* status) {
  if (L == nullptr) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "%s: layer is NULL", fn);
  if (m < 0) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "%s: m = %lld is negative", fn, (long long)m);
  if (m > (int64_t(1) << 22))
    return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "%s: m = %lld is larger than 2^22 tokens", fn, (long long)m);
  if (mode < 0 || mode > 2)
    return set_status(status, SVDQ_GPU_INVALID_ARGUMENT,
                      "%s: low_rank_mode %d is not 0 fused, 1 side or 2 unfused", fn, mode);
  return SVDQ_GPU_OK;
}

// ---- ABI functions -------------------------------------------------------------------------------

int api_device_count(int* count, svdq_gpu_status* status) {
  return guarded(status, "device_count", [&]() -> int {
    if (count == nullptr) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "device_count: count is NULL");
    *count = 0;
    int n = 0;
    const gpuError_t e = gpuGetDeviceCount(&n);
    if (e == gpuErrorNoDevice) {
      (void)gpuGetLastError();
      return ok(status);
    }
    if (e != gpuSuccess) {
      (void)gpuGetLastError();
      int drv = 0;
      if (gpuDriverGetVersion(&drv) == gpuSuccess && drv == 0)
        return set_status(status, SVDQ_GPU_NO_DEVICE, "no %s driver is installed (%s)", SVDQ_PLATFORM,
                          gpuGetErrorString(e));
      return gpu_fail(status, e, "counting devices");
    }
    *count = n;
    return ok(status);
  });
}

int api_device_info(int device, svdq_gpu_device_info* info, svdq_gpu_status* status) {
  return guarded(status, "device_info", [&]() -> int {
    if (info == nullptr) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "device_info: info is NULL");
    memset(info, 0, sizeof *info);
    const int rc = check_device(device, status);
    if (rc != SVDQ_GPU_OK) return rc;
    gpuDeviceProp_t p;
    GPU_TRY(gpuGetDeviceProperties(&p, device), "reading device properties");
    snprintf(info->name, sizeof info->name, "%s", p.name);
#if defined(SVDQ_HIP)
    {
      // "gfx90a:sramecc+:xnack-" → "gfx90a"
      size_t i = 0;
      while (p.gcnArchName[i] != '\0' && p.gcnArchName[i] != ':' && i + 1 < sizeof info->arch) {
        info->arch[i] = p.gcnArchName[i];
        ++i;
      }
      info->arch[i] = '\0';
    }
#else
    snprintf(info->arch, sizeof info->arch, "sm_%d%d", p.major, p.minor);
#endif
    size_t fr = 0, tot = 0;
    GPU_TRY(gpuMemGetInfo(&fr, &tot), "reading free memory");
    info->total_memory = static_cast<int64_t>(tot);
    info->free_memory = static_cast<int64_t>(fr);
    info->multiprocessors = p.multiProcessorCount;
    (void)gpuDriverGetVersion(&info->driver_version);
    (void)gpuRuntimeGetVersion(&info->runtime_version);
    (void)gpuGetLastError();
    info->matrix_path = library_runs_on(p) ? device_path(device) : -1;
    return ok(status);
  });
}

int api_buffer_alloc(int device, size_t bytes, svdq_gpu_buffer** out, svdq_gpu_status* status) {
  return guarded(status, "buffer_alloc", [&]() -> int {
    if (out == nullptr) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "buffer_alloc: out is NULL");
    *out = nullptr;
    const int rc = check_device(device, status);
    if (rc != SVDQ_GPU_OK) return rc;
    svdq_gpu_buffer* b = new svdq_gpu_buffer();
    b->device = device;
    b->bytes = bytes;
    gpuError_t e = gpuStreamCreateWithFlags(&b->stream, gpuStreamNonBlocking);
    if (e == gpuSuccess && bytes > 0) {
      e = gpuMalloc(&b->ptr, bytes);
      if (e != gpuSuccess) b->ptr = nullptr;
    }
    if (e != gpuSuccess) {
      (void)gpuGetLastError();
      if (b->stream != nullptr) (void)gpuStreamDestroy(b->stream);
      delete b;
      if (e == gpuErrorMemoryAllocation)
        return set_status(status, SVDQ_GPU_OUT_OF_MEMORY, "buffer_alloc: %zu bytes do not fit on device %d (%s)",
                          bytes, device, gpuGetErrorString(e));
      return gpu_fail(status, e, "buffer_alloc");
    }
    *out = b;
    return ok(status);
  });
}

int copy_check(const svdq_gpu_buffer* b, size_t offset, const void* host, size_t bytes, const char* fn,
               svdq_gpu_status* status) {
  if (b == nullptr) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "%s: buffer is NULL", fn);
  if (host == nullptr && bytes > 0) return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "%s: host pointer is NULL", fn);
  if (offset > b->bytes || bytes > b->bytes - offset)
    return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "%s: range [%zu, %zu + %zu) exceeds the buffer's %zu bytes", fn,
                      offset, offset, bytes, b->bytes);
  return SVDQ_GPU_OK;
}

int api_buffer_upload(svdq_gpu_buffer* dst, size_t offset, const void* src, size_t bytes, svdq_gpu_status* status) {
  return guarded(status, "buffer_upload", [&]() -> int {
    int rc = copy_check(dst, offset, src, bytes, "buffer_upload", status);
    if (rc != SVDQ_GPU_OK || bytes == 0) return rc == SVDQ_GPU_OK ? ok(status) : rc;
    GPU_TRY(gpuSetDevice(dst->device), "buffer_upload: selecting the device");
    GPU_TRY(gpuMemcpyAsync(static_cast<char*>(dst->ptr) + offset, src, bytes, gpuMemcpyHostToDevice, dst->stream),
            "buffer_upload");
    GPU_TRY(gpuStreamSynchronize(dst->stream), "buffer_upload");
    return ok(status);
  });
}

int api_buffer_download(const svdq_gpu_buffer* src, size_t offset, void* dst, size_t bytes, svdq_gpu_status* status) {
  return guarded(status, "buffer_download", [&]() -> int {
    int rc = copy_check(src, offset, dst, bytes, "buffer_download", status);
    if (rc != SVDQ_GPU_OK || bytes == 0) return rc == SVDQ_GPU_OK ? ok(status) : rc;
    GPU_TRY(gpuSetDevice(src->device), "buffer_download: selecting the device");
    GPU_TRY(gpuMemcpyAsync(dst, static_cast<const char*>(src->ptr) + offset, bytes, gpuMemcpyDeviceToHost, src->stream),
            "buffer_download");
    GPU_TRY(gpuStreamSynchronize(src->stream), "buffer_download");
    return ok(status);
  });
}

size_t api_buffer_bytes(const svdq_gpu_buffer* b) { return b == nullptr ? 0 : b->bytes; }

void api_buffer_free(svdq_gpu_buffer* b) {
  if (b == nullptr) return;
  if (gpuSetDevice(b->device) == gpuSuccess) {
    (void)gpuStreamSynchronize(b->stream);
    if (b->ptr != nullptr) (void)gpuFree(b->ptr);
    (void)gpuStreamDestroy(b->stream);
  }
  (void)gpuGetLastError();
  delete b;
}

int api_layer_create(int device, const svdq_gpu_layer_desc* desc, svdq_gpu_layer** out, svdq_gpu_status* status) {
  return guarded(status, "layer_create", [&]() -> int {
    if (out == nullptr || desc == nullptr)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "layer_create: desc and out must not be NULL");
    *out = nullptr;
    HostFormat f;
    std::string msg;
    int rc = repack_layer(*desc, f, msg);
    if (rc != SVDQ_GPU_OK) return set_status(status, rc, "%s", msg.c_str());
    rc = check_device(device, status);
    if (rc != SVDQ_GPU_OK) return rc;
    rc = check_runnable(device, "layer_create", status);
    if (rc != SVDQ_GPU_OK) return rc;
    svdq_gpu_layer* L = new svdq_gpu_layer();
    L->device = device;
    L->path = device_path(device);
    const char* force = getenv("SVDQUANT_GPU_PATH");
    if (force != nullptr && strcmp(force, "dot") == 0) L->path = kPathDot;
    auto fail = [&](gpuError_t e, const char* what) {
      (void)gpuGetLastError();
      destroy_layer(L);
      return gpu_fail(status, e, what);
    };
    gpuError_t e;
    size_t total = 0;
    if ((e = upload(f.w, &L->w, total)) != gpuSuccess) return fail(e, "layer_create: uploading the weights");
    if ((e = upload(f.w_scale, &L->w_scale, total)) != gpuSuccess) return fail(e, "layer_create: uploading the scales");
    if ((e = upload(f.smooth, &L->smooth, total)) != gpuSuccess) return fail(e, "layer_create: uploading lambda");
    if ((e = upload(f.l_down_t, &L->l_down_t, total)) != gpuSuccess) return fail(e, "layer_create: uploading L_down");
    if ((e = upload(f.l_up, &L->l_up, total)) != gpuSuccess) return fail(e, "layer_create: uploading L_up");
    if ((e = upload(f.bias, &L->bias, total)) != gpuSuccess) return fail(e, "layer_create: uploading the bias");
    if ((e = gpuStreamCreateWithFlags(&L->stream, gpuStreamNonBlocking)) != gpuSuccess) return fail(e, "layer_create: stream");
    if ((e = gpuStreamCreateWithFlags(&L->side, gpuStreamNonBlocking)) != gpuSuccess) return fail(e, "layer_create: stream");
    if ((e = gpuEventCreateWithFlags(&L->ev_q, gpuEventDisableTiming)) != gpuSuccess) return fail(e, "layer_create: event");
    if ((e = gpuEventCreateWithFlags(&L->ev_u, gpuEventDisableTiming)) != gpuSuccess) return fail(e, "layer_create: event");
    L->device_bytes = total;
    LayerView& V = L->view;
    V.scheme = f.scheme;
    V.group = f.group;
    V.act_rule = f.act_rule;
    V.has_smooth = f.has_smooth ? 1 : 0;
    V.has_bias = f.has_bias ? 1 : 0;
    V.n = f.n;
    V.k = f.k;
    V.rank = f.rank;
    V.kp = f.kp;
    V.np = f.np;
    V.groups = f.groups;
    V.groups_pad = f.groups_pad;
    V.w_global_scale = f.w_global_scale;
    V.w = static_cast<const uint8_t*>(L->w);
    V.w_scale = L->w_scale;
    V.smooth = static_cast<const float*>(L->smooth);
    V.l_down_t = static_cast<const float*>(L->l_down_t);
    V.l_up = static_cast<const float*>(L->l_up);
    V.bias = static_cast<const float*>(L->bias);
    // Keep the shape; drop the host copies.
    f.w.clear(); f.w.shrink_to_fit();
    f.w_scale.clear(); f.w_scale.shrink_to_fit();
    f.smooth.clear(); f.smooth.shrink_to_fit();
    f.l_down_t.clear(); f.l_down_t.shrink_to_fit();
    f.l_up.clear(); f.l_up.shrink_to_fit();
    f.bias.clear(); f.bias.shrink_to_fit();
    L->meta = std::move(f);
    *out = L;
    return ok(status);
  });
}

size_t api_layer_bytes(const svdq_gpu_layer* L) { return L == nullptr ? 0 : L->device_bytes; }

int api_layer_forward_host(svdq_gpu_layer* L, const float* x, int64_t m, float* y, int mode, svdq_gpu_status* status) {
  return guarded(status, "layer_forward_host", [&]() -> int {
    int rc = check_layer_call(L, m, mode, "layer_forward_host", status);
    if (rc != SVDQ_GPU_OK) return rc;
    if (m == 0) return ok(status);
    if (x == nullptr || y == nullptr)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "layer_forward_host: x and y must not be NULL");
    std::lock_guard<std::mutex> lock(L->mu);
    GPU_TRY(gpuSetDevice(L->device), "layer_forward_host: selecting the device");
    const size_t xb = static_cast<size_t>(m * L->meta.k) * 4, yb = static_cast<size_t>(m * L->meta.n) * 4;
    GPU_TRY(L->x.ensure(xb), "layer_forward_host: allocating X");
    GPU_TRY(L->y.ensure(yb), "layer_forward_host: allocating Y");
    GPU_TRY(gpuMemcpyAsync(L->x.ptr, x, xb, gpuMemcpyHostToDevice, L->stream), "layer_forward_host: copying X");
    rc = enqueue_forward(L, L->x.as<float>(), m, L->y.as<float>(), mode, nullptr, status);
    if (rc != SVDQ_GPU_OK) {
      (void)gpuStreamSynchronize(L->stream);
      (void)gpuStreamSynchronize(L->side);
      (void)gpuGetLastError();
      return rc;
    }
    GPU_TRY(gpuMemcpyAsync(y, L->y.ptr, yb, gpuMemcpyDeviceToHost, L->stream), "layer_forward_host: copying Y");
    GPU_TRY(gpuStreamSynchronize(L->stream), "layer_forward_host");
    return ok(status);
  });
}

int api_layer_forward_device(svdq_gpu_layer* L, const svdq_gpu_buffer* x, int64_t m, svdq_gpu_buffer* y, int mode,
                             svdq_gpu_status* status) {
  return guarded(status, "layer_forward_device", [&]() -> int {
    int rc = check_layer_call(L, m, mode, "layer_forward_device", status);
    if (rc != SVDQ_GPU_OK) return rc;
    if (x == nullptr || y == nullptr)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "layer_forward_device: x and y must not be NULL");
    if (x->device != L->device || y->device != L->device)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT,
                        "layer_forward_device: buffers on device %d/%d, layer on device %d", x->device, y->device,
                        L->device);
    const size_t xb = static_cast<size_t>(m * L->meta.k) * 4, yb = static_cast<size_t>(m * L->meta.n) * 4;
    if (x->bytes < xb || y->bytes < yb)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT,
                        "layer_forward_device: x holds %zu bytes and y %zu, m = %lld needs %zu and %zu", x->bytes,
                        y->bytes, (long long)m, xb, yb);
    if (m == 0) return ok(status);
    std::lock_guard<std::mutex> lock(L->mu);
    GPU_TRY(gpuSetDevice(L->device), "layer_forward_device: selecting the device");
    rc = enqueue_forward(L, static_cast<const float*>(x->ptr), m, static_cast<float*>(y->ptr), mode, nullptr, status);
    if (rc != SVDQ_GPU_OK) {
      (void)gpuStreamSynchronize(L->stream);
      (void)gpuStreamSynchronize(L->side);
      (void)gpuGetLastError();
      return rc;
    }
    GPU_TRY(gpuStreamSynchronize(L->stream), "layer_forward_device");
    return ok(status);
  });
}

void api_layer_destroy(svdq_gpu_layer* L) {
  try {
    destroy_layer(L);
  } catch (...) {
  }
}

const svdq_gpu_api kApi = {
    SVDQ_GPU_ABI_VERSION,
    SVDQ_PLATFORM,
    SVDQ_BUILT_ARCHS,
    api_device_count,
    api_device_info,
    api_buffer_alloc,
    api_buffer_upload,
    api_buffer_download,
    api_buffer_bytes,
    api_buffer_free,
    api_layer_create,
    api_layer_bytes,
    api_layer_forward_host,
    api_layer_forward_device,
    api_layer_destroy,
};

}  // namespace

SVDQ_EXPORT const svdq_gpu_api* svdq_gpu_get_api(void) { return &kApi; }

// ---- test-only entry points (gpu_debug.h) ----------------------------------------------------------

SVDQ_EXPORT int64_t svdq_gpu_debug_groups(const svdq_gpu_layer* L) { return L == nullptr ? 0 : L->meta.groups; }

SVDQ_EXPORT int svdq_gpu_debug_set_path(svdq_gpu_layer* L, int path) {
  if (L == nullptr) return -1;
  std::lock_guard<std::mutex> lock(L->mu);
  const int old = L->path;
  L->path = path == 0 ? kPathDot : device_path(L->device);
  return old;
}

SVDQ_EXPORT int svdq_gpu_debug_block_sums(svdq_gpu_layer* L, const float* x, int64_t m, int32_t* sums,
                                          svdq_gpu_status* status) {
  return guarded(status, "debug_block_sums", [&]() -> int {
    int rc = check_layer_call(L, m, 0, "debug_block_sums", status);
    if (rc != SVDQ_GPU_OK) return rc;
    if (L->meta.scheme == kW4A16)
      return set_status(status, SVDQ_GPU_UNSUPPORTED, "debug_block_sums: w4a16 has no integer block sums");
    if (m == 0) return ok(status);
    if (x == nullptr || sums == nullptr)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "debug_block_sums: x and sums must not be NULL");
    std::lock_guard<std::mutex> lock(L->mu);
    GPU_TRY(gpuSetDevice(L->device), "debug_block_sums: selecting the device");
    const size_t xb = static_cast<size_t>(m * L->meta.k) * 4, yb = static_cast<size_t>(m * L->meta.n) * 4;
    const size_t sb = static_cast<size_t>(m * L->meta.n * L->meta.groups) * 4;
    GPU_TRY(L->x.ensure(xb), "debug_block_sums: allocating X");
    GPU_TRY(L->y.ensure(yb), "debug_block_sums: allocating Y");
    GPU_TRY(L->sums.ensure(sb), "debug_block_sums: allocating the sums");
    GPU_TRY(gpuMemcpyAsync(L->x.ptr, x, xb, gpuMemcpyHostToDevice, L->stream), "debug_block_sums: copying X");
    rc = enqueue_forward(L, L->x.as<float>(), m, L->y.as<float>(), 0, L->sums.as<int32_t>(), status);
    if (rc != SVDQ_GPU_OK) {
      (void)gpuStreamSynchronize(L->stream);
      (void)gpuGetLastError();
      return rc;
    }
    GPU_TRY(gpuMemcpyAsync(sums, L->sums.ptr, sb, gpuMemcpyDeviceToHost, L->stream), "debug_block_sums: copying");
    GPU_TRY(gpuStreamSynchronize(L->stream), "debug_block_sums");
    return ok(status);
  });
}

SVDQ_EXPORT int svdq_gpu_debug_time_forward(svdq_gpu_layer* L, const svdq_gpu_buffer* x, int64_t m, svdq_gpu_buffer* y,
                                            int mode, int warmup, int iters, float* ms, svdq_gpu_status* status) {
  return guarded(status, "debug_time_forward", [&]() -> int {
    int rc = check_layer_call(L, m, mode, "debug_time_forward", status);
    if (rc != SVDQ_GPU_OK) return rc;
    if (x == nullptr || y == nullptr || ms == nullptr || iters < 1 || warmup < 0 || m < 1)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "debug_time_forward: bad arguments");
    const size_t xb = static_cast<size_t>(m * L->meta.k) * 4, yb = static_cast<size_t>(m * L->meta.n) * 4;
    if (x->bytes < xb || y->bytes < yb || x->device != L->device || y->device != L->device)
      return set_status(status, SVDQ_GPU_INVALID_ARGUMENT, "debug_time_forward: buffers too small or on another device");
    std::lock_guard<std::mutex> lock(L->mu);
    GPU_TRY(gpuSetDevice(L->device), "debug_time_forward: selecting the device");
    gpuEvent_t a = nullptr, b = nullptr;
    GPU_TRY(gpuEventCreateWithFlags(&a, gpuEventDefault), "debug_time_forward: event");
    gpuError_t e = gpuEventCreateWithFlags(&b, gpuEventDefault);
    if (e != gpuSuccess) {
      (void)gpuEventDestroy(a);
      return gpu_fail(status, e, "debug_time_forward: event");
    }
    rc = SVDQ_GPU_OK;
    for (int i = 0; i < warmup + iters && rc == SVDQ_GPU_OK; ++i) {
      if (i >= warmup && (e = gpuEventRecord(a, L->stream)) != gpuSuccess) { rc = gpu_fail(status, e, "event record"); break; }
      rc = enqueue_forward(L, static_cast<const float*>(x->ptr), m, static_cast<float*>(y->ptr), mode, nullptr, status);
      if (rc != SVDQ_GPU_OK) break;
      if (i >= warmup) {
        if ((e = gpuEventRecord(b, L->stream)) != gpuSuccess || (e = gpuEventSynchronize(b)) != gpuSuccess ||
            (e = gpuEventElapsedTime(&ms[i - warmup], a, b)) != gpuSuccess) {
          rc = gpu_fail(status, e, "timing");
          break;
        }
      }
    }
    (void)gpuStreamSynchronize(L->stream);
    (void)gpuEventDestroy(a);
    (void)gpuEventDestroy(b);
    (void)gpuGetLastError();
    return rc == SVDQ_GPU_OK ? ok(status) : rc;
  });
}
