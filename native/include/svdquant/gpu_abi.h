// The C ABI between the addon and a GPU backend library (libsvdquant_cuda.so, libsvdquant_hip.so).
//
// Why a C ABI: each GPU backend is its own shared library that the addon loads with dlopen at run
// time (DESIGN.md §5), so that the addon itself loads on machines without a GPU driver. The library
// exports one symbol, `svdq_gpu_get_api`, returning a table of plain C functions; nothing C++ (no
// exceptions, no std:: types) crosses the boundary. Every function that can fail returns an
// svdq_gpu_code and, when it is not SVDQ_GPU_OK, fills `status->message` with one readable line.
// A backend never aborts the process: CUDA/HIP errors, bad arguments and out-of-memory all come back
// as codes.
//
// Threading: the addon calls the forward/copy functions from worker threads (never the JS thread).
// One layer may be used by several threads at once: the backend serialises what it must (each call
// uses the layer's streams and per-call scratch, or a lock).
//
// The layer's arithmetic is that of native/include/svdquant/lowbit.h (DESIGN.md §2): integer block
// sums exact, the same scale rules; outputs agree with the CPU reference within the tolerance that
// header documents (fp32 sums may be accumulated in a different order on the GPU).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SVDQ_GPU_ABI_VERSION 1

typedef enum svdq_gpu_code {
  SVDQ_GPU_OK = 0,
  SVDQ_GPU_INVALID_ARGUMENT = 1,  // a bad shape, pointer, scheme or mode
  SVDQ_GPU_OUT_OF_MEMORY = 2,     // device (or pinned host) allocation failed
  SVDQ_GPU_NO_DEVICE = 3,         // no device, or the device index does not exist
  SVDQ_GPU_DRIVER_MISMATCH = 4,   // driver too old for the runtime, or no kernel image for the device
  SVDQ_GPU_RUNTIME = 5,           // any other CUDA/HIP error (launch failure, illegal address, ...)
  SVDQ_GPU_UNSUPPORTED = 6,       // a scheme/feature this build or device does not support
} svdq_gpu_code;

typedef struct svdq_gpu_status {
  int code;            // an svdq_gpu_code
  char message[512];   // NUL-terminated; empty when code is SVDQ_GPU_OK
} svdq_gpu_status;

typedef struct svdq_gpu_device_info {
  char name[256];             // e.g. "NVIDIA H100 80GB HBM3"
  char arch[64];              // "sm_90", "gfx90a", ...
  int64_t total_memory;       // bytes
  int64_t free_memory;        // bytes at the time of the call
  int multiprocessors;        // SMs / CUs
  int driver_version;         // as the runtime reports it (CUDA: 12040 = 12.4; HIP: its number)
  int runtime_version;
  // The GEMM path this device runs: 0 portable dot products, 1 NVIDIA mma.sync int8, 2 AMD MFMA int8;
  // -1 when the library holds no code the device can run (built_archs lacks its target), in which
  // case layer_create refuses the device with SVDQ_GPU_DRIVER_MISMATCH naming both targets.
  int matrix_path;
} svdq_gpu_device_info;

// Canonical layer data, the same as svdq::LowbitLayerDesc (lowbit.h) in plain C. Host pointers, read
// during layer_create only.
typedef struct svdq_gpu_layer_desc {
  int scheme;          // 0 w4a4, 1 mxfp4, 2 nvfp4, 3 w8a8, 4 w4a16 (svdq::LowbitScheme)
  int64_t n;           // output features
  int64_t k;           // input features
  int64_t rank;        // low-rank rank r (0: none)
  const void* w_codes;     // layouts as in lowbit.h's LowbitLayerDesc
  const void* w_scales;
  float w_global_scale;    // nvfp4 only
  const float* smooth;     // λ [k] or NULL
  const float* l_down;     // [rank][k] or NULL when rank is 0
  const float* l_up;       // [n][rank] or NULL when rank is 0
  const float* bias;       // [n] or NULL
  int act_mx_rule;         // svdq::MxScaleRule of the mxfp4 activation quantizer (0 floor, 1 even, 2 ceil)
} svdq_gpu_layer_desc;

typedef struct svdq_gpu_layer svdq_gpu_layer;    // opaque: a kernel-format layer on one device
typedef struct svdq_gpu_buffer svdq_gpu_buffer;  // opaque: device memory

// Low-rank modes, as svdq::LowRankMode: 0 fused, 1 side (second stream, joined with events), 2 unfused.

typedef struct svdq_gpu_api {
  int abi_version;           // SVDQ_GPU_ABI_VERSION of the library
  const char* platform;      // "cuda" or "hip"
  const char* built_archs;   // comma-separated targets compiled in, e.g. "sm_80,sm_86,sm_89,sm_90a"

  // Devices. device_count returns SVDQ_GPU_OK with *count = 0 when the driver is present but has no
  // device; SVDQ_GPU_NO_DEVICE / SVDQ_GPU_DRIVER_MISMATCH with the runtime's reason otherwise.
  int (*device_count)(int* count, svdq_gpu_status* status);
  int (*device_info)(int device, svdq_gpu_device_info* info, svdq_gpu_status* status);

  // Device buffers: allocation, asynchronous copies (on the buffer's own stream; the call returns
  // when the copy has completed, so the caller's host memory may be reused), release.
  int (*buffer_alloc)(int device, size_t bytes, svdq_gpu_buffer** out, svdq_gpu_status* status);
  int (*buffer_upload)(svdq_gpu_buffer* dst, size_t offset, const void* src, size_t bytes, svdq_gpu_status* status);
  int (*buffer_download)(const svdq_gpu_buffer* src, size_t offset, void* dst, size_t bytes, svdq_gpu_status* status);
  size_t (*buffer_bytes)(const svdq_gpu_buffer* buffer);
  void (*buffer_free)(svdq_gpu_buffer* buffer);  // NULL is a no-op

  // Layers: repack into the GPU kernel format on the host, upload, keep on `device`.
  int (*layer_create)(int device, const svdq_gpu_layer_desc* desc, svdq_gpu_layer** out, svdq_gpu_status* status);
  size_t (*layer_bytes)(const svdq_gpu_layer* layer);  // device bytes of the kernel format
  // Y [m][n] = the layer on X [m][k], host fp32 arrays (copied in and out asynchronously on the
  // layer's stream; returns when y is written).
  int (*layer_forward_host)(svdq_gpu_layer* layer, const float* x, int64_t m, float* y, int low_rank_mode,
                            svdq_gpu_status* status);
  // The same with X and Y in device buffers (fp32, row-major; bytes checked against m·k and m·n).
  int (*layer_forward_device)(svdq_gpu_layer* layer, const svdq_gpu_buffer* x, int64_t m, svdq_gpu_buffer* y,
                              int low_rank_mode, svdq_gpu_status* status);
  void (*layer_destroy)(svdq_gpu_layer* layer);  // NULL is a no-op
} svdq_gpu_api;

// The one exported symbol. Returns NULL only if the library cannot describe itself at all.
typedef const svdq_gpu_api* (*svdq_gpu_get_api_fn)(void);
const svdq_gpu_api* svdq_gpu_get_api(void);

#ifdef __cplusplus
}
#endif
