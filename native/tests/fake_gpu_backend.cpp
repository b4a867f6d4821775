// A fake GPU backend: the C ABI of svdquant/gpu_abi.h implemented on the host, so that the addon's
// loader, the GPU layer and buffer handles and the toggles can be tested on machines without a GPU.
// "Device memory" is host memory; a layer keeps its canonical data and computes DESIGN §2 with the
// plain reference of lowbit_reference.h (both operands dequantized exactly, sums in double), so its
// outputs agree with the CPU layer within the tolerance lowbit.h documents.
//
// Build (test/support/fake-gpu.ts does this):
//   g++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -Inative/include -Inative/tests
//       native/tests/fake_gpu_backend.cpp native/tests/lowbit_reference.cpp
//       native/formats/quantize_portable.cpp -o libsvdquant_fake.so
//
// Controlled by environment variables, read at each call (so a test can change them in-process):
//   SVDQ_FAKE_GPU_DEVICES=N          number of devices (default 1; 0: the driver reports none)
//   SVDQ_FAKE_GPU_OOM_BYTES=N        total device memory: an allocation that would take the live
//                                    bytes (buffers + layers, over all devices) above N fails with
//                                    SVDQ_GPU_OUT_OF_MEMORY (default 16 GiB)
//   SVDQ_FAKE_GPU_ABI=N              abi_version reported by svdq_gpu_get_api (default the real one)
//   SVDQ_FAKE_GPU_NULL_API=1         svdq_gpu_get_api returns NULL
//   SVDQ_FAKE_GPU_PLATFORM=cuda|hip  platform reported (default: "hip" if this file's name contains
//                                    "hip", else "cuda")
//   SVDQ_FAKE_GPU_DRIVER_MISMATCH=1  device_count fails with SVDQ_GPU_DRIVER_MISMATCH
//   SVDQ_FAKE_GPU_UNSUPPORTED=a,b    schemes (w4a4, mxfp4, nvfp4, w8a8, w4a16) layer_create refuses
//                                    with SVDQ_GPU_UNSUPPORTED
//   SVDQ_FAKE_GPU_FAIL_FORWARD=1     every forward fails with SVDQ_GPU_RUNTIME
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "lowbit_reference.h"
#include "svdquant/gpu_abi.h"

#define FAKE_EXPORT __attribute__((visibility("default")))

namespace {

using svdq::LowbitScheme;

const char* const kSchemeNames[] = {"w4a4", "mxfp4", "nvfp4", "w8a8", "w4a16"};

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  return (end != nullptr && *end == '\0') ? static_cast<int64_t>(x) : fallback;
}

bool env_flag(const char* name) { return env_int(name, 0) != 0; }

int fail(svdq_gpu_status* st, int code, const char* fmt, const std::string& arg = std::string()) {
  if (st != nullptr) {
    st->code = code;
    std::snprintf(st->message, sizeof(st->message), fmt, arg.c_str());
  }
  return code;
}

int ok(svdq_gpu_status* st) {
  if (st != nullptr) {
    st->code = SVDQ_GPU_OK;
    st->message[0] = '\0';
  }
  return SVDQ_GPU_OK;
}

// Live "device" bytes over all devices, checked against SVDQ_FAKE_GPU_OOM_BYTES.
std::mutex g_mem_mutex;
int64_t g_used = 0;

int64_t memory_limit() { return env_int("SVDQ_FAKE_GPU_OOM_BYTES", int64_t(16) << 30); }

bool reserve(int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (g_used + bytes > memory_limit()) return false;
  g_used += bytes;
  return true;
}

void release(int64_t bytes) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_used -= bytes;
}

int check_device(int device, svdq_gpu_status* st) {
  const int64_t count = env_int("SVDQ_FAKE_GPU_DEVICES", 1);
  if (device < 0 || device >= count)
    return fail(st, SVDQ_GPU_NO_DEVICE, "fake: device %s does not exist", std::to_string(device) + " of " + std::to_string(count));
  return SVDQ_GPU_OK;
}

}  // namespace

struct svdq_gpu_buffer {
  int device = 0;
  std::vector<uint8_t> data;
};

