// The portability layer of the GPU backends (DESIGN.md §5): the kernels are written once in the
// dialect CUDA and HIP share (__global__, threadIdx, __syncthreads, shuffles), and this header maps
// the runtime calls and the few device intrinsics that differ to the platform being compiled:
//   - nvcc            (__CUDACC__, no __HIP_PLATFORM_AMD__): the CUDA runtime, warp size 32;
//   - hipcc for AMD   (__HIP_PLATFORM_AMD__):                the HIP runtime, wavefront 64 on CDNA
//                     (32 on RDNA; device code asks __AMDGCN_WAVEFRONT_SIZE).
//   - the emulator    (SVDQ_EMU, any host compiler):         emu/emu_runtime.h, the same kernels on
//                     the CPU, threads as fibers, for one CUDA or HIP target (the "flavour").
// It is our own (Debian's ROCm 5.2 "HIP on NVIDIA" headers do not compile against CUDA 13).
// Host code uses only the gpu* names below; device code uses gpu_shfl_xor, the SVDQ_* macros and the
// matrix instructions of gpu_matrix.h. Launches are written SVDQ_LAUNCH(grid, block, smem, stream,
// kernel)(args...), dynamic shared memory SVDQ_DYNAMIC_SHARED(type, name).
#pragma once

#if defined(SVDQ_EMU)
#include "emu/emu_runtime.h"
#elif defined(__HIP_PLATFORM_AMD__) || defined(__HIPCC__)
#define SVDQ_HIP 1
#include <hip/hip_runtime.h>
#else
#define SVDQ_CUDA 1
#include <cuda_runtime.h>
#endif

#include <stdint.h>

#if defined(SVDQ_EMU)
// (emu_runtime.h defines the gpu* names itself.)
#elif defined(SVDQ_HIP)
#define SVDQ_PLATFORM "hip"
typedef hipError_t gpuError_t;
typedef hipStream_t gpuStream_t;
typedef hipEvent_t gpuEvent_t;
typedef hipDeviceProp_t gpuDeviceProp_t;
#define gpuSuccess hipSuccess
#define gpuErrorMemoryAllocation hipErrorOutOfMemory
#define gpuErrorNoDevice hipErrorNoDevice
#define gpuErrorInvalidDevice hipErrorInvalidDevice
#define gpuErrorInsufficientDriver hipErrorInsufficientDriver
#define gpuErrorNoKernelImage hipErrorNoBinaryForGpu
#define gpuErrorInvalidKernelImage hipErrorInvalidImage
#define gpuErrorInvalidValue hipErrorInvalidValue
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuStreamNonBlocking hipStreamNonBlocking
#define gpuEventDisableTiming hipEventDisableTiming
#define gpuEventDefault hipEventDefault
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMemcpy hipMemcpy
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemGetInfo hipMemGetInfo
#define gpuStreamCreateWithFlags hipStreamCreateWithFlags
#define gpuStreamDestroy hipStreamDestroy
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuStreamWaitEvent hipStreamWaitEvent
#define gpuEventCreateWithFlags hipEventCreateWithFlags
#define gpuEventRecord hipEventRecord
#define gpuEventSynchronize hipEventSynchronize
#define gpuEventElapsedTime hipEventElapsedTime
#define gpuEventDestroy hipEventDestroy
#define gpuGetErrorString hipGetErrorString
#define gpuGetErrorName hipGetErrorName
#define gpuGetLastError hipGetLastError
#define gpuPeekAtLastError hipPeekAtLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuSetDevice hipSetDevice
#define gpuGetDevice hipGetDevice
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuDriverGetVersion hipDriverGetVersion
#define gpuRuntimeGetVersion hipRuntimeGetVersion
#define gpuDeviceSynchronize hipDeviceSynchronize
#define gpuFuncSetAttribute(f, a, v) hipFuncSetAttribute(reinterpret_cast<const void*>(f), a, v)
#else
#define SVDQ_PLATFORM "cuda"
typedef cudaError_t gpuError_t;
typedef cudaStream_t gpuStream_t;
typedef cudaEvent_t gpuEvent_t;
typedef cudaDeviceProp gpuDeviceProp_t;
#define gpuSuccess cudaSuccess
#define gpuErrorMemoryAllocation cudaErrorMemoryAllocation
#define gpuErrorNoDevice cudaErrorNoDevice
#define gpuErrorInvalidDevice cudaErrorInvalidDevice
#define gpuErrorInsufficientDriver cudaErrorInsufficientDriver
#define gpuErrorNoKernelImage cudaErrorNoKernelImageForDevice
#define gpuErrorInvalidKernelImage cudaErrorInvalidKernelImage
#define gpuErrorInvalidValue cudaErrorInvalidValue
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuStreamNonBlocking cudaStreamNonBlocking
#define gpuEventDisableTiming cudaEventDisableTiming
#define gpuEventDefault cudaEventDefault
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemGetInfo cudaMemGetInfo
#define gpuStreamCreateWithFlags cudaStreamCreateWithFlags
#define gpuStreamDestroy cudaStreamDestroy
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuStreamWaitEvent cudaStreamWaitEvent
#define gpuEventCreateWithFlags cudaEventCreateWithFlags
#define gpuEventRecord cudaEventRecord
#define gpuEventSynchronize cudaEventSynchronize
#define gpuEventElapsedTime cudaEventElapsedTime
#define gpuEventDestroy cudaEventDestroy
#define gpuGetErrorString cudaGetErrorString
#define gpuGetErrorName cudaGetErrorName
#define gpuGetLastError cudaGetLastError
#define gpuPeekAtLastError cudaPeekAtLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuSetDevice cudaSetDevice
#define gpuGetDevice cudaGetDevice
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuDriverGetVersion cudaDriverGetVersion
#define gpuRuntimeGetVersion cudaRuntimeGetVersion
#define gpuDeviceSynchronize cudaDeviceSynchronize
#define gpuFuncSetAttribute(f, a, v) cudaFuncSetAttribute(f, a, v)
#endif

