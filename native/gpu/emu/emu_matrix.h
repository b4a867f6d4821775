// The matrix-core instructions of gpu_matrix.h as the emulator runs them: warp collectives that
// gather every lane's fragment registers, multiply in 64-bit integers and scatter the accumulators
// back. Where each element of A, B, C and D lives (lane, register, byte) is transcribed in matrix.cpp
// from the vendors' documentation, not from our kernels.
#pragma once

#include <stdint.h>

typedef int v4i32 __attribute__((vector_size(16)));
typedef int v16i32 __attribute__((vector_size(64)));

// NVIDIA ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8j..8j+7 give the row addresses of matrix
// j (8 rows of 16 bytes); each lane receives in d[j] the 4 bytes of matrix j at row lane/4, bytes
// 4·(lane%4) .. +3.
void gpu_ldmatrix_x4(uint32_t* d, const void* row);
// NVIDIA mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 d, a, b, c (d == c here): a[4], b[2], c[4].
void gpu_mma_m16n8k32_s8(int32_t* c, const uint32_t* a, const uint32_t* b);
// NVIDIA mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32: a[2], b[1], c[4].
void gpu_mma_m16n8k16_s8(int32_t* c, const uint32_t* a, const uint32_t* b);
// AMD v_mfma_i32_16x16x16i8 (CDNA1/2), wave64: one int8x4 register of A and of B per lane.
v4i32 gpu_mfma_i32_16x16x16_i8(int a, int b, v4i32 c);
// AMD v_mfma_i32_16x16x32_i8 (CDNA3), wave64: two registers (int8x8) of A and of B per lane.
v4i32 gpu_mfma_i32_16x16x32_i8(long a, long b, v4i32 c);
// AMD v_mfma_i32_32x32x16_i8 (CDNA3), wave64: two registers of A and of B, 16 of C/D per lane.
v16i32 gpu_mfma_i32_32x32x16_i8(long a, long b, v16i32 c);
