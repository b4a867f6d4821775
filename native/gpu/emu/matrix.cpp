// The matrix-core instructions, emulated from the vendors' documented fragment layouts.
//
// Sources (transcribed by hand; the formulas below keep the documents' names):
//   NVIDIA PTX ISA, §9.7.14.5 "Matrix Fragments for mma.m16n8k16 with integer type" and
//     "Matrix Fragments for mma.m16n8k32" (.s8 A, B and the .s32 accumulators):
//       groupID = %laneid >> 2, threadID_in_group = %laneid % 4.
//   NVIDIA PTX ISA, §9.7.14.5.15 "Warp-level matrix load instruction: ldmatrix" (.m8n8 .x4 .b16):
//     threads 8j..8j+7 hold the row addresses of matrix j; after the load four consecutive threads
//     hold one row, thread i elements 2·(i%4) and 2·(i%4)+1 of row i/4, in register j for matrix j.
//   AMD Matrix Instruction Calculator (github.com/ROCm/amd_matrix_instruction_calculator),
//     --detail-instruction for CDNA2 v_mfma_i32_16x16x16i8 and CDNA3 v_mfma_i32_16x16x32_i8 /
//     v_mfma_i32_32x32x16_i8 ("Matrix element to register mapping with no modifiers").
// Each instruction computes D = A·B + C exactly (int8 products, 32-bit wrapping accumulators).
//
// SVDQ_EMU_FAULT=layout swaps in a plausible misreading of each layout (noted at each function), so
// that a guard test can show the kernels' tests fail when a fragment layout is wrong.
#include <stdint.h>
#include <string.h>

#include "emu_matrix.h"
#include "emu_runtime.h"

namespace {

using svdq_emu::fault;
using svdq_emu::kFaultLayout;

int8_t byte_of(uint32_t reg, int b) { return static_cast<int8_t>(reg >> (8 * b)); }

// D[M][N] = A[M][K]·B[K][N] + C, with wrapping int32 results.
void multiply(int M, int N, int K, const int8_t* A, const int8_t* B, const int32_t* C, int32_t* D) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      int64_t s = C[i * N + j];
      for (int k = 0; k < K; ++k) s += static_cast<int64_t>(A[i * K + k]) * B[k * N + j];
      D[i * N + j] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(s)));
    }
}

// ---- NVIDIA mma.sync m16n8k32 / m16n8k16, .s8 × .s8 → .s32 ------------------------------------------

struct MmaSlot {
  int32_t* c;
  const uint32_t* a;
  const uint32_t* b;
};

// Element ai of A (m16n8k32): row, col. Fault: rows by halves of the fragment (a0..a7 in row
// groupID), as if the k32 layout were two k16 layouts side by side.
void mma_k32_a(int lane, int i, bool wrong, int& row, int& col) {
  const int groupID = lane >> 2, threadID_in_group = lane % 4;
  if (!wrong)
    row = ((0 <= i && i < 4) || (8 <= i && i < 12)) ? groupID : groupID + 8;
  else
    row = i < 8 ? groupID : groupID + 8;
  col = i < 8 ? (threadID_in_group * 4) + (i & 0x3) : (threadID_in_group * 4) + (i & 0x3) + 16;
}
// Element bi of B (m16n8k32).
void mma_k32_b(int lane, int i, int& row, int& col) {
  const int groupID = lane >> 2, threadID_in_group = lane % 4;
  row = i < 4 ? (threadID_in_group * 4) + (i & 0x3) : (threadID_in_group * 4) + (i & 0x3) + 16;
  col = groupID;
}
// Element ai of A (m16n8k16, integer type).
void mma_k16_a(int lane, int i, int& row, int& col) {
  const int groupID = lane >> 2, threadID_in_group = lane % 4;
  row = i < 4 ? groupID : groupID + 8;
  col = (threadID_in_group * 4) + (i & 0x3);
}
// Element bi of B (m16n8k16, integer type).
void mma_k16_b(int lane, int i, int& row, int& col) {
  const int groupID = lane >> 2, threadID_in_group = lane % 4;
  row = (threadID_in_group * 4) + i;
  col = groupID;
}
// Element ci of C/D (both shapes, .s32). Fault (k16 only): c1 and c2 exchanged.
void mma_c(int lane, int i, bool wrong, int& row, int& col) {
  const int groupID = lane >> 2, threadID_in_group = lane % 4;
  if (wrong && (i == 1 || i == 2)) i = 3 - i;
  row = i < 2 ? groupID : groupID + 8;
  col = (threadID_in_group * 2) + (i & 0x1);
}