#if !defined(SVDQ_EMU)
#define SVDQ_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define SVDQ_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// ---- device side ---------------------------------------------------------------------------------

// Threads per block of the GEMM and quantize kernels: four warps (CUDA) or four CDNA wavefronts.
#if defined(SVDQ_HIP)
#define SVDQ_BLOCK 256
#else
#define SVDQ_BLOCK 128
#endif

// SVDQ_DEVICE_PASS: this is device code (a CUDA/HIP device pass, or the emulator), not the host pass.
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__) || defined(SVDQ_EMU)
#define SVDQ_DEVICE_PASS 1
#endif

// The target of the device pass: SVDQ_SM (e.g. 800, 900; 0 when not NVIDIA) and SVDQ_GFX (e.g.
// 0x90a, 0x942; 0 when not AMD). The emulator's flavour sets them as the compilers would.
#if defined(SVDQ_EMU_SM)
#define SVDQ_SM SVDQ_EMU_SM
#elif defined(__CUDA_ARCH__)
#define SVDQ_SM __CUDA_ARCH__
#else
#define SVDQ_SM 0
#endif
#if defined(SVDQ_EMU_GFX)
#define SVDQ_GFX SVDQ_EMU_GFX
#elif defined(__gfx908__)
#define SVDQ_GFX 0x908
#elif defined(__gfx90a__)
#define SVDQ_GFX 0x90a
#elif defined(__gfx940__)
#define SVDQ_GFX 0x940
#elif defined(__gfx941__)
#define SVDQ_GFX 0x941
#elif defined(__gfx942__)
#define SVDQ_GFX 0x942
#elif defined(__gfx950__)
#define SVDQ_GFX 0x950
#else
#define SVDQ_GFX 0
#endif

// Which matrix-core instruction the device pass compiling this code has (0: none, portable path).
//   1: NVIDIA mma.sync m16n8k32 / m16n8k16 s8 (sm_80 and newer)
//   2: AMD MFMA i32_16x16x16i8 (CDNA1/2: gfx908, gfx90a)
//   3: AMD MFMA i32_16x16x32_i8 and i32_32x32x16_i8 (CDNA3: gfx940, gfx941, gfx942)
#if SVDQ_SM >= 800
#define SVDQ_DEVICE_MMA 1
#elif SVDQ_GFX == 0x908 || SVDQ_GFX == 0x90a
#define SVDQ_DEVICE_MMA 2
#elif SVDQ_GFX >= 0x940 && SVDQ_GFX <= 0x942
#define SVDQ_DEVICE_MMA 3
#else
#define SVDQ_DEVICE_MMA 0
#endif

// NVIDIA's dp4a (sm_61+): 4-way int8 dot product with int32 accumulate.
#if SVDQ_SM >= 610
#define SVDQ_HAS_DP4A 1
#endif

#if defined(__CUDACC__) || defined(__HIPCC__) || defined(SVDQ_EMU)
// XOR shuffle within aligned groups of `width` lanes (width a power of two <= 16 here, so it is
// the same on 32- and 64-lane hardware). All lanes of the warp must call it.
template <typename T>
__device__ __forceinline__ T gpu_shfl_xor(T v, int lane_mask, int width) {
#if defined(SVDQ_EMU)
  return ::svdq_emu::shfl_xor(v, lane_mask, width);
#elif defined(SVDQ_HIP)
  return __shfl_xor(v, lane_mask, width);
#else
  return __shfl_xor_sync(0xffffffffu, v, lane_mask, width);
#endif
}

// Asynchronous 16-byte copies from global to shared memory: cp.async.cg on NVIDIA sm_80+ (issue,
// commit a group, wait until at most N committed groups are in flight); elsewhere a plain copy and
// the waits do nothing. `valid` false writes 16 zero bytes and reads nothing (src must still be a
// mapped address). dst and src are 16-byte aligned.
__device__ __forceinline__ void gpu_cp_async16(void* dst, const void* src, bool valid) {
#if SVDQ_SM >= 800 && defined(SVDQ_EMU)
  ::svdq_emu::cp_async(dst, src, 16, valid ? 16 : 0);
#elif SVDQ_SM >= 800
  const unsigned int d = static_cast<unsigned int>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
#else
  *static_cast<uint4*>(dst) = valid ? *static_cast<const uint4*>(src) : make_uint4(0u, 0u, 0u, 0u);
#endif
}
__device__ __forceinline__ void gpu_cp_async_commit() {
#if SVDQ_SM >= 800 && defined(SVDQ_EMU)
  ::svdq_emu::cp_async_commit();
#elif SVDQ_SM >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void gpu_cp_async_wait() {
#if SVDQ_SM >= 800 && defined(SVDQ_EMU)
  ::svdq_emu::cp_async_wait(N);
#elif SVDQ_SM >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

__device__ __forceinline__ int32_t gpu_dot4_s8(uint32_t a, uint32_t b, int32_t c) {
#if defined(SVDQ_HAS_DP4A)
  return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
#else
  for (int i = 0; i < 4; ++i)
    c += static_cast<int32_t>(static_cast<int8_t>(a >> (8 * i))) * static_cast<int32_t>(static_cast<int8_t>(b >> (8 * i)));
  return c;
#endif
}
#endif
