// The matrix-core instructions the kernels use, one small function each, so that kernel code is the
// same on every platform: inline PTX on NVIDIA, the clang builtins on AMD, and in the emulator
// (emu/emu_matrix.h) warp collectives computed from the vendors' documented fragment layouts.
// Each is available only in device passes whose SVDQ_DEVICE_MMA selects it (gpu_compat.h); the
// emulator declares all of them.
#pragma once

#include "gpu_compat.h"

#if defined(SVDQ_EMU)
#include "emu/emu_matrix.h"
#else

#if SVDQ_DEVICE_MMA == 1
// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8j..8j+7 give the addresses of the 8 rows (16
// bytes each) of matrix j; d[j] receives row lane/4, bytes 4·(lane%4)..+3 of matrix j.
__device__ __forceinline__ void gpu_ldmatrix_x4(uint32_t* d, const void* row) {
  const unsigned int s = static_cast<unsigned int>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(s));
}
// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32: c[4] += A (16×32, a[4]) · B (32×8, b[2]).
__device__ __forceinline__ void gpu_mma_m16n8k32_s8(int32_t* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32: c[4] += A (16×16, a[2]) · B (16×8, b[1]).
__device__ __forceinline__ void gpu_mma_m16n8k16_s8(int32_t* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(b[0]));
}
#endif

#if SVDQ_DEVICE_MMA >= 2
typedef int v4i32 __attribute__((ext_vector_type(4)));
typedef int v16i32 __attribute__((ext_vector_type(16)));
#endif
#if SVDQ_DEVICE_MMA == 2
__device__ __forceinline__ v4i32 gpu_mfma_i32_16x16x16_i8(int a, int b, v4i32 c) {
  return __builtin_amdgcn_mfma_i32_16x16x16i8(a, b, c, 0, 0, 0);
}
#endif
#if SVDQ_DEVICE_MMA == 3
__device__ __forceinline__ v4i32 gpu_mfma_i32_16x16x32_i8(long a, long b, v4i32 c) {
  return __builtin_amdgcn_mfma_i32_16x16x32_i8(a, b, c, 0, 0, 0);
}
__device__ __forceinline__ v16i32 gpu_mfma_i32_32x32x16_i8(long a, long b, v16i32 c) {
  return __builtin_amdgcn_mfma_i32_32x32x16_i8(a, b, c, 0, 0, 0);
}
#endif

#endif  // SVDQ_EMU