template <int K>
void mma_op(void* const* slots, int lanes) {
  constexpr int M = 16, N = 8;
  int8_t A[M * K], B[K * N];
  int32_t C[M * N], D[M * N];
  const bool wrong = fault() == kFaultLayout;
  for (int lane = 0; lane < lanes && lane < 32; ++lane) {
    const MmaSlot& s = *static_cast<const MmaSlot*>(slots[lane]);
    int row, col;
    for (int i = 0; i < K / 2; ++i) {  // K/2 A elements per lane: 16 (k32) or 8 (k16)
      if (K == 32)
        mma_k32_a(lane, i, wrong, row, col);
      else
        mma_k16_a(lane, i, row, col);
      A[row * K + col] = byte_of(s.a[i / 4], i % 4);
    }
    for (int i = 0; i < K / 4; ++i) {  // K/4 B elements per lane: 8 (k32) or 4 (k16)
      if (K == 32)
        mma_k32_b(lane, i, row, col);
      else
        mma_k16_b(lane, i, row, col);
      B[row * N + col] = byte_of(s.b[i / 4], i % 4);
    }
    for (int i = 0; i < 4; ++i) {
      mma_c(lane, i, wrong && K == 16, row, col);
      C[row * N + col] = s.c[i];
    }
  }
  multiply(M, N, K, A, B, C, D);
  for (int lane = 0; lane < lanes && lane < 32; ++lane) {
    const MmaSlot& s = *static_cast<const MmaSlot*>(slots[lane]);
    for (int i = 0; i < 4; ++i) {
      int row, col;
      mma_c(lane, i, wrong && K == 16, row, col);
      s.c[i] = D[row * N + col];
    }
  }
}

// ---- AMD MFMA (wave64) ----------------------------------------------------------------------------

struct MfmaSlot {
  uint32_t a[2], b[2];  // A and B registers of the lane (GPR 0, GPR 1)
  int32_t cd[16];       // C in, D out (GPR i)
};

// D = A·B + C for one MFMA instruction of a wave64, the lanes' registers placed by the layout
// functions: a(lane, gpr, byte, i, k) and b(lane, gpr, byte, k, j) for the REGS registers of A and B,
// d(lane, gpr, i, j) for the DREGS registers of C and D.
template <int M, int N, int K, int REGS, int DREGS, typename AMap, typename BMap, typename DMap>
void mfma(void* const* slots, int lanes, AMap a, BMap b, DMap d) {
  int8_t A[M * K], B[K * N];
  int32_t C[M * N], D[M * N];
  int i, j, k;
  for (int lane = 0; lane < lanes && lane < 64; ++lane) {
    const MfmaSlot& s = *static_cast<const MfmaSlot*>(slots[lane]);
    for (int gpr = 0; gpr < REGS; ++gpr)
      for (int byte = 0; byte < 4; ++byte) {
        a(lane, gpr, byte, i, k);
        A[i * K + k] = byte_of(s.a[gpr], byte);
        b(lane, gpr, byte, k, j);
        B[k * N + j] = byte_of(s.b[gpr], byte);
      }
    for (int gpr = 0; gpr < DREGS; ++gpr) {
      d(lane, gpr, i, j);
      C[i * N + j] = s.cd[gpr];
    }
  }
  multiply(M, N, K, A, B, C, D);
  for (int lane = 0; lane < lanes && lane < 64; ++lane) {
    MfmaSlot& s = *static_cast<MfmaSlot*>(slots[lane]);
    for (int gpr = 0; gpr < DREGS; ++gpr) {
      d(lane, gpr, i, j);
      s.cd[gpr] = D[i * N + j];
    }
  }
}