struct svdq_gpu_layer {
  int device = 0;
  lowbit_ref::CanonicalLayer canonical;
  svdq::MxScaleRule act_rule = svdq::MxScaleRule::Even;
  int64_t bytes = 0;
};

namespace {

int device_count(int* count, svdq_gpu_status* st) {
  if (count == nullptr) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: count is NULL%s");
  *count = 0;
  if (env_flag("SVDQ_FAKE_GPU_DRIVER_MISMATCH"))
    return fail(st, SVDQ_GPU_DRIVER_MISMATCH, "fake: the driver is older than the runtime (SVDQ_FAKE_GPU_DRIVER_MISMATCH)%s");
  const int64_t n = env_int("SVDQ_FAKE_GPU_DEVICES", 1);
  *count = static_cast<int>(n < 0 ? 0 : n);
  return ok(st);
}

int device_info(int device, svdq_gpu_device_info* info, svdq_gpu_status* st) {
  if (info == nullptr) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: info is NULL%s");
  if (const int c = check_device(device, st)) return c;
  std::memset(info, 0, sizeof(*info));
  std::snprintf(info->name, sizeof(info->name), "svdquant fake GPU %d", device);
  std::snprintf(info->arch, sizeof(info->arch), "fake_sm_00");
  const int64_t limit = memory_limit();
  int64_t used;
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    used = g_used;
  }
  info->total_memory = limit;
  info->free_memory = limit - used;
  info->multiprocessors = 4;
  info->driver_version = 12040;
  info->runtime_version = 12040;
  info->matrix_path = 0;
  return ok(st);
}

int buffer_alloc(int device, size_t bytes, svdq_gpu_buffer** out, svdq_gpu_status* st) {
  if (out == nullptr) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: out is NULL%s");
  *out = nullptr;
  if (const int c = check_device(device, st)) return c;
  if (!reserve(static_cast<int64_t>(bytes)))
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: out of device memory allocating %s bytes", std::to_string(bytes));
  auto* b = new (std::nothrow) svdq_gpu_buffer();
  if (b == nullptr) {
    release(static_cast<int64_t>(bytes));
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: host allocation failed%s");
  }
  b->device = device;
  try {
    b->data.assign(bytes, 0);
  } catch (...) {
    delete b;
    release(static_cast<int64_t>(bytes));
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: host allocation failed%s");
  }
  *out = b;
  return ok(st);
}

int buffer_upload(svdq_gpu_buffer* dst, size_t offset, const void* src, size_t bytes, svdq_gpu_status* st) {
  if (dst == nullptr || (src == nullptr && bytes > 0)) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: NULL pointer%s");
  if (offset > dst->data.size() || bytes > dst->data.size() - offset)
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: copy past the end of the buffer%s");
  if (bytes > 0) std::memcpy(dst->data.data() + offset, src, bytes);
  return ok(st);
}

int buffer_download(const svdq_gpu_buffer* src, size_t offset, void* dst, size_t bytes, svdq_gpu_status* st) {
  if (src == nullptr || (dst == nullptr && bytes > 0)) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: NULL pointer%s");
  if (offset > src->data.size() || bytes > src->data.size() - offset)
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: copy past the end of the buffer%s");
  if (bytes > 0) std::memcpy(dst, src->data.data() + offset, bytes);
  return ok(st);
}

size_t buffer_bytes(const svdq_gpu_buffer* b) { return b == nullptr ? 0 : b->data.size(); }

void buffer_free(svdq_gpu_buffer* b) {
  if (b == nullptr) return;
  release(static_cast<int64_t>(b->data.size()));
  delete b;
}

bool scheme_refused(int scheme) {
  const char* v = std::getenv("SVDQ_FAKE_GPU_UNSUPPORTED");
  if (v == nullptr) return false;
  const std::string list = std::string(",") + v + ",";
  return list.find(std::string(",") + kSchemeNames[scheme] + ",") != std::string::npos;
}

