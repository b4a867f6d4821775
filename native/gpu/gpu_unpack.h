// Unpacking 4-bit codes into the int8 operands of the integer matrix instructions, four at a time in
// one 32-bit register (SWAR: byte lanes that never carry into each other). The GEMM reads activation
// and weight codes packed (two per byte, the element of even index in the low nibble) and expands
// them with these once per block and K chunk.
//   INT4:  code q+8 ∈ [0, 15] as stored (two's complement nibble) → q ∈ [−8, 7];
//   E2M1:  code → 2·value ∈ {0, ±1, ±2, ±3, ±4, ±6, ±8, ±12} (exact int8).
// emu/tests/test_emu.cu checks both exhaustively against gpu_codecs.h for every flavour.
#pragma once

#include "gpu_compat.h"

// The 4 nibbles of the low 16 bits of h, element order from the low nibble, one per byte.
__device__ __forceinline__ uint32_t gpu_spread_nibbles(uint32_t h) {
  const uint32_t t = (h & 0xFFu) | ((h & 0xFF00u) << 8);  // bytes: n1n0, 0, n3n2, 0
  return (t | (t << 4)) & 0x0F0F0F0Fu;
}

// INT4: per byte ((n ^ 8) + 0x78) ^ 0x80 = sign-extended n; the sum stays below 0x100, so no carry.
__device__ __forceinline__ uint32_t gpu_int4x4_to_s8(uint32_t h) {
  const uint32_t x = gpu_spread_nibbles(h);
  return ((x ^ 0x08080808u) + 0x78787878u) ^ 0x80808080u;
}

// E2M1: the magnitude 2·|value| from an 8-entry byte table {0,1,2,3,4,6,8,12} indexed by the code's
// low 3 bits, then negated per byte where the sign bit is set and the magnitude is not zero
// ((m ^ 0xFF) + 1 = −m never carries for m >= 1).
__device__ __forceinline__ uint32_t gpu_e2m1x4_to_s8(uint32_t h) {
  const uint32_t x = gpu_spread_nibbles(h);
#if SVDQ_SM > 0
  const uint32_t mag = __byte_perm(0x03020100u, 0x0C080604u, h & 0x7777u);  // prmt: 3-bit byte selectors
#else
  constexpr uint64_t kTable = 0x0C08060403020100ull;
  uint32_t mag = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) mag |= static_cast<uint32_t>((kTable >> (8 * ((x >> (8 * j)) & 7u))) & 0xFFu) << (8 * j);
#endif
  const uint32_t nonzero = ((mag + 0x7F7F7F7Fu) >> 7) & 0x01010101u;
  const uint32_t neg = (x >> 3) & 0x01010101u & nonzero;
  return (mag ^ (neg * 0xFFu)) + neg;
}

template <bool FP4>
__device__ __forceinline__ uint32_t gpu_unpack4(uint32_t h) {
  return FP4 ? gpu_e2m1x4_to_s8(h) : gpu_int4x4_to_s8(h);
}