// C/D of the 16x16 shapes: C or D[i][j] in GPR i%4 of lane 16·floor(i/4) + j; read back,
// i = 4·floor(lane/16) + GPR%4, j = lane%16.
void d16(int lane, int gpr, int& i, int& j) {
  i = 4 * (lane / 16) + gpr % 4;
  j = lane % 16;
}

// v_mfma_i32_16x16x16i8: A[i][k] in GPR 0 bits [8(k%4)+7 : 8(k%4)] of lane 16·floor(k/4) + i; B[k][j]
// likewise with j. Read back: lane l holds A row l%16, k = 4·floor(l/16) + byte. Fault, in A only:
// k = floor(l/16) + 4·byte (the bytes taken as rows of k). (A fault must break the agreement between
// A and B: the same permutation of k in both would leave every product unchanged.)
void mfma16x16x16_op(void* const* slots, int lanes) {
  const bool wrong = fault() == kFaultLayout;
  mfma<16, 16, 16, 1, 4>(
      slots, lanes,
      [wrong](int l, int, int byte, int& i, int& k) {
        i = l % 16;
        k = wrong ? l / 16 + 4 * byte : 4 * (l / 16) + byte;
      },
      [](int l, int, int byte, int& k, int& j) {
        k = 4 * (l / 16) + byte;
        j = l % 16;
      },
      d16);
}

// v_mfma_i32_16x16x32_i8: A[i][k] in GPR floor(k/4)%2, bits [8(k%4)+7 : 8(k%4)], of lane
// 16·floor(k/8) + i (read back: k = 8·floor(l/16) + 4·GPR + byte); B likewise; C/D as 16x16x16.
// Fault, in A only: k = 4·floor(l/16) + 16·GPR + byte (the two registers taken as the two k halves).
void mfma16x16x32_op(void* const* slots, int lanes) {
  const bool wrong = fault() == kFaultLayout;
  mfma<16, 16, 32, 2, 4>(
      slots, lanes,
      [wrong](int l, int gpr, int byte, int& i, int& k) {
        i = l % 16;
        k = wrong ? 4 * (l / 16) + 16 * gpr + byte : 8 * (l / 16) + 4 * gpr + byte;
      },
      [](int l, int gpr, int byte, int& k, int& j) {
        k = 8 * (l / 16) + 4 * gpr + byte;
        j = l % 16;
      },
      d16);
}

// v_mfma_i32_32x32x16_i8: A[i][k] in GPR floor(k/4)%2, byte k%4, of lane 32·floor(k/8) + i (read
// back: i = l%32, k = 8·floor(l/32) + 4·GPR + byte); B likewise with j; C/D[i][j] in GPR
// 4·floor(i/8) + i%4 of lane (32·floor(i/4))%64 + j (read back: i = 8·floor(GPR/4) + 4·floor(l/32) +
// GPR%4, j = l%32). Fault: the two lane halves of D exchanged (4·(1 − floor(l/32)) for 4·floor(l/32)).
void mfma32x32x16_op(void* const* slots, int lanes) {
  const bool wrong = fault() == kFaultLayout;
  mfma<32, 32, 16, 2, 16>(
      slots, lanes,
      [](int l, int gpr, int byte, int& i, int& k) {
        i = l % 32;
        k = 8 * (l / 32) + 4 * gpr + byte;
      },
      [](int l, int gpr, int byte, int& k, int& j) {
        k = 8 * (l / 32) + 4 * gpr + byte;
        j = l % 32;
      },
      [wrong](int l, int gpr, int& i, int& j) {
        const int half = wrong ? 1 - l / 32 : l / 32;
        i = (8 * (gpr / 4)) % 32 + 4 * half + gpr % 4;
        j = l % 32;
      });
}