int layer_create(int device, const svdq_gpu_layer_desc* d, svdq_gpu_layer** out, svdq_gpu_status* st) {
  if (out == nullptr || d == nullptr) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: NULL pointer%s");
  *out = nullptr;
  if (const int c = check_device(device, st)) return c;
  if (d->scheme < 0 || d->scheme > 4) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: scheme %s out of range", std::to_string(d->scheme));
  if (d->n <= 0 || d->k <= 0 || d->rank < 0) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: bad shape%s");
  if (d->w_codes == nullptr || d->w_scales == nullptr) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: weights missing%s");
  if (d->rank > 0 && (d->l_down == nullptr || d->l_up == nullptr))
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: low-rank factors missing%s");
  if (d->act_mx_rule < 0 || d->act_mx_rule > 2) return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: bad act_mx_rule%s");
  if (scheme_refused(d->scheme))
    return fail(st, SVDQ_GPU_UNSUPPORTED, "fake: scheme %s is not supported by this build (SVDQ_FAKE_GPU_UNSUPPORTED)", kSchemeNames[d->scheme]);

  const auto scheme = static_cast<LowbitScheme>(d->scheme);
  const int64_t n = d->n, k = d->k, r = d->rank;
  const int64_t groups = lowbit_ref::canonical_groups(scheme, k);
  int64_t code_bytes = 0, scale_bytes = 0;
  bool byte_scales = false;
  switch (scheme) {
    case LowbitScheme::W4A4:
    case LowbitScheme::W4A16: code_bytes = n * svdq::padded_k(k, svdq::kInt4Group) / 2; scale_bytes = n * groups * 4; break;
    case LowbitScheme::Mxfp4: code_bytes = n * svdq::padded_k(k, svdq::kMxfp4Group) / 2; scale_bytes = n * groups; byte_scales = true; break;
    case LowbitScheme::Nvfp4: code_bytes = n * svdq::padded_k(k, svdq::kNvfp4Group) / 2; scale_bytes = n * groups; byte_scales = true; break;
    case LowbitScheme::W8A8: code_bytes = n * k; scale_bytes = n * 4; break;
  }
  const int64_t bytes = code_bytes + scale_bytes + 4 * (r * k + n * r + (d->smooth ? k : 0) + (d->bias ? n : 0));
  if (!reserve(bytes))
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: out of device memory allocating a layer of %s bytes", std::to_string(bytes));
  auto* L = new (std::nothrow) svdq_gpu_layer();
  if (L == nullptr) {
    release(bytes);
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: host allocation failed%s");
  }
  try {
    lowbit_ref::CanonicalLayer& c = L->canonical;
    c.scheme = scheme;
    c.n = n;
    c.k = k;
    c.rank = r;
    const auto* codes = static_cast<const uint8_t*>(d->w_codes);
    c.codes.assign(codes, codes + code_bytes);
    if (byte_scales) {
      const auto* s = static_cast<const uint8_t*>(d->w_scales);
      c.bscales.assign(s, s + scale_bytes);
    } else {
      const auto* s = static_cast<const float*>(d->w_scales);
      c.fscales.assign(s, s + scale_bytes / 4);
    }
    c.global_scale = d->w_global_scale;
    if (d->smooth) c.smooth.assign(d->smooth, d->smooth + k);
    if (r > 0) {
      c.l_down.assign(d->l_down, d->l_down + r * k);
      c.l_up.assign(d->l_up, d->l_up + n * r);
    }
    if (d->bias) c.bias.assign(d->bias, d->bias + n);
  } catch (...) {
    delete L;
    release(bytes);
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: host allocation failed%s");
  }
  L->device = device;
  L->act_rule = static_cast<svdq::MxScaleRule>(d->act_mx_rule);
  L->bytes = bytes;
  *out = L;
  return ok(st);
}

size_t layer_bytes(const svdq_gpu_layer* L) { return L == nullptr ? 0 : static_cast<size_t>(L->bytes); }

int forward(const svdq_gpu_layer* L, const float* x, int64_t m, float* y, svdq_gpu_status* st) {
  if (env_flag("SVDQ_FAKE_GPU_FAIL_FORWARD"))
    return fail(st, SVDQ_GPU_RUNTIME, "fake: unspecified launch failure (SVDQ_FAKE_GPU_FAIL_FORWARD)%s");
  try {
    std::vector<double> Y, S;
    lowbit_ref::reference_forward(L->canonical, L->act_rule, x, m, Y, S);
    for (size_t i = 0; i < Y.size(); ++i) y[i] = static_cast<float>(Y[i]);
  } catch (...) {
    return fail(st, SVDQ_GPU_OUT_OF_MEMORY, "fake: host allocation failed in forward%s");
  }
  return ok(st);
}