void split64(long v, uint32_t* r) {
  const uint64_t u = static_cast<uint64_t>(v);
  r[0] = static_cast<uint32_t>(u);  // GPR 0: the low half of the 64-bit register pair
  r[1] = static_cast<uint32_t>(u >> 32);
}

struct LdmatrixSlot {
  uint32_t* d;
  const unsigned char* row;
};

// Fault: the lanes' words taken from row lane%8 instead of lane/4 (addresses read as if each lane
// received its own row).
void ldmatrix_x4_op(void* const* slots, int lanes) {
  const bool wrong = fault() == kFaultLayout;
  uint32_t out[32][4];
  for (int lane = 0; lane < lanes && lane < 32; ++lane)
    for (int j = 0; j < 4; ++j) {
      const int row = wrong ? lane % 8 : lane / 4;
      const unsigned char* p = static_cast<const LdmatrixSlot*>(slots[8 * j + row])->row + 4 * (lane % 4);
      memcpy(&out[lane][j], p, 4);
    }
  for (int lane = 0; lane < lanes && lane < 32; ++lane)
    memcpy(static_cast<LdmatrixSlot*>(slots[lane])->d, out[lane], sizeof out[lane]);
}

}  // namespace

void gpu_ldmatrix_x4(uint32_t* d, const void* row) {
  LdmatrixSlot s{d, static_cast<const unsigned char*>(row)};
  svdq_emu::warp_collective(&ldmatrix_x4_op, &s, "ldmatrix.x4");
}

void gpu_mma_m16n8k32_s8(int32_t* c, const uint32_t* a, const uint32_t* b) {
  MmaSlot s{c, a, b};
  svdq_emu::warp_collective(&mma_op<32>, &s, "mma.sync.m16n8k32.s8");
}

void gpu_mma_m16n8k16_s8(int32_t* c, const uint32_t* a, const uint32_t* b) {
  MmaSlot s{c, a, b};
  svdq_emu::warp_collective(&mma_op<16>, &s, "mma.sync.m16n8k16.s8");
}

v4i32 gpu_mfma_i32_16x16x16_i8(int a, int b, v4i32 c) {
  MfmaSlot s{};
  s.a[0] = static_cast<uint32_t>(a);
  s.b[0] = static_cast<uint32_t>(b);
  for (int i = 0; i < 4; ++i) s.cd[i] = c[i];
  svdq_emu::warp_collective(&mfma16x16x16_op, &s, "v_mfma_i32_16x16x16i8");
  v4i32 d;
  for (int i = 0; i < 4; ++i) d[i] = s.cd[i];
  return d;
}

v4i32 gpu_mfma_i32_16x16x32_i8(long a, long b, v4i32 c) {
  MfmaSlot s{};
  split64(a, s.a);
  split64(b, s.b);
  for (int i = 0; i < 4; ++i) s.cd[i] = c[i];
  svdq_emu::warp_collective(&mfma16x16x32_op, &s, "v_mfma_i32_16x16x32_i8");
  v4i32 d;
  for (int i = 0; i < 4; ++i) d[i] = s.cd[i];
  return d;
}

v16i32 gpu_mfma_i32_32x32x16_i8(long a, long b, v16i32 c) {
  MfmaSlot s{};
  split64(a, s.a);
  split64(b, s.b);
  for (int i = 0; i < 16; ++i) s.cd[i] = c[i];
  svdq_emu::warp_collective(&mfma32x32x16_op, &s, "v_mfma_i32_32x32x16_i8");
  v16i32 d;
  for (int i = 0; i < 16; ++i) d[i] = s.cd[i];
  return d;
}