int layer_forward_host(svdq_gpu_layer* L, const float* x, int64_t m, float* y, int mode, svdq_gpu_status* st) {
  if (L == nullptr || m < 0 || (m > 0 && (x == nullptr || y == nullptr)) || mode < 0 || mode > 2)
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: bad forward arguments%s");
  if (m == 0) return ok(st);
  return forward(L, x, m, y, st);
}

int layer_forward_device(svdq_gpu_layer* L, const svdq_gpu_buffer* x, int64_t m, svdq_gpu_buffer* y, int mode,
                         svdq_gpu_status* st) {
  if (L == nullptr || x == nullptr || y == nullptr || m < 0 || mode < 0 || mode > 2)
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: bad forward arguments%s");
  if (x->device != L->device || y->device != L->device)
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: buffers on another device than the layer%s");
  const int64_t k = L->canonical.k, n = L->canonical.n;
  if (static_cast<int64_t>(x->data.size()) < m * k * 4 || static_cast<int64_t>(y->data.size()) < m * n * 4)
    return fail(st, SVDQ_GPU_INVALID_ARGUMENT, "fake: buffers too small for m = %s", std::to_string(m));
  if (m == 0) return ok(st);
  std::vector<float> xs(static_cast<size_t>(m * k)), ys(static_cast<size_t>(m * n));
  std::memcpy(xs.data(), x->data.data(), xs.size() * 4);
  const int code = forward(L, xs.data(), m, ys.data(), st);
  if (code == SVDQ_GPU_OK) std::memcpy(y->data.data(), ys.data(), ys.size() * 4);
  return code;
}

void layer_destroy(svdq_gpu_layer* L) {
  if (L == nullptr) return;
  release(L->bytes);
  delete L;
}

const char* own_platform() {
  const char* forced = std::getenv("SVDQ_FAKE_GPU_PLATFORM");
  if (forced != nullptr && *forced != '\0') return std::strcmp(forced, "hip") == 0 ? "hip" : "cuda";
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&device_count), &info) != 0 && info.dli_fname != nullptr) {
    const char* slash = std::strrchr(info.dli_fname, '/');
    if (std::strstr(slash != nullptr ? slash + 1 : info.dli_fname, "hip") != nullptr) return "hip";
  }
  return "cuda";
}

svdq_gpu_api make_api(int abi, const char* platform) {
  svdq_gpu_api a;
  a.abi_version = abi;
  a.platform = platform;
  a.built_archs = "fake_sm_00,fake_sm_01";
  a.device_count = device_count;
  a.device_info = device_info;
  a.buffer_alloc = buffer_alloc;
  a.buffer_upload = buffer_upload;
  a.buffer_download = buffer_download;
  a.buffer_bytes = buffer_bytes;
  a.buffer_free = buffer_free;
  a.layer_create = layer_create;
  a.layer_bytes = layer_bytes;
  a.layer_forward_host = layer_forward_host;
  a.layer_forward_device = layer_forward_device;
  a.layer_destroy = layer_destroy;
  return a;
}

}  // namespace

extern "C" FAKE_EXPORT const svdq_gpu_api* svdq_gpu_get_api(void) {
  if (env_flag("SVDQ_FAKE_GPU_NULL_API")) return nullptr;
  const char* platform = own_platform();
  const int abi = static_cast<int>(env_int("SVDQ_FAKE_GPU_ABI", SVDQ_GPU_ABI_VERSION));
  // The common tables are static; an unusual ABI number gets a table of its own (kept forever).
  static const svdq_gpu_api cuda = make_api(SVDQ_GPU_ABI_VERSION, "cuda");
  static const svdq_gpu_api hip = make_api(SVDQ_GPU_ABI_VERSION, "hip");
  if (abi == SVDQ_GPU_ABI_VERSION) return std::strcmp(platform, "hip") == 0 ? &hip : &cuda;
  return new svdq_gpu_api(make_api(abi, platform));
}
